"""Where a received fax's mail goes: written, then handed to the relay, a Maildir or IMAP.

:class:`MailOutlet` is the sending half of :class:`bridge.inbound_process.FaxProcessor`:
it writes a recipient's mail (in a worker thread only when that is real work) and
delivers it through the recipient's channel, reusing relay connections for the faxes
of one poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

from bridge import maildir
from bridge.errors import AuthError, PermanentError, TransientError
from bridge.imaging import is_pdf
from bridge.inbound_mail import (
    FaxFacts,
    FaxImages,
    InboundMailSettings,
    fax_mail_bytes,
    prepare_images,
)
from bridge.jobs import DeliveryChannel, InboundDelivery
from bridge.mailer import Mailer, MailSession, OpenMail
from bridge.render import TemplateRenderer
from bridge.routing import Presentation

log = logging.getLogger(__name__)

ImapAppend = Callable[[bytes, str, datetime], Awaitable[None]]
"""``deliver: imap``: put a mail into a folder, dated the fax's receive time, returning only
once the server accepted it (``bridge.imap_delivery.ImapDelivery.append_fax_mail``)."""

#: Images up to this size (PDFs, no conversion) are mailed without a worker thread.
_CHEAP_BYTES = 256 * 1024

#: The relay connections of the batch in progress (:meth:`MailOutlet.batch`), if any.
_SESSION: contextvars.ContextVar[MailSession | None] = contextvars.ContextVar(
    "fax_bridge_inbound_mail", default=None
)


class MailOutlet:
    """Writes fax mails and hands them to their channel."""

    def __init__(self, mailer: Mailer, imap: ImapAppend | None) -> None:
        self._mailer = mailer
        self._imap = imap

    @property
    def appends_imap(self) -> bool:
        """Whether ``deliver: imap`` routes can be served (an IMAP mailbox is set up)."""
        return self._imap is not None

    @contextlib.asynccontextmanager
    async def batch(self, concurrency: int) -> AsyncIterator[None]:
        """Reuse relay connections for the faxes processed inside (tasks started in it).

        One inbound poll is one batch: its mails share a few connections instead of
        greeting, securing and logging in to the relay once per mail.
        """
        async with self._mailer.session(max_idle=concurrency) as session:
            token = _SESSION.set(session)
            try:
                yield
            finally:
                _SESSION.reset(token)

    def relay(self) -> Mailer | MailSession:
        """The relay connections of the batch in progress, else the mailer itself."""
        return _SESSION.get() or self._mailer

    async def wired(
        self, letter: Letter, delivery: InboundDelivery, *notes: str
    ) -> tuple[str, bytes]:
        """The mail's Message-ID and its bytes as ``delivery``'s channel takes them.

        A small PDF (or no image) is written right here: a thread would hold the GIL
        for about as long while the event loop waits for it, plus the hop. A TIFF to
        convert or a large image goes to a worker thread.
        """

        images = letter.images

        def write() -> tuple[str, bytes]:
            return fax_mail_bytes(
                letter.facts,
                recipient=delivery.recipient,
                channel=delivery.channel,
                presentation=letter.presentation,
                images=images.get() if images is not None else None,
                settings=letter.mail,
                renderer=letter.renderer,
                now=datetime.now(UTC),
                extra_notes=notes,
            )

        if images is None or images.cheap:
            return write()
        return await asyncio.to_thread(write)

    async def begin(
        self, delivery: InboundDelivery, settings: InboundMailSettings
    ) -> OpenMail | None:
        """The envelope of ``delivery``'s mail, opened at the relay ahead of the mail
        (the batch's connections only; None for other channels or outside a batch)."""
        session = _SESSION.get()
        if session is None or delivery.channel is not DeliveryChannel.SMTP:
            return None
        sender = settings.sender.addr_spec
        return await session.begin(sender=sender, recipients=[delivery.recipient])

    async def send(
        self,
        letter: Letter,
        delivery: InboundDelivery,
        data: bytes,
        opened: OpenMail | None = None,
    ) -> None:
        """Deliver ``data`` (in ``opened``, when given); returns only once the channel
        accepted it."""
        if opened is not None:
            await opened.send(data)
        elif delivery.channel is DeliveryChannel.SMTP:
            sender = letter.mail.sender.addr_spec
            await self.relay().send(data, sender=sender, recipients=[delivery.recipient])
        elif delivery.channel is DeliveryChannel.MAILDIR:
            await asyncio.to_thread(maildir.deliver, Path(delivery.recipient), data)
        else:
            # The processor holds IMAP deliveries back while there is no IMAP mailbox.
            assert self._imap is not None
            await self._imap(data, delivery.recipient, letter.facts.received)

    async def notify(
        self, notice: EmailMessage, facts: FaxFacts, admin: str, settings: InboundMailSettings
    ) -> bool:
        """Send ``notice`` about a fax to ``admin`` by relay; False when it should be tried
        again later (a refusal for good is logged and counts as done: retrying cannot help).
        """
        try:
            sender = settings.sender.addr_spec
            await self.relay().send(notice, sender=sender, recipients=[admin])
        except (TransientError, AuthError) as exc:
            log.warning("fax %d: cannot tell the admin now: %s", facts.message_id, exc)
            return False
        except PermanentError as exc:
            log.error(
                "fax %d: the relay refused the notice to the admin: %s", facts.message_id, exc
            )
        return True


class LazyImages:
    """A fax's attachments for one route, prepared on first use (in a worker thread).

    Deliveries of one fax run one after another, so ``get`` never races with itself.
    """

    def __init__(
        self,
        source: tuple[bytes, str],
        presentation: Presentation,
        facts: FaxFacts,
        filename_template: str,
    ) -> None:
        self._source = source
        self._format = presentation.format
        self._facts = facts
        self._template = filename_template
        self._images: FaxImages | None = None

    @property
    def cheap(self) -> bool:
        """Whether :meth:`get` and writing the mail take only a few milliseconds."""
        data, _ = self._source
        return len(data) <= _CHEAP_BYTES and is_pdf(data)

    def get(self) -> FaxImages:
        """The attachments (converting a TIFF only once)."""
        if self._images is None:
            data, content_type = self._source
            self._images = prepare_images(
                data, content_type, self._format, self._facts, self._template
            )
        return self._images


@dataclass(frozen=True, slots=True)
class Letter:
    """What every recipient's mail of one fax is made of, under one configuration."""

    facts: FaxFacts
    presentation: Presentation
    images: LazyImages | None
    mail: InboundMailSettings
    renderer: TemplateRenderer
