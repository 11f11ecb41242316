"""Fault injection for the API paths (the control API is never affected).

Set through ``POST /_sandbox/faults`` with a JSON object; every key is optional
and a POST replaces the whole configuration:

* ``latency_ms`` (int >= 0): added before each matching request is handled.
* ``error_rate`` (0..1) and ``error_status`` (400-599, default 503): that share of
  matching requests is answered with an InterFAX-shaped error (code -150).
* ``drop_after_commit`` (int >= 0): the next N successful send-fax requests are
  committed (the fax exists and progresses) but the connection is dropped with
  no response, so the client cannot know the fax was accepted.
* ``rate_limit_per_minute`` (int >= 0, 0 = off): beyond that many matching
  requests in a sliding minute, answer 429 with ``Retry-After`` and code -1011.
* ``paths`` (list of path prefixes): restrict latency, errors and the rate limit
  to those prefixes (default: every API path).
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field

from bridge.sandbox import errors

_WINDOW_SECONDS = 60.0


@dataclass(frozen=True)
class FaultSettings:
    """A validated fault configuration; the defaults inject nothing."""

    latency_ms: int = 0
    error_rate: float = 0.0
    error_status: int = 503
    drop_after_commit: int = 0
    rate_limit_per_minute: int = 0
    paths: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    def from_json(cls, data: object) -> FaultSettings:
        """Validate a decoded JSON object; ValueError names the offending key."""
        if not isinstance(data, dict):
            raise ValueError("the fault configuration must be a JSON object")
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown fault keys: {', '.join(sorted(unknown))}")

        def integer(key: str, default: int, low: int, high: int) -> int:
            value = data.get(key, default)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"{key} must be an integer from {low} to {high}")
            return value

        rate = data.get("error_rate", 0.0)
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
            raise ValueError("error_rate must be a number from 0 to 1")
        paths = data.get("paths") or []
        if not isinstance(paths, list) or not all(
            isinstance(p, str) and p.startswith("/") for p in paths
        ):
            raise ValueError("paths must be a list of path prefixes starting with '/'")
        return cls(
            latency_ms=integer("latency_ms", 0, 0, 60_000),
            error_rate=float(rate),
            error_status=integer("error_status", 503, 400, 599),
            drop_after_commit=integer("drop_after_commit", 0, 0, 1_000_000),
            rate_limit_per_minute=integer("rate_limit_per_minute", 0, 0, 1_000_000),
            paths=tuple(paths),
        )


class Faults:
    """The live fault state: the configuration plus its counters."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        chance: Callable[[], float] = random.random,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._clock = clock
        self._chance = chance
        self._sleep = sleep
        self.settings = FaultSettings()
        self._drops_left = 0
        self._hits: deque[float] = deque()

    def configure(self, settings: FaultSettings) -> None:
        """Replace the configuration and restart the counters."""
        self.settings = settings
        self._drops_left = settings.drop_after_commit
        self._hits.clear()

    def clear(self) -> None:
        """Inject nothing from now on."""
        self.configure(FaultSettings())

    def as_json(self) -> dict[str, object]:
        """The configuration, with ``drop_after_commit`` as the drops still to come."""
        shown = asdict(self.settings)
        shown["paths"] = list(self.settings.paths)
        shown["drop_after_commit"] = self._drops_left
        return shown

    def _applies(self, path: str) -> bool:
        prefixes = self.settings.paths
        return not prefixes or any(path.startswith(prefix) for prefix in prefixes)

    async def before(self, path: str) -> errors.ApiError | None:
        """Apply latency; return the error to answer instead of handling, if any."""
        if not self._applies(path):
            return None
        if self.settings.latency_ms:
            await self._sleep(self.settings.latency_ms / 1000)
        limit = self.settings.rate_limit_per_minute
        if limit:
            now = self._clock()
            while self._hits and now - self._hits[0] >= _WINDOW_SECONDS:
                self._hits.popleft()
            if len(self._hits) >= limit:
                wait = _WINDOW_SECONDS - (now - self._hits[0])
                return errors.rate_limited(max(1, math.ceil(wait)))
            self._hits.append(now)
        if self.settings.error_rate and self._chance() < self.settings.error_rate:
            return errors.injected_failure(self.settings.error_status)
        return None

    def take_drop(self) -> bool:
        """True (and one fewer to come) when this committed send must be dropped."""
        if self._drops_left <= 0:
            return False
        self._drops_left -= 1
        return True
