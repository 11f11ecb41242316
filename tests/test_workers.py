"""Shared worker pieces: heartbeats during deliberate waits, backoff."""

from __future__ import annotations

import asyncio

from bridge.workers import Backoff, Heartbeat, sleep_or_stop


class CountingHeartbeat(Heartbeat):
    def __init__(self, period: float) -> None:
        super().__init__(period)
        self.beats = 0

    def beat(self) -> None:
        self.beats += 1
        super().beat()


async def test_a_long_deliberate_wait_keeps_beating_so_the_watchdog_stays_fed() -> None:
    heartbeat = CountingHeartbeat(period=0.01)
    await sleep_or_stop(asyncio.Event(), 0.1, heartbeat=heartbeat)
    assert heartbeat.beats >= 2


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
