"""Building the mail we send (reports, received faxes, admin notes): pure, no I/O.

Every value that came from outside (a subject, a CSID, a caller id, a file name, a
Message-ID we reply to) passes through :mod:`bridge.headersafe` or a strict pattern before
it goes near a header: the interpreter on these machines has CVE-2024-6923, so the
defence must be ours. As a last oracle, :func:`build_mail` re-parses what it built and
refuses to return a message whose header names are not exactly the ones it set.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email import policy as email_policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import format_datetime

from bridge.errors import PermanentError
from bridge.headersafe import clean_filename, clean_header_text

# A Message-ID we are willing to echo back in In-Reply-To/References: one msg-id, printable
# ASCII without spaces or angle brackets inside. Anything else is dropped, not repaired.
_MSG_ID = re.compile(r"<[!-;=?-~]{1,250}@[!-;=?-~]{1,250}>", re.ASCII)
#: The longest subject we write (characters, after cleaning).
MAX_SUBJECT = 250


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file attached to an outgoing mail."""

    filename: str
    content_type: str
    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class MailAddress:
    """A checked address with an optional display name."""

    addr_spec: str
    display_name: str = ""

    @property
    def domain(self) -> str:
        """The part after the ``@`` (our Message-IDs are made under it)."""
        return self.addr_spec.rpartition("@")[2]


def safe_message_id(value: str | None) -> str | None:
    """Return ``value`` if it is one well-formed msg-id (``<x@y>``), else ``None``."""
    if value is None:
        return None
    candidate = value.strip()
    return candidate if _MSG_ID.fullmatch(candidate) else None


def deterministic_message_id(*parts: str, domain: str) -> str:
    """A Message-ID derived only from ``parts``: the same inputs give the same id.

    Used so a message re-sent after a crash is recognisably the same one.
    """
    digest = hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:32]
    host = re.sub(r"[^A-Za-z0-9.-]", "", domain) or "fax-bridge.invalid"
    return f"<{digest}@{host}>"


def checked_address(value: MailAddress) -> Address:
    """``value`` as an address object, its display name cleaned; PermanentError if unusable."""
    name = clean_header_text(value.display_name, max_len=78) if value.display_name else ""
    try:
        return Address(display_name=name, addr_spec=value.addr_spec)
    except (ValueError, IndexError) as exc:
        raise PermanentError(f"unusable mail address {value.addr_spec!r}") from exc


def build_mail(
    *,
    sender: MailAddress,
    to: Sequence[MailAddress],
    subject: str,
    text: str,
    date: datetime,
    message_id: str,
    html: str | None = None,
    cc: Sequence[MailAddress] = (),
    in_reply_to: str | None = None,
    attachments: Sequence[Attachment] = (),
    auto_submitted: str | None = "auto-generated",
) -> EmailMessage:
    """Build a complete RFC 5322 message, checked by the header oracle.

    ``subject`` and display names are untrusted and get cleaned; ``in_reply_to`` is used
    for In-Reply-To and References only when it is a well-formed msg-id. Our mail carries
    ``Auto-Submitted`` (RFC 3834: ``auto-replied`` for reports, ``auto-generated`` for the
    rest) so auto-responders leave it alone.
    """
    if not to:
        raise PermanentError("a mail needs at least one recipient")
    msg = EmailMessage(policy=email_policy.SMTP)
    msg["From"] = checked_address(sender)
    msg["To"] = [checked_address(a) for a in to]
    if cc:
        msg["Cc"] = [checked_address(a) for a in cc]
    msg["Subject"] = clean_header_text(subject, max_len=MAX_SUBJECT)
    msg["Date"] = format_datetime(date)
    if safe_message_id(message_id) is None:
        raise PermanentError(f"malformed Message-ID {message_id!r}")
    msg["Message-ID"] = message_id
    parent = safe_message_id(in_reply_to)
    if parent is not None:
        msg["In-Reply-To"] = parent
        msg["References"] = parent
    if auto_submitted is not None:
        msg["Auto-Submitted"] = auto_submitted
    msg.set_content(text)
    if html is not None:
        msg.add_alternative(html, subtype="html")
    for item in attachments:
        maintype, _, subtype = item.content_type.partition("/")
        msg.add_attachment(
            item.data,
            maintype=maintype or "application",
            subtype=subtype or "octet-stream",
            filename=clean_filename(item.filename, fallback="attachment.bin"),
        )
    verify_header_block(msg.keys(), msg.as_bytes())
    return msg


def verify_header_block(names: Iterable[str], data: bytes) -> None:
    """Re-parse the top-level header block of ``data``: exactly ``names``, or PermanentError.

    A CR or LF smuggled into a value shows up there as an extra header line, or as an
    early end of the block that makes headers vanish. Parsing the MIME parts as well
    would cost several times more and check nothing further. The parse keeps values as
    text (``compat32``): which names the block holds does not depend on the policy.
    """
    expected = sorted(name.lower() for name in names)
    ends = [i for i in (data.find(b"\n\n"), data.find(b"\n\r\n")) if i >= 0]
    block = data[: min(ends) + 1] if ends else data
    reparsed = BytesHeaderParser(policy=compat32).parsebytes(block)
    actual = sorted(name.lower() for name in reparsed)
    if actual != expected:
        raise PermanentError(
            f"refusing to send a message whose headers changed on the wire: {actual}"
        )
