"""A real HTTP/1.1 server on 127.0.0.1 that answers from a script and records every request.

For the InterFAX client's edge cases the sandbox cannot produce on purpose
(malformed success bodies, relative ``Location`` headers, a 403, an answer that
never comes). It speaks over real sockets, so the client's httpx stack runs
unmodified; each scripted step is raw response bytes, ``DROP`` (close the
connection without answering) or ``HANG`` (never answer).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass

DROP = b"DROP"
HANG = b"HANG"


@dataclass(frozen=True)
class Seen:
    """One request as it arrived on the wire."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes


def response(
    status: int,
    body: bytes = b"",
    *,
    reason: str = "X",
    headers: Sequence[tuple[str, str]] = (),
) -> bytes:
    """Raw bytes of an HTTP/1.1 response with a Content-Length."""
    head = [f"HTTP/1.1 {status} {reason}", f"Content-Length: {len(body)}"]
    head += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


class ScriptedServer:
    """Answers requests in arrival order from ``script``; records them in ``seen``."""

    def __init__(self, script: Sequence[bytes]) -> None:
        self.script = list(script)
        self.seen: list[Seen] = []
        self.base_url = ""
        self._release = asyncio.Event()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if line:
                        name, _, value = line.partition(":")
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                self.seen.append(Seen(method, target, headers, body))
                step = self.script.pop(0) if self.script else response(599, b"script exhausted")
                if step == DROP:
                    return
                if step == HANG:
                    await self._release.wait()
                    return
                writer.write(step)
                await writer.drain()
        finally:
            writer.close()
            with suppress(ConnectionError):
                await writer.wait_closed()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[ScriptedServer]:
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}"
        try:
            yield self
        finally:
            self._release.set()
            server.close()
            await server.wait_closed()
