"""A mail written straight to its bytes, for the hot path of received faxes (pure, no I/O).

:func:`bridge.mailbuild.build_mail` composes an ``EmailMessage`` whose every header is
parsed into an object as it is set, then serialised by the email package's generator:
about 2 ms of event-loop time for a fax mail, and the event loop is what every other
fax in flight waits for. :func:`mail_bytes_fast` writes the same mail (the same
structure, headers, bodies and files; ``tests/test_mailwire.py`` compares them) as
text: ``multipart/mixed`` of ``multipart/alternative`` and the attachments.

Safety does not rest on the inputs alone. Values are cleaned as ``build_mail`` cleans
them (:mod:`bridge.headersafe`), a header value holding any line break or control
character is refused, and the header oracle re-parses the top-level block of the bytes produced.
Text parts are ``us-ascii`` 7bit when they are printable ASCII in lines of at most 78
characters, else UTF-8 quoted-printable, and files base64, so the result is 7-bit clean
for any relay and no line exceeds 998 characters. Boundaries are ``=_`` and 128 random
bits: base64 and quoted-printable cannot produce ``=_``, and 7bit text cannot guess them.
"""

from __future__ import annotations

import base64
import functools
import re
import secrets
from collections.abc import Sequence
from datetime import datetime
from email.charset import QP, Charset
from email.header import Header
from email.utils import format_datetime, formataddr, quote
from urllib.parse import quote as percent_encode

from bridge.errors import PermanentError
from bridge.headersafe import clean_filename, clean_header_text
from bridge.mailbuild import (
    MAX_SUBJECT,
    Attachment,
    MailAddress,
    checked_address,
    safe_message_id,
    verify_header_block,
)

_UTF8_QP = Charset("utf-8")
_UTF8_QP.body_encoding = QP
_MAX_LINE = 78  # what a header line and 7bit text stay under, as the email package does
_PARAM_CHUNK = 56  # percent-encoded characters per RFC 2231 continuation line
_MEDIA_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*")
_COMPOSITE = ("multipart/", "message/")  # would need a structure of their own
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
_LINE_END = re.compile(r"\r\n?")
_PLAIN_TEXT = re.compile(r"[\t\n\x20-\x7e]*")  # what may go as 7bit text

_Part = tuple[list[tuple[str, str]], str]
"""A MIME part: its header fields and its body, both text with ``\\n`` line ends."""


def mail_bytes_fast(
    *,
    sender: MailAddress,
    to: Sequence[MailAddress],
    subject: str,
    text: str,
    date: datetime,
    message_id: str,
    html: str | None = None,
    cc: Sequence[MailAddress] = (),
    attachments: Sequence[Attachment] = (),
    auto_submitted: str | None = "auto-generated",
    linesep: str = "\r\n",
) -> bytes:
    """The bytes of the mail :func:`~bridge.mailbuild.build_mail` would build."""
    if not to:
        raise PermanentError("a mail needs at least one recipient")
    if safe_message_id(message_id) is None:
        raise PermanentError(f"malformed Message-ID {message_id!r}")
    fields = [("From", _addresses([sender])), ("To", _addresses(to))]
    if cc:
        fields.append(("Cc", _addresses(cc)))
    fields += [
        ("Subject", clean_header_text(subject, max_len=MAX_SUBJECT)),
        ("Date", format_datetime(date)),
        ("Message-ID", message_id),
    ]
    if auto_submitted is not None:
        fields.append(("Auto-Submitted", auto_submitted))
    fields.append(("MIME-Version", "1.0"))
    body = _text(text, "plain")
    if html is not None:
        body = _multipart("alternative", [body, _text(html, "html")])
    if attachments:
        body = _multipart("mixed", [body, *(_attachment(item) for item in attachments)])
    part_fields, content = body
    fields += part_fields
    wire = "\n".join([*(_field(name, value) for name, value in fields), "", content])
    data = (wire if linesep == "\n" else wire.replace("\n", linesep)).encode("ascii")
    verify_header_block([name for name, _ in fields], data)
    return data


