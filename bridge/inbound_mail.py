"""The email for a received fax, and the admin's notices about faxes: pure, no I/O.

Everything a remote fax machine chose (caller id, CSID) is untrusted. It is cleaned here,
once, into :class:`FaxFacts` (:func:`~bridge.headersafe.clean_phone`,
:func:`~bridge.headersafe.clean_csid`, which also break encoded-word openers) before any
subject, template or file name sees it. The mail writers refuse control characters in
header values and re-parse the header block as a last oracle
(:func:`~bridge.mailbuild.verify_header_block`; CVE-2024-6923).

Templates (overridable in ``templates_dir``): ``inbound.txt.j2`` and ``inbound.html.j2``
for the fax mail (a route's ``template: NAME`` uses ``NAME.txt.j2`` and ``NAME.html.j2``
instead), ``inbound-admin.txt.j2`` for notices to ``mail.admin``. Their context is
:func:`template_context` plus ``attachments``, ``notes`` and ``notify_only``.

The Message-ID of a fax mail depends only on the InterFAX message id and the recipient, so
a mail re-sent after a crash is recognisably the same one.
"""

from __future__ import annotations

import functools
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from email.message import EmailMessage
from typing import Any

from bridge import fax_status
from bridge.headersafe import clean_csid, clean_filename, clean_phone
from bridge.imaging import ImageError, is_pdf, is_tiff, pdf_pages, tiff_to_pdf
from bridge.jobs import DeliveryChannel, InboundFax
from bridge.mailbuild import (
    Attachment,
    MailAddress,
    build_mail,
    deterministic_message_id,
)
from bridge.mailwire import mail_bytes_fast
from bridge.numbers import display_number
from bridge.render import TemplateRenderer
from bridge.routing import ImageFormat, Presentation, normalise_number

__all__ = [
    "FaxFacts",
    "FaxImages",
    "InboundMailSettings",
    "attachment_filename",
    "build_admin_notice",
    "facts_of",
    "fax_mail_bytes",
    "fax_message_id",
    "prepare_images",
    "subject_of",
    "template_names",
]

PDF_TYPE = "application/pdf"
TIFF_TYPE = "image/tiff"
ADMIN_TEMPLATE = "inbound-admin.txt.j2"
_MIME = re.compile(r"[a-z0-9][a-z0-9.+-]{0,63}/[a-z0-9][a-z0-9.+-]{0,63}", re.ASCII)


@dataclass(frozen=True, slots=True)
class InboundMailSettings:
    """Who fax mails come from and how they are dated and named."""

    sender: MailAddress
    timezone: tzinfo = UTC
    message_id_domain: str = "fax-bridge.invalid"
    filename_template: str = "fax-{received:%Y%m%d-%H%M%S}-{from}.pdf"
    default_country: str | None = None


@dataclass(frozen=True, slots=True)
class FaxFacts:
    """A received fax as mails show it: every text here is already cleaned."""

    message_id: int
    number: str  # the receiving number for people: "+1 212-555-0100"
    number_e164: str  # E.164, or the cleaned text when it is not a valid number
    caller_id: str  # "" when unknown
    caller_e164: str | None
    csid: str  # "" when unknown
    pages: int
    received: datetime  # in the configured time zone
    message_status: int
    recording_duration: int | None
    redelivery: int = 0  # how often an operator asked to deliver it again

    @property
    def sender(self) -> str:
        """Who sent it, as well as we know: caller id, else CSID."""
        return self.caller_id or self.csid or "an unknown sender"

    @property
    def status_text(self) -> str | None:
        """Why the reception was not clean, or None when it was."""
        if self.message_status == 0:
            return None
        if self.message_status < 0:
            return (
                f"InterFAX still reported the reception as in progress "
                f"(status {self.message_status}); pages may be missing"
            )
        return fax_status.describe(self.message_status).replace("transmission", "reception")


def _display(e164: str | None, fallback: str) -> str:
    return display_number(e164) if e164 is not None else fallback


def _caller_text(caller_id: str | None) -> str:
    # What is left of a garbled caller id ("-8 0 - 3") would mislead more than "unknown".
    text = clean_phone(caller_id)
    return text if sum(ch.isdigit() for ch in text) >= 3 else ""


def facts_of(fax: InboundFax, *, timezone: tzinfo, default_country: str | None) -> FaxFacts:
    """Clean the ledger's view of a fax for mails and file names."""
    number_e164 = normalise_number(fax.phone_number, default_country)
    caller_e164 = normalise_number(fax.caller_id, default_country)
    duration = fax.meta.get("recording_duration")
    return FaxFacts(
        message_id=fax.message_id,
        number=_display(number_e164, clean_phone(fax.phone_number) or "an unknown number"),
        number_e164=number_e164 or clean_phone(fax.phone_number),
        caller_id=_display(caller_e164, _caller_text(fax.caller_id)),
        caller_e164=caller_e164,
        csid=clean_csid(fax.remote_csid),
        pages=max(0, fax.pages),
        received=datetime.fromtimestamp(fax.receive_time, UTC).astimezone(timezone),
        message_status=fax.message_status,
        recording_duration=duration if isinstance(duration, int) else None,
        redelivery=int(fax.meta.get("redelivery", 0)),
    )


