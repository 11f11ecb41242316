"""Shared worker pieces: heartbeats during deliberate waits, backoff."""

from __future__ import annotations

import asyncio

from bridge.workers import Backoff, Heartbeat, sleep_or_stop


class CountingHeartbeat(Heartbeat):
    """Counts beats, and ends the wait (sets ``stopping``) at the third."""

    def __init__(self, period: float, stopping: asyncio.Event) -> None:
        super().__init__(period)
        self.beats = 0
        self._stopping = stopping

    def beat(self) -> None:
        self.beats += 1
        if self.beats == 3:
            self._stopping.set()
        super().beat()


async def test_a_long_deliberate_wait_keeps_beating_so_the_watchdog_stays_fed() -> None:
    # An hour's wait that only the third beat ends: without beats it would hang.
    stopping = asyncio.Event()
    heartbeat = CountingHeartbeat(period=0.01, stopping=stopping)
    await asyncio.wait_for(sleep_or_stop(stopping, 3600, heartbeat=heartbeat), 30)
    assert heartbeat.beats == 3


async def test_sleep_returns_at_once_when_stopping_or_woken() -> None:
    stopping, wake = asyncio.Event(), asyncio.Event()
    wake.set()
    await asyncio.wait_for(sleep_or_stop(stopping, 3600, wake), 5)
    stopping.set()
    await asyncio.wait_for(sleep_or_stop(stopping, 3600), 5)


def test_heartbeat_health_follows_the_period_and_slack() -> None:
    now = [0.0]
    heartbeat = Heartbeat(60.0, clock=lambda: now[0])
    now[0] = 60.0 * 2 + 120.0
    assert heartbeat.healthy()
    now[0] += 1
    assert not heartbeat.healthy()
    heartbeat.beat()
    assert heartbeat.healthy()


def test_backoff_grows_caps_and_honours_retry_after() -> None:
    backoff = Backoff(base=10.0, cap=100.0)
    assert 5.0 <= backoff.delay(1) <= 10.0
    assert 20.0 <= backoff.delay(3) <= 40.0
    assert backoff.delay(30) <= 100.0
    assert backoff.delay(1, retry_after=70.0) >= 70.0
