"""Walk a parsed MIME tree into body text and candidate documents (pure).

Rules, in message order:

* ``text/plain`` and ``text/html`` parts without a file name that are not
  ``Content-Disposition: attachment`` are body text; everything else is an
  attachment, including inline parts with a file name (Apple Mail's inline
  PDFs) and parts of other types without one.
* ``multipart/alternative``: the body comes from the first alternative holding
  plain text, else from the last one holding any body (HTML). Attachments come
  from every alternative, duplicates (same name and bytes) once: Apple Mail
  puts attachments inside the HTML alternative only.
* ``multipart/signed``: the signed content only (the signature is not a page).
  ``multipart/encrypted`` and ``application/pkcs7-mime`` mark the message
  encrypted; their content cannot be read, let alone faxed.
* ``message/rfc822`` and ``message/global`` (forwarded mail, also when attached
  as ``.eml``): its text becomes a body segment introduced by a "Forwarded
  message" block, and its attachments are attachments. Other ``message/*``
  types (delivery reports ...) are attachments of that type, which no fax
  supports, so they surface as unsupported rather than vanish.
* Inline images referenced by ``cid:`` from any HTML part are removed from the
  attachments by :meth:`StructureWalker.pages` (signature logos).
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from email.utils import collapse_rfc2231_value
from typing import TypeVar
from urllib.parse import unquote

from bridge import mailheaders
from bridge.mailmodel import BodySegment, HeaderUnparsable, MailAttachment, Refused, header_label
from bridge.mailmodel import refuse as _refuse
from bridge.mailtext import clean_body, html_to_text, unflow

_T = TypeVar("_T")
_BODY_TYPES = frozenset({"text/plain", "text/html"})
_ENCRYPTED_TYPES = frozenset({"application/pkcs7-mime", "application/x-pkcs7-mime"})
_FORWARDED_TYPES = frozenset({"message/rfc822", "message/global"})
_CID = re.compile(r"cid:([^\s\"'<>)\\]+)", re.IGNORECASE)


@dataclass
class Content:
    """Body segments and attachments of one subtree, in order."""

    segments: list[BodySegment] = field(default_factory=list)
    attachments: list[MailAttachment] = field(default_factory=list)

    @classmethod
    def join(cls, parts: list[Content]) -> Content:
        """Concatenate subtrees in order."""
        return cls(
            [seg for part in parts for seg in part.segments],
            [att for part in parts for att in part.attachments],
        )


def _where(path: str) -> str:
    return f"MIME part {path}" if path else "the message"


def strict(path: str, what: str, call: Callable[[], _T]) -> _T:
    """Call into the email package for something we cannot do without.

    Whatever it raises becomes a refusal naming ``what`` and the part.
    """
    try:
        return call()
    except Refused:
        raise
    except HeaderUnparsable as exc:
        label = header_label(exc.name)
        raise _refuse(
            f"malformed {label} header in {_where(path)}", detail=type(exc.__cause__).__name__
        ) from exc
    except Exception as exc:  # the email package raises anything on hostile input
        raise _refuse(f"malformed {what} in {_where(path)}", detail=type(exc).__name__) from exc


class StructureWalker:
    """One walk over one parsed message; collects ``cid:`` references on the way."""

    def __init__(self) -> None:
        self.cid_refs: set[str] = set()
        self.encrypted = False

    def pages(self, content: Content) -> tuple[MailAttachment, ...]:
        """The attachments of ``content`` that are not images referenced by ``cid:``."""
        return tuple(
            att
            for att in content.attachments
            if not (att.content_id and att.content_id.lower() in self.cid_refs)
        )

    def walk(self, part: Message, path: str, *, forwarded: bool) -> Content:
        """Body segments and attachments of ``part`` and everything below it."""
        ctype = strict(path, "Content-Type", part.get_content_type).lower()
        maintype = ctype.partition("/")[0]
        if ctype in _FORWARDED_TYPES:
            return self._forwarded(part, path)
        if maintype != "message" and part.is_multipart():
            return self._multipart(part, ctype, path, forwarded=forwarded)
        if maintype == "multipart":
            raise _refuse(f"{_where(path)} is multipart without a usable boundary")
        if ctype in _ENCRYPTED_TYPES:
            self.encrypted = True
            return Content()
        disposition = strict(path, "Content-Disposition", part.get_content_disposition)
        filename = strict(path, "file name", part.get_filename)
        if ctype in _BODY_TYPES and disposition != "attachment" and not filename:
            return Content([self._body_segment(part, ctype, path, forwarded=forwarded)])
        payload = strict(path, "content", lambda: part.get_payload(decode=True))
        attachment = MailAttachment(
            filename=filename,
            content_type=ctype,
            data=payload if isinstance(payload, bytes) else b"",
            content_id=mailheaders.content_id(part),
            forwarded=forwarded,
            part=path or "1",
        )
        return Content([], [attachment])

    def _multipart(self, part: Message, ctype: str, path: str, *, forwarded: bool) -> Content:
        subtype = ctype.partition("/")[2]
        if subtype == "encrypted":
            self.encrypted = True
            return Content()
        payload = strict(path, "content", part.get_payload)
        children = [child for child in payload if isinstance(child, Message)]
        if subtype == "signed":
            children = children[:1]
        results = [
            self.walk(child, f"{path}.{number}" if path else str(number), forwarded=forwarded)
            for number, child in enumerate(children, 1)
        ]
        if subtype == "alternative":
            return _alternative(results)
        return Content.join(results)

    def _forwarded(self, part: Message, path: str) -> Content:
        payload = strict(path, "forwarded message", part.get_payload)
        inner = payload[0] if isinstance(payload, list) and payload else None
        if not isinstance(inner, Message):
            return Content()
        content = self.walk(inner, path, forwarded=True)
        _, sender = mailheaders.mailbox(inner, "from")
        when = mailheaders.date(inner)
        lines = ["---------- Forwarded message ----------"]
        for label, value in (
            ("From", sender),
            ("Date", when.strftime("%Y-%m-%d %H:%M %z") if when else ""),
            ("Subject", mailheaders.subject(inner)),
        ):
            if value:
                lines.append(f"{label}: {value}")
        text = "\n\n".join(seg.text.strip("\n") for seg in content.segments if seg.text.strip())
        block = "\n".join(lines) + ("\n\n" + text if text else "")
        return Content([BodySegment(block, None, forwarded=True)], content.attachments)

    def _body_segment(
        self, part: Message, ctype: str, path: str, *, forwarded: bool
    ) -> BodySegment:
        payload = strict(path, "content", lambda: part.get_payload(decode=True))
        charset = mailheaders.lenient(part.get_content_charset)
        text = clean_body(_decode_text(payload if isinstance(payload, bytes) else b"", charset))
        if ctype == "text/html":
            self.cid_refs.update(unquote(ref).lower() for ref in _CID.findall(text))
            return BodySegment(html_to_text(text), text, forwarded)
        if _param(part, "format") == "flowed":
            text = unflow(text, delsp=_param(part, "delsp") == "yes")
        return BodySegment(text, None, forwarded)


def _param(part: Message, name: str) -> str:
    value = mailheaders.lenient(lambda: collapse_rfc2231_value(part.get_param(name, "")))
    return (value or "").strip().lower()


def _alternative(results: list[Content]) -> Content:
    def has_plain(content: Content) -> bool:
        return any(seg.html is None and seg.text.strip() for seg in content.segments)

    plain = [content for content in results if has_plain(content)]
    rich = [content for content in results if content.segments]
    chosen = plain[0] if plain else rich[-1] if rich else Content()
    seen: set[tuple[str | None, bytes]] = set()
    attachments: list[MailAttachment] = []
    for content in results:
        for att in content.attachments:
            if (att.filename, att.data) not in seen:
                seen.add((att.filename, att.data))
                attachments.append(att)
    return Content(list(chosen.segments), attachments)


_ASCII_NAMES = frozenset({"", "us-ascii", "ascii", "unknown-8bit", "x-unknown", "default"})


def _decode_text(data: bytes, charset: str | None) -> str:
    """Decode a text part; undeclared or bogus charsets fall back to UTF-8, then cp1252.

    ISO-8859-1 is read as cp1252, as browsers do: mail that says Latin-1
    usually means Windows' superset (curly quotes, euro sign).
    """
    name = (charset or "").strip().lower()
    if name in _ASCII_NAMES:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return data.decode("cp1252", "replace")
    try:
        info = codecs.lookup(name)
    except LookupError:
        return data.decode("utf-8", "replace")
    if not getattr(info, "_is_text_encoding", True):  # base64, rot13, zlib ...
        return data.decode("utf-8", "replace")
    try:
        return data.decode("cp1252" if info.name == "iso8859-1" else info.name, "replace")
    except (UnicodeError, ValueError):  # codecs such as idna support only strict errors
        return data.decode("utf-8", "replace")
