"""From one parsed email to the fax request for InterFAX (pure; templates aside, no I/O).

Documents, in this order:

1. A cover page (``cover.html``, rendered from ``cover.html.j2``) when the body
   mode says so. In ``auto`` mode (the default) that is when the message has
   attachments to fax *and* a body with real text: more than quoted history,
   reply attributions, Outlook "Original Message" blocks and a ``-- ``
   signature (:func:`bridge.mailtext.has_real_text`); text of a forwarded
   message always counts. The cover shows the whole body as sent.
2. The body as a document of its own (``message.txt``, or ``message.html`` when
   the body is HTML only) in ``document`` mode, and in ``auto`` mode when the
   message has no attachments to fax. An empty body gives no document.
3. The attachments, in message order, attachments of forwarded messages
   included. Their type follows shared/interfax-api.md §9 by content type and
   file name; a generic type (Outlook's ``application/octet-stream``) defers to
   the name. A 0-byte attachment has no page to send: it is always skipped and
   listed in ``skipped_attachments``. An unsupported attachment fails the
   message, naming the files and the supported types, unless
   ``unsupported_attachments`` is ``skip`` *and* at least one supported
   attachment remains (a lone cover page is not worth a fax).

File names are decoded, reduced to their last path component, stripped of
control, format (bidi) and Windows-reserved characters, shortened to 100
characters with the extension kept, given the extension InterFAX will type
them by, and made unique (``a.pdf``, ``a-2.pdf``), case-insensitively.
Text documents are UTF-8 with a byte-order mark, which renderers honour over
any charset the markup declares.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo

from bridge.faxmodels import FaxDocument, SendOptions
from bridge.faxoptions import BodyMode, FaxDefaults, FaxOptions, InvalidFaxOption, resolve_options
from bridge.headersafe import clean_filename
from bridge.mailmodel import MailAttachment, ParsedMail
from bridge.mailtext import has_real_text
from bridge.mediatypes import (
    extension_of,
    mime_for_extension,
    supported_extension,
    supported_extensions_text,
)
from bridge.render import TemplateRenderer

COVER_FILENAME = "cover.html"
MAX_FILENAME_CHARS = 100
_BOM = "\ufeff"


class UnsupportedAttachments(enum.StrEnum):
    """What an unsupported attachment does (``outbound.unsupported_attachments``)."""

    FAIL = "fail"
    SKIP = "skip"


class FailureKind(enum.StrEnum):
    """Why a message cannot become a fax (for metrics; the reason is for people)."""

    INVALID_OPTION = "invalid_option"
    UNSUPPORTED_ATTACHMENT = "unsupported_attachment"
    NOTHING_TO_FAX = "nothing_to_fax"
    ENCRYPTED = "encrypted"
    TOO_LARGE = "too_large"


@dataclass(frozen=True, slots=True)
class FaxBuildSettings:
    """Everything :func:`build_fax_request` needs besides the message."""

    renderer: TemplateRenderer
    timezone: tzinfo = UTC
    defaults: FaxDefaults = field(default_factory=FaxDefaults)
    unsupported_attachments: UnsupportedAttachments = UnsupportedAttachments.FAIL
    cover_template: str = "cover.html.j2"
    max_total_bytes: int = 20_000_000  # InterFAX: at most 20 MB of documents per fax
    max_contact_chars: int = 100


@dataclass(frozen=True, slots=True)
class SkippedAttachment:
    """An attachment left out of the fax, and why, for the report to the sender."""

    filename: str
    reason: str


@dataclass(frozen=True, slots=True)
class FaxRequest:
    """One fax to submit. ``options`` lacks ``reference``: the worker adds it."""

    documents: tuple[FaxDocument, ...]
    options: SendOptions
    visible_subject: str
    skipped_attachments: tuple[SkippedAttachment, ...] = ()
    cover_page: bool = False
    body_document: bool = False


@dataclass(frozen=True, slots=True)
class FaxBuildFailure:
    """The message cannot become a fax; ``reason`` is written for its sender."""

    kind: FailureKind
    reason: str
    subject: str


def build_fax_request(
    mail: ParsedMail,
    *,
    destination_display: str,
    settings: FaxBuildSettings,
    now: datetime,
) -> FaxRequest | FaxBuildFailure:
    """Turn ``mail`` into the documents and options of one fax.

    ``now`` must be timezone-aware; it bounds ``/d`` postponing and dates the
    cover page of a message without a usable Date header. Raises only for
    programming errors and broken templates (:class:`~bridge.errors.ConfigError`).
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if mail.encrypted:
        return FaxBuildFailure(
            FailureKind.ENCRYPTED,
            "The message is encrypted (S/MIME or PGP), so its content cannot be faxed."
            " Send it again without encryption.",
            mail.subject,
        )
    try:
        subject, options = resolve_options(
            mail.subject,
            mail.fax_headers,
            defaults=settings.defaults,
            timezone=settings.timezone,
            now=now,
        )
    except InvalidFaxOption as exc:
        return FaxBuildFailure(
            FailureKind.INVALID_OPTION, f"Invalid fax option: {exc}.", mail.subject
        )
    picked = _pick_attachments(mail.attachments, settings.unsupported_attachments, subject)
    if isinstance(picked, FaxBuildFailure):
        return picked
    candidates, skipped = picked
    cover, body_doc = _body_plan(mail, options.body, has_attachments=bool(candidates))
    names = _Names()
    if cover:
        names.take(COVER_FILENAME)
    documents: list[FaxDocument] = []
    if body_doc:
        documents.append(_body_document(mail, names))
    documents.extend(
        FaxDocument(names.take(name), mime_for_extension(ext), data)
        for name, ext, data in candidates
    )
    if cover:
        page = _cover_page(mail, subject, destination_display, documents, settings, now)
        documents.insert(0, page)
    if not documents:
        return FaxBuildFailure(FailureKind.NOTHING_TO_FAX, _nothing_reason(skipped), subject)
    total = sum(doc.size for doc in documents)
    if total > settings.max_total_bytes:
        return FaxBuildFailure(
            FailureKind.TOO_LARGE,
            f"The documents add up to {total / 1_000_000:.1f} MB; a fax takes at most"
            f" {settings.max_total_bytes / 1_000_000:.0f} MB.",
            subject,
        )
    return FaxRequest(
        documents=tuple(documents),
        options=_send_options(options, subject, settings),
        visible_subject=subject,
        skipped_attachments=tuple(skipped),
        cover_page=cover,
        body_document=body_doc,
    )