def _field(name: str, value: str) -> str:
    """One header field, folded as the email package folds it when it is long or not ASCII."""
    if _CONTROL.search(value):
        # The folding below breaks lines wherever str.splitlines would (\v, \f, \x1c ...).
        raise PermanentError(f"refusing a line break or control character in the {name} header")
    if value.isascii() and len(name) + 2 + len(value) <= _MAX_LINE:
        return f"{name}: {value}"
    charset = None if value.isascii() else "utf-8"
    folded = Header(value, charset, header_name=name).encode(linesep="\n", maxlinelen=_MAX_LINE)
    return f"{name}: {folded}"


def _addresses(values: Sequence[MailAddress]) -> str:
    return ", ".join(_address(value) for value in values)


@functools.lru_cache(maxsize=1024)
def _address(value: MailAddress) -> str:
    """One address as header text; cached, as the same few (from the routes) recur."""
    address = checked_address(value)
    return formataddr((address.display_name, address.addr_spec), charset="utf-8")


def _text(content: str, subtype: str) -> _Part:
    content = _LINE_END.sub("\n", content)  # a lone CR too: relays refuse bare CRs
    if not content.endswith("\n"):
        content += "\n"
    lines = content.split("\n")  # as on the wire: a form feed does not end a line there
    if _PLAIN_TEXT.fullmatch(content) and max(map(len, lines)) <= _MAX_LINE:
        fields = [("Content-Type", f'text/{subtype}; charset="us-ascii"')]
        return [*fields, ("Content-Transfer-Encoding", "7bit")], content
    # Quoted-printable for long lines too: a mail line may not exceed 998 characters.
    encoded = _UTF8_QP.body_encode(content)
    assert encoded is not None  # a str in, a str out
    fields = [("Content-Type", f'text/{subtype}; charset="utf-8"')]
    return [*fields, ("Content-Transfer-Encoding", "quoted-printable")], encoded


def _multipart(subtype: str, parts: list[_Part]) -> _Part:
    boundary = "=_" + secrets.token_hex(16)
    chunks = []
    for part_fields, content in parts:
        head = "\n".join(_field(name, value) for name, value in part_fields)
        chunks.append(f"--{boundary}\n{head}\n\n{content}")
    # Each body ends with its line break; the one before a delimiter belongs to it.
    body = "\n".join(chunks) + f"\n--{boundary}--\n"
    return [("Content-Type", f'multipart/{subtype}; boundary="{boundary}"')], body


def _attachment(item: Attachment) -> _Part:
    media_type = item.content_type.lower()
    if not _MEDIA_TYPE.fullmatch(media_type) or media_type.startswith(_COMPOSITE):
        media_type = "application/octet-stream"  # a file, whatever its sender called it
    name = clean_filename(item.filename, fallback="attachment.bin")
    disposition = (
        f'attachment; filename="{quote(name)}"' if name.isascii() else _rfc2231_disposition(name)
    )
    fields = [
        ("Content-Type", media_type),
        ("Content-Transfer-Encoding", "base64"),
        ("Content-Disposition", disposition),
    ]
    return fields, base64.encodebytes(item.data).decode("ascii")


def _rfc2231_disposition(name: str) -> str:
    """``attachment`` with ``name`` in RFC 2231 continuations, short enough to fold.

    One ``filename*=`` parameter of a hundred percent-encoded characters would make a
    header line longer than mail allows; continuations fold between them.
    """
    chunks: list[str] = []
    encoded = percent_encode(name, safe="", encoding="utf-8")
    for item in re.findall(r"%[0-9A-F]{2}|[^%]", encoded):
        if not chunks or len(chunks[-1]) + len(item) > _PARAM_CHUNK:
            chunks.append("")
        chunks[-1] += item
    charset = "utf-8''"  # the first continuation names the charset (and no language)
    params = [f"filename*{i}*={charset if i == 0 else ''}{c}" for i, c in enumerate(chunks)]
    return "; ".join(["attachment", *params])
