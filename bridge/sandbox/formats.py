"""Wire formats: JSON with exact decimals, timestamps, media types, TIFF images.

Everything here is pure (bytes and values in, bytes and values out).
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal

# --- JSON ---------------------------------------------------------------------------


def dumps(value: object) -> str:
    """Serialise to JSON, writing :class:`~decimal.Decimal` verbatim (``1.00``, ``0.1500``).

    The standard encoder turns decimals into floats and loses the trailing zeros the
    live service sends; key order is kept as given.
    """
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, Mapping):
        items = (f"{json.dumps(str(k))}:{dumps(v)}" for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return "[" + ",".join(dumps(v) for v in value) + "]"
    return json.dumps(value)


def timestamp(epoch: float) -> str:
    """``YYYY-MM-DDTHH:MM:SS`` in UTC with no zone suffix, as the live service sends."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S")


# .NET's DateTime.MinValue: what an unset DateTime serialises to. Used for
# completionTime while a fax is in progress, because NET's DTO cannot hold null.
# The live value in that state is UNCONFIRMED (shared/interfax-api.md §13).
NOT_YET = "0001-01-01T00:00:00"


def parse_datetime(text: str) -> float:
    """Parse an ISO-8601 date or date-time (``Z``, offsets, a space for ``T``) to epoch.

    A value without a zone is taken as UTC, the service's only time zone.
    Raises ValueError for anything else.
    """
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


# --- Media types (shared/interfax-api.md §9, the table shipped with the .NET client) --
# Deliberately not imported from bridge.mediatypes: the sandbox is an independent reading
# of the reference, so that a mistake in the bridge's copy shows up as a test failure.

EXTENSION_TYPES: dict[str, str] = {
    "pdf": "application/pdf",
    "txt": "text/plain",
    "doc": "application/msword",
    "dot": "application/msword",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "xls": "application/vnd.ms-excel",
    "xlsx": "application/vnd.ms-excel",
    "ppt": "application/vnd.ms-powerpoint",
    "pptx": "application/vnd.ms-powerpoint",
    "html": "text/html",
    "htm": "text/html",
    "mht": "message/rfc822",
    "xml": "application/xml",
    "url": "application/internet-shortcut",
    "tif": "image/tiff",
    "tiff": "image/tiff",
    "gif": "image/gif",
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "bmp": "image/bmp",
    "pcx": "application/pcx",
    "ps": "application/postscript",
    "eps": "application/eps",
    "rtf": "application/rtf",
    "snp": "application/snapshot",
    "zip": "application/zip",
    "odt": "application/vnd.oasis.opendocument.text",
    "ods": "application/vnd.oasis.opendocument.spreadsheet",
    "odp": "application/vnd.oasis.opendocument.presentation",
    "odg": "application/vnd.oasis.opendocument.graphics",
    "odf": "application/vnd.oasis.opendocument.formula",
    "odm": "application/vnd.oasis.opendocument.textmaster",
}

# Sent by the clients' own type detection (libmagic, Tika, mime) for the same files.
_EXTRA_TYPES = {
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "image/tif",
    "image/x-ms-bmp",
}
SUPPORTED_TYPES = frozenset(EXTENSION_TYPES.values()) | _EXTRA_TYPES

_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


def base_type(content_type: str) -> str:
    """``Text/Plain; charset=UTF-8`` -> ``text/plain``."""
    return content_type.split(";", 1)[0].strip().lower()


def sniff(data: bytes) -> str | None:
    """The media type told by magic bytes, for the formats a fax machine meets."""
    if b"%PDF-" in data[:1024]:
        return "application/pdf"
    for magic, media_type in _MAGIC:
        if data.startswith(magic):
            return media_type
    return None


def type_for_name(name: str) -> str | None:
    """The media type of a file name's extension (case-insensitive), if supported."""
    _, dot, extension = name.rpartition(".")
    return EXTENSION_TYPES.get(extension.lower()) if dot else None


def media_type_list() -> list[dict[str, str]]:
    """The body of ``GET /outbound/help/mediatype``: PascalCase keys (NET DTO)."""
    return [{"MediaType": mime, "FileType": ext} for ext, mime in EXTENSION_TYPES.items()]


