"""The IMAP edge: a small typed client over aioimaplib (the only module that imports it).

aioimaplib is GPL-3.0 and ships in the optional ``imap`` extra
(``pip install 'fax-bridge[imap]'``), so it is imported lazily, when a client connects:
``import bridge`` and everything else work without it, and the configuration refuses
``imap_in`` / ``deliver: imap`` when it is missing.

What this wrapper adds to the library:

* Every answer other than OK becomes one of our typed errors
  (:func:`bridge.imap_wire.reply_error`); every library or socket exception becomes
  :class:`ImapConnectionError`. Nothing from aioimaplib leaves this module.
* Each command races the connection-lost callback and ``timeout``: aioimaplib would
  otherwise wait forever on a command whose connection died (notably IDLE). After any
  such failure the connection is dropped, because the library's per-connection state
  (its pending command) can no longer be trusted; the caller reconnects.
* STARTTLS (aioimaplib has none): the command, then ``loop.start_tls`` on the same
  transport, then CAPABILITY again over TLS. Implicit TLS and plain connections (which
  the configuration only allows to loopback) are aioimaplib's own.
* Folder names are quoted and, when not ASCII, written in modified UTF-7; the username
  is quoted too (aioimaplib quotes only the password).
* UID MOVE, or UID COPY + UID STORE ``\\Deleted`` + (UID) EXPUNGE when MOVE is not offered.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import ssl
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

from bridge.config import ImapConnection, Secret
from bridge.errors import ConfigError
from bridge.imap_wire import (
    FetchedItem,
    ImapAuthError,
    ImapBusyError,
    ImapConnectionError,
    ImapError,
    ImapNoFolderError,
    ImapQuotaError,
    ImapRefused,
    ImapReply,
    ImapTransientError,
    Selection,
    encode_mailbox,
    format_internal_date,
    parse_fetch,
    parse_search,
    parse_select,
    quote,
    reply_error,
)

__all__ = [
    "FetchedItem",
    "ImapAuthError",
    "ImapBusyError",
    "ImapClient",
    "ImapConnectionError",
    "ImapError",
    "ImapNoFolderError",
    "ImapQuotaError",
    "ImapRefused",
    "ImapReply",
    "ImapSettings",
    "ImapTransientError",
    "Selection",
]

log = logging.getLogger(__name__)

_T = TypeVar("_T")
TlsMode = Literal["implicit", "starttls", "none"]
_CHANGES = (b"EXISTS", b"RECENT", b"EXPUNGE", b"FETCH")


def _library() -> Any:
    try:
        # GPL-3.0 optional extra: imported only when a connection is made.
        import aioimaplib
    except ImportError as exc:
        raise ConfigError("IMAP needs the IMAP extra: pip install 'fax-bridge[imap]'") from exc
    return aioimaplib


@dataclass(frozen=True, slots=True)
class ImapSettings:
    """Where and how to log in to one mailbox."""

    host: str
    port: int
    tls: TlsMode
    username: str
    password: Secret
    timeout: float = 30.0
    ca_bundle: Path | None = None

    @classmethod
    def from_config(cls, conn: ImapConnection) -> ImapSettings:
        """The settings of a validated ``imap_in`` or ``imap_out`` section."""
        return cls(
            host=conn.host,
            port=conn.port,
            tls=conn.tls,
            username=conn.username,
            password=conn.password,
            timeout=conn.timeout,
            ca_bundle=conn.ca_bundle,
        )

    @property
    def account(self) -> str:
        """``username@host``: names the mailbox in logs and in the intake ledger."""
        return f"{self.username}@{self.host.lower()}"


class ImapClient:
    """One IMAP connection, logged in. Use ``async with ImapClient(settings) as client``.

    ``ignore_capabilities`` hides capabilities the server offers (tests use it to make
    the intake poll instead of IDLE, and to exercise the fallback for a missing MOVE).
    """

    def __init__(self, settings: ImapSettings, *, ignore_capabilities: Iterable[str] = ()) -> None:
        self._settings = settings
        self._ignored = frozenset(c.upper() for c in ignore_capabilities)
        self._imap: Any = None
        self._lost = asyncio.Event()
        self._capabilities: frozenset[str] = frozenset()

    @property
    def settings(self) -> ImapSettings:
        """The mailbox this client logs in to."""
        return self._settings

    @property
    def connected(self) -> bool:
        """True while logged in and the connection has not been lost."""
        return self._imap is not None and not self._lost.is_set()

    @property
    def tls_version(self) -> str | None:
        """The TLS version protecting the connection (``TLSv1.3``), None in clear text."""
        if self._imap is None or self._imap.protocol.transport is None:
            return None
        ssl_object = self._imap.protocol.transport.get_extra_info("ssl_object")
        return None if ssl_object is None else str(ssl_object.version())

    def offers(self, capability: str) -> bool:
        """Whether the server offers ``capability`` (and it is not ignored)."""
        name = capability.upper()
        return name in self._capabilities and name not in self._ignored

    async def __aenter__(self) -> ImapClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- connection -----------------------------------------------------------------

    async def connect(self) -> None:
        """Connect, secure the connection as configured, and log in.

        Raises :class:`ImapConnectionError` (unreachable, TLS failure, timeout),
        :class:`ImapAuthError` (login refused) or :class:`ImapRefused`.
        """
        library = _library()
        s = self._settings
        self._lost = asyncio.Event()
        context = await self._tls_context() if s.tls == "implicit" else None
        self._imap = library.IMAP4(
            host=s.host,
            port=s.port,
            timeout=s.timeout,
            conn_lost_cb=self._connection_lost,
            ssl_context=context,
        )
        try:
            await self._call("connect", self._imap.wait_hello_from_server())
            self._capabilities = self._read_capabilities()
            if s.tls == "starttls":
                await self._starttls(library)
            if "LOGINDISABLED" in self._capabilities:
                raise ImapRefused(
                    ImapReply("LOGIN", "NO", "LOGINDISABLED", "the server refuses LOGIN here")
                )
            # aioimaplib quotes the password but not the user name.
            response = await self._call(
                "LOGIN", self._imap.login(quote(s.username), s.password.reveal())
            )
            self._check("LOGIN", response, login=True)
            await self._call("CAPABILITY", self._imap.protocol.capability())
            self._capabilities = self._read_capabilities()
        except BaseException:
            await self._drop()
            raise
        log.debug("IMAP %s:%s logged in as %s", s.host, s.port, s.username)

    async def close(self) -> None:
        """Log out (best effort) and close the connection. Safe to call twice."""
        if self._imap is None:
            return
        if not self._lost.is_set():
            with contextlib.suppress(ImapError):
                await self._call("LOGOUT", self._imap.logout(), limit=min(5.0, self._timeout))
        await self._drop()

    # -- folders --------------------------------------------------------------------

    async def ensure_folder(self, folder: str) -> bool:
        """Create ``folder`` (and subscribe to it) unless it exists; True when created."""
        imap = self._require()
        mailbox = self._mailbox(folder)
        response = await self._call("CREATE", imap.create(mailbox))
        if response.result == "OK":
            log.info("IMAP: created folder %r", folder)
            with contextlib.suppress(ImapRefused, ImapBusyError):
                # Many mail clients only show subscribed folders; not worth failing over.
                self._check("SUBSCRIBE", await self._call("SUBSCRIBE", imap.subscribe(mailbox)))
            return True
        error = reply_error("CREATE", response.result, response.lines)
        if isinstance(error, ImapRefused) and error.reply.code == "ALREADYEXISTS":
            return False
        listing = await self._call("LIST", imap.list('""', mailbox))
        if listing.result == "OK" and any(isinstance(x, bytes) for x in listing.lines[:-1]):
            return False  # a server that does not say ALREADYEXISTS
        raise error

    async def select(self, folder: str) -> Selection:
        """SELECT ``folder`` (read-write)."""
        imap = self._require()
        response = self._check(
            "SELECT", await self._call("SELECT", imap.select(self._mailbox(folder)))
        )
        return parse_select(folder, response.lines)

    # -- messages -------------------------------------------------------------------

    async def search_uids(self, *criteria: str) -> list[int]:
        """UID SEARCH in the selected folder (default: every message not flagged deleted)."""
        imap = self._require()
        args = criteria or ("UNDELETED",)
        response = await self._call("UID SEARCH", imap.uid_search(*args, charset=None))
        return parse_search(self._check("UID SEARCH", response).lines)

    async def search_message_id(self, message_id: str) -> list[int]:
        """UIDs of the selected folder's messages with this Message-ID header."""
        if not message_id.isprintable() or '"' in message_id or "\\" in message_id:
            return []
        return await self.search_uids("HEADER", "Message-ID", quote(message_id))

    async def fetch(self, uid: int, items: str, *, size_hint: int = 0) -> FetchedItem | None:
        """UID FETCH one message; ``items`` like ``(UID RFC822.SIZE)``; None if it is gone.

        ``size_hint`` (bytes expected) stretches the timeout for large messages.
        """
        imap = self._require()
        response = await self._call(
            "UID FETCH", imap.uid("fetch", str(uid), items), limit=self._budget(size_hint)
        )
        self._check("UID FETCH", response)
        return next((item for item in parse_fetch(response.lines) if item.uid == uid), None)

    async def move(self, uid: int, folder: str) -> None:
        """Move one message of the selected folder to ``folder``."""
        imap = self._require()
        mailbox, key = self._mailbox(folder), str(uid)
        if self.offers("MOVE"):
            self._check("UID MOVE", await self._call("UID MOVE", imap.uid("move", key, mailbox)))
            return
        # RFC 6851's fallback. Without UIDPLUS, EXPUNGE also removes any other message
        # flagged \Deleted in this folder: the bridge owns the folder it watches.
        self._check("UID COPY", await self._call("UID COPY", imap.uid("copy", key, mailbox)))
        stored = await self._call(
            "UID STORE", imap.uid("store", key, "+FLAGS.SILENT", r"(\Deleted)")
        )
        self._check("UID STORE", stored)
        if self.offers("UIDPLUS"):
            expunged = await self._call("UID EXPUNGE", imap.uid("expunge", key))
        else:
            expunged = await self._call("EXPUNGE", imap.expunge())
        self._check("EXPUNGE", expunged)

    async def append(
        self,
        folder: str,
        message: bytes,
        *,
        flags: Sequence[str] = (),
        internal_date: datetime | None = None,
    ) -> None:
        """APPEND ``message`` (CRLF line ends) to ``folder`` with ``flags`` and date.

        A full mailbox raises :class:`ImapQuotaError`; a missing folder
        :class:`ImapNoFolderError`.
        """
        imap = self._require()
        flag_list = "(" + " ".join(flags) + ")" if flags else None
        date = format_internal_date(internal_date) if internal_date is not None else None
        response = await self._call(
            "APPEND",
            imap.append(message, self._mailbox(folder), flag_list, date),
            limit=self._budget(len(message)),
        )
        self._check("APPEND", response)

    async def idle(
        self,
        *,
        seconds: float,
        stop: asyncio.Event,
        tick: float | None = None,
        on_tick: Callable[[], None] | None = None,
    ) -> bool:
        """IDLE in the selected folder until it changes, ``seconds`` pass or ``stop`` is set.

        True when the server reported a change (new, expunged or changed messages).
        ``on_tick`` is called every ``tick`` seconds while waiting (a heartbeat). Callers
        keep ``seconds`` under 29 minutes (RFC 2177: servers may drop a longer IDLE).
        When the server refuses IDLE, this returns False at once and the client stops
        offering IDLE, so the caller polls.
        """
        library = _library()
        imap = self._require()
        while not imap.protocol.idle_queue.empty():
            imap.protocol.idle_queue.get_nowait()  # pushes from an earlier IDLE
        try:
            # Our own deadline ends IDLE; aioimaplib's is only a backstop.
            idling = await self._call(
                "IDLE", imap.idle_start(timeout=seconds + 60.0), passthrough=(library.Abort,)
            )
        except library.Abort as exc:
            log.warning("IMAP: the server refused IDLE (%s); polling instead", exc)
            self._ignored |= {"IDLE"}
            return False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        changed = False
        try:
            while not stop.is_set() and (left := deadline - loop.time()) > 0:
                push = await self._push(imap, stop, min(left, tick) if tick else left, library)
                if push is None:
                    if on_tick is not None:
                        on_tick()
                    continue
                if any(line.startswith(b"BYE") for line in push):
                    raise ImapConnectionError("IMAP server closed the connection (BYE)")
                if any(_is_change(line) for line in push):
                    changed = True
                    break
            imap.idle_done()
            self._check("IDLE", await self._call("IDLE DONE", idling))
        except BaseException:
            await self._drop()
            raise
        return changed

    # -- plumbing -------------------------------------------------------------------

    @property
    def _timeout(self) -> float:
        return self._settings.timeout

    def _require(self) -> Any:
        if self._imap is None or self._lost.is_set():
            raise ImapConnectionError("IMAP connection lost")
        return self._imap

    def _mailbox(self, folder: str) -> str:
        try:
            return encode_mailbox(folder)
        except ValueError as exc:
            raise ImapRefused(ImapReply("folder", "BAD", None, str(exc))) from exc

    def _read_capabilities(self) -> frozenset[str]:
        return frozenset(str(c).upper() for c in self._imap.protocol.capabilities)

    async def _tls_context(self) -> ssl.SSLContext:
        cafile = str(self._settings.ca_bundle) if self._settings.ca_bundle else None
        # The first context per bundle reads the CA store from disk: not on the loop.
        return await asyncio.to_thread(_tls_context, cafile)

    async def _starttls(self, library: Any) -> None:
        if "STARTTLS" not in self._capabilities:
            # Never fall back to clear text: that is what a downgrade attack wants.
            raise ImapRefused(
                ImapReply("STARTTLS", "NO", None, "the server does not offer STARTTLS")
            )
        protocol = self._imap.protocol
        command = library.Command("STARTTLS", protocol.new_tag(), loop=asyncio.get_running_loop())
        self._check("STARTTLS", await self._call("STARTTLS", protocol.execute(command)))
        loop = asyncio.get_running_loop()
        protocol.transport = await self._call(
            "TLS handshake",
            loop.start_tls(
                protocol.transport,
                protocol,
                await self._tls_context(),
                server_hostname=self._settings.host,
                ssl_handshake_timeout=self._timeout,
            ),
        )
        # Capabilities seen before TLS may have been forged: ask again.
        await self._call("CAPABILITY", protocol.capability())
        self._capabilities = self._read_capabilities()

    def _check(self, command: str, response: Any, *, login: bool = False) -> Any:
        if response.result != "OK":
            raise reply_error(command, response.result, response.lines, login=login)
        return response

    def _connection_lost(self, exc: Exception | None) -> None:
        if not self._lost.is_set():
            log.info(
                "IMAP connection to %s closed%s", self._settings.host, f": {exc}" if exc else ""
            )
        self._lost.set()

    def _budget(self, size: int) -> float:
        # Big literals take time on slow links: 50 kB/s is the floor we wait for.
        return self._timeout + size / 50_000

    async def _call(
        self,
        what: str,
        awaitable: Awaitable[_T],
        *,
        limit: float | None = None,
        passthrough: tuple[type[BaseException], ...] = (),
    ) -> _T:
        """Await one library call, racing the connection's loss and our timeout.

        Exceptions of the ``passthrough`` types are raised as they are and keep the
        connection; any other failure drops it.
        """
        if self._imap is None or self._lost.is_set():
            if asyncio.iscoroutine(awaitable):
                awaitable.close()
            raise ImapConnectionError(f"IMAP {what}: not connected")
        task = asyncio.ensure_future(awaitable)
        lost = asyncio.ensure_future(self._lost.wait())
        limit = self._timeout if limit is None else limit
        try:
            done, _ = await asyncio.wait(
                {task, lost}, timeout=limit, return_when=asyncio.FIRST_COMPLETED
            )
        except BaseException:
            task.cancel()
            lost.cancel()
            await self._drop()
            raise
        lost.cancel()
        if task not in done:
            task.cancel()
            await self._drop()
            why = "connection lost" if self._lost.is_set() else f"no answer in {limit:g}s"
            raise ImapConnectionError(f"IMAP {what}: {why}")
        try:
            return task.result()
        except passthrough:
            raise
        except Exception as exc:
            if isinstance(exc, ValueError) and not isinstance(exc, OSError):
                # aioimaplib refuses CR, LF and NUL in arguments before sending anything.
                # (A certificate error is a ValueError too, and an OSError: not this.)
                raise ImapRefused(ImapReply(what, "BAD", None, str(exc))) from exc
            await self._drop()
            detail = str(exc) or type(exc).__name__
            raise ImapConnectionError(f"IMAP {what} failed: {detail}") from exc

    async def _push(
        self, imap: Any, stop: asyncio.Event, wait: float, library: Any
    ) -> list[bytes] | None:
        """The next IDLE push, or None after ``wait`` seconds or when ``stop`` is set."""
        getter = asyncio.ensure_future(imap.protocol.idle_queue.get())
        waiters = {
            getter,
            asyncio.ensure_future(stop.wait()),
            asyncio.ensure_future(self._lost.wait()),
        }
        try:
            await asyncio.wait(waiters, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                if waiter is not getter:
                    waiter.cancel()
        if self._lost.is_set():
            getter.cancel()
            raise ImapConnectionError("IMAP connection lost while idling")
        if not getter.done():
            getter.cancel()
            return None
        push = getter.result()
        if push == library.STOP_WAIT_SERVER_PUSH:
            return None
        return [bytes(line) for line in push if isinstance(line, bytes | bytearray)]

    async def _drop(self) -> None:
        """Close the connection at once and forget it (after a failure, or at the end)."""
        imap, self._imap = self._imap, None
        if imap is None:
            return
        pending = [*getattr(imap, "tasks", ()), *getattr(imap.protocol, "tasks", ())]
        client_task = getattr(imap, "_client_task", None)
        if client_task is not None:
            pending.append(client_task)
        for task in pending:
            task.cancel()
        with contextlib.suppress(Exception):
            waiter = getattr(imap, "_idle_waiter", None)
            if waiter is not None:
                waiter.cancel()
        transport = imap.protocol.transport
        if transport is not None and not transport.is_closing():
            transport.abort()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lost.wait(), 1.0)
        # Collect what was cancelled, so no task is left pending or its error unread.
        await asyncio.gather(*pending, return_exceptions=True)


def _is_change(line: bytes) -> bool:
    words = line.split()
    return len(words) >= 2 and words[0].isdigit() and words[1].upper() in _CHANGES


@functools.lru_cache(maxsize=8)
def _tls_context(cafile: str | None) -> ssl.SSLContext:
    """One context per CA bundle (building one reads the CA store)."""
    return ssl.create_default_context(cafile=cafile)