def _body_plan(mail: ParsedMail, mode: BodyMode, *, has_attachments: bool) -> tuple[bool, bool]:
    """(cover page?, body document?) for ``mode``."""
    has_body = bool(mail.body_text.strip())
    if mode is BodyMode.COVER:
        return True, False
    if mode is BodyMode.DOCUMENT:
        return False, has_body
    if mode is BodyMode.IGNORE:
        return False, False
    if not has_attachments:
        return False, has_body
    forwarded = any(seg.forwarded and seg.text.strip() for seg in mail.body)
    own_text = "\n\n".join(seg.text for seg in mail.body if not seg.forwarded)
    return forwarded or has_real_text(own_text), False


def _pick_attachments(
    attachments: tuple[MailAttachment, ...], policy: UnsupportedAttachments, subject: str
) -> tuple[list[tuple[str, str, bytes]], list[SkippedAttachment]] | FaxBuildFailure:
    """([(proposed name, extension, bytes)], skipped) or the failure for unsupported files."""
    candidates: list[tuple[str, str, bytes]] = []
    skipped: list[SkippedAttachment] = []
    unsupported: list[str] = []
    for number, att in enumerate(attachments, 1):
        fallback = f"attachment-{number}"
        name = clean_filename(att.filename, fallback=fallback, max_len=MAX_FILENAME_CHARS)
        base = "" if name == fallback else name  # nothing usable in the mail's own name
        ext = supported_extension(att.content_type, base or None)
        label = base or f"part {att.part}"
        if ext is None:
            unsupported.append(
                f'"{label}" ({att.content_type})' if base else f"{label} ({att.content_type})"
            )
            skipped.append(SkippedAttachment(label, "unsupported file type"))
        elif not att.data:
            skipped.append(SkippedAttachment(label, "empty file"))
        else:
            candidates.append((_with_extension(name, ext), ext, att.data))
    if unsupported and (policy is UnsupportedAttachments.FAIL or not candidates):
        return FaxBuildFailure(
            FailureKind.UNSUPPORTED_ATTACHMENT,
            f"{'This attachment' if len(unsupported) == 1 else 'These attachments'} cannot be"
            f" faxed: {', '.join(unsupported)}."
            f" Supported file types: {supported_extensions_text()}.",
            subject,
        )
    return candidates, skipped


