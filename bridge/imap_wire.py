"""IMAP facts without I/O: the typed errors, reading server answers, writing arguments.

:mod:`bridge.imap` (the only aioimaplib importer) talks to the server; this module turns
what the server said into our values and our exceptions, so it can be tested bytes-in,
values-out. aioimaplib returns ``NO`` and ``BAD`` as values: :func:`reply_error` is where
every one of them becomes an exception of the tree below, rooted in :mod:`bridge.errors`:

* :class:`ImapConnectionError` (transient): refused, lost or timed-out connections, TLS
  failures, a ``BYE``; the caller reconnects with backoff.
* :class:`ImapBusyError` (transient): ``NO [UNAVAILABLE]``, ``[INUSE]``, ``[SERVERBUG]``,
  ``[EXPUNGEISSUED]``: the server asks us to come back later.
* :class:`ImapAuthError` (an :class:`~bridge.errors.AuthError`): LOGIN refused.
* :class:`ImapRefused` (permanent): ``BAD``, or ``NO`` about what we asked;
  :class:`ImapQuotaError` for ``[OVERQUOTA]`` / ``[LIMIT]``, :class:`ImapNoFolderError`
  for ``[TRYCREATE]`` / ``[NONEXISTENT]``.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Final

from bridge.errors import AuthError, BridgeError, PermanentError, TransientError

__all__ = [
    "FetchedItem",
    "ImapAuthError",
    "ImapBusyError",
    "ImapConnectionError",
    "ImapError",
    "ImapNoFolderError",
    "ImapQuotaError",
    "ImapRefused",
    "ImapReply",
    "ImapTransientError",
    "Selection",
    "encode_mailbox",
    "format_internal_date",
    "parse_fetch",
    "parse_internal_date",
    "parse_search",
    "parse_select",
    "quote",
    "reply_error",
    "response_code",
]


# -- errors ---------------------------------------------------------------------------


class ImapError(BridgeError):
    """Root of IMAP failures; each concrete class is also transient, permanent or auth."""


class ImapTransientError(ImapError, TransientError):
    """Worth trying again later."""


class ImapConnectionError(ImapTransientError):
    """No usable connection: refused, lost, timed out, TLS failed or the server said BYE."""


@dataclass(frozen=True, slots=True)
class ImapReply:
    """A tagged answer other than OK: the command, ``NO``/``BAD``, its response code, text."""

    command: str
    result: str
    code: str | None
    text: str

    def __str__(self) -> str:
        return f"{self.command} answered {self.result}: {self.text}"


class ImapBusyError(ImapTransientError):
    """The server refused for now (``[UNAVAILABLE]``, ``[INUSE]``, ...)."""

    def __init__(self, reply: ImapReply) -> None:
        super().__init__(f"IMAP server busy: {reply}")
        self.reply = reply


class ImapAuthError(ImapError, AuthError):
    """The server refused our login."""

    def __init__(self, message: str, reply: ImapReply | None = None) -> None:
        super().__init__(message)
        self.reply = reply


class ImapRefused(ImapError, PermanentError):
    """``BAD``, or ``NO`` about what we asked: repeating it will not help."""

    def __init__(self, reply: ImapReply) -> None:
        super().__init__(f"IMAP {reply}")
        self.reply = reply


class ImapQuotaError(ImapRefused):
    """The mailbox is full (``NO [OVERQUOTA]``) or a server limit was hit (``[LIMIT]``)."""


class ImapNoFolderError(ImapRefused):
    """The folder does not exist (``NO [TRYCREATE]`` or ``[NONEXISTENT]``)."""


_BUSY: Final = frozenset({"UNAVAILABLE", "INUSE", "SERVERBUG", "EXPUNGEISSUED"})
_QUOTA: Final = frozenset({"OVERQUOTA", "LIMIT"})
_NO_FOLDER: Final = frozenset({"TRYCREATE", "NONEXISTENT"})
_CODE = re.compile(r"\[([A-Za-z0-9.-]+)")
_TEXT_LIMIT = 300


def _text(raw: bytes | str) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes | bytearray) else raw
    # Server text ends up in logs and reports: one printable line, bounded.
    cleaned = "".join(ch if ch.isprintable() else " " for ch in text)
    return " ".join(cleaned.split())[:_TEXT_LIMIT]


def response_code(text: str) -> str | None:
    """The response code (``OVERQUOTA`` of ``[OVERQUOTA] Quota exceeded``), upper case."""
    match = _CODE.match(text.lstrip())
    return match.group(1).upper() if match else None


def reply_error(
    command: str, result: str, lines: Sequence[bytes | bytearray], *, login: bool = False
) -> ImapError:
    """The exception for a tagged answer other than OK (``lines[-1]`` is its text).

    ``login`` marks the answer to LOGIN: any refusal there is about our credentials,
    except a "come back later" code.
    """
    raw = lines[-1] if lines else b""
    text = _text(bytes(raw))
    reply = ImapReply(command, str(result), response_code(text), text)
    if reply.code in _BUSY:
        return ImapBusyError(reply)
    if login:
        return ImapAuthError(f"IMAP login refused: {text}", reply)
    if reply.code in _QUOTA:
        return ImapQuotaError(reply)
    if reply.code in _NO_FOLDER:
        return ImapNoFolderError(reply)
    return ImapRefused(reply)


# -- reading answers ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Selection:
    """What SELECT told us about a folder."""

    folder: str
    uidvalidity: int
    uidnext: int | None
    exists: int


def _untagged(lines: Sequence[bytes | bytearray]) -> list[bytes]:
    # aioimaplib puts the tagged answer's text last; literals are bytearrays.
    return [bytes(line) for line in lines[:-1] if isinstance(line, bytes)]


def parse_select(folder: str, lines: Sequence[bytes | bytearray]) -> Selection:
    """Read UIDVALIDITY, UIDNEXT and EXISTS from a SELECT answer.

    A server that gives no UIDVALIDITY makes UIDs meaningless: that is refused.
    """
    uidvalidity = uidnext = None
    exists = 0
    for line in _untagged(lines):
        if m := re.match(rb"OK \[UIDVALIDITY (\d+)\]", line):
            uidvalidity = int(m.group(1))
        elif m := re.match(rb"OK \[UIDNEXT (\d+)\]", line):
            uidnext = int(m.group(1))
        elif m := re.match(rb"(\d+) EXISTS", line):
            exists = int(m.group(1))
    if not uidvalidity:
        raise ImapRefused(ImapReply("SELECT", "OK", None, f"no UIDVALIDITY for {folder!r}"))
    return Selection(folder, uidvalidity, uidnext, exists)


def parse_search(lines: Sequence[bytes | bytearray]) -> list[int]:
    """The UIDs of a (UID) SEARCH answer, ascending."""
    found: set[int] = set()
    for line in _untagged(lines):
        words = line.split()
        if words and words[0].upper() == b"SEARCH":
            words = words[1:]
        if all(word.isdigit() for word in words):
            found.update(int(word) for word in words)
    return sorted(found)


@dataclass(frozen=True, slots=True)
class FetchedItem:
    """One message of a UID FETCH answer; fields not asked for are None."""

    uid: int
    size: int | None = None
    flags: frozenset[str] | None = None
    internal_date: datetime | None = None
    body: bytes | None = None


_FETCH_START = re.compile(rb"\d+ FETCH \(")
_UID = re.compile(rb"\bUID (\d+)")
_SIZE = re.compile(rb"\bRFC822\.SIZE (\d+)")
_FLAGS = re.compile(rb"\bFLAGS \(([^)]*)\)")
_DATE = re.compile(rb'\bINTERNALDATE "([^"]+)"')
_LITERAL_BODY = re.compile(rb"\bBODY\[[A-Z.]*\] \{\d+\}$")
_QUOTED_BODY = re.compile(rb'\bBODY\[[A-Z.]*\] "((?:[^"\\]|\\.)*)"')


def parse_fetch(lines: Sequence[bytes | bytearray]) -> list[FetchedItem]:
    """Every message of a UID FETCH answer that carries its UID."""
    records: list[tuple[bytes, bytes | None]] = []
    text, body = b"", None
    started = False
    for line in lines[:-1]:
        if isinstance(line, bytearray):
            # The literal of the line before it: the only one we ever ask for is the body.
            if started and body is None and _LITERAL_BODY.search(text):
                body = bytes(line)
            continue
        if _FETCH_START.match(line):
            if started:
                records.append((text, body))
            text, body, started = line, None, True
        elif started:
            text += b" " + line
    if started:
        records.append((text, body))
    items = []
    for text, body in records:
        uid = _UID.search(text)
        if uid is None:
            continue  # an unsolicited flag update, not our answer
        if body is None and (quoted := _QUOTED_BODY.search(text)):
            body = re.sub(rb"\\(.)", rb"\1", quoted.group(1))
        size = _SIZE.search(text)
        flags = _FLAGS.search(text)
        date = _DATE.search(text)
        items.append(
            FetchedItem(
                uid=int(uid.group(1)),
                size=int(size.group(1)) if size else None,
                flags=frozenset(flags.group(1).decode("ascii", "replace").split())
                if flags
                else None,
                internal_date=parse_internal_date(date.group(1).decode("ascii", "replace"))
                if date
                else None,
                body=body,
            )
        )
    return items


# -- writing arguments ------------------------------------------------------------------

_MONTHS: Final = (
    "Jan",
    "Feb",
    "Mar",
    "Apr",
    "May",
    "Jun",
    "Jul",
    "Aug",
    "Sep",
    "Oct",
    "Nov",
    "Dec",
)


def quote(text: str) -> str:
    """``text`` as an IMAP quoted string (callers refuse CR, LF and NUL before)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def encode_mailbox(name: str) -> str:
    """A folder name as a quoted IMAP argument, non-ASCII in modified UTF-7 (RFC 3501 5.1.3)."""
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in name):
        raise ValueError("a folder name must not contain control characters")
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            data = "".join(pending).encode("utf-16-be")
            out.append("&" + base64.b64encode(data).decode().rstrip("=").replace("/", ",") + "-")
            pending.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    flush()
    return quote("".join(out))


