"""Understanding a send-fax request: number, options and documents (§5.1, §12.10).

Nothing here changes the state: documents referenced by URL are looked up and
checked, and the caller commits the fax and consumes them in one step, so that a
refused request changes nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.datastructures import Headers

from bridge.sandbox import errors
from bridge.sandbox.formats import (
    SUPPORTED_TYPES,
    base_type,
    count_pages,
    sniff,
    type_for_name,
)
from bridge.sandbox.model import MAX_DOCUMENT_BYTES, FaxDocument, FaxOptions, UploadDocument
from bridge.sandbox.multipart import MultipartError, is_multipart, parse_multipart
from bridge.sandbox.query import Query
from bridge.sandbox.state import SandboxState

# Room for multipart framing around 20 MB of documents.
SEND_BODY_LIMIT = MAX_DOCUMENT_BYTES + 1024 * 1024
MAX_POSTPONE_SECONDS = 30 * 24 * 3600
_FAX_NUMBER = re.compile(r"^\+?[0-9][0-9 ().-]*$")
_DOCUMENT_PATH = re.compile(r"^/outbound/documents/([0-9A-Fa-f]{32})/?$")
_OCTET_STREAM = {"application/octet-stream", "binary/octet-stream"}

PAGE_SIZES = {"a4": "A4", "letter": "Letter", "legal": "Legal", "b4": "B4"}
ORIENTATIONS = {"portrait": "Portrait", "landscape": "Landscape"}
RESOLUTIONS = {"standard": "Standard", "fine": "Fine"}
FIT_TO_PAGE = {"scale": "Scale", "noscale": "NoScale"}
# Reported as Standard (black and white) or Fine (greyscale), as recorded. Which
# request spellings the live service accepts beyond grayscale/bw is UNCONFIRMED (§13).
RENDERINGS = {
    "greyscale": "Fine",
    "grayscale": "Fine",
    "fine": "Fine",
    "bw": "Standard",
    "blackandwhite": "Standard",
    "standard": "Standard",
}


@dataclass(frozen=True)
class Documents:
    """The documents of a send, in page order, plus the uploads they consume."""

    documents: list[FaxDocument]
    uploads: list[UploadDocument]
    renderable: bool


def fax_number(query: Query, required: bool = True) -> str | None:
    """``faxNumber``: ``+`` and 5 to 20 digits with optional separators, else 400 -112."""
    number = query.fax_number("faxNumber")
    if number is None or not number:
        if required:
            raise errors.invalid_fax_number("faxNumber is required")
        return None
    digits = sum(ch.isdigit() for ch in number)
    if not _FAX_NUMBER.match(number) or not 5 <= digits <= 20:
        raise errors.invalid_fax_number(f"{number!r} is not a valid fax number")
    return number


def _limited_text(query: Query, name: str, limit: int) -> str | None:
    value = query.text(name)
    if value is not None and len(value) > limit:
        raise errors.invalid_parameter(f"{name} may hold at most {limit} characters")
    return value


def options(query: Query, now: float) -> FaxOptions:
    """Every optional send argument, validated and in the form the record reports."""
    defaults = FaxOptions()
    reply = query.text("replyAddress")
    if reply and ("@" not in reply or any(ch in reply for ch in "\r\n")):
        raise errors.invalid_parameter(f"replyAddress {reply!r} is not an email address")
    postpone = query.datetime("postponeTime")
    if postpone is not None and postpone - now > MAX_POSTPONE_SECONDS:
        raise errors.postpone_too_far(f"postponeTime must be at most 30 days after {now:.0f}")
    return FaxOptions(
        contact=query.text("contact"),
        # UNCONFIRMED (§13): the live record's `subject` may or may not echo it.
        reference=_limited_text(query, "reference", 60),
        reply_email=reply or "",
        csid=_limited_text(query, "csid", 20) or defaults.csid,
        page_header=query.text("pageHeader") or defaults.page_header,
        attempts_to_perform=query.integer(
            "retriesToPerform", defaults.attempts_to_perform, minimum=0, maximum=99
        ),
        page_size=query.enum("pageSize", PAGE_SIZES, defaults.page_size),
        resolution=query.enum("resolution", RESOLUTIONS, defaults.resolution),
        page_orientation=query.enum("pageOrientation", ORIENTATIONS, defaults.page_orientation),
        rendering=query.enum("rendering", RENDERINGS, defaults.rendering),
        fit_to_page=query.enum("fitToPage", FIT_TO_PAGE, defaults.fit_to_page),
        postpone_time=postpone if postpone is not None and postpone > now else None,
    )


def _inline(data: bytes, declared: str | None, filename: str | None, where: str) -> FaxDocument:
    media = base_type(declared) if declared else None
    if media is None or media in _OCTET_STREAM:
        media = sniff(data) or (type_for_name(filename) if filename else None)
        if media is None:
            raise errors.unsupported_type(
                f"Cannot tell the document type of {where}: send a supported Content-Type"
            )
    elif media not in SUPPORTED_TYPES:
        raise errors.unsupported_type(f"{where} has the unsupported type {declared!r}")
    return FaxDocument("inline", media, data, None, filename, count_pages(data, media))


def _referenced(
    state: SandboxState, url: str, where: str
) -> tuple[FaxDocument, UploadDocument | None]:
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        raise errors.no_documents(f"{where}: Content-Location {url!r} is not a URL") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise errors.no_documents(f"{where}: Content-Location {url!r} is not an http(s) URL")
    match = _DOCUMENT_PATH.match(parts.path)
    if match is None:
        # Any other public URL: the live service fetches it; the sandbox accepts it as is.
        return FaxDocument("external", None, b"", url, None, 1), None
    upload = state.get_document(match.group(1))
    if upload.status != "Ready":
        raise errors.no_documents(
            f"{where}: document {upload.id} is {upload.status} "
            f"({len(upload.data)} of {upload.file_size} bytes uploaded)"
        )
    data = bytes(upload.data)
    media = type_for_name(upload.file_name)
    document = FaxDocument("document", media, data, url, upload.file_name, count_pages(data, media))
    return document, upload


def _renderable(document: FaxDocument) -> bool:
    """False when the bytes are plainly not what the type claims (e.g. a 'PDF' that is not)."""
    sniffed = sniff(document.data)
    checkable = document.content_type in {"application/pdf", "image/tiff", "image/png"}
    return document.kind == "external" or not checkable or sniffed == document.content_type


def documents(state: SandboxState, headers: Headers, body: bytes) -> Documents:
    """Every document of the request, in order; 400 -123 when there is none."""
    found: list[tuple[FaxDocument, UploadDocument | None]] = []
    content_type = headers.get("content-type")
    if is_multipart(content_type):
        assert content_type is not None
        try:
            parts = parse_multipart(body, content_type)
        except MultipartError as exc:
            raise errors.no_documents(f"Malformed multipart body: {exc}") from None
        if not parts:
            raise errors.no_documents("The multipart body has no parts")
        for number, part in enumerate(parts, start=1):
            where = f"part {number}"
            if part.body:
                found.append((_inline(part.body, part.content_type, part.filename, where), None))
            elif part.content_location:
                found.append(_referenced(state, part.content_location, where))
            else:
                raise errors.no_documents(f"{where} has neither a body nor a Content-Location")
    elif body:
        found.append((_inline(body, content_type, None, "the request body"), None))
    elif headers.get("content-location", "").strip():
        found.append(_referenced(state, headers["content-location"].strip(), "the request"))
    else:
        raise errors.no_documents(
            "The request has no body, no multipart parts and no Content-Location header"
        )
    total = sum(len(document.data) for document, _ in found)
    if total > MAX_DOCUMENT_BYTES:
        raise errors.too_large(f"The documents total {total} bytes, over {MAX_DOCUMENT_BYTES}")
    docs = [document for document, _ in found]
    return Documents(
        documents=docs,
        uploads=[upload for _, upload in found if upload is not None],
        renderable=all(_renderable(document) for document in docs),
    )