def _nothing_reason(skipped: list[SkippedAttachment]) -> str:
    reason = "There is nothing to fax: the message has no attachments and no body text."
    if skipped:
        reason += " Left out: " + ", ".join(f'"{s.filename}" ({s.reason})' for s in skipped) + "."
    return reason


def _body_document(mail: ParsedMail, names: _Names) -> FaxDocument:
    html = mail.body_html
    if html is not None:
        return FaxDocument(names.take("message.html"), "text/html", (_BOM + html).encode())
    return FaxDocument(names.take("message.txt"), "text/plain", (_BOM + mail.body_text).encode())


def _cover_page(
    mail: ParsedMail,
    subject: str,
    destination_display: str,
    documents: list[FaxDocument],
    settings: FaxBuildSettings,
    now: datetime,
) -> FaxDocument:
    written = (mail.date or now).astimezone(settings.timezone)
    markup = settings.renderer.render(
        settings.cover_template,
        sender=mail.sender_display or mail.from_address or "",
        recipient=destination_display,
        subject=subject,
        date=written.strftime("%Y-%m-%d %H:%M %Z"),
        body=mail.body_text,
        documents=[doc.filename for doc in documents],
    )
    return FaxDocument(COVER_FILENAME, "text/html", (_BOM + markup).encode())


def _send_options(options: FaxOptions, subject: str, settings: FaxBuildSettings) -> SendOptions:
    contact = subject
    if len(contact) > settings.max_contact_chars:
        contact = contact[: settings.max_contact_chars - 1].rstrip() + "…"
    defaults = settings.defaults
    return SendOptions(
        contact=contact or None,
        postpone_time=options.postpone,
        retries_to_perform=defaults.retries,
        csid=options.csid,
        page_header=options.page_header,
        page_size=options.page_size,
        fit_to_page=defaults.fit_to_page,
        page_orientation=options.orientation,
        resolution=options.resolution,
        rendering=defaults.rendering,
    )


# ---------------------------------------------------------------- file names


def _with_extension(name: str, ext: str) -> str:
    """``name`` ending in ``.ext`` (its own spelling kept when it already does)."""
    if extension_of(name) == ext:
        return name
    stem = name[: MAX_FILENAME_CHARS - len(ext) - 1].rstrip(" .")
    return f"{stem}.{ext}"


class _Names:
    """Hands out document names, unique case-insensitively."""

    def __init__(self) -> None:
        self._taken: set[str] = set()

    def take(self, name: str) -> str:
        stem, dot, ext = name.rpartition(".") if extension_of(name) else (name, "", "")
        candidate, number = name, 1
        while candidate.lower() in self._taken:
            number += 1
            candidate = f"{stem}-{number}{dot}{ext}"
        self._taken.add(candidate.lower())
        return candidate
