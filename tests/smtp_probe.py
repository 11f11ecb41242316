"""A raw SMTP client for dialogue tests: every command and every reply exactly as on the wire.

aiosmtplib and smtplib hide replies behind exceptions and fix up what they send (they
quote addresses, refuse non-ASCII, add SIZE). Protocol tests need the opposite: send
exactly these bytes, read exactly that reply. :class:`SmtpProbe` speaks over asyncio
streams in the test's own event loop, so it also proves the listener serves that loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
from dataclasses import dataclass
from types import TracebackType

_REPLY_LINE = re.compile(rb"([2-5][0-9][0-9])([ -])(.*)")
_ENHANCED = re.compile(r"[245]\.[0-9]{1,3}\.[0-9]{1,3}")


@dataclass(frozen=True)
class SmtpReply:
    """One (possibly multi-line) SMTP reply."""

    code: int
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        """The text of every line, joined by newlines."""
        return "\n".join(self.lines)

    @property
    def enhanced(self) -> str | None:
        """The RFC 3463 enhanced status code of the first line, if it has one."""
        head = self.lines[0].split(" ", 1)[0] if self.lines else ""
        return head if _ENHANCED.fullmatch(head) else None

    @property
    def status(self) -> str:
        """``"550 5.7.1"``: the code and enhanced code, as tests compare them."""
        return f"{self.code} {self.enhanced}" if self.enhanced else str(self.code)

    def __str__(self) -> str:
        return "\n".join(f"{self.code} {line}" for line in self.lines)


class ConnectionClosed(AssertionError):
    """The server closed the connection where a reply was expected."""


class SmtpProbe:
    """An SMTP session driven command by command."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.greeting: SmtpReply | None = None

    @classmethod
    async def open(cls, port: int, host: str = "127.0.0.1") -> SmtpProbe:
        """Connect and read the greeting (see :attr:`greeting`)."""
        reader, writer = await asyncio.open_connection(host, port)
        probe = cls(reader, writer)
        probe.greeting = await probe.read_reply()
        return probe

    async def __aenter__(self) -> SmtpProbe:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def read_reply(self) -> SmtpReply:
        """Read one reply; raises :class:`ConnectionClosed` at end of stream."""
        code: int | None = None
        lines: list[str] = []
        while True:
            raw = await asyncio.wait_for(self.reader.readline(), 30)
            if not raw:
                raise ConnectionClosed(f"connection closed after {lines!r}")
            match = _REPLY_LINE.fullmatch(raw.rstrip(b"\r\n"))
            assert match is not None, f"not an SMTP reply line: {raw!r}"
            assert raw.endswith(b"\r\n"), f"reply line not ended by CRLF: {raw!r}"
            this = int(match.group(1))
            assert code in (None, this), f"mixed codes in one reply: {code} and {this}"
            code = this
            lines.append(match.group(3).decode("ascii"))
            if match.group(2) == b" ":
                return SmtpReply(code, tuple(lines))

    async def command(self, line: str | bytes) -> SmtpReply:
        """Send one command line (CRLF added) and read its reply."""
        data = line.encode("ascii") if isinstance(line, str) else line
        self.writer.write(data + b"\r\n")
        await self.writer.drain()
        return await self.read_reply()

    async def ehlo(self, name: str = "client.test") -> SmtpReply:
        """EHLO, asserting it succeeded."""
        reply = await self.command(f"EHLO {name}")
        assert reply.code == 250, str(reply)
        return reply

    async def mail(self, sender: str, params: str = "") -> SmtpReply:
        """``MAIL FROM:<sender>`` with optional parameters."""
        return await self.command(f"MAIL FROM:<{sender}>" + (f" {params}" if params else ""))

    async def rcpt(self, recipient: str | bytes) -> SmtpReply:
        """``RCPT TO:<recipient>``; bytes are sent as they are (for non-ASCII probes)."""
        if isinstance(recipient, bytes):
            return await self.command(b"RCPT TO:<" + recipient + b">")
        return await self.command(f"RCPT TO:<{recipient}>")

    async def data(self, message: bytes) -> SmtpReply:
        """DATA with ``message`` (dot-stuffed here); returns the reply after the final dot."""
        go = await self.command("DATA")
        assert go.code == 354, str(go)
        body = message.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        if not body.endswith(b"\r\n"):
            body += b"\r\n"
        body = re.sub(rb"(?m)^\.", b"..", body)
        self.writer.write(body + b".\r\n")
        await self.writer.drain()
        return await self.read_reply()

    async def starttls(self, context: ssl.SSLContext, server_hostname: str = "127.0.0.1") -> None:
        """STARTTLS and the TLS handshake; EHLO must be sent again afterwards."""
        reply = await self.command("STARTTLS")
        assert reply.code == 220, str(reply)
        await self.writer.start_tls(context, server_hostname=server_hostname)

    async def at_eof(self) -> bool:
        """True when the server closed the connection."""
        return await asyncio.wait_for(self.reader.read(1), 30) == b""

    async def close(self) -> None:
        """Close the connection (without QUIT; tests that care send QUIT themselves)."""
        if not self.writer.is_closing():
            self.writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await self.writer.wait_closed()
