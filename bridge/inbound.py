"""The fax-to-email worker: poll InterFAX for unread faxes, deliver them, mark them read.

Every ``inbound.poll_interval`` one :meth:`InboundWorker.poll_once`:

1. takes the ledger's due work first (:meth:`~bridge.store.Store.inbound_pending`), so a
   restart resumes where the last run stopped without asking InterFAX again for what the
   ledger already has (a stored image, the recipients already served);
2. lists ``/inbound/faxes?unreadOnly=true`` page by page with the exclusive ``lastId``
   cursor (``allUsers`` when configured) and records each fax in the ledger
   (idempotent). A fax the ledger already delivered is never mailed again, even when
   InterFAX lists it unread again (an operator's "mark unread" in the portal);
3. hands each fax that has work to a :class:`~bridge.inbound_process.FaxProcessor` task,
   at most ``inbound.concurrency`` at once, while the listing goes on.

Listing errors back off exponentially up to a ceiling and reset after a good poll; a 401
pauses the shared :class:`~bridge.workers.AuthGate` with a loud log line, and the next
successful listing (at most one a poll interval) resumes it. A fax without a route stays
UNROUTED and unread; it is routed again at each poll, so a route added by a reload picks
it up.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from bridge.errors import AuthError, BridgeError
from bridge.inbound_outlet import ImapAppend
from bridge.inbound_process import NEVER, FaxProcessor
from bridge.inbound_settings import InboundSettings, required_templates
from bridge.interfax import InterfaxClient
from bridge.interfax_models import InboundFax as ListedFax
from bridge.jobs import InboundFax, InboundRecord, InboundState
from bridge.mailer import Mailer
from bridge.render import TemplateRenderer
from bridge.store import Store
from bridge.workers import AuthGate, Backoff, Heartbeat, sleep_or_stop

__all__ = [
    "ImapAppend",
    "InboundSettings",
    "InboundWorker",
    "PollReport",
    "record_of",
    "required_templates",
]

log = logging.getLogger(__name__)


@dataclass
class PollReport:
    """What one poll did (for logs and tests)."""

    listed: int = 0
    new: int = 0
    started: int = 0
    delivered: int = 0
    marked_read: int = 0
    unrouted: int = 0
    already_delivered: int = 0


def record_of(fax: ListedFax, *, now: float) -> InboundRecord:
    """The ledger record of a listed fax (missing fields become neutral values)."""
    meta = {
        key: value
        for key, value in (
            ("recording_duration", fax.recording_duration),
            ("user_id", fax.user_id),
            ("message_size", fax.message_size),
        )
        if value is not None
    }
    return InboundRecord(
        message_id=fax.message_id,
        phone_number=fax.phone_number or "",
        caller_id=fax.caller_id,
        remote_csid=fax.remote_csid,
        pages=fax.pages or 0,
        receive_time=fax.receive_time.timestamp() if fax.receive_time else now,
        message_status=fax.message_status or 0,
        meta=meta,
    )


class InboundWorker:
    """Polls InterFAX for received faxes and delivers each to its route, exactly once."""

    name = "inbound"

    def __init__(
        self,
        store: Store,
        client: InterfaxClient,
        mailer: Mailer,
        renderer: TemplateRenderer,
        settings: InboundSettings,
        *,
        gate: AuthGate,
        backoff: Backoff | None = None,
        poll_backoff: Backoff | None = None,
        imap: ImapAppend | None = None,
        pending_limit: int = 500,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``gate`` is shared with everything else that talks to InterFAX. ``imap``
        delivers routes with ``deliver: imap`` (without it such faxes stay unread, with
        an error in the log). ``backoff`` spaces the retries of one fax (default 60 s
        doubling to 1 h); ``poll_backoff`` the listing after errors (default: the poll
        interval doubling to 15 min).
        """
        self._store = store
        self._client = client
        self._gate = gate
        self._clock = clock
        self._pending_limit = pending_limit
        self._poll_backoff = poll_backoff
        self._failures = 0
        self._processor = FaxProcessor(
            store,
            client,
            mailer,
            renderer,
            settings,
            gate=gate,
            backoff=backoff or Backoff(base=60.0, cap=3600.0),
            imap=imap,
            clock=clock,
        )
        #: Running totals for metrics: faxes_delivered, faxes_marked_read, faxes_unrouted,
        #: mails_delivered, delivery_failures, too_large, admin_notices, polls, poll_errors.
        self.counters = self._processor.counters
        self._count = self._processor.count
        self._semaphore = asyncio.Semaphore(settings.concurrency)
        self.heartbeat = Heartbeat(settings.poll_interval)

    @property
    def settings(self) -> InboundSettings:
        """The settings in use."""
        return self._processor.settings

    def replace_settings(self, settings: InboundSettings, renderer: TemplateRenderer) -> None:
        """Use new routes, templates and limits from the next fax on (reload)."""
        if settings.concurrency != self.settings.concurrency:
            # Faxes in flight keep the old semaphore; new ones take the new bound.
            self._semaphore = asyncio.Semaphore(settings.concurrency)
        self._processor.settings = settings
        self._processor.renderer = renderer
        self.heartbeat.period = settings.poll_interval

    async def run(self, stopping: asyncio.Event) -> None:
        """Poll every interval until ``stopping`` is set; faxes in hand finish first."""
        while not stopping.is_set():
            self.heartbeat.beat()
            await sleep_or_stop(stopping, await self.tick(stopping), heartbeat=self.heartbeat)

    async def tick(self, stopping: asyncio.Event | None = None) -> float:
        """One iteration of :meth:`run`: poll, and return the seconds until the next poll.

        After a listing error the wait grows exponentially (with jitter) from the poll
        interval up to the ceiling, and drops back to the interval after a good poll. A
        401 pauses the shared gate (loudly, once); the next poll is the probe that
        resumes it.
        """
        interval = self.settings.poll_interval
        try:
            await self.poll_once(stopping)
        except AuthError as exc:
            self._gate.pause(str(exc))
            return interval
        except BridgeError as exc:
            self._failures += 1
            self._count("poll_errors")
            backoff = self._poll_backoff or Backoff(base=interval, cap=max(interval, 900.0))
            retry_after = getattr(exc, "retry_after", None)
            delay = max(interval, backoff.delay(self._failures, retry_after=retry_after))
            log.warning(
                "listing received faxes failed (%d in a row); next try in %.0fs: %s",
                self._failures,
                delay,
                exc,
            )
            return delay
        self._failures = 0
        return interval

    async def poll_once(self, stopping: asyncio.Event | None = None) -> PollReport:
        """One poll: resume the ledger's due work, list unread faxes, process them all.

        Returns when every fax taken up has gone as far as it can. A listing error is
        raised after the faxes already started have finished.
        """
        report = PollReport()
        started: set[int] = set()
        listing_error: BridgeError | None = None
        self._count("polls")
        async with self._processor.batch(), asyncio.TaskGroup() as tasks:

            def start(fax: InboundFax) -> None:
                if fax.message_id in started or (stopping is not None and stopping.is_set()):
                    return
                started.add(fax.message_id)
                report.started += 1
                tasks.create_task(self._one(fax, report, stopping))

            for fax in await self._store.inbound_pending(
                now=self._clock(), limit=self._pending_limit
            ):
                start(fax)
            try:
                async for page in self._client.iter_inbound_pages(
                    unread_only=True,
                    all_users=self.settings.all_users,
                ):
                    self._gate.resume()  # InterFAX accepted our credentials
                    now = self._clock()
                    records = [record_of(listed, now=now) for listed in page]
                    for fax in await self._store.inbound_seen_page(records, now=now):
                        report.listed += 1
                        report.new += fax.created
                        wanted = await self._wanted(fax, report)
                        if wanted is not None:
                            start(wanted)
            except BridgeError as exc:
                listing_error = exc
        if listing_error is not None:
            raise listing_error
        if report.listed or report.started:
            log.info("inbound poll: %s", report)
        return report

    async def _wanted(self, fax: InboundFax, report: PollReport) -> InboundFax | None:
        """``fax`` (as listed unread) when it has work due now, else None."""
        now = self._clock()
        due = fax.next_attempt_at <= now
        if fax.state in (InboundState.SEEN, InboundState.DOWNLOADED):
            return fax if due else None
        if fax.state is InboundState.DELIVERED:
            # Delivered earlier with mark_read off (NEVER), or waiting to retry the mark.
            wanted = self.settings.mark_read and (due or fax.next_attempt_at >= NEVER)
            return fax if wanted else None
        if fax.state is InboundState.MARKED_READ:
            report.already_delivered += 1
            log.debug("fax %d is unread at InterFAX again; it was delivered", fax.message_id)
            return None
        # UNROUTED: a reload may have added a route since.
        if self._processor.route(fax) is None:
            report.unrouted += 1
            return None
        log.info("fax %d now has a route: delivering it", fax.message_id)
        return await self._store.inbound_transition(
            fax.message_id,
            expect=InboundState.UNROUTED,
            to=InboundState.SEEN,
            now=now,
            next_attempt_at=now,
            last_error=None,
        )

    async def _one(self, fax: InboundFax, report: PollReport, stop: asyncio.Event | None) -> None:
        async with _Place(self._semaphore) as place:
            if (stop is not None and stop.is_set()) or self._gate.paused:
                return
            try:
                before, after = await self._processor.take(fax, release=place.release)
            except Exception:  # the store failing under us: the fax stays where it was
                log.exception("fax %d: could not be processed", fax.message_id)
                return
            self.heartbeat.beat()  # a long backlog is progress, not a hang
        if before is None or after is None:
            return
        working = (InboundState.SEEN, InboundState.DOWNLOADED)
        if after.state is InboundState.UNROUTED:
            report.unrouted += 1
        if before.state in working and after.state not in (*working, InboundState.UNROUTED):
            report.delivered += 1
        if after.state is InboundState.MARKED_READ and before.state is not after.state:
            report.marked_read += 1


class _Place:
    """One of the ``inbound.concurrency`` places of faxes in hand, given back once.

    A fax gives its place back as soon as it is done with InterFAX and the relay
    (:meth:`FaxProcessor.take` calls :meth:`release`): its last ledger write needs
    none, and the next fax starts meanwhile.
    """

    def __init__(self, semaphore: asyncio.Semaphore) -> None:
        self._semaphore = semaphore
        self._held = False

    async def __aenter__(self) -> _Place:
        await self._semaphore.acquire()
        self._held = True
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.release()

    def release(self) -> None:
        """Give the place back (the second and later calls do nothing)."""
        if self._held:
            self._held = False
            self._semaphore.release()
