"""The SMTP listener: the only module that imports aiosmtpd.

aiosmtpd runs on the service's own event loop (``loop.create_server``, not the
thread-owning ``Controller``). Every decision is delegated to :class:`bridge.intake.Intake`;
this module only adapts the dialogue:

* peers outside ``trusted_networks`` must authenticate (AUTH needs TLS first); the
  scrypt check of a password runs in a worker thread, never on the event loop;
* our checks see each MAIL and RCPT path exactly as the client wrote it: aiosmtpd
  normalises ``<@a,@b:1555@fax.local>`` and ``<"1555"@fax.local>`` to ``1555@fax.local``,
  which would hide the source route and the quoting that intake must refuse;
* replies that aiosmtpd words itself get precise enhanced status codes;
* any exception in a hook answers ``451 4.3.0``: never aiosmtpd's default
  ``500 Error: (OSError) ...``, which both refuses permanently and leaks internals;
  after the final dot the transaction ends whatever happened, so a failed message
  never leaves its envelope behind for the next ``MAIL`` on the same connection;
* while draining for shutdown, new sessions are greeted with ``421`` and closed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AnyStr

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from bridge.intake import TRY_LATER, Intake, Reply
from bridge.jobs import MessageSource
from bridge.smtp_auth import PasswordHash, check_login

log = logging.getLogger(__name__)

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

AUTH_REQUIRED = Reply(530, "5.7.0", "Authentication required")
SHUTTING_DOWN = "421 4.3.2 Service shutting down, please try again later"


@dataclass(frozen=True, slots=True)
class ListenerSettings:
    """How the listener binds and whom it trusts."""

    host: str
    port: int
    max_message_size: int
    trusted_networks: tuple[IPNetwork, ...]
    hostname: str = "fax-bridge"
    tls_cert: Path | None = None
    tls_key: Path | None = None
    session_timeout: float = 300.0


def _written_path(arg: str) -> str:
    """The MAIL or RCPT path as the client wrote it: inside ``<...>``, else up to a space."""
    text = arg.lstrip()
    if text.startswith("<"):
        return text[1:].partition(">")[0]
    return text.partition(" ")[0]


def _rewrite(status: str, max_size: int) -> str:
    """Give aiosmtpd's own size refusals the enhanced code RFC 3463 prescribes."""
    if status.startswith("552 Error"):
        return f"552 5.3.4 Message too big for this system (limit {max_size} bytes)"
    return status


