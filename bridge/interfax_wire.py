"""InterFAX request and response framing, as pure functions (no I/O, no httpx).

Everything here is bytes-in, values-out so it can be tested without a server:
query strings (§1: lowerCamelCase names, every value percent-encoded so ``+``
travels as ``%2B``), the send-fax bodies (§5.1), chunk ranges (§5.17), the
``Location`` header (§1), ``Retry-After`` and InterFAX's error body (§2).
"""

from __future__ import annotations

import enum
import json
import secrets
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from email.utils import parsedate_to_datetime
from urllib.parse import quote, urlsplit

from bridge.faxmodels import DocumentRef, FaxDocument, SendOptions

#: The documents API accepts chunks of at most 1 MB (§5.17, §10).
MAX_CHUNK_SIZE = 1024 * 1024

QueryValue = str | int | bool | datetime | enum.Enum | Sequence[int] | None


class WireError(ValueError):
    """A response InterFAX should never send (bad JSON, a relative Location, ...)."""


def format_datetime(value: datetime) -> str:
    """Format a datetime the way .NET sends it (§1): ``yyyy-MM-ddTHH:mm:ssZ`` in UTC."""
    if value.tzinfo is None:
        raise ValueError("naive datetime: give InterFAX an aware datetime (the zone matters)")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _format_value(value: str | int | bool | datetime | enum.Enum | Sequence[int]) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, enum.Enum):
        # §1: InterFAX matches enums case-insensitively; .NET's lowercase is proven live.
        return str(value.value).lower()
    if isinstance(value, datetime):
        return format_datetime(value)
    if isinstance(value, int | str):
        return str(value)
    return ",".join(str(int(item)) for item in value)


def encode_query(params: Mapping[str, QueryValue]) -> str:
    """Encode query parameters; ``None`` values are left out, all values percent-encoded."""
    pairs = [
        f"{quote(name, safe='')}={quote(_format_value(value), safe='')}"
        for name, value in params.items()
        if value is not None
    ]
    return "&".join(pairs)


def send_params(fax_number: str, options: SendOptions) -> dict[str, QueryValue]:
    """The query parameters of ``POST /outbound/faxes`` (§5.1) for one destination."""
    return {
        "faxNumber": fax_number,
        "contact": options.contact,
        "postponeTime": options.postpone_time,
        "retriesToPerform": options.retries_to_perform,
        "csid": options.csid,
        "pageHeader": options.page_header,
        "reference": options.reference,
        "replyAddress": options.reply_address,
        "pageSize": options.page_size,
        "fitToPage": options.fit_to_page,
        "pageOrientation": options.page_orientation,
        "resolution": options.resolution,
        "rendering": options.rendering,
    }


