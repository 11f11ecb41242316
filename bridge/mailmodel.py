"""Plain values produced by :mod:`bridge.mailparse` (no email package objects)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime


@dataclass(frozen=True, slots=True)
class ParseLimits:
    """Bounds on the work spent on one message (see :mod:`bridge.mailparse`)."""

    max_message_bytes: int = 25 * 1024 * 1024
    max_header_block_bytes: int = 256 * 1024
    max_header_chars: int = 8 * 1024
    max_header_parse_chars: int = 512 * 1024
    max_parts: int = 500
    max_depth: int = 32
    #: Base64 runs this long are decoded straight from the message (bridge.mailhollow).
    hollow_min_bytes: int = 64 * 1024

    def __post_init__(self) -> None:
        for item in fields(self):
            if getattr(self, item.name) < 1:
                raise ValueError(f"ParseLimits.{item.name} must be positive")
        if self.max_depth > 100:  # the parser and our walk recurse once per level
            raise ValueError("ParseLimits.max_depth must be at most 100")


@dataclass(frozen=True, slots=True)
class MailRefusal:
    """The message cannot be handled: ``smtp_code enhanced_code reason`` is the answer.

    ``reason`` is ASCII, one line, and never quotes the message; ``detail``
    names the exception the email package raised, for logs only.
    """

    reason: str
    smtp_code: int = 554
    enhanced_code: str = "5.6.0"
    detail: str = ""


@dataclass(frozen=True, slots=True)
class BodySegment:
    """One piece of body text, in message order.

    ``html`` keeps the original markup when the text was converted from HTML.
    ``forwarded`` marks the text of a forwarded ``message/rfc822``; it starts
    with a "Forwarded message" block naming its sender, date and subject.
    """

    text: str
    html: str | None = None
    forwarded: bool = False


@dataclass(frozen=True, slots=True)
class MailAttachment:
    """A non-body part: a candidate fax document.

    ``filename`` is decoded (RFC 2231 and encoded words) but untrusted: it may
    hold path parts or control characters. ``content_type`` is the declared
    type, lower case. ``part`` is the MIME part number ("2.1"), for messages.
    """

    filename: str | None
    content_type: str
    data: bytes = field(repr=False)
    content_id: str | None = None
    forwarded: bool = False
    part: str = "1"


@dataclass(frozen=True, slots=True)
class ParsedMail:
    """What fax-bridge needs from one email, as plain values.

    ``subject`` and ``sender_display`` are decoded and stripped of control
    characters. ``from_address`` and ``reply_to_address`` are set only when the
    header holds exactly one well-formed mailbox. ``attachments`` are in message
    order, without the inline images an HTML body references by ``cid:``.
    ``fax_headers`` holds every ``X-Fax-*`` header as (lower-case name, decoded
    value), unvalidated. ``encrypted`` is set for S/MIME or PGP encrypted content.
    ``from_values`` holds every raw From header value (unfolded, unparsed) for
    sender authorisation; ``automatic`` names the header that marks the message
    as automatic mail (``Auto-Submitted``, ``Precedence: bulk`` ...), if any.
    """

    subject: str
    message_id: str | None
    from_address: str | None
    sender_display: str
    reply_to_address: str | None
    date: datetime | None
    body: tuple[BodySegment, ...]
    attachments: tuple[MailAttachment, ...]
    fax_headers: tuple[tuple[str, str], ...] = ()
    encrypted: bool = False
    from_values: tuple[str, ...] = ()
    automatic: str | None = None

    @property
    def body_text(self) -> str:
        """All body text, forwarded messages included, as one string."""
        return "\n\n".join(seg.text.strip("\n") for seg in self.body if seg.text.strip())

    @property
    def body_html(self) -> str | None:
        """The original HTML when the whole body is one HTML part with no text form."""
        if len(self.body) == 1 and not self.body[0].forwarded:
            return self.body[0].html
        return None


@dataclass(frozen=True, slots=True)
class MailHeaders:
    """What the SMTP and IMAP intake decide on: the header block only.

    The body is parsed later, by the worker that builds the fax (a body it cannot use
    fails the job with a report to the authorised sender). Parsing only the headers keeps
    the SMTP transaction short and its memory near the message size.
    """

    message_id: str | None
    from_address: str | None
    reply_to_address: str | None
    from_values: tuple[str, ...]
    automatic: str | None


class Refused(Exception):
    """Internal: unwinds a parse that ends in a :class:`MailRefusal`."""

    def __init__(self, refusal: MailRefusal) -> None:
        super().__init__(refusal.reason)
        self.refusal = refusal


class HeaderUnparsable(Exception):
    """Internal: the email package could not parse header ``name``."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def refuse(reason: str, *, detail: str = "", code: int = 554, enhanced: str = "5.6.0") -> Refused:
    """Build the exception that ends a parse with a refusal."""
    return Refused(MailRefusal(reason, code, enhanced, detail))


_LABELS = {
    name.lower(): name
    for name in (
        "Content-Type",
        "Content-Disposition",
        "Content-Transfer-Encoding",
        "Content-ID",
        "MIME-Version",
        "Subject",
        "From",
        "Reply-To",
        "Date",
        "Message-ID",
    )
}


def header_label(name: str) -> str:
    """A header name fit for a refusal: ours, never the sender's bytes."""
    return _LABELS.get(name.lower(), "MIME")
