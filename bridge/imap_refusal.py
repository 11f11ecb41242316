"""Telling an authorised sender that the fax request they put in a mailbox was refused.

SMTP refuses in the dialogue; a mailbox has no dialogue, so IMAP intake reports a
refusal by mail instead, and only to a sender who is on ``outbound.allowed_senders``
(anybody else could use the bridge to send mail to arbitrary addresses, or to learn
what the bridge accepts). The intake worker calls a :data:`RefusalNotifier`;
:class:`MailRefusalNotifier` is the one the service uses, sending through the relay.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from bridge.headersafe import clean_subject
from bridge.mailbuild import MailAddress, build_mail, deterministic_message_id
from bridge.mailer import Mailer
from bridge.mailtext import clean_line

__all__ = ["MailRefusalNotifier", "RefusalNotice", "RefusalNotifier"]


@dataclass(frozen=True, slots=True)
class RefusalNotice:
    """A refused fax request from a mailbox.

    ``recipient`` is the authorised From address the report goes to; ``subject`` and
    ``reason`` are untrusted text (cleaned again before use); ``message_id`` is the
    refused mail's Message-ID, so the report threads under it; ``reference`` is stable
    for this one message (the IMAP ledger key), so a report repeated after a crash has
    the same Message-ID.
    """

    recipient: str
    subject: str
    message_id: str | None
    reason: str
    reference: str


#: Sends (or durably queues) the report. Raise ``TransientError`` or ``AuthError`` to
#: be called again later for the same message; a ``PermanentError`` gives the report up.
RefusalNotifier = Callable[[RefusalNotice], Awaitable[None]]


class MailRefusalNotifier:
    """Sends each refusal report through the relay, threaded under the refused mail."""

    def __init__(
        self,
        mailer: Mailer,
        sender: MailAddress,
        *,
        fax_domain: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._mailer = mailer
        self._sender = sender
        self._fax_domain = fax_domain
        self._clock = clock

    def replace_sender(self, sender: MailAddress, *, fax_domain: str) -> None:
        """Send later reports from ``sender`` (``mail.from`` after a reload)."""
        self._sender = sender
        self._fax_domain = fax_domain

    async def __call__(self, notice: RefusalNotice) -> None:
        """Build and send the report; raises the :class:`~bridge.mailer.Mailer` errors."""
        subject = clean_subject(notice.subject)
        text = (
            "The fax bridge did not send the fax you asked for"
            + (f' in "{subject}"' if subject else "")
            + ".\n\n"
            f"Reason: {clean_line(notice.reason)}\n\n"
            "Your mail was moved to the folder for refused requests and nothing was faxed.\n"
            "Write each fax number as an address in To or Cc, like "
            f"+12125550100@{self._fax_domain}, then send the mail again.\n"
        )
        message = build_mail(
            sender=self._sender,
            to=[MailAddress(notice.recipient)],
            subject="Fax not sent" + (f": {subject}" if subject else ""),
            text=text,
            date=datetime.fromtimestamp(self._clock(), UTC),
            message_id=deterministic_message_id(
                "imap-refusal", notice.reference, domain=self._sender.domain
            ),
            in_reply_to=notice.message_id,
            auto_submitted="auto-replied",
        )
        await self._mailer.send(
            message, sender=self._sender.addr_spec, recipients=[notice.recipient]
        )
