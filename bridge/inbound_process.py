"""One received fax, from the ledger to every mailbox and back to InterFAX as read.

:class:`FaxProcessor` takes a fax in the inbound ledger and moves it as far as it can:

``SEEN`` --route, download, first delivery recorded with the recipients and the
image--> ``DOWNLOADED`` --the last recipient's delivery recorded--> ``DELIVERED`` --mark
read at InterFAX--> ``MARKED_READ``; no route at all: ``UNROUTED`` (the fax stays
unread, the admin is told once). A fax whose recipients all take the mail at the first
try goes from SEEN to DELIVERED in one step per recipient.

Each arrow is one store transaction, taken only after the side effect it records
succeeded, so a crash anywhere repeats at most the step in hand: a download (harmless), a
mark-read (harmless), or one recipient's mail whose 250 arrived just before the crash (the
same deterministic Message-ID lets the mailbox side recognise it). The records that guard
against a second mail (the deliveries) wait for fsync; losing the listing or mark-read
records in a power cut only repeats harmless work. Some requests start ahead of the step
that waits for them (:mod:`bridge.inbound_ahead`). Deliveries are per recipient: a
partial failure retries only the recipients still pending, from the image the first
record kept.

Failures never loop hot: the fax gets ``next_attempt_at`` from :class:`Backoff` and the
poller only takes it up again when it is due. A 401 from InterFAX pauses the shared
:class:`AuthGate` instead of counting against the fax.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from bridge import metrics
from bridge.errors import AuthError, BridgeError, TransientError
from bridge.inbound_ahead import Ahead, drop_task
from bridge.inbound_mail import FaxFacts, facts_of
from bridge.inbound_outlet import ImapAppend, LazyImages, Letter, MailOutlet
from bridge.inbound_plan import plan_deliveries
from bridge.inbound_recipient import Keep, RecipientDelivery
from bridge.inbound_settings import InboundSettings
from bridge.interfax import InterfaxClient
from bridge.interfax_errors import InterfaxNotFoundError
from bridge.interfax_models import InboundImage
from bridge.jobs import (
    DeliveryChannel,
    InboundDelivery,
    InboundFax,
    InboundState,
)
from bridge.mailer import Mailer
from bridge.render import TemplateRenderer
from bridge.routing import Decision, Presentation, route_fax
from bridge.store import Store
from bridge.workers import AuthGate, Backoff

log = logging.getLogger(__name__)

#: ``next_attempt_at`` of a fax with nothing left to do (DELIVERED with mark_read off).
NEVER = 253402300799.0  # 9999-12-31T23:59:59Z


class Deferred(BridgeError):
    """This fax cannot go further now; try again after ``delay`` (None: the backoff)."""

    def __init__(self, message: str, *, delay: float | None = None) -> None:
        super().__init__(message)
        self.delay = delay


class FaxProcessor:
    """Moves single faxes of the ledger forward; shared by every task of the poller."""

    def __init__(
        self,
        store: Store,
        client: InterfaxClient,
        mailer: Mailer,
        renderer: TemplateRenderer,
        settings: InboundSettings,
        *,
        gate: AuthGate,
        backoff: Backoff,
        imap: ImapAppend | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._client = client
        self._outlet = MailOutlet(mailer, imap)
        self.renderer = renderer
        self.settings = settings
        self._recipients = RecipientDelivery(self, store, self._outlet, clock)
        self._gate = gate
        self._backoff = backoff
        #: Running totals, by event (see :meth:`count`).
        self.counters: collections.Counter[str] = collections.Counter()
        self._clock = clock

    def batch(self) -> contextlib.AbstractAsyncContextManager[None]:
        """Reuse relay connections for the faxes processed inside (one inbound poll)."""
        return self._outlet.batch(self.settings.concurrency)

    def route(self, fax: InboundFax) -> Decision | None:
        """The route of ``fax`` under the current configuration."""
        return route_fax(
            self.settings.routing,
            phone_number=fax.phone_number,
            caller_id=fax.caller_id,
            remote_csid=fax.remote_csid,
        )

    def facts(self, fax: InboundFax) -> FaxFacts:
        """``fax`` cleaned for mails."""
        mail = self.settings.mail
        return facts_of(fax, timezone=mail.timezone, default_country=mail.default_country)

    def count(self, event: str) -> None:
        """Count ``event`` in :attr:`counters` and in the metrics."""
        self.counters[event] += 1
        metrics.INBOUND.inc(event=event)

    async def take(
        self, snapshot: InboundFax, *, release: Callable[[], None]
    ) -> tuple[InboundFax | None, InboundFax | None]:
        """Read the fax of ``snapshot`` afresh and take it as far as possible now.

        Returns its ledger row before and after (None when the ledger has no such fax).
        The snapshot (what scheduled the fax) may be stale, so what happens follows the
        fresh row; but when the snapshot says the image will be needed, its download
        starts at once, while the ledger is read, and is dropped if the fresh row says
        otherwise. When the fax gets through, ``release`` is called once it is done
        with InterFAX and the relay, before its last ledger write, so the poller can
        start the next fax (on the other paths the caller's place ends with the call).
        """
        download = None
        if snapshot.state is InboundState.SEEN and self._attaches(snapshot):
            download = asyncio.create_task(self._client.inbound_image(snapshot.message_id))
        try:
            work = await self._store.inbound_work(snapshot.message_id)
            if work is None:
                return None, None
            fax, deliveries = work
            return fax, await self._process(fax, deliveries, release, download)
        finally:
            if download is not None:
                drop_task(download)

    def _attaches(self, fax: InboundFax) -> bool:
        decision = self.route(fax)
        if decision is None or not decision.presentation.attach:
            return False
        return not all(self._stranded(t.channel) for t in decision.targets)

    def _stranded(self, channel: DeliveryChannel) -> bool:
        """Whether deliveries by ``channel`` cannot be made (IMAP without an IMAP mailbox)."""
        return channel is DeliveryChannel.IMAP and not self._outlet.appends_imap

    async def _process(
        self,
        fax: InboundFax,
        deliveries: Sequence[InboundDelivery],
        release: Callable[[], None],
        download: Awaitable[InboundImage] | None,
    ) -> InboundFax | None:
        message_id = fax.message_id
        # inbound.mark_read as it was when the fax was taken up.
        ahead = Ahead(
            (lambda: self._client.mark_read(message_id)) if self.settings.mark_read else None
        )
        try:
            current = fax
            if current.state in (InboundState.SEEN, InboundState.DOWNLOADED):
                delivered = await self._deliver(current, deliveries, download, ahead)
                if delivered is None:
                    return await self._store.inbound_get(fax.message_id)
                current = delivered
            if current.state is InboundState.DELIVERED:
                return await self._finish(current, release, ahead)
            return current
        except Deferred as exc:
            log.info("fax %d: %s", fax.message_id, exc)
            await self._later(fax.message_id, str(exc), delay=exc.delay)
        except AuthError as exc:
            self._gate.pause(str(exc))
            await self._later(fax.message_id, str(exc), delay=0.0, count=False)
        except TransientError as exc:
            log.warning("fax %d: will try again: %s", fax.message_id, exc)
            await self._later(fax.message_id, str(exc), retry_after=exc.retry_after)
        except Exception as exc:  # a permanent error or a bug: slow retries, never a lost fax
            log.error("fax %d: %s", fax.message_id, exc, exc_info=not isinstance(exc, BridgeError))
            await self._later(fax.message_id, f"{type(exc).__name__}: {exc}")
        finally:
            await ahead.settle()
        return await self._store.inbound_get(fax.message_id)

    # -- delivery ---------------------------------------------------------------------

    async def _deliver(
        self,
        fax: InboundFax,
        recorded: Sequence[InboundDelivery],
        download: Awaitable[InboundImage] | None,
        ahead: Ahead,
    ) -> InboundFax | None:
        decision = self.route(fax)
        # Without a route now, recipients recorded earlier (under an older configuration)
        # were promised the fax and still get it.
        targets = decision.targets if decision is not None else ()
        plan = plan_deliveries(fax.message_id, recorded, targets)
        if not plan.deliveries:
            await self._unrouted(fax)
            return None
        presentation = decision.presentation if decision is not None else Presentation()
        # New recipients are promised from the first delivery record on, which keeps them.
        keep = Keep(recipients=plan.new)
        pending = plan.todo
        if not pending:
            # Everyone has it (a repeated "done" is harmless and promotes the fax).
            last = plan.deliveries[-1]
            return await self._store.inbound_delivery_done(
                fax.message_id, last.recipient, last.smtp_message_id or "", now=self._clock()
            )
        # Folders to fill by IMAP wait, loudly, while no IMAP delivery is set up; everyone
        # else gets the fax meanwhile.
        stranded = [d for d in pending if self._stranded(d.channel)]
        if stranded:
            log.error(
                "fax %d: deliver: imap to %s, but no IMAP delivery is set up; "
                "the fax stays unread at InterFAX",
                fax.message_id,
                ", ".join(d.recipient for d in stranded),
            )
        todo = [d for d in pending if d not in stranded]
        if not todo:
            raise self._no_imap()
        # One configuration for every mail of the fax, even if a reload lands meanwhile.
        mail, renderer = self.settings.mail, self.renderer
        facts = self.facts(fax)
        images = None
        if presentation.attach:
            source = await self._stored_image(fax)
            if source is None:
                if download is None:
                    download = self._client.inbound_image(fax.message_id)
                # The relay's round trips for the first envelope overlap the download.
                first = todo[0]
                ahead.open_envelope(first.recipient, self._outlet.begin(first, mail))
                downloaded = await download
                source = downloaded.data, downloaded.content_type
                if fax.state is InboundState.SEEN:
                    keep = Keep(keep.recipients, source)
            images = LazyImages(source, presentation, facts, mail.filename_template)
        letter = Letter(facts, presentation, images, mail, renderer)
        result: InboundFax | None = None
        failed: list[str] = []
        unrecorded = False
        for delivery in todo:
            # Once the last mail is accepted with every other delivery done, the fax is
            # delivered: its mark-read may go out while that record is written.
            finishing = not (failed or unrecorded or stranded) and delivery is todo[-1]
            try:
                outcome = await self._recipients.deliver(
                    letter, delivery, keep, ahead, finishing=finishing
                )
            except Exception as exc:  # our own failure (a template, a bug) before any record
                await self._recipients.keep_anyway(delivery, keep, exc)
                raise
            keep = Keep()  # the first record (delivered or failed) kept it
            if isinstance(outcome, str):
                failed.append(outcome)
            elif outcome is None:  # the ledger lost the delivery meanwhile (an operator)
                unrecorded = True
            else:
                result = outcome
        if failed:
            raise Deferred("delivery failed for " + "; ".join(failed))
        if stranded:
            raise self._no_imap()
        if result is not None and result.state is InboundState.DELIVERED:
            self.count("faxes_delivered")
            count = len(plan.deliveries)
            log.info("fax %d: delivered to %d recipient(s)", fax.message_id, count)
        return result

    def _no_imap(self) -> Deferred:
        return Deferred("deliver: imap is not available", delay=self._backoff.cap)

    async def _stored_image(self, fax: InboundFax) -> tuple[bytes, str] | None:
        """The image the ledger kept (None when it has none, or retention removed it)."""
        if fax.state is not InboundState.DOWNLOADED:
            return None
        return await self._store.inbound_image(fax.message_id)

    # -- no route, admin ------------------------------------------------------------------

    async def _unrouted(self, fax: InboundFax) -> None:
        facts = self.facts(fax)
        log.warning(
            "fax %d to %s from %s: no route and no default route; it stays unread at InterFAX",
            fax.message_id,
            facts.number,
            facts.sender,
        )
        if not await self._recipients.tell_admin(facts, "unrouted", {}):
            raise Deferred("could not tell the admin about a fax without a route")
        moved = await self._store.inbound_transition(
            fax.message_id,
            expect=(InboundState.SEEN, InboundState.DOWNLOADED),
            to=InboundState.UNROUTED,
            now=self._clock(),
            last_error=f"no route for {facts.number}",
        )
        if moved is not None:
            self.count("faxes_unrouted")

    # -- marking, scheduling ------------------------------------------------------------

    async def _finish(
        self, fax: InboundFax, release: Callable[[], None], ahead: Ahead
    ) -> InboundFax | None:
        now = self._clock()
        if not ahead.marks:
            release()
            # Left unread on purpose; the ledger remembers it was delivered.
            return await self._store.inbound_transition(
                fax.message_id,
                expect=InboundState.DELIVERED,
                to=InboundState.DELIVERED,
                now=now,
                next_attempt_at=NEVER,
                last_error=None,
            )
        error = None
        try:
            await ahead.mark()
        except InterfaxNotFoundError as exc:
            log.warning("fax %d: InterFAX no longer has it, nothing to mark", fax.message_id)
            error = f"not marked read: {exc}"
        release()
        marked = await self._store.inbound_marked_read(
            fax.message_id, now=self._clock(), last_error=error
        )
        if marked is not None:
            self.count("faxes_marked_read")
        return marked

    async def _later(
        self,
        message_id: int,
        error: str,
        *,
        delay: float | None = None,
        retry_after: float | None = None,
        count: bool = True,
    ) -> None:
        """Leave the fax in its state and take it up again after a delay."""
        try:
            current = await self._store.inbound_get(message_id)
            if current is None or current.state in (
                InboundState.MARKED_READ,
                InboundState.UNROUTED,
            ):
                return
            if delay is None:
                delay = self._backoff.delay(current.attempts + 1, retry_after=retry_after)
            now = self._clock()
            await self._store.inbound_transition(
                message_id,
                expect=current.state,
                to=current.state,
                now=now,
                next_attempt_at=now + delay,
                last_error=error[:1000],
                count_attempt=count,
            )
        except BridgeError as exc:
            log.error("fax %d: could not record the failure (%s): %s", message_id, error, exc)
