"""IMAP intake: fax requests taken from a mailbox folder, through the same intake as SMTP.

The worker logs in to ``imap_in``, makes sure its three folders exist, and then, until
stopped: SELECT the watched folder, handle every message in it, and wait for more, with
IDLE when the server offers it (re-issued every ``idle_renew``, under the 29 minutes
after which servers may drop an idle client) or by polling every ``poll_interval``.

One message, exactly once, in durable steps (see :mod:`bridge.store_imap`)::

    fetch (BODY.PEEK: the \\Seen flag stays as it was) -> ledger SEEN (with the SHA-256)
    -> decide (bridge.imap_decide, through bridge.intake: the same sender authorisation,
       destination policy and durable queue as SMTP; sender = From, recipients = the
       fax addresses in To and Cc)
       -> accepted: ledger ENQUEUED -> UID MOVE to done_folder -> ledger DONE
       -> refused:  ledger REFUSED -> report (only to an authorised sender)
                    -> UID MOVE to rejected_folder -> ledger REJECTED
       -> our own 4xx (store trouble, rate limit): left in place, tried again next round

Crashes and lost connections lose nothing and fax nothing twice: a message stays in the
watched folder until its move succeeded, and the ledger says how far it got. A crash
between the accept's commit and ENQUEUED is caught at restart by finding a queued IMAP
message with the same bytes (:meth:`~bridge.store.Store.imap_accepted_since`); the
queue's own Message-ID duplicate check is a second defence. A crash after the move and
before DONE leaves a ledger row whose UID is no longer in the folder: it becomes
VANISHED. Connection failures reconnect with exponential backoff.

Wiring (the service): ``ImapIntakeWorker(store, intake, ImapIntakeSettings.from_config(
config.imap_in), notify_refusal=MailRefusalNotifier(...))``, supervised like any worker.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from bridge.config import ImapInConfig
from bridge.errors import AuthError, BridgeError, PermanentError, StoreError, TransientError
from bridge.imap import ImapClient, ImapError, ImapSettings
from bridge.imap_decide import decide, read_mail
from bridge.imap_refusal import RefusalNotice, RefusalNotifier
from bridge.intake import Intake
from bridge.store import Store
from bridge.store_imap import ImapEntry, ImapKey, ImapState
from bridge.workers import Backoff, Heartbeat, sleep_or_stop

__all__ = ["ImapIntakeSettings", "ImapIntakeWorker", "ScanReport"]

log = logging.getLogger(__name__)

#: RFC 2177: servers may log out a client idle for 30 minutes; re-issue IDLE well before.
MAX_IDLE_SECONDS = 29 * 60.0


@dataclass(frozen=True, slots=True)
class ImapIntakeSettings:
    """The watched mailbox, its folders and timing."""

    connection: ImapSettings
    folder: str = "INBOX"
    done_folder: str = "Faxed"
    rejected_folder: str = "Rejected"
    poll_interval: float = 60.0
    idle_renew: float = 25 * 60.0

    def __post_init__(self) -> None:
        if not 0 < self.idle_renew < MAX_IDLE_SECONDS:
            raise ValueError("idle_renew must be positive and under 29 minutes")
        if self.poll_interval <= 0:
            raise ValueError("poll_interval must be positive")

    @classmethod
    def from_config(cls, section: ImapInConfig) -> ImapIntakeSettings:
        """The settings of a validated ``imap_in`` section."""
        return cls(
            connection=ImapSettings.from_config(section),
            folder=section.folder,
            done_folder=section.done_folder,
            rejected_folder=section.rejected_folder,
            poll_interval=section.poll_interval,
        )


@dataclass
class ScanReport:
    """What one pass over the watched folder did (for logs and tests)."""

    messages: int = 0
    accepted: int = 0
    refused: int = 0
    deferred: int = 0
    vanished: int = 0


class ImapIntakeWorker:
    """Watches ``imap_in.folder`` and queues every fax request in it exactly once.

    ``notify_refusal`` reports refusals to authorised senders. ``client_factory`` makes
    the connection of each session (tests hide capabilities or inject failures with it).
    """

    name = "imap-intake"

    def __init__(
        self,
        store: Store,
        intake: Intake,
        settings: ImapIntakeSettings,
        *,
        notify_refusal: RefusalNotifier,
        backoff: Backoff | None = None,
        client_factory: Callable[[ImapSettings], ImapClient] = ImapClient,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._intake = intake
        self.settings = settings
        self._notify = notify_refusal
        self._backoff = backoff or Backoff(base=5.0, cap=300.0)
        self._client_factory = client_factory
        self._clock = clock
        self._failures = 0
        #: The last connection or session error, while sessions keep failing (readiness).
        self.last_error: str | None = None
        #: Running totals: connects, idles, polls, accepted, refused, deferred, reports,
        #: vanished, session_errors.
        self.counters: collections.Counter[str] = collections.Counter()
        self.heartbeat = Heartbeat(min(settings.poll_interval, 60.0))

    @property
    def account(self) -> str:
        """The mailbox, as the ledger names it."""
        return self.settings.connection.account

    # -- the loop -----------------------------------------------------------------------

    async def run(self, stopping: asyncio.Event) -> None:
        """Sessions until ``stopping`` is set; each failure waits out a growing backoff."""
        while not stopping.is_set():
            self.heartbeat.beat()
            try:
                await self._session(stopping)
            except AuthError as exc:
                self._failed(exc)
                log.critical("IMAP intake: %s refused our login: %s", self.account, exc)
            except BridgeError as exc:
                self._failed(exc)
                log.warning("IMAP intake: %s: %s", self.account, exc)
            except Exception as exc:
                self._failed(exc)
                log.exception("IMAP intake: unexpected failure")
            else:
                return
            delay = self._backoff.delay(self._failures)
            log.info("IMAP intake: reconnecting in %.1fs", delay)
            await sleep_or_stop(stopping, delay, heartbeat=self.heartbeat)

    def _failed(self, exc: BaseException) -> None:
        self._failures += 1
        self.counters["session_errors"] += 1
        self.last_error = f"{type(exc).__name__}: {exc}"

    async def _session(self, stopping: asyncio.Event) -> None:
        s = self.settings
        client = self._client_factory(s.connection)
        await client.connect()
        try:
            self.counters["connects"] += 1
            for folder in (s.folder, s.done_folder, s.rejected_folder):
                await client.ensure_folder(folder)
            log.info("IMAP intake: watching %s folder %r", self.account, s.folder)
            while not stopping.is_set():
                report = await self.process_folder(client, stopping)
                self._failures = 0
                self.last_error = None
                self.heartbeat.beat()
                if stopping.is_set():
                    break
                # Deferred messages are tried again after poll_interval even with IDLE.
                wait = s.poll_interval if report.deferred else s.idle_renew
                if client.offers("IDLE"):
                    self.counters["idles"] += 1
                    await client.idle(
                        seconds=wait,
                        stop=stopping,
                        tick=self.heartbeat.period,
                        on_tick=self.heartbeat.beat,
                    )
                else:
                    self.counters["polls"] += 1
                    await sleep_or_stop(stopping, s.poll_interval, heartbeat=self.heartbeat)
        finally:
            await client.close()

    # -- one pass -------------------------------------------------------------------------

    async def process_folder(
        self, client: ImapClient, stopping: asyncio.Event | None = None
    ) -> ScanReport:
        """Handle every message now in the watched folder; returns what happened."""
        report = ScanReport()
        selection = await client.select(self.settings.folder)
        uids = await client.search_uids()
        await self._forget_vanished(selection.uidvalidity, set(uids), report)
        for uid in uids:
            if stopping is not None and stopping.is_set():
                break
            key = ImapKey(self.account, self.settings.folder, selection.uidvalidity, uid)
            report.messages += 1
            try:
                outcome = await self._one(client, key)
            except (ImapError, StoreError):
                raise  # the session is in trouble, not this message
            except Exception as exc:  # a bug on one message must not block the folder
                log.exception("IMAP intake: message %s could not be handled", key)
                await self._store.imap_failed_attempt(key, repr(exc), now=self._clock())
                outcome = "deferred"
            if outcome in ("accepted", "refused", "deferred"):
                setattr(report, outcome, getattr(report, outcome) + 1)
                self.counters[outcome] += 1
            self.heartbeat.beat()
        if report.messages:
            log.info("IMAP intake: %s", report)
        return report

    async def _forget_vanished(
        self, uidvalidity: int, present: set[int], report: ScanReport
    ) -> None:
        for entry in await self._store.imap_open_entries(self.account, self.settings.folder):
            key = entry.key
            if key.uidvalidity == uidvalidity and key.uid in present:
                continue
            # UIDs are never reused while UIDVALIDITY holds: this message is gone for good.
            if entry.report_due and not await self._report(entry):
                continue
            if entry.state is ImapState.SEEN:
                log.warning("IMAP intake: message %s left the folder before it was decided", key)
            else:
                log.info("IMAP intake: message %s (%s) was moved before", key, entry.state)
            expect = (ImapState.SEEN, ImapState.ENQUEUED, ImapState.REFUSED)
            await self._store.imap_transition(
                key, expect=expect, to=ImapState.VANISHED, now=self._clock()
            )
            report.vanished += 1
            self.counters["vanished"] += 1

    async def _one(self, client: ImapClient, key: ImapKey) -> str:
        """Take one message as far as it goes now; returns the decision made, if any."""
        entry = await self._store.imap_get(key)
        outcome = "none"
        fetched: tuple[bytes, bool] | None = None
        if entry is None:
            fetched = await self._fetch(client, key.uid)
            if fetched is None:
                return "gone"
            mail = await read_mail(self._intake.policy, fetched[0])
            entry = await self._store.imap_record(
                key,
                message_id=mail.message_id if mail else None,
                sha256=hashlib.sha256(fetched[0]).hexdigest(),
                now=self._clock(),
            )
        if entry.state is ImapState.SEEN:
            decided = await self._decide_entry(client, entry, fetched)
            if decided is None:
                return "deferred"
            entry, outcome = decided
        if entry.report_due and not await self._report(entry):
            return "deferred"
        if entry.state in (ImapState.ENQUEUED, ImapState.REFUSED):
            accepted = entry.state is ImapState.ENQUEUED
            s = self.settings
            await client.move(key.uid, s.done_folder if accepted else s.rejected_folder)
            await self._store.imap_transition(
                key,
                expect=entry.state,
                to=ImapState.DONE if accepted else ImapState.REJECTED,
                now=self._clock(),
            )
        return outcome

    async def _decide_entry(
        self, client: ImapClient, entry: ImapEntry, fetched: tuple[bytes, bool] | None
    ) -> tuple[ImapEntry, str] | None:
        key, now = entry.key, self._clock()
        # A minute of slack for a clock that stepped back between the two writes.
        if await self._store.imap_accepted_since(entry.sha256, entry.created_at - 60.0):
            log.info("IMAP intake: message %s was queued before the last stop", key)
            moved = await self._store.imap_transition(
                key, expect=ImapState.SEEN, to=ImapState.ENQUEUED, now=now
            )
            return (moved, "accepted") if moved else None
        fetched = fetched or await self._fetch(client, key.uid)
        if fetched is None:
            return None
        decision = await decide(self._intake, *fetched)
        now = self._clock()
        if decision.outcome == "deferred":
            log.info("IMAP intake: message %s deferred: %s", key, decision.reason)
            await self._store.imap_failed_attempt(key, decision.reason, now=now)
            return None
        if decision.outcome == "accepted":
            log.info("IMAP intake: message %s accepted: %s", key, decision.reason)
            updated = await self._store.imap_transition(
                key, expect=ImapState.SEEN, to=ImapState.ENQUEUED, now=now
            )
        else:
            log.info(
                "IMAP intake: message %s refused (%s): %s",
                key,
                "report to the sender" if decision.report_to else "no report",
                decision.reason,
            )
            updated = await self._store.imap_refuse(
                key,
                reason=decision.reason,
                subject=decision.subject,
                report_to=decision.report_to,
                now=now,
            )
        return (updated, decision.outcome) if updated else None

    async def _fetch(self, client: ImapClient, uid: int) -> tuple[bytes, bool] | None:
        """(bytes, complete): the whole message, or only its header when it is too large."""
        limit = self._intake.policy.parse_limits.max_message_bytes
        info = await client.fetch(uid, "(UID RFC822.SIZE)")
        if info is None:
            return None
        size = info.size or 0
        complete = size <= limit
        item = await client.fetch(
            uid,
            "(UID BODY.PEEK[])" if complete else "(UID BODY.PEEK[HEADER])",
            size_hint=size if complete else 0,
        )
        if item is None or item.body is None:
            return None
        return item.body, complete

    async def _report(self, entry: ImapEntry) -> bool:
        """Send the refusal report of ``entry``; False when it must be tried again later."""
        assert entry.report_to is not None
        notice = RefusalNotice(
            recipient=entry.report_to,
            subject=entry.subject or "",
            message_id=entry.message_id,
            reason=entry.reason or "refused",
            reference=str(entry.key),
        )
        try:
            await self._notify(notice)
        except (TransientError, AuthError) as exc:
            log.warning("IMAP intake: report for %s not sent yet: %s", entry.key, exc)
            await self._store.imap_failed_attempt(entry.key, str(exc), now=self._clock())
            return False
        except PermanentError as exc:
            log.error("IMAP intake: report for %s refused, giving it up: %s", entry.key, exc)
        else:
            self.counters["reports"] += 1
        await self._store.imap_report_sent(entry.key, now=self._clock())
        return True