def check_header_value(value: str, what: str) -> str:
    """Refuse values that would break out of an HTTP or MIME header line."""
    if any(ch in value for ch in "\r\n\0") or not value.isascii():
        raise ValueError(f"{what} must be a single line of ASCII: {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class RequestBody:
    """A send-fax body: its bytes and the request headers that describe it."""

    content: bytes
    headers: Mapping[str, str]


def validate_documents(documents: Sequence[FaxDocument | DocumentRef]) -> None:
    """Check a fax's documents can be framed (see :func:`send_body`) without copying data."""
    if not documents:
        raise ValueError("a fax needs at least one document")
    for doc in documents:
        if isinstance(doc, DocumentRef):
            check_header_value(doc.uri, "document URI")
        else:
            check_header_value(doc.content_type, "content type")


def send_body(
    documents: Sequence[FaxDocument | DocumentRef], boundary: str | None = None
) -> RequestBody:
    """Build the body of ``POST /outbound/faxes`` in one of the three shapes of §5.1.

    One inline document is the raw body with its Content-Type; one reference is
    an empty body with a ``Content-Location`` header; several documents become a
    ``multipart/mixed`` body whose parts keep the given order (page order).
    """
    if not documents:
        raise ValueError("a fax needs at least one document")
    if len(documents) == 1:
        (doc,) = documents
        if isinstance(doc, DocumentRef):
            location = check_header_value(doc.uri, "document URI")
            return RequestBody(b"", {"Content-Location": location})
        return RequestBody(
            doc.data, {"Content-Type": check_header_value(doc.content_type, "content type")}
        )
    return multipart_body(documents, boundary)


def multipart_body(
    documents: Sequence[FaxDocument | DocumentRef], boundary: str | None = None
) -> RequestBody:
    """Frame documents as ``multipart/mixed`` (RFC 2046): one part per document.

    Inline parts carry only ``Content-Type``; reference parts carry only
    ``Content-Location`` and an empty body: the framing Ruby and Node use (§8).
    """
    heads = []
    for doc in documents:
        if isinstance(doc, DocumentRef):
            heads.append(f"Content-Location: {check_header_value(doc.uri, 'document URI')}")
        else:
            heads.append(f"Content-Type: {check_header_value(doc.content_type, 'content type')}")
    while True:
        token = boundary or f"faxbridge-{secrets.token_hex(16)}"
        delimiter = b"--" + token.encode("ascii")
        # A boundary must never occur inside a part; a random one practically never does.
        if not any(isinstance(d, FaxDocument) and delimiter in d.data for d in documents):
            break
        if boundary is not None:
            raise ValueError("the given boundary occurs inside a document")
    pieces: list[bytes] = []
    for doc, head in zip(documents, heads, strict=True):
        pieces += [delimiter, b"\r\n", head.encode("ascii"), b"\r\n\r\n"]
        if isinstance(doc, FaxDocument):
            pieces.append(doc.data)
        pieces.append(b"\r\n")
    pieces += [delimiter, b"--\r\n"]
    return RequestBody(b"".join(pieces), {"Content-Type": f"multipart/mixed; boundary={token}"})


def chunk_ranges(size: int, chunk_size: int) -> Iterator[tuple[int, int]]:
    """Yield ``(start, end)`` slices covering ``size`` bytes; ``end`` is exclusive."""
    if not 0 < chunk_size <= MAX_CHUNK_SIZE:
        raise ValueError(f"chunk_size must be between 1 and {MAX_CHUNK_SIZE} bytes")
    for start in range(0, size, chunk_size):
        yield start, min(start + chunk_size, size)


def range_header(start: int, end: int) -> str:
    """The ``Range`` header of a chunk ``[start, end)``: InterFAX's end is inclusive (§5.17)."""
    return f"bytes={start}-{end - 1}"


def location_id(location: str | None) -> str:
    """The id at the end of an absolute ``Location`` (§1); anything else is a WireError."""
    if not location:
        raise WireError("201 Created without a Location header")
    parts = urlsplit(location)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise WireError(f"Location is not an absolute http(s) URL: {location!r}")
    tail = parts.path.rstrip("/").rsplit("/", 1)[-1]
    if not tail:
        raise WireError(f"Location has no id in its path: {location!r}")
    return tail


def fax_id_from_location(location: str | None) -> int:
    """The numeric fax id at the end of an absolute ``Location``."""
    tail = location_id(location)
    if not tail.isdigit():
        raise WireError(f"Location does not end in a numeric fax id: {location!r}")
    return int(tail)


def next_cursor(page_size: int, last_id: int | None, page_ids: Sequence[int]) -> int | None:
    """The ``lastId`` of the next inbound page (§5.10), or ``None`` after a short page.

    Inbound lists are always newest first, so the cursor is the smallest id seen.
    A server that ignored the cursor would page forever: that is a WireError.
    """
    if len(page_ids) < page_size or not page_ids:
        return None
    cursor = min(page_ids)
    if last_id is not None and cursor >= last_id:
        raise WireError(f"the list ignored lastId={last_id}: its page went down to {cursor} only")
    return cursor


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date)."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def parse_json(body: bytes) -> object:
    """Decode a JSON success body, whatever its Content-Type; empty means ``None``.

    Numbers with a fraction become :class:`Decimal` so money keeps its digits.
    """
    if not body.strip():
        return None
    try:
        return json.loads(body, parse_float=Decimal)
    except (ValueError, UnicodeDecodeError) as exc:
        raise WireError(f"response body is not JSON: {_excerpt(body)!r}") from exc


@dataclass(frozen=True, slots=True)
class ErrorBody:
    """InterFAX's error object (§2), or what we could salvage from a foreign body."""

    code: int | None = None
    message: str | None = None
    more_info: str | None = None


def _excerpt(body: bytes, limit: int = 200) -> str:
    text = body[:limit].decode("utf-8", errors="replace")
    return " ".join(text.split())


def parse_error_body(body: bytes) -> ErrorBody:
    """Read ``{code, message, moreInfo}`` from an error response; tolerate anything."""
    try:
        raw = json.loads(body) if body.strip() else None
    except (ValueError, UnicodeDecodeError):
        raw = None
    if isinstance(raw, dict):
        code = raw.get("code")
        message = raw.get("message")
        more = raw.get("moreInfo")
        return ErrorBody(
            code=code if isinstance(code, int) and not isinstance(code, bool) else None,
            message=message if isinstance(message, str) else None,
            more_info=more if isinstance(more, str) else None,
        )
    excerpt = _excerpt(body)
    return ErrorBody(message=excerpt or None)
