"""Outgoing mail through the relay: the only module that imports aiosmtplib.

Every aiosmtplib error is translated here into the exception tree of
:mod:`bridge.errors`:

* a 4xx reply, a refused or dropped connection, or a timeout: :class:`MailTransientError`
  (try again later; the relay may have delivered a message whose final reply was lost, which
  is why our messages carry deterministic Message-IDs that receivers can deduplicate on);
* a 5xx reply: :class:`MailRejected` (:class:`MessageTooLarge` for 552), carrying the SMTP code
  and text so callers can decide per recipient;
* refused AUTH: :class:`MailAuthError`, so a worker pauses instead of failing every message.
"""

from __future__ import annotations

import asyncio
import enum
import re
import socket
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any, TypeVar

import aiosmtplib

from bridge.errors import AuthError, PermanentError, TransientError

# An envelope address as we ever send one: a dot-atom local part and a host name, ASCII
# only. aiosmtplib has an advisory for CR/LF in MAIL/RCPT arguments, so nothing reaches it
# that this does not match.
_ENVELOPE_ADDRESS = re.compile(
    r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?", re.ASCII
)


_T = TypeVar("_T")
#: What a relay connection can fail with; each is translated by :func:`_translate`.
_RELAY_ERRORS = (aiosmtplib.SMTPException, OSError, ssl.SSLError)
#: What aiosmtplib's sendmail returns: the refused recipients and the final reply.
_Sent = tuple[dict[str, aiosmtplib.SMTPResponse], str]


class RelaySecurity(enum.StrEnum):
    """How the connection to the relay is protected."""

    NONE = "none"
    STARTTLS = "starttls"
    TLS = "tls"


@dataclass(frozen=True, slots=True)
class RelaySettings:
    """Where and how to hand mail over."""

    host: str
    port: int = 25
    security: RelaySecurity = RelaySecurity.NONE
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = 60.0
    ca_file: Path | None = None
    local_hostname: str | None = None


@dataclass(frozen=True, slots=True)
class SentMail:
    """What the relay said when it accepted a message."""

    response: str
    refused: dict[str, tuple[int, str]]


class MailTransientError(TransientError):
    """The relay could not take the message now; retry later."""


class MailRejected(PermanentError):
    """The relay refused the message or a recipient with a 5xx reply."""

    def __init__(self, message: str, *, smtp_code: int, smtp_text: str) -> None:
        super().__init__(message)
        self.smtp_code = smtp_code
        self.smtp_text = smtp_text


class MessageTooLarge(MailRejected):
    """The relay refused the message for its size (552)."""


class MailAuthError(AuthError):
    """The relay refused our credentials."""


def check_envelope_address(address: str) -> str:
    """Return ``address`` if it is safe as a MAIL/RCPT argument, else raise PermanentError."""
    if not _ENVELOPE_ADDRESS.fullmatch(address):
        raise PermanentError(f"refusing to use {address!r} as an envelope address")
    return address


def _rejected(code: int, text: str, what: str) -> MailRejected:
    cls = MessageTooLarge if code == 552 else MailRejected
    return cls(f"relay refused {what}: {code} {text}", smtp_code=code, smtp_text=text)


def _classify_reply(code: int, text: str, what: str) -> Exception:
    if 400 <= code < 500:
        return MailTransientError(f"relay deferred {what}: {code} {text}")
    if code >= 500:
        return _rejected(code, text, what)
    return MailTransientError(f"unexpected relay reply to {what}: {code} {text}")


def _translate(exc: Exception) -> Exception:
    """The error of ours for an aiosmtplib or socket failure (most specific first)."""
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return MailAuthError(f"relay refused authentication: {exc.code} {exc.message}")
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        first = exc.recipients[0]
        if all(400 <= r.code < 500 for r in exc.recipients):
            return MailTransientError(
                f"relay deferred every recipient: {first.code} {first.message}"
            )
        return _rejected(first.code, first.message, "every recipient")
    if isinstance(exc, aiosmtplib.SMTPSenderRefused):
        return _classify_reply(exc.code, exc.message, "the sender")
    if isinstance(exc, aiosmtplib.SMTPDataError):
        return _classify_reply(exc.code, exc.message, "the message")
    if isinstance(exc, aiosmtplib.SMTPNotSupported):
        return MailTransientError(f"relay does not support what we need: {exc}")
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return _classify_reply(exc.code, exc.message, "the session")
    return MailTransientError(f"relay unreachable: {type(exc).__name__}: {exc}")