def subject_of(facts: FaxFacts) -> str:
    """``Fax from <caller id or CSID> to <number> (<pages> pages)``, flagged when not clean."""
    pages = f"{facts.pages} page" + ("" if facts.pages == 1 else "s")
    flag = ""
    if facts.message_status > 0:
        flag = "[incomplete] "
    elif facts.message_status < 0:
        flag = "[in progress] "
    return f"{flag}Fax from {facts.sender} to {facts.number} ({pages})"


@functools.lru_cache(maxsize=64)
def _fields_of(template: str) -> frozenset[str]:
    """The replacement fields ``inbound.filename`` uses (parsed once per template)."""
    return frozenset(f for _, f, _, _ in string.Formatter().parse(template) if f is not None)


def attachment_filename(template: str, facts: FaxFacts, extension: str) -> str:
    """The attachment's name from ``inbound.filename``, with ``extension`` and made safe."""
    fields: dict[str, Any] = {
        "received": facts.received,
        "from": facts.caller_e164 or facts.csid or facts.caller_id or "unknown",
        "to": facts.number_e164,
        "id": facts.message_id,
        "pages": facts.pages,
        "csid": facts.csid or "unknown",
    }
    try:
        name = template.format(**fields) if _fields_of(template) <= fields.keys() else ""
    except (ValueError, TypeError, LookupError, AttributeError):
        name = ""  # the configuration checked it; a surprise still must not lose the fax
    stem = name
    for suffix in (".pdf", ".tiff", ".tif"):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
    fallback = f"fax-{facts.message_id}.{extension}"
    return clean_filename(f"{stem}.{extension}" if stem else fallback, fallback=fallback)


@dataclass(frozen=True, slots=True)
class FaxImages:
    """What gets attached for one route, and what the reader must be told about it."""

    attachments: tuple[Attachment, ...]
    notes: tuple[str, ...] = ()


def _mime(content_type: str) -> str:
    mime = content_type.split(";", 1)[0].strip().lower()
    return mime if _MIME.fullmatch(mime) else "application/octet-stream"


def prepare_images(
    data: bytes, content_type: str, fmt: ImageFormat, facts: FaxFacts, filename_template: str
) -> FaxImages:
    """Choose and convert the attachments (CPU-bound: call it in a worker thread).

    ``pdf``: a PDF as it came, a TIFF converted losslessly; ``tiff``: the TIFF as it came
    (a PDF from InterFAX stays a PDF, there is nothing better); ``both``: the PDF and the
    original TIFF. When conversion fails the original is attached with a note: a fax is
    never lost to a conversion problem.
    """

    def named(kind: str, payload: bytes) -> Attachment:
        ext, mime = ("pdf", PDF_TYPE) if kind == "pdf" else ("tif", TIFF_TYPE)
        return Attachment(attachment_filename(filename_template, facts, ext), mime, payload)

    notes: list[str] = []
    pdf: bytes | None = None
    tiff: bytes | None = None
    if is_pdf(data):
        pdf = data
    elif is_tiff(data):
        tiff = data
        if fmt is not ImageFormat.TIFF:
            try:
                pdf = tiff_to_pdf(data)
            except ImageError as exc:
                notes.append(
                    f"The fax could not be converted to PDF ({exc}); "
                    "the original TIFF image is attached instead."
                )
    else:
        ext = "pdf" if _mime(content_type) == PDF_TYPE else "tiff"
        name = attachment_filename(filename_template, facts, ext)
        notes.append(
            "The fax image is in a format fax-bridge does not know; "
            "it is attached exactly as InterFAX sent it."
        )
        return FaxImages((Attachment(name, _mime(content_type), data),), tuple(notes))
    chosen: list[Attachment] = []
    if pdf is not None and fmt is not ImageFormat.TIFF:
        chosen.append(named("pdf", pdf))
    if tiff is not None and (fmt is not ImageFormat.PDF or pdf is None):
        chosen.append(named("tiff", tiff))
    if not chosen and pdf is not None:  # format tiff, but InterFAX gave a PDF
        chosen.append(named("pdf", pdf))
    notes.extend(_page_notes(pdf, facts.pages))
    return FaxImages(tuple(chosen), tuple(notes))


