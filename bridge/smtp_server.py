"""The SMTP listener: the only module that imports aiosmtpd.

aiosmtpd runs on the service's own event loop (``loop.create_server``, not the
thread-owning ``Controller``). Every decision is delegated to :class:`bridge.intake.Intake`;
this module only adapts the dialogue:

* peers outside ``trusted_networks`` must authenticate (AUTH needs TLS first);
* replies that aiosmtpd words itself get precise enhanced status codes;
* any exception in a hook answers ``451 4.3.0``: never aiosmtpd's default
  ``500 Error: (OSError) ...``, which both refuses permanently and leaks internals;
* while draining for shutdown, new sessions are greeted with ``421`` and closed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import ssl
from collections.abc import Mapping
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

    async def _handle_client(self) -> None:
        if self._listener.draining:
            await super().push(SHUTTING_DOWN)
            if self.transport is not None:
                self.transport.close()
            return
        await super()._handle_client()


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
    def __init__(self, listener: SmtpListener) -> None:
        self._listener = listener

    def __call__(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        users = self._listener.users
        if isinstance(data, LoginPassword) and users:
            name = data.login.decode("utf-8", "replace")
            if check_login(users, name, data.password.decode("utf-8", "replace")):
                return AuthResult(success=True, auth_data=name)
        return AuthResult(success=False, handled=False)


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
            "authenticator": _Authenticator(self),
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

    def replace_users(self, users: Mapping[str, PasswordHash]) -> None:
        """Use a new users table (configuration reload)."""
        self.users = users
