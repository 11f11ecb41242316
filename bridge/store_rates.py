"""Rate-limit events of the store: counted per (key, minute) (schema version 3).

A mixin of :class:`bridge.store.Store`, plus the helpers ``accept_message`` uses
inside its own transaction to check and record the limits atomically.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from bridge.jobs import RateLimitCheck, RateLimited
from bridge.store_schema import Connection, StoreBase


class RateStore(StoreBase):
    """Events counted against rate limits, persisted so a restart does not reset them."""

    async def count_recent(self, key: str, since: float) -> int:
        """Events recorded under ``key`` at or after ``since``."""
        return await self._read(lambda conn: count_events(conn, key, since)[0])

    async def record_event(self, key: str, at: float, n: int = 1) -> None:
        """Record ``n`` events under ``key`` at time ``at`` (durably)."""
        await self._write(lambda conn: add_events(conn, key, at, n))


#: Rate events are counted per (key, minute): see schema version 3.
_BUCKET_SECONDS = 60.0


def _bucket(at: float) -> float:
    return math.floor(at / _BUCKET_SECONDS) * _BUCKET_SECONDS


def add_events(conn: Connection, key: str, at: float, n: int) -> None:
    """Add ``n`` events under ``key`` to the minute of ``at``."""
    conn.execute(
        "INSERT INTO rate_events (key, at, n) VALUES (?, ?, ?)"
        " ON CONFLICT (key, at) DO UPDATE SET n = n + excluded.n",
        (key, _bucket(at), n),
    )


def count_events(conn: Connection, key: str, since: float) -> tuple[int, float | None]:
    """The events under ``key`` from the minute of ``since`` on, and the oldest minute."""
    row = conn.execute(
        "SELECT coalesce(sum(n), 0) AS total, min(at) AS oldest FROM rate_events"
        " WHERE key = ? AND at >= ?",
        (key, _bucket(since)),
    ).fetchone()
    return int(row["total"]), row["oldest"]


def check_limits(conn: Connection, checks: Sequence[RateLimitCheck], n: int, now: float) -> None:
    """Raise :class:`RateLimited` if ``n`` more events would exceed any of ``checks``."""
    for check in checks:
        current, oldest = count_events(conn, check.key, now - check.window_seconds)
        if current + n > check.max:
            wait = check.window_seconds if oldest is None else oldest + check.window_seconds - now
            raise RateLimited(check, current=current, retry_after=max(1.0, wait))
