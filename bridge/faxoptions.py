"""Per-message fax options: subject tags, ``X-Fax-*`` headers and defaults (pure).

Subject tags follow InterFAX's own email syntax. A tag is a whitespace
separated token, case-insensitive; recognised tags are removed from the
visible subject, anything else stays:

==================  ==========================================================
``/rs`` ``/rf``     standard or fine resolution
``/d DATE TIME``    postpone, ``/d 2024-06-01 14:30`` in the configured time
                    zone; must lie in the future and at most 30 days ahead
``/h TEXT``         page header (InterFAX ``pageHeader``, e.g. ``{From} {To}``).
                    TEXT runs to the next recognised tag or the end of the
                    subject; ``/h "TEXT"`` ends at the closing quote and may
                    then contain anything, tags included
``/hn``             no page header (InterFAX's ``N``)
``/b`` ``/bn``      body as cover page; ignore the body
``/bb``             body as a document of its own
==================  ==========================================================

Programs set the same through headers, validated strictly (the values are
untrusted): ``X-Fax-Resolution`` (standard|fine), ``X-Fax-Page-Size``
(a4|letter|legal|b4), ``X-Fax-Orientation`` (portrait|landscape),
``X-Fax-CSID`` (1 to 20 printable ASCII characters), ``X-Fax-Postpone`` (ISO
8601 such as ``2024-06-01T14:30`` or ``2024-06-01 14:30+02:00``; without an
offset, the configured time zone), ``X-Fax-Page-Header`` (printable text, at
most 200 characters, ``N`` for none). Other ``X-Fax-*`` headers are ignored.

Precedence for each option: subject tag, then header, then ``FaxDefaults``.
Two different values at the same level (``/rs`` with ``/rf``, or one header
twice) are an error rather than a guess.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import TypeVar

from bridge.errors import PermanentError
from bridge.faxmodels import FitToPage, Orientation, PageSize, Rendering, Resolution

MAX_POSTPONE = timedelta(days=30)
MAX_PAGE_HEADER_CHARS = 200
_CSID = re.compile(r"[ -~]{1,20}")
_ISO_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2})?(Z|[+-][0-9]{2}:?[0-9]{2})?"
)
_E = TypeVar("_E", bound=enum.Enum)
_T = TypeVar("_T")


class BodyMode(enum.StrEnum):
    """What happens to the mail body (``outbound.body``)."""

    AUTO = "auto"
    COVER = "cover"
    DOCUMENT = "document"
    IGNORE = "ignore"


class InvalidFaxOption(PermanentError):
    """A subject tag or ``X-Fax-*`` header is malformed; the message says which."""


def check_csid(value: str) -> str:
    """Return ``value`` if it is a valid CSID (1-20 printable ASCII), else raise."""
    if not _CSID.fullmatch(value):
        raise InvalidFaxOption("a CSID is 1 to 20 printable ASCII characters")
    return value


def check_page_header(value: str) -> str:
    """Return ``value`` if it is a valid page header text, else raise."""
    if not value or len(value) > MAX_PAGE_HEADER_CHARS or not value.isprintable():
        raise InvalidFaxOption(
            f"a page header is 1 to {MAX_PAGE_HEADER_CHARS} printable characters"
        )
    return value


@dataclass(frozen=True, slots=True)
class FaxDefaults:
    """Defaults for every per-message option (``outbound.defaults`` and ``outbound.body``).

    ``None`` leaves the option to the InterFAX account's setting. ``fit_to_page``,
    ``rendering`` and ``retries`` have no per-message form; they pass through.
    """

    resolution: Resolution | None = None
    page_size: PageSize | None = None
    orientation: Orientation | None = None
    csid: str | None = None
    page_header: str | None = None
    body: BodyMode = BodyMode.AUTO
    fit_to_page: FitToPage | None = None
    rendering: Rendering | None = None
    retries: int | None = None

    def __post_init__(self) -> None:
        try:
            if self.csid is not None:
                check_csid(self.csid)
            if self.page_header is not None:
                check_page_header(self.page_header)
        except InvalidFaxOption as exc:
            raise ValueError(str(exc)) from exc


@dataclass(frozen=True, slots=True)
class FaxOptions:
    """The options that apply to one message, after precedence."""

    resolution: Resolution | None = None
    page_size: PageSize | None = None
    orientation: Orientation | None = None
    csid: str | None = None
    page_header: str | None = None
    postpone: datetime | None = None
    body: BodyMode = BodyMode.AUTO


@dataclass(frozen=True, slots=True)
class SubjectTags:
    """The options a subject carries, and the subject without them."""

    visible_subject: str
    resolution: Resolution | None = None
    postpone: datetime | None = None
    page_header: str | None = None
    body: BodyMode | None = None


class _Once:
    """Collects values per option; a second, different value is a conflict."""

    def __init__(self) -> None:
        self.values: dict[str, tuple[object, str]] = {}

    def set(self, option: str, value: object, source: str) -> None:
        previous = self.values.get(option)
        if previous is not None and previous[0] != value:
            raise InvalidFaxOption(f"{previous[1]} and {source} contradict each other")
        self.values[option] = (value, source)

    def get(self, option: str, kind: type[_T]) -> _T | None:
        value = self.values.get(option, (None, ""))[0]
        return value if isinstance(value, kind) else None


_SIMPLE_TAGS: dict[str, tuple[str, object]] = {
    "/rs": ("resolution", Resolution.STANDARD),
    "/rf": ("resolution", Resolution.FINE),
    "/hn": ("page_header", "N"),
    "/b": ("body", BodyMode.COVER),
    "/bn": ("body", BodyMode.IGNORE),
    "/bb": ("body", BodyMode.DOCUMENT),
}
_TAGS = frozenset({*_SIMPLE_TAGS, "/d", "/h"})


def parse_subject(subject: str, *, timezone: tzinfo) -> SubjectTags:
    """Split ``subject`` into its visible text and its option tags."""
    tokens = [(m.start(), m.end(), m.group()) for m in re.finditer(r"\S+", subject)]
    found = _Once()
    visible: list[str] = []
    index = 0
    while index < len(tokens):
        _, end, token = tokens[index]
        tag = token.lower()
        index += 1
        if tag in _SIMPLE_TAGS:
            found.set(*_SIMPLE_TAGS[tag], source=tag)
        elif tag == "/d":
            words = [word for _, _, word in tokens[index : index + 2]]
            found.set("postpone", _subject_time(words, timezone), source="/d")
            index += 2
        elif tag == "/h":
            text, resume = _header_text(subject, end, tokens, index)
            found.set("page_header", check_page_header(text), source="/h")
            index = resume
        else:
            visible.append(token)
    return SubjectTags(
        visible_subject=" ".join(visible),
        resolution=found.get("resolution", Resolution),
        postpone=found.get("postpone", datetime),
        page_header=found.get("page_header", str),
        body=found.get("body", BodyMode),
    )


def _subject_time(words: list[str], timezone: tzinfo) -> datetime:
    text = " ".join(words)
    if len(words) != 2 or not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{1,2}:[0-9]{2}", text):
        raise InvalidFaxOption("/d needs a date and time such as /d 2024-06-01 14:30")
    try:
        return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=timezone)
    except ValueError:
        raise InvalidFaxOption(f"/d {text} is not a valid date and time") from None


def _header_text(
    subject: str, end: int, tokens: list[tuple[int, int, str]], index: int
) -> tuple[str, int]:
    """The text of ``/h`` and the index of the first token after it."""
    rest = subject[end:].lstrip()
    if rest.startswith('"'):
        opening = subject.index('"', end)
        closing = subject.find('"', opening + 1)
        if closing < 0:
            raise InvalidFaxOption('/h "... is missing its closing quote')
        while index < len(tokens) and tokens[index][0] <= closing:
            index += 1
        return subject[opening + 1 : closing], index
    words: list[str] = []
    while index < len(tokens) and tokens[index][2].lower() not in _TAGS:
        words.append(tokens[index][2])
        index += 1
    if not words:
        raise InvalidFaxOption("/h needs a header text (use /hn for no header)")
    return " ".join(words), index


@dataclass(frozen=True, slots=True)
class HeaderOptions:
    """The options ``X-Fax-*`` headers carry, validated."""

    resolution: Resolution | None = None
    page_size: PageSize | None = None
    orientation: Orientation | None = None
    csid: str | None = None
    page_header: str | None = None
    postpone: datetime | None = None


def parse_fax_headers(headers: Sequence[tuple[str, str]], *, timezone: tzinfo) -> HeaderOptions:
    """Validate ``X-Fax-*`` headers given as (lower-case name, decoded value)."""
    found = _Once()
    for name, value in headers:
        option = _HEADER_OPTIONS.get(name)
        if option is None:
            continue
        label = "-".join(part.capitalize() for part in name.split("-")).replace("Csid", "CSID")
        try:
            parsed = _parse_header_value(option, value.strip(), timezone)
        except InvalidFaxOption as exc:
            raise InvalidFaxOption(f"header {label}: {exc}") from None
        found.set(option, parsed, source=f"header {label}")
    return HeaderOptions(
        resolution=found.get("resolution", Resolution),
        page_size=found.get("page_size", PageSize),
        orientation=found.get("orientation", Orientation),
        csid=found.get("csid", str),
        page_header=found.get("page_header", str),
        postpone=found.get("postpone", datetime),
    )


_HEADER_OPTIONS = {
    "x-fax-resolution": "resolution",
    "x-fax-page-size": "page_size",
    "x-fax-orientation": "orientation",
    "x-fax-csid": "csid",
    "x-fax-postpone": "postpone",
    "x-fax-page-header": "page_header",
}


def _parse_header_value(option: str, value: str, timezone: tzinfo) -> object:
    if option == "resolution":
        return _member(Resolution, value)
    if option == "page_size":
        return _member(PageSize, value)
    if option == "orientation":
        return _member(Orientation, value)
    if option == "csid":
        return check_csid(value)
    if option == "page_header":
        return check_page_header(value)
    if not _ISO_TIME.fullmatch(value):
        raise InvalidFaxOption("expected a time such as 2024-06-01T14:30 or 2024-06-01 14:30+02:00")
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidFaxOption(f"{value} is not a valid date and time") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=timezone)


def _member(kind: type[_E], value: str) -> _E:
    for member in kind:
        if member.value == value.lower():
            return member
    choices = "|".join(str(member.value) for member in kind)
    raise InvalidFaxOption(f"expected one of {choices}")


def _first(*values: _T | None) -> _T | None:
    return next((value for value in values if value is not None), None)


def resolve_options(
    subject: str,
    fax_headers: Sequence[tuple[str, str]],
    *,
    defaults: FaxDefaults,
    timezone: tzinfo,
    now: datetime,
) -> tuple[str, FaxOptions]:
    """(visible subject, options) for one message; raises :class:`InvalidFaxOption`."""
    tags = parse_subject(subject, timezone=timezone)
    headers = parse_fax_headers(fax_headers, timezone=timezone)
    postpone = _first(tags.postpone, headers.postpone)
    if postpone is not None:
        shown = postpone.astimezone(timezone).strftime("%Y-%m-%d %H:%M %Z")
        if postpone <= now:
            raise InvalidFaxOption(f"the postpone time {shown} is in the past")
        if postpone > now + MAX_POSTPONE:
            raise InvalidFaxOption(f"the postpone time {shown} is more than 30 days ahead")
    options = FaxOptions(
        resolution=_first(tags.resolution, headers.resolution, defaults.resolution),
        page_size=_first(headers.page_size, defaults.page_size),
        orientation=_first(headers.orientation, defaults.orientation),
        csid=_first(headers.csid, defaults.csid),
        page_header=_first(tags.page_header, headers.page_header, defaults.page_header),
        postpone=postpone,
        body=tags.body or defaults.body,
    )
    return tags.visible_subject, options