def _page_notes(pdf: bytes | None, expected: int) -> list[str]:
    if pdf is None or expected <= 0:
        return []
    try:
        found = pdf_pages(pdf)
    except ImageError as exc:
        return [f"The attached PDF could not be checked ({exc})."]
    if found != expected:
        return [f"InterFAX reported {expected} pages, but the attached PDF has {found}."]
    return []


def template_names(template: str | None) -> tuple[str, str]:
    """The text and HTML templates of a route's ``template`` (None: the default)."""
    base = template or "inbound"
    return f"{base}.txt.j2", f"{base}.html.j2"


def template_context(facts: FaxFacts) -> dict[str, Any]:
    """What every inbound template can use (all text already cleaned)."""
    return {
        "message_id": facts.message_id,
        "number": facts.number,
        "caller_id": facts.caller_id,
        "csid": facts.csid,
        "sender": facts.sender,
        "pages": facts.pages,
        "received": facts.received.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "recording_duration": facts.recording_duration,
        "message_status": facts.message_status,
        "status_text": facts.status_text,
    }


def fax_message_id(message_id: int, recipient: str, domain: str, redelivery: int = 0) -> str:
    """The stable Message-ID of the mail of fax ``message_id`` to ``recipient``.

    A redelivery an operator asked for gets a new one: mailboxes that deduplicate on
    Message-ID would hide it otherwise. A repeat after a crash keeps the old one.
    """
    if redelivery:
        parts = ("inbound", str(message_id), recipient, f"redelivery-{redelivery}")
        return deterministic_message_id(*parts, domain=domain)
    return deterministic_message_id("inbound", str(message_id), recipient, domain=domain)


def _addresses(values: Sequence[str]) -> list[MailAddress]:
    return [MailAddress(value) for value in values]


def fax_mail_bytes(
    facts: FaxFacts,
    *,
    recipient: str,
    channel: DeliveryChannel,
    presentation: Presentation,
    images: FaxImages | None,
    settings: InboundMailSettings,
    renderer: TemplateRenderer,
    now: datetime,
    extra_notes: Sequence[str] = (),
) -> tuple[str, bytes]:
    """The mail of one fax for one recipient: its Message-ID and its bytes for ``channel``.

    ``images`` None sends a notice without the fax. To and Cc show the route's
    addresses; the envelope (or the Maildir) decides who actually receives this copy.
    A route without ``to`` (a Maildir) shows the recipient itself when it is an
    address, else our own address. Written by :func:`bridge.mailwire.mail_bytes_fast`
    and checked by the header oracle; a Maildir file gets LF line ends, SMTP and an
    IMAP APPEND get CRLF.
    """
    attachments = images.attachments if images is not None else ()
    notes = [*(images.notes if images is not None else ()), *extra_notes]
    context = {
        **template_context(facts),
        "attachments": [a.filename for a in attachments],
        "notify_only": not attachments,
        "notes": notes,
    }
    text_name, html_name = template_names(presentation.template)
    fallback = recipient if channel is DeliveryChannel.SMTP else settings.sender.addr_spec
    linesep = "\n" if channel is DeliveryChannel.MAILDIR else "\r\n"
    message_id = fax_message_id(
        facts.message_id, recipient, settings.message_id_domain, facts.redelivery
    )
    data = mail_bytes_fast(
        sender=settings.sender,
        to=_addresses(presentation.to or (fallback,)),
        cc=_addresses(presentation.cc),
        subject=subject_of(facts),
        text=renderer.render(text_name, **context),
        html=renderer.render(html_name, **context),
        date=now,
        message_id=message_id,
        attachments=attachments,
        linesep=linesep,
    )
    return message_id, data


def build_admin_notice(
    facts: FaxFacts,
    *,
    admin: str,
    problem: str,
    details: Mapping[str, str],
    settings: InboundMailSettings,
    renderer: TemplateRenderer,
    now: datetime,
) -> EmailMessage:
    """A notice to ``mail.admin`` about a fax: ``problem`` is ``unrouted`` or ``rejected``.

    Its Message-ID depends on the fax, the problem and ``details`` only, so a notice
    repeated after a crash is recognisably the same one.
    """
    title = {
        "unrouted": f"No route for a fax to {facts.number}; it stays unread at InterFAX",
        "rejected": f"A fax to {facts.number} could not be delivered",
    }.get(problem, f"A fax to {facts.number} needs attention")
    keys = [f"{k}={v}" for k, v in sorted(details.items())]
    return build_mail(
        sender=settings.sender,
        to=[MailAddress(admin)],
        subject=f"fax-bridge: {title}",
        text=renderer.render(
            ADMIN_TEMPLATE, problem=problem, details=dict(details), **template_context(facts)
        ),
        date=now,
        message_id=deterministic_message_id(
            "inbound-admin",
            problem,
            str(facts.message_id),
            *keys,
            domain=settings.message_id_domain,
        ),
    )
