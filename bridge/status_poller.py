"""Tracking submitted faxes to their final status.

Every ``status_poll_interval`` the ids of all faxes in flight are asked about in
batches through ``/outbound/faxes/completed?ids=`` (InterFAX asks for a handful of
status polls a minute at most, so one poller batches everything). A fax that finished
gets its full record once, for the report, and moves to SENT or FAILED.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from bridge import fax_status, metrics
from bridge.errors import AuthError, BridgeError
from bridge.interfax import InterfaxClient
from bridge.interfax_models import OutboundFax
from bridge.jobs import Job, JobState
from bridge.store import Store
from bridge.workers import AuthGate, Heartbeat, sleep_or_stop

log = logging.getLogger(__name__)


def fax_result(fax: OutboundFax) -> dict[str, Any]:
    """What a report needs to know about a finished fax, as JSON-friendly values."""

    def iso(value: Any) -> str | None:
        return value.isoformat() if value is not None else None

    return {
        "kind": "status",
        "status": fax.status,
        "category": str(fax_status.category(fax.status)),
        "reason": fax_status.describe(fax.status),
        "pages_sent": fax.pages_sent,
        "pages_submitted": fax.pages_submitted,
        "duration": fax.duration,
        "attempts": fax.attempts_made,
        "remote_csid": fax.remote_csid,
        "submit_time": iso(fax.submit_time),
        "completion_time": iso(fax.completion_time),
        "units": str(fax.units) if fax.units is not None else None,
        "cost_per_unit": str(fax.cost_per_unit) if fax.cost_per_unit is not None else None,
    }


class StatusPoller:
    """Polls InterFAX for the faxes in flight and records their final status."""

    name = "status-poller"

    def __init__(
        self,
        store: Store,
        client: InterfaxClient,
        *,
        interval: float,
        gate: AuthGate,
        finished: asyncio.Event,
        batch_size: int = 100,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._client = client
        self._interval = interval
        self._gate = gate
        self._finished = finished
        self._batch_size = batch_size
        self._clock = clock
        self.heartbeat = Heartbeat(interval)

    async def run(self, stopping: asyncio.Event) -> None:
        """Poll every interval until ``stopping`` is set."""
        while not stopping.is_set():
            self.heartbeat.beat()
            if not self._gate.paused:
                try:
                    await self.poll_once()
                except AuthError as exc:
                    self._gate.pause(str(exc))
                except BridgeError as exc:
                    log.warning("status poll failed, will try again: %s", exc)
            await sleep_or_stop(stopping, self._interval, heartbeat=self.heartbeat)

    async def poll_once(self) -> int:
        """One round: returns how many faxes reached a final status."""
        jobs = await self._store.jobs_with_fax_ids(JobState.SUBMITTED)
        by_fax: dict[int, Job] = {job.fax_id: job for job in jobs if job.fax_id is not None}
        if not by_fax:
            return 0
        done = await self._client.completed(by_fax, batch_size=self._batch_size)
        finished = 0
        for summary in done:
            job = by_fax.get(summary.id)
            if job is None or not fax_status.is_final(summary.status):
                continue
            record = await self._full_record(summary)
            success = fax_status.is_success(record.status)
            moved = await self._store.transition(
                job.id,
                expect=JobState.SUBMITTED,
                to=JobState.SENT if success else JobState.FAILED,
                now=self._clock(),
                fax_status=record.status,
                result={**(job.result or {}), **fax_result(record)},
                last_error=None if success else fax_status.describe(record.status),
            )
            if moved is not None:
                finished += 1
                metrics.FAXES.inc(event="sent" if success else "failed")
                log.info(
                    "%s: fax %d finished with status %d (%s)",
                    job.label,
                    record.id,
                    record.status,
                    fax_status.describe(record.status),
                )
        if finished:
            self._finished.set()
        return finished

    async def _full_record(self, summary: OutboundFax) -> OutboundFax:
        try:
            full = await self._client.get_outbound(summary.id)
        except AuthError:
            raise
        except BridgeError as exc:
            # The summary is enough to report; the full record only adds page counts.
            log.info("fax %d: full record unavailable (%s); using the summary", summary.id, exc)
            return summary
        return full if fax_status.is_final(full.status) else summary
