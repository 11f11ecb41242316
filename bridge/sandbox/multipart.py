"""A lenient multipart parser for the send-fax body (shared/interfax-api.md §8, §12.10).

Every official client frames its body differently, and the live service accepts
them all, so this parser accepts:

* ``multipart/mixed`` and ``multipart/form-data``, quoted or unquoted boundaries;
* parts with or without ``Content-Disposition``, ``name`` or ``filename``;
* parts with only a ``Content-Location`` header and no body;
* Node's framing: no CRLF between an empty part's header block and the next
  delimiter, an extra CRLF after binary bodies (kept as part of the body, as
  RFC 2046 says), and no CRLF after the closing ``--B--``;
* bare LF line endings.

A delimiter is recognised only at the start of a line and only when followed by
``--``, whitespace or the end of the body, so a boundary that is a prefix of
another string is not a delimiter. Part order is kept (it is the page order).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import unquote

_PARAM = re.compile(
    r""";\s*([A-Za-z0-9_*.-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)""",
)


class MultipartError(ValueError):
    """The body is not a multipart body this parser can make sense of."""


@dataclass(frozen=True)
class Part:
    """One body part: lower-cased header names, the raw body bytes."""

    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    @property
    def content_type(self) -> str | None:
        """The part's Content-Type header, if any."""
        return self.headers.get("content-type")

    @property
    def content_location(self) -> str | None:
        """The part's Content-Location header, stripped, if non-empty."""
        value = self.headers.get("content-location", "").strip()
        return value or None

    @property
    def filename(self) -> str | None:
        """The ``filename`` (or RFC 5987 ``filename*``) of its Content-Disposition."""
        disposition = self.headers.get("content-disposition")
        if disposition is None:
            return None
        params = header_params(disposition)
        if "filename*" in params:
            _, _, encoded = params["filename*"].partition("''")
            return unquote(encoded) or None
        return params.get("filename") or None


def header_params(value: str) -> dict[str, str]:
    """Parameters of a structured header: ``a/b; x="1"; Y=2`` -> ``{"x": "1", "y": "2"}``."""
    params: dict[str, str] = {}
    for match in _PARAM.finditer(value):
        name, raw = match.group(1).lower(), match.group(2).strip()
        if len(raw) >= 2 and raw[0] == raw[-1] == '"':
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        params.setdefault(name, raw)
    return params


def is_multipart(content_type: str | None) -> bool:
    """True for any ``multipart/*`` Content-Type."""
    return content_type is not None and content_type.strip().lower().startswith("multipart/")


def boundary_of(content_type: str) -> str:
    """The boundary parameter of a multipart Content-Type, quoted or not."""
    boundary = header_params(content_type).get("boundary", "")
    if not boundary:
        raise MultipartError("multipart Content-Type without a boundary")
    return boundary


def _delimiter_positions(body: bytes, delimiter: bytes) -> list[int]:
    """Offsets of delimiters that start a line and are followed by '--', space or EOL."""
    positions = []
    start = 0
    while (at := body.find(delimiter, start)) != -1:
        start = at + 1
        if at > 0 and body[at - 1 : at] != b"\n":
            continue
        after = body[at + len(delimiter) : at + len(delimiter) + 2]
        if after in (b"", b"--") or after[:1] in (b"\r", b"\n", b" ", b"\t"):
            positions.append(at)
    return positions


def _parse_headers(block: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    last: str | None = None
    for raw_line in re.split(rb"\r?\n", block):
        line = raw_line.decode("utf-8", "replace")
        if not line.strip():
            continue
        if line[0] in " \t" and last is not None:
            headers[last] = (headers[last] + " " + line.strip()).strip()
            continue
        name, colon, value = line.partition(":")
        if not colon:
            raise MultipartError(f"malformed part header line {line[:80]!r}")
        last = name.strip().lower()
        headers[last] = value.strip()
    return headers


def _split_part(raw: bytes) -> Part:
    # A part with no headers at all starts directly with its blank line.
    if raw.startswith(b"\r\n"):
        head, body = b"", raw[2:]
    elif raw.startswith(b"\n"):
        head, body = b"", raw[1:]
    else:
        ends = [(raw.find(sep), sep) for sep in (b"\r\n\r\n", b"\n\n")]
        found = [(at, sep) for at, sep in ends if at != -1]
        if found:
            at, sep = min(found)
            head, body = raw[:at], raw[at + len(sep) :]
        else:
            # Header lines with no blank line before the next delimiter.
            head, body = raw, b""
    # The line break before the next delimiter belongs to the delimiter.
    if body.endswith(b"\r\n"):
        body = body[:-2]
    elif body.endswith(b"\n"):
        body = body[:-1]
    return Part(headers=_parse_headers(head), body=body)


def parse_multipart(body: bytes, content_type: str) -> list[Part]:
    """Split a multipart body into its parts, in order.

    Raises MultipartError when there is no boundary or no delimiter in the body.
    """
    delimiter = b"--" + boundary_of(content_type).encode("latin-1")
    positions = _delimiter_positions(body, delimiter)
    if not positions:
        raise MultipartError("no multipart delimiter found in the body")
    parts: list[Part] = []
    for index, at in enumerate(positions):
        after = at + len(delimiter)
        if body[after : after + 2] == b"--":
            break  # the close delimiter; anything after it is the epilogue
        line_end = body.find(b"\n", after)
        if line_end == -1:
            break
        end = positions[index + 1] if index + 1 < len(positions) else len(body)
        parts.append(_split_part(body[line_end + 1 : end]))
    return parts
