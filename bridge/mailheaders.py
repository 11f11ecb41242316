"""Lenient readers for the headers fax-bridge shows but can do without (pure).

Each reader degrades instead of raising: an unparsable header falls back to
its raw text (cleaned for display) or to ``None``. Message-ID, Content-ID and
Date are read raw, never through the structured parser, which trips over
shapes real servers send (Exchange's ``<[...@microsoft.com]>``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from email.errors import InvalidHeaderDefect
from email.message import Message
from email.utils import parsedate_to_datetime
from functools import partial
from typing import TypeVar

from bridge.mailtext import clean_line, unsurrogate

_T = TypeVar("_T")
_FOLD = re.compile(r"\r?\n(?=[ \t])")


def lenient(call: Callable[[], _T]) -> _T | None:
    """Call into the email package for a value we can do without (``None`` on failure)."""
    try:
        return call()
    except Exception:  # the email package raises anything on hostile input
        return None


def raw_headers(part: Message) -> tuple[tuple[str, str], ...]:
    """Every header of ``part`` as (name, raw value unfolded), without any parsing."""
    return tuple((name, unsurrogate(_FOLD.sub("", str(value)))) for name, value in part.raw_items())


def raw_values(part: Message, name: str) -> tuple[str, ...]:
    """Every raw value of header ``name``, unfolded, in order."""
    key = name.lower()
    return tuple(value for header, value in raw_headers(part) if header.lower() == key)


def raw_header(part: Message, name: str) -> str | None:
    """The first raw value of header ``name``, unfolded, without any parsing."""
    values = raw_values(part, name)
    return values[0] if values else None


def subject(part: Message) -> str:
    """The decoded subject on one line, or ``""``."""
    parsed = lenient(lambda: part.get("subject"))
    return clean_line(str(parsed) if parsed is not None else raw_header(part, "subject") or "")


_ADDR_SPEC = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*"
)


def mailbox(part: Message, name: str) -> tuple[str | None, str]:
    """(address, text to show) for an address header.

    The address is set only when the header holds exactly one mailbox, parsed
    without an invalid-header defect (which rules out the ambiguous
    ``alice@ex.org <bob@ex.com>`` of CVE-2023-27043), as a plain ASCII
    dot-atom ``local@domain``.
    """
    header = lenient(lambda: part.get(name))
    if header is None:
        return None, clean_line(raw_header(part, name) or "")
    shown = clean_line(str(header))
    addresses = lenient(lambda: tuple(getattr(header, "addresses", ()))) or ()
    defects = lenient(lambda: tuple(getattr(header, "defects", ()))) or ()
    if len(addresses) != 1 or any(isinstance(d, InvalidHeaderDefect) for d in defects):
        return None, shown
    address = lenient(lambda: str(addresses[0].addr_spec)) or ""
    if len(address) > 254 or not _ADDR_SPEC.fullmatch(address):
        return None, shown
    display_name = clean_line(lenient(lambda: str(addresses[0].display_name)) or "")
    return address, f"{display_name} <{address}>" if display_name else address


_MSG_ID = re.compile(r"<[!-;=?-~]{1,995}>")


def message_id(part: Message) -> str | None:
    """The Message-ID as ``<...>`` (printable ASCII, no spaces), or ``None``."""
    value = "".join((raw_header(part, "message-id") or "").split())
    return value if _MSG_ID.fullmatch(value) else None


def content_id(part: Message) -> str | None:
    """The Content-ID without its angle brackets, or ``None``."""
    value = "".join((raw_header(part, "content-id") or "").split()).strip("<>")
    return value or None


def date(part: Message) -> datetime | None:
    """The Date header as an aware datetime (``-0000`` read as UTC), or ``None``."""
    raw = raw_header(part, "date")
    if raw is None or len(raw) > 200:
        return None
    parsed = lenient(lambda: parsedate_to_datetime(raw))
    if parsed is None:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def fax_headers(part: Message) -> tuple[tuple[str, str], ...]:
    """Every ``X-Fax-*`` header: (lower-case name, decoded value), unvalidated.

    Folding whitespace becomes one space; anything else (a newline hidden in an
    encoded word, say) stays, for the option validator to refuse.
    """
    found: list[tuple[str, str]] = []
    for name, raw in part.raw_items():
        if not name.lower().startswith("x-fax-"):
            continue
        value = lenient(partial(_decoded, part, name, str(raw)))
        if value is None:
            value = _FOLD.sub("", str(raw))
        found.append((name.lower(), re.sub(r"[ \t]+", " ", unsurrogate(value)).strip()))
    return tuple(found)


def _decoded(part: Message, name: str, raw: str) -> str:
    return str(part.policy.header_fetch_parse(name, raw))