class _FaxSMTP(SMTP):
    """aiosmtpd's protocol with our wording and the shutdown greeting."""

    def __init__(self, listener: SmtpListener, handler: _Handler, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._listener = listener

    async def push(self, status: AnyStr) -> None:
        text = status.decode() if isinstance(status, bytes) else str(status)
        await super().push(_rewrite(text, self._listener.settings.max_message_size))

    async def smtp_DATA(self, arg: str) -> None:
        """aiosmtpd's DATA, collecting into one buffer instead of one object per line.

        aiosmtpd 1.4 keeps every line as its own bytearray and joins them at the end,
        about four times the message in memory; here the peak is about twice. Line
        reading, the lone-dot end, the size and line-length limits (answered only after
        the data, as RFC 5321 §4.2.5 implies) and dot-unstuffing are unchanged.
        """
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        buffer = bytearray()
        size, limit = 0, self.data_size_limit
        fragments: list[bytes] = []
        too_long = too_much = False
        while self.transport is not None:
            try:
                line: bytes = await self._reader.readuntil(b"\r\n")
            except asyncio.CancelledError:
                self._writer.close()
                raise
            except asyncio.LimitOverrunError as exc:
                too_long = too_long or not too_much
                buffer = bytearray()
                line = await self._reader.read(exc.consumed)
            if not fragments and line == b".\r\n":
                break
            size += len(line)
            if not (too_long or too_much) and limit and size > limit:
                too_much = True
                buffer = bytearray()
            fragments.append(line)
            if line.endswith(b"\r\n"):
                if not (too_long or too_much):
                    whole = b"".join(fragments)
                    if len(whole) > self.line_length_limit:
                        too_long, buffer = True, bytearray()
                    else:
                        buffer += memoryview(whole)[1:] if whole.startswith(b".") else whole
                fragments.clear()
        if too_long or too_much:
            await self.push(
                "500 Line too long (see RFC5321 4.5.3.1.6)"
                if too_long
                else "552 Error: Too much mail data"
            )
            self._set_post_data_state()  # type: ignore[no-untyped-call]
            return
        content = bytes(buffer)
        del buffer
        self.envelope.content = content
        self.envelope.original_content = content
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()  # type: ignore[no-untyped-call]
        await self.push(status)

    async def _handle_client(self) -> None:
        if self._listener.draining:
            await super().push(SHUTTING_DOWN)
            if self.transport is not None:
                self.transport.close()
            return
        await super()._handle_client()

    def _create_session(self) -> Session:
        return _Session(self.loop)

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        # aiosmtpd parses the path with the email header parser, which drops a source
        # route and unquotes a quoted local part. Keep its syntax check and its split of
        # the parameters, but decide on the path as written (the null path stays "<>").
        address, rest = super()._getaddr(arg)
        if address and address != "<>":
            address = _written_path(arg) or address
        return address, rest

    async def auth_PLAIN(self, _: Any, args: list[str]) -> AuthResult:
        return await self._settle(await super().auth_PLAIN(_, args))

    async def auth_LOGIN(self, _: Any, args: list[str]) -> AuthResult:
        return await self._settle(await super().auth_LOGIN(_, args))

    async def _settle(self, result: AuthResult) -> AuthResult:
        """Check the credentials :class:`_Authenticator` collected, in a worker thread.

        A scrypt check costs tens of milliseconds of CPU; on the event loop every
        other session, and the workers, would stall for each AUTH attempt.
        """
        credentials = result.auth_data
        if result.success or not isinstance(credentials, LoginPassword):
            return result
        name = await asyncio.to_thread(self._listener.check_credentials, credentials)
        if name is None:
            return AuthResult(success=False, handled=False)
        return AuthResult(success=True, auth_data=name)


class _Session(Session):
    """aiosmtpd's session without the deprecated ``login_data`` warning.

    aiosmtpd 1.4 sets ``login_data`` itself after every successful AUTH and logs a
    deprecation warning each time; we never read it.
    """

    @property
    def login_data(self) -> Any:
        return self._login_data

    @login_data.setter
    def login_data(self, value: Any) -> None:
        self._login_data = value


class _Handler:
    """aiosmtpd hooks, each a thin adapter onto :class:`Intake`."""

    def __init__(self, listener: SmtpListener) -> None:
        self._listener = listener

    def _trusted(self, session: Session) -> bool:
        peer = session.peer
        host = peer[0] if isinstance(peer, tuple) else str(peer)
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in net for net in self._listener.settings.trusted_networks)

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        # Our replies carry RFC 3463 enhanced codes: say so (RFC 2034).
        return [*responses[:-1], "250-ENHANCEDSTATUSCODES", responses[-1]]

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        if not (self._trusted(session) or session.authenticated):
            return AUTH_REQUIRED.line
        refusal = self._listener.intake.check_sender(address)
        if refusal is not None:
            return refusal.line
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Sender OK"

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        result = self._listener.intake.check_recipient(
            address, accepted_so_far=len(envelope.rcpt_tos)
        )
        if isinstance(result, Reply):
            return result.line
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return f"250 2.1.5 Fax to {result.international} OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        # Answered here rather than through handle_exception: aiosmtpd resets the
        # envelope only when this hook returns, and the next MAIL would get a 503.
        try:
            return await self._data(envelope)
        except Exception as error:
            return await self.handle_exception(error)

    async def _data(self, envelope: Envelope) -> str:
        intake = self._listener.intake
        numbers = []
        for address in envelope.rcpt_tos:
            number = intake.check_recipient(address, accepted_so_far=0)
            if isinstance(number, Reply):
                # The policy was reloaded between RCPT and DATA: decide again, safely.
                return number.line
            numbers.append(number)
        raw = envelope.original_content
        assert isinstance(raw, bytes)
        reply = await intake.accept(
            raw, mail_from=str(envelope.mail_from), recipients=numbers, source=MessageSource.SMTP
        )
        return reply.line

    async def handle_exception(self, error: Exception) -> str:
        log.error("SMTP session error; answered 451", exc_info=error)
        return TRY_LATER.line