class Mailer:
    """Send mail through the configured relay.

    :meth:`send` uses a connection of its own per message; :meth:`session` keeps
    connections open for a batch (one inbound poll), which saves the greeting, EHLO,
    TLS and login per message.
    """

    def __init__(self, settings: RelaySettings) -> None:
        self._settings = settings
        self._ehlo_name: str | None = None
        self._tls_context: ssl.SSLContext | None = None
        if settings.security is not RelaySecurity.NONE:
            cafile = str(settings.ca_file) if settings.ca_file else None
            self._tls_context = ssl.create_default_context(cafile=cafile)

    async def _connection(self) -> dict[str, Any]:
        """How to reach and log in to the relay, as aiosmtplib takes it."""
        s = self._settings
        if self._ehlo_name is None:
            # aiosmtplib would look the FQDN up in a thread for every message otherwise.
            self._ehlo_name = s.local_hostname or await asyncio.to_thread(socket.getfqdn)
        return {
            "hostname": s.host,
            "port": s.port,
            "username": s.username,
            "password": s.password,
            "local_hostname": self._ehlo_name,
            "timeout": s.timeout,
            "use_tls": s.security is RelaySecurity.TLS,
            "start_tls": s.security is RelaySecurity.STARTTLS,
            "tls_context": self._tls_context,
        }

    async def _connect(self) -> aiosmtplib.SMTP:
        """A connection that is greeted, secured and logged in as configured."""
        client = aiosmtplib.SMTP(**await self._connection())
        try:
            await client.connect()
        except _RELAY_ERRORS as exc:
            client.close()
            raise _translate(exc) from exc
        return client

    def session(self, *, max_idle: int = 16) -> MailSession:
        """Connections reused for several messages until the session is closed.

        Use it as ``async with mailer.session() as mail:``; at most ``max_idle``
        connections wait for the next message between sends.
        """
        return MailSession(self, max_idle=max_idle)

    async def send(
        self, message: EmailMessage | bytes, *, sender: str, recipients: Sequence[str]
    ) -> SentMail:
        """Hand ``message`` to the relay for ``recipients`` over a new connection.

        Raises :class:`MailRejected` when every recipient is refused (or the message is),
        :class:`MailTransientError` for anything worth retrying, and :class:`MailAuthError`
        when the relay refuses our credentials. Recipients refused while others were
        accepted are listed in :attr:`SentMail.refused`.
        """
        async with self.session(max_idle=1) as mail:
            return await mail.send(message, sender=sender, recipients=recipients)

    async def probe(self) -> str:
        """Connect, greet, secure and log in as configured, then quit; say what worked.

        Raises the same errors as :meth:`send`, so ``check-config --probe`` can say
        exactly which step failed and why.
        """
        s = self._settings
        client = await self._connect()
        try:
            await client.quit()
        except _RELAY_ERRORS as exc:
            client.close()
            raise _translate(exc) from exc
        login = f", logged in as {s.username}" if s.username else ""
        return f"{s.host}:{s.port} answered ({s.security}{login})"


#: How long a goodbye may take: the messages are delivered, nothing waits on it.
_QUIT_TIMEOUT = 5.0


class MailSession:
    """Relay connections kept open between messages (see :meth:`Mailer.session`).

    A connection goes back to the pool only after a transaction that succeeded; any
    failure closes the connection it happened on. A relay may close a kept connection
    when it pleases, or refuse a further message on it with ``421``: then the message
    is sent once more at once on a new connection. That repeat is no riskier than
    the retry a failed send always gets: if the relay lost the line after taking the
    whole message, the copy carries the same Message-ID either way.
    """

    def __init__(self, mailer: Mailer, *, max_idle: int) -> None:
        self._mailer = mailer
        self._max_idle = max_idle
        self._idle: list[aiosmtplib.SMTP] = []

    @staticmethod
    def _check(sender: str, recipients: Sequence[str]) -> None:
        check_envelope_address(sender)
        if not recipients:
            raise PermanentError("no recipients")
        for rcpt in recipients:
            check_envelope_address(rcpt)

    async def __aenter__(self) -> MailSession:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def send(
        self, message: EmailMessage | bytes, *, sender: str, recipients: Sequence[str]
    ) -> SentMail:
        """Like :meth:`Mailer.send`, on a connection of this session."""
        self._check(sender, recipients)

        def sendmail(client: aiosmtplib.SMTP) -> Awaitable[_Sent]:
            if isinstance(message, EmailMessage):
                return client.send_message(message, sender=sender, recipients=list(recipients))
            return client.sendmail(sender, list(recipients), message)

        client, (errors, response) = await self._on_connection(sendmail)
        await self._checkin(client)
        return SentMail(response=response, refused=_refusals(errors))

    async def begin(self, *, sender: str, recipients: Sequence[str]) -> OpenMail:
        """Open a transaction for a message still being made: MAIL and RCPT now, DATA
        with :meth:`OpenMail.send`. Their round trips overlap the making of the message.

        Raises like :meth:`send`. The relay is not told the message's size in advance
        (SIZE); a message over the limit it announced is refused without being sent.
        """
        self._check(sender, recipients)

        async def envelope(client: aiosmtplib.SMTP) -> dict[str, aiosmtplib.SMTPResponse]:
            await client.mail(sender)
            refusals: list[aiosmtplib.SMTPRecipientRefused] = []
            for rcpt in recipients:
                try:
                    await client.rcpt(rcpt)
                except aiosmtplib.SMTPRecipientRefused as exc:
                    refusals.append(exc)
            if len(refusals) == len(recipients):
                raise aiosmtplib.SMTPRecipientsRefused(refusals)
            return {r.recipient: aiosmtplib.SMTPResponse(r.code, r.message) for r in refusals}

        client, errors = await self._on_connection(envelope)
        return OpenMail(self, client, (sender, list(recipients)), _refusals(errors))

    async def _on_connection(
        self, use: Callable[[aiosmtplib.SMTP], Awaitable[_T]]
    ) -> tuple[aiosmtplib.SMTP, _T]:
        """``use`` a connection of the session; once more on a new one if a kept
        connection turned out closed. Any failure closes the connection it happened on."""
        client, kept = await self._checkout()
        while True:
            try:
                return client, await use(client)
            except BaseException as exc:
                client.close()
                if not isinstance(exc, _RELAY_ERRORS):
                    raise
                if not (kept and _closed_on_us(exc)):
                    raise _translate(exc) from exc
                client, kept = await self._mailer._connect(), False

    async def _checkin(self, client: aiosmtplib.SMTP) -> None:
        """Keep ``client``, after a transaction that succeeded, for the next message."""
        if len(self._idle) < self._max_idle:
            self._idle.append(client)
        else:
            await _quit(client)

    async def _checkout(self) -> tuple[aiosmtplib.SMTP, bool]:
        """A connection and whether it was kept from an earlier message."""
        while self._idle:
            client = self._idle.pop()
            if client.is_connected:  # a close the relay sent while idle was noticed
                return client, True
            client.close()
        return await self._mailer._connect(), False

    async def aclose(self) -> None:
        """Say goodbye on every idle connection (errors do not matter any more)."""
        idle, self._idle = self._idle, []
        try:
            for client in idle:
                await _quit(client)
        finally:  # cancelled halfway: close the rest without goodbye
            for client in idle:
                client.close()