# --- Page counting ------------------------------------------------------------------

_PDF_PAGE = re.compile(rb"/Type\s*/Page(?![A-Za-z])")


def count_pages(data: bytes, media_type: str | None) -> int:
    """Best-effort page count: PDF page objects, TIFF directories, else one page."""
    if media_type == "application/pdf":
        return max(1, len(_PDF_PAGE.findall(data)))
    if media_type == "image/tiff":
        return max(1, tiff_page_count(data))
    return 1


def tiff_page_count(data: bytes) -> int:
    """The number of image directories in a TIFF (0 when it is not a valid TIFF)."""
    if data[:4] == b"II*\x00":
        order = "<"
    elif data[:4] == b"MM\x00*":
        order = ">"
    else:
        return 0
    (offset,) = struct.unpack(order + "I", data[4:8])
    seen: set[int] = set()
    while offset and offset not in seen and offset + 2 <= len(data):
        seen.add(offset)
        (entries,) = struct.unpack(order + "H", data[offset : offset + 2])
        next_at = offset + 2 + 12 * entries
        if next_at + 4 > len(data):
            break
        (offset,) = struct.unpack(order + "I", data[next_at : next_at + 4])
    return len(seen)


# --- TIFF writer --------------------------------------------------------------------

_WIDTH = 1728  # the standard fax line: 1728 pixels
# One white row (216 zero bytes) packed with PackBits: a run of 128, then one of 88.
_PACKED_ROW = bytes([0x81, 0x00, 0xA9, 0x00])
_SHORT, _LONG, _RATIONAL = 3, 4, 5


def blank_fax_tiff(pages: int, fine: bool = False) -> bytes:
    """A valid multi-page bilevel TIFF (``II*\\0``): one blank A4 fax page per page.

    Each page is one PackBits strip, 1728 pixels wide, at 204 x 98 dpi (standard)
    or 204 x 196 dpi (fine), like the images InterFAX returns.
    """
    y_dpi = 196 if fine else 98
    height = round(11.69 * y_dpi)
    strip = _PACKED_ROW * height
    count = max(1, pages)
    out = bytearray(b"II*\x00" + struct.pack("<I", 0))
    previous_link = 4
    for index in range(count):
        strip_at = len(out)
        out += strip
        if len(out) % 2:
            out += b"\x00"
        ifd_at = len(out)
        entries: list[tuple[int, int, int, bytes]] = [
            (254, _LONG, 1, struct.pack("<I", 2)),
            (256, _LONG, 1, struct.pack("<I", _WIDTH)),
            (257, _LONG, 1, struct.pack("<I", height)),
            (258, _SHORT, 1, struct.pack("<HH", 1, 0)),
            (259, _SHORT, 1, struct.pack("<HH", 32773, 0)),
            (262, _SHORT, 1, struct.pack("<HH", 0, 0)),
            (273, _LONG, 1, struct.pack("<I", strip_at)),
            (277, _SHORT, 1, struct.pack("<HH", 1, 0)),
            (278, _LONG, 1, struct.pack("<I", height)),
            (279, _LONG, 1, struct.pack("<I", len(strip))),
            (282, _RATIONAL, 1, b""),
            (283, _RATIONAL, 1, b""),
            (296, _SHORT, 1, struct.pack("<HH", 2, 0)),
            (297, _SHORT, 2, struct.pack("<HH", index, count)),
        ]
        values_at = ifd_at + 2 + 12 * len(entries) + 4
        rationals = {282: (204, 1), 283: (y_dpi, 1)}
        directory = bytearray(struct.pack("<H", len(entries)))
        extra = bytearray()
        for tag, kind, n, inline in entries:
            if kind == _RATIONAL:
                directory += struct.pack("<HHII", tag, kind, n, values_at + len(extra))
                extra += struct.pack("<II", *rationals[tag])
            else:
                directory += struct.pack("<HHI", tag, kind, n) + inline
        struct.pack_into("<I", out, previous_link, ifd_at)
        previous_link = ifd_at + len(directory)
        out += directory + struct.pack("<I", 0) + extra
    return bytes(out)
