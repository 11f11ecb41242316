"""One recipient's mail of a received fax: written, handed over, recorded.

:class:`RecipientDelivery` is the per-recipient half of
:class:`~bridge.inbound_process.FaxProcessor`. It writes the recipient's mail, hands it
to the recipient's channel (a notice instead when the relay finds it too large), and
records the outcome in the ledger, together with what the fax's first record keeps
(:class:`Keep`). A permanent refusal tells ``mail.admin`` once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Protocol

from bridge.errors import AuthError, BridgeError, PermanentError, TransientError
from bridge.inbound_ahead import Ahead
from bridge.inbound_mail import FaxFacts, build_admin_notice
from bridge.inbound_outlet import Letter, MailOutlet
from bridge.inbound_settings import InboundSettings
from bridge.jobs import (
    DeliveryChannel,
    DeliveryState,
    InboundDelivery,
    InboundFax,
    InboundRecipient,
)
from bridge.mailer import MessageTooLarge
from bridge.render import TemplateRenderer
from bridge.store import Store

log = logging.getLogger(__name__)


class Context(Protocol):
    """The processor's current configuration (a reload replaces it) and its counters."""

    settings: InboundSettings
    renderer: TemplateRenderer

    def count(self, event: str) -> None:
        """Count ``event``."""


class RecipientDelivery:
    """Delivers a fax to one recipient at a time and records how it went."""

    def __init__(
        self, context: Context, store: Store, outlet: MailOutlet, clock: Callable[[], float]
    ) -> None:
        self._context = context
        self._store = store
        self._outlet = outlet
        self._clock = clock

    async def deliver(
        self,
        letter: Letter,
        delivery: InboundDelivery,
        keep: Keep,
        ahead: Ahead,
        *,
        finishing: bool,
    ) -> InboundFax | str | None:
        """Deliver to one recipient: the fax row after recording it (with ``keep``), or
        the error text. When ``finishing``, the mark-read starts once the mail is taken."""
        facts = letter.facts
        message_id, data = await self._outlet.wired(letter, delivery)
        try:
            try:
                opened = await ahead.envelope(delivery.recipient)
                await self._outlet.send(letter, delivery, data, opened)
            except MessageTooLarge as exc:
                log.warning(
                    "fax %d: too large for the relay for %s, sending a notice instead: %s",
                    facts.message_id,
                    delivery.recipient,
                    exc,
                )
                note = (
                    f"The fax was too large for the mail server ({exc.smtp_code} "
                    f"{exc.smtp_text}), so it is not attached. Download it from the InterFAX "
                    f"web portal (message {facts.message_id}) while InterFAX keeps it."
                )
                notice = replace(letter, images=None)
                message_id, data = await self._outlet.wired(notice, delivery, note)
                await self._outlet.send(notice, delivery, data)
                self._context.count("too_large")
        except (TransientError, PermanentError, AuthError) as exc:
            return await self._failed(facts, delivery, exc, keep)
        if finishing:
            ahead.start_mark()
        self._context.count("mails_delivered")
        return await self._store.inbound_delivery_done(
            facts.message_id,
            delivery.recipient,
            message_id,
            now=self._clock(),
            recipients=keep.recipients,
            image=keep.image,
        )

    async def _failed(
        self, facts: FaxFacts, delivery: InboundDelivery, exc: BridgeError, keep: Keep
    ) -> str:
        permanent = isinstance(exc, PermanentError)
        if isinstance(exc, AuthError):
            where = "the IMAP server" if delivery.channel is DeliveryChannel.IMAP else "the relay"
            log.critical("%s refused our credentials; fax mails wait: %s", where, exc)
        elif permanent and delivery.state is DeliveryState.PENDING:
            # The first permanent refusal for this recipient: tell the admin, once. If the
            # notice itself cannot go out now, the delivery stays PENDING to try again.
            details = {"recipient": delivery.recipient, "error": str(exc)}
            permanent = await self.tell_admin(facts, "rejected", details)
        log.warning("fax %d: delivery to %s failed: %s", facts.message_id, delivery.recipient, exc)
        self._context.count("delivery_failures")
        await self._store.inbound_delivery_failed(
            facts.message_id,
            delivery.recipient,
            str(exc),
            now=self._clock(),
            permanent=permanent,
            recipients=keep.recipients,
            image=keep.image,
        )
        return f"{delivery.recipient}: {exc}"

    async def keep_anyway(self, delivery: InboundDelivery, keep: Keep, exc: Exception) -> None:
        """Record a failed attempt that keeps ``keep``, so that retries of a fax our own
        failure holds up use the image downloaded once (InterFAX may drop it meanwhile)."""
        if not keep.recipients and keep.image is None:
            return
        try:
            await self._store.inbound_delivery_failed(
                delivery.message_id,
                delivery.recipient,
                f"{type(exc).__name__}: {exc}",
                now=self._clock(),
                recipients=keep.recipients,
                image=keep.image,
            )
        except BridgeError as error:
            log.error("fax %d: could not keep its image: %s", delivery.message_id, error)

    async def tell_admin(self, facts: FaxFacts, problem: str, details: Mapping[str, str]) -> bool:
        """Send a notice to mail.admin; False only when it should be tried again later."""
        settings, renderer = self._context.settings, self._context.renderer
        admin = settings.admin
        if admin is None:
            log.error("fax %d: %s (set mail.admin to be told by mail)", facts.message_id, problem)
            return True
        notice = build_admin_notice(
            facts,
            admin=admin,
            problem=problem,
            details=details,
            settings=settings.mail,
            renderer=renderer,
            now=datetime.now(UTC),
        )
        if not await self._outlet.notify(notice, facts, admin, settings.mail):
            return False
        self._context.count("admin_notices")
        return True


@dataclass(frozen=True, slots=True)
class Keep:
    """What a fax's first delivery record keeps with it: new recipients, a fresh image."""

    recipients: Sequence[InboundRecipient] = ()
    image: tuple[bytes, str] | None = None