class OpenMail:
    """A transaction whose envelope the relay accepted, waiting for its message
    (:meth:`MailSession.begin`). Exactly one of :meth:`send`, :meth:`abort` or
    :meth:`close` is called."""

    def __init__(
        self,
        session: MailSession,
        client: aiosmtplib.SMTP,
        envelope: tuple[str, Sequence[str]],
        refused: dict[str, tuple[int, str]],
    ) -> None:
        self._session = session
        self._client: aiosmtplib.SMTP | None = client
        self._envelope = envelope
        self._refused = refused

    def _take(self) -> aiosmtplib.SMTP:
        client, self._client = self._client, None
        if client is None:
            raise RuntimeError("this transaction is over")
        return client

    async def send(self, message: bytes) -> SentMail:
        """Send ``message`` (DATA) and return what the relay said when it took it.

        The envelope may have waited a while: when the relay dropped it meanwhile (a
        closed connection, or ``421``), the message goes once more in a transaction of
        its own, as :meth:`MailSession.send` does on a kept connection.
        """
        client = self._take()
        limit = _size_limit(client)
        if limit and len(message) > limit:
            # RFC 1870: never send more than the relay announced it takes.
            await _reset(client, self._session)
            text = f"5.3.4 the message ({len(message)} bytes) exceeds the relay's SIZE {limit}"
            raise MessageTooLarge(f"relay limit: {text}", smtp_code=552, smtp_text=text)
        sender, recipients = self._envelope
        if not client.is_connected:
            client.close()
            return await self._session.send(message, sender=sender, recipients=recipients)
        try:
            response = await client.data(message)
        except BaseException as exc:
            client.close()
            if not isinstance(exc, _RELAY_ERRORS):
                raise
            if not _closed_on_us(exc):
                raise _translate(exc) from exc
            return await self._session.send(message, sender=sender, recipients=recipients)
        await self._session._checkin(client)
        return SentMail(response=response.message, refused=self._refused)

    async def abort(self) -> None:
        """Drop the transaction (RSET); nothing was sent. Never raises a relay error."""
        await _reset(self._take(), self._session)

    def close(self) -> None:
        """Drop the transaction with its connection at once (no RSET); nothing was sent."""
        self._take().close()


def _size_limit(client: aiosmtplib.SMTP) -> int:
    """The largest message the relay takes (RFC 1870 SIZE), 0 when it named none."""
    value = client.esmtp_extensions.get("size", "")
    return int(value) if value.strip().isdigit() else 0


async def _reset(client: aiosmtplib.SMTP, session: MailSession) -> None:
    """RSET, then keep the connection for the next message; close it if that fails."""
    try:
        await client.rset()
    except BaseException as exc:
        client.close()
        if isinstance(exc, _RELAY_ERRORS):
            return
        raise
    await session._checkin(client)


def _refusals(errors: dict[str, aiosmtplib.SMTPResponse]) -> dict[str, tuple[int, str]]:
    return {rcpt: (resp.code, resp.message) for rcpt, resp in errors.items()}


def _closed_on_us(exc: Exception) -> bool:
    """The relay dropped a kept connection, or refused more messages on it (421)."""
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return exc.code == 421
    return isinstance(exc, ConnectionError)


async def _quit(client: aiosmtplib.SMTP) -> None:
    try:
        await client.quit(timeout=_QUIT_TIMEOUT)
    except _RELAY_ERRORS:
        client.close()