def format_internal_date(moment: datetime) -> str:
    """``moment`` (aware) as a quoted IMAP date-time: ``"02-Jan-2024 03:04:05 +0000"``."""
    if moment.tzinfo is None:
        raise ValueError("the internal date must carry a time zone")
    offset = moment.utcoffset() or timedelta(0)
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    hours, mins = divmod(abs(minutes), 60)
    return (
        f'"{moment.day:02d}-{_MONTHS[moment.month - 1]}-{moment.year:04d} '
        f'{moment:%H:%M:%S} {sign}{hours:02d}{mins:02d}"'
    )


def parse_internal_date(text: str) -> datetime | None:
    """An IMAP date-time (``" 2-Jan-2024 03:04:05 +0000"``) as an aware datetime, or None."""
    m = re.fullmatch(
        r"\s*(\d{1,2})-([A-Za-z]{3})-(\d{4}) (\d{2}):(\d{2}):(\d{2}) ([+-])(\d{2})(\d{2})", text
    )
    if m is None or m.group(2).title() not in _MONTHS:
        return None
    day, month, year = int(m.group(1)), _MONTHS.index(m.group(2).title()) + 1, int(m.group(3))
    offset = timedelta(hours=int(m.group(8)), minutes=int(m.group(9)))
    zone = timezone(-offset if m.group(7) == "-" else offset)
    try:
        moment = datetime(
            year, month, day, int(m.group(4)), int(m.group(5)), int(m.group(6)), tzinfo=zone
        )
    except ValueError:
        return None
    return moment.astimezone(UTC)
