"""A real SMTP server (aiosmtpd) on 127.0.0.1, port 0, that records what it receives.

Tests use it as the relay the bridge delivers to. Replies can be scripted per recipient
(``rcpt_replies``) or for the end of DATA (``data_reply``) to simulate refusals. The
envelope commands it answered are logged (``commands``) in order.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session


@dataclass
class ReceivedMail:
    """One message the sink accepted."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    peer: Any = None  # the client's (host, port): one per connection

    def parsed(self) -> EmailMessage:
        """The message parsed with the modern policy."""
        msg = message_from_bytes(self.data, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        return msg


@dataclass
class SinkHandler:
    """aiosmtpd handler recording messages and answering as scripted."""

    received: list[ReceivedMail] = field(default_factory=list)
    rcpt_replies: dict[str, str] = field(default_factory=dict)
    data_reply: str | None = None
    mail_replies: list[str] = field(default_factory=list)  # one used per MAIL, then 250
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    commands: list[str] = field(default_factory=list)  # "MAIL a@b", "RCPT c@d", "RSET"
    commanded: asyncio.Event = field(default_factory=asyncio.Event)

    def _log(self, command: str) -> None:
        self.commands.append(command)
        self.commanded.set()

    async def wait_for_command(self, command: str, within: float = 10.0) -> None:
        """Wait until the sink answered ``command`` (as logged in ``commands``)."""

        async def _wait() -> None:
            while command not in self.commands:
                self.commanded.clear()
                await self.commanded.wait()

        await asyncio.wait_for(_wait(), within)

    async def handle_RSET(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self._log("RSET")
        return "250 OK"

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        self._log(f"MAIL {address}")
        if self.mail_replies:
            return self.mail_replies.pop(0)
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        self._log(f"RCPT {address}")
        reply = self.rcpt_replies.get(address.lower())
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.data_reply is not None:
            return self.data_reply
        assert isinstance(envelope.content, bytes)
        self.received.append(
            ReceivedMail(
                str(envelope.mail_from), list(envelope.rcpt_tos), envelope.content, session.peer
            )
        )
        self.arrived.set()
        return "250 2.0.0 Message accepted"

    async def wait_for(self, count: int, within: float = 10.0) -> list[ReceivedMail]:
        """Wait until at least ``count`` messages arrived; return them all."""

        async def _wait() -> None:
            while len(self.received) < count:
                self.arrived.clear()
                await self.arrived.wait()

        await asyncio.wait_for(_wait(), within)
        return self.received


@dataclass
class RunningSink:
    """A running sink: where it listens and what it got."""

    host: str
    port: int
    handler: SinkHandler
    connections: set[SMTP] = field(default_factory=set)

    @property
    def received(self) -> list[ReceivedMail]:
        """Messages accepted so far."""
        return self.handler.received

    def drop_connections(self) -> None:
        """Close every open client connection, as a relay does with idle ones."""
        for protocol in list(self.connections):
            if protocol.transport is not None:
                protocol.transport.close()


class _Authenticator:
    def __init__(self, users: dict[str, str]) -> None:
        self._users = users

    def __call__(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if isinstance(auth_data, LoginPassword):
            user = auth_data.login.decode()
            if self._users.get(user) == auth_data.password.decode():
                return AuthResult(success=True)
        return AuthResult(success=False, handled=False)


@asynccontextmanager
async def running_sink(
    *,
    tls_context: ssl.SSLContext | None = None,
    implicit_tls: bool = False,
    users: dict[str, str] | None = None,
    data_size_limit: int = 33554432,
) -> AsyncIterator[RunningSink]:
    """Serve a recording SMTP sink on 127.0.0.1:0 in the running loop."""
    handler = SinkHandler()
    loop = asyncio.get_running_loop()
    kwargs: dict[str, Any] = {
        "decode_data": False,
        "data_size_limit": data_size_limit,
        "hostname": "sink.test",
    }
    if users is not None:
        kwargs["authenticator"] = _Authenticator(users)
        kwargs["auth_require_tls"] = tls_context is not None
    if tls_context is not None and not implicit_tls:
        kwargs["tls_context"] = tls_context
        kwargs["require_starttls"] = True
    connections: set[SMTP] = set()

    class Tracked(SMTP):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            connections.add(self)
            super().connection_made(transport)

        def connection_lost(self, exc: Exception | None) -> None:
            connections.discard(self)
            super().connection_lost(exc)

    server = await loop.create_server(
        lambda: Tracked(handler, **kwargs),
        host="127.0.0.1",
        port=0,
        ssl=tls_context if implicit_tls else None,
    )
    port = server.sockets[0].getsockname()[1]
    try:
        yield RunningSink("127.0.0.1", port, handler, connections)
    finally:
        server.close()
        await server.wait_closed()
