"""Small pieces every background worker shares: backoff, the auth pause, heartbeats.

A worker is an object with ``name`` and ``async run(stopping)``; it returns soon after
``stopping`` is set, leaving unfinished work safely in the store for the next start.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger(__name__)


class Worker(Protocol):
    """What the service runs and supervises."""

    name: str
    heartbeat: Heartbeat

    async def run(self, stopping: asyncio.Event) -> None:
        """Work until ``stopping`` is set."""


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with jitter: ``base * 2**(attempt-1)``, capped, times 0.5-1.0."""

    base: float = 30.0
    cap: float = 1800.0

    def delay(self, attempt: int, *, retry_after: float | None = None) -> float:
        """Seconds to wait before attempt number ``attempt + 1``."""
        raw = min(self.cap, self.base * 2.0 ** max(0, attempt - 1))
        jittered = raw * random.uniform(0.5, 1.0)
        if retry_after is not None:
            # The server said when: never earlier than that, and never wildly later.
            return max(retry_after, min(jittered, self.cap))
        return jittered


class Heartbeat:
    """When a worker last made progress; the systemd watchdog is fed only while all beat."""

    def __init__(self, period: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.period = period
        self._clock = clock
        self._last = clock()

    def beat(self) -> None:
        """Record progress (one loop iteration completed)."""
        self._last = self._clock()

    def healthy(self, slack: float = 120.0) -> bool:
        """True when the last beat is recent enough for this worker's period."""
        return self._clock() - self._last <= 2 * self.period + slack


class AuthGate:
    """Pauses everything that talks to one remote service after it refused our credentials."""

    def __init__(self, service: str) -> None:
        self._service = service
        self._open = asyncio.Event()
        self._open.set()
        self.reason: str | None = None

    @property
    def paused(self) -> bool:
        """True while credentials are known to be refused."""
        return not self._open.is_set()

    def pause(self, reason: str) -> None:
        """Stop work until :meth:`resume`; logs loudly once."""
        if not self.paused:
            log.critical(
                "%s refused our credentials: pausing all work until they are fixed (%s)",
                self._service,
                reason,
            )
        self.reason = reason
        self._open.clear()

    def resume(self) -> None:
        """Credentials work again."""
        if self.paused:
            log.warning("%s accepts our credentials again: resuming", self._service)
        self.reason = None
        self._open.set()


async def sleep_or_stop(
    stopping: asyncio.Event,
    seconds: float,
    *extra: asyncio.Event,
    heartbeat: Heartbeat | None = None,
) -> None:
    """Sleep up to ``seconds``; wake early when ``stopping`` (or any ``extra``) is set.

    With ``heartbeat``, the sleep counts as progress: it beats once per period, so a worker
    waiting on purpose (a long backoff) never starves the systemd watchdog.
    """
    events = [stopping, *extra]
    deadline = time.monotonic() + max(0.0, seconds)
    while not any(e.is_set() for e in events):
        left = deadline - time.monotonic()
        if left <= 0:
            return
        chunk = min(left, heartbeat.period) if heartbeat is not None else left
        waiters = [asyncio.ensure_future(e.wait()) for e in events]
        try:
            await asyncio.wait(waiters, timeout=chunk, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        if heartbeat is not None:
            heartbeat.beat()