class _Authenticator:
    """aiosmtpd calls this synchronously, on the loop: it only hands the credentials on.

    The verdict comes from :meth:`_FaxSMTP._settle`, which checks them in a thread.
    """

    def __call__(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        return AuthResult(success=False, handled=False, auth_data=data)


class SmtpListener:
    """Serves SMTP on ``settings.host:settings.port`` in the running event loop."""

    def __init__(
        self,
        intake: Intake,
        settings: ListenerSettings,
        *,
        users: Mapping[str, PasswordHash] | None = None,
    ) -> None:
        self.intake = intake
        self.settings = settings
        self.users: Mapping[str, PasswordHash] = users or {}
        self.draining = False
        self._server: asyncio.Server | None = None
        self._tls: ssl.SSLContext | None = None
        if settings.tls_cert is not None and settings.tls_key is not None:
            self._tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self._tls.load_cert_chain(str(settings.tls_cert), str(settings.tls_key))

    @property
    def port(self) -> int:
        """The bound port (useful when configured as 0)."""
        if self._server is None:
            raise RuntimeError("listener not started")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    def _protocol(self) -> _FaxSMTP:
        handler = _Handler(self)
        kwargs: dict[str, Any] = {
            "data_size_limit": self.settings.max_message_size,
            "enable_SMTPUTF8": False,
            "decode_data": False,
            "hostname": self.settings.hostname,
            "ident": "fax-bridge",
            "timeout": self.settings.session_timeout,
            "auth_require_tls": True,
            "authenticator": _Authenticator(),
            # Password guessing costs a new connection every 3 tries; everything else is
            # limited by the session timeout and max_recipients, not by a count.
            "command_call_limit": {"AUTH": 3, "*": 100_000},
        }
        if self._tls is not None:
            kwargs["tls_context"] = self._tls
        return _FaxSMTP(self, handler, **kwargs)

    async def start(self) -> None:
        """Bind and start serving."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._protocol, host=self.settings.host, port=self.settings.port
        )
        log.info("SMTP listening on %s:%d", self.settings.host, self.port)

    def start_draining(self) -> None:
        """Greet new sessions with 421 from now on; sessions in progress go on."""
        self.draining = True

    async def close(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def check_credentials(self, credentials: LoginPassword) -> str | None:
        """The user name when the login and password match (slow: scrypt), else None."""
        users = self.users
        if not users:
            return None
        name = credentials.login.decode("utf-8", "replace")
        if check_login(users, name, credentials.password.decode("utf-8", "replace")):
            return name
        return None

    def replace_users(self, users: Mapping[str, PasswordHash]) -> None:
        """Use a new users table (configuration reload)."""
        self.users = users


class _CatchAll:
    """aiosmtpd hooks for the demo's mail catcher: take everything, hand it on."""

    def __init__(self, sink: Callable[[bytes], Awaitable[None]]) -> None:
        self._sink = sink

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content
        assert isinstance(raw, bytes)
        await self._sink(raw)
        return "250 2.0.0 Caught"

    async def handle_exception(self, error: Exception) -> str:
        log.error("mail catcher error; answered 451", exc_info=error)
        return TRY_LATER.line


class MailCatcher:
    """A catch-all SMTP server for ``fax-bridge demo``: every message goes to ``sink``.

    It accepts mail for anybody, so it must only ever listen on loopback.
    """

    def __init__(self, host: str, port: int, sink: Callable[[bytes], Awaitable[None]]) -> None:
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError("the mail catcher accepts everything: loopback only")
        self._host, self._port, self._sink = host, port, sink
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        """The bound port."""
        if self._server is None:
            raise RuntimeError("catcher not started")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        """Bind and serve."""
        loop = asyncio.get_running_loop()
        handler = _CatchAll(self._sink)
        self._server = await loop.create_server(
            lambda: SMTP(handler, decode_data=False, hostname="mail-catcher", ident="fax-bridge"),
            host=self._host,
            port=self._port,
        )

    async def close(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
