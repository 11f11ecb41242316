"""What IMAP intake reads from a message's header block: sender, recipients, subject (pure).

A message in a mailbox has no envelope, so the fax numbers come from the ``To`` and
``Cc`` headers and the sender from ``From``. Both are read strictly:

* ``From``: exactly one From header holding exactly one clean address
  (:func:`bridge.senders.parse_single_address`, which refuses the CVE-2023-27043
  shapes), else no sender at all.
* ``To`` / ``Cc``: each header is split into its mailboxes at top-level commas (quotes,
  comments and angle brackets respected). A mailbox that mentions the fax domain
  (``@<fax_domain>`` not followed by more domain) must be written as either the bare
  address or ``Name <address>``, with one clean address at exactly the fax domain;
  anything else at the fax domain (a comment, a group, a quoted local part, a second
  address in the display name) is a problem that refuses the whole message, because a
  fax to a number the sender did not mean is worse than no fax. Addresses at other
  domains are not ours and are ignored.

Only the header block is parsed (bounded in size); the full message is parsed later,
with the same limits as SMTP, by :meth:`bridge.intake.Intake.accept`. Whatever the email
package raises on hostile input becomes ``None`` (unreadable) or a problem, never a crash.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email import policy as email_policy
from email.message import Message
from email.parser import BytesHeaderParser

from bridge import mailheaders
from bridge.mailtext import clean_line
from bridge.senders import auto_submitted_marker, parse_single_address

__all__ = [
    "MailboxMail",
    "fax_recipients",
    "message_id_of",
    "read_mailbox_mail",
    "split_mailboxes",
]

_HEADER_END = re.compile(rb"\r?\n\r?\n")


@dataclass(frozen=True, slots=True)
class MailboxMail:
    """The header facts intake decides on; texts are cleaned to one line.

    ``recipients`` are the fax-domain addresses of To and Cc in order, each once
    (compared case-insensitively). ``problems`` describe To/Cc entries at the fax domain
    that are not clearly one address; any problem refuses the message.
    """

    from_address: str | None
    subject: str
    message_id: str | None
    automatic: str | None
    recipients: tuple[str, ...]
    problems: tuple[str, ...]


def _parse_header(raw: bytes, limit: int) -> Message | None:
    """The header block of ``raw`` parsed, or None when over ``limit`` bytes or unparsable."""
    match = _HEADER_END.search(raw, 0, limit + 4)
    if match is not None:
        block = raw[: match.end()]
    elif len(raw) <= limit:
        block = raw  # a header fetched alone may lack the blank line
    else:
        return None
    try:
        return BytesHeaderParser(policy=email_policy.default).parsebytes(block)
    except Exception:  # the email package raises anything on hostile input
        return None


def read_mailbox_mail(raw: bytes, *, fax_domain: str, max_header_bytes: int) -> MailboxMail | None:
    """Read the header block of ``raw`` (a whole message, or only its header).

    None when the header block is larger than ``max_header_bytes`` or cannot be parsed.
    """
    message = _parse_header(raw, max_header_bytes)
    if message is None:
        return None
    froms = mailheaders.raw_values(message, "from")
    recipients, problems = fax_recipients(message, fax_domain)
    return MailboxMail(
        from_address=parse_single_address(froms[0]) if len(froms) == 1 else None,
        subject=mailheaders.subject(message),
        message_id=mailheaders.message_id(message),
        automatic=auto_submitted_marker(mailheaders.raw_headers(message)),
        recipients=recipients,
        problems=problems,
    )


def message_id_of(raw: bytes, *, max_header_bytes: int = 256 * 1024) -> str | None:
    """The Message-ID of ``raw`` as ``<...>``, or None (missing, malformed, unreadable)."""
    message = _parse_header(raw, max_header_bytes)
    return None if message is None else mailheaders.message_id(message)


def fax_recipients(message: Message, fax_domain: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(fax-domain addresses, problems) of the To and Cc headers of ``message``."""
    domain = fax_domain.lower()
    mention = re.compile(
        "@" + re.escape(domain) + r"(?![A-Za-z0-9-]|\.[A-Za-z0-9-])", re.IGNORECASE | re.ASCII
    )
    found: dict[str, str] = {}
    problems: list[str] = []
    for name in ("To", "Cc"):
        for value in mailheaders.raw_values(message, name):
            for item in split_mailboxes(value):
                if not mention.search(item):
                    continue
                address = _clean_fax_address(item, domain)
                if address is None:
                    problems.append(f"{name}: {clean_line(item)[:120]!r} is not one clear address")
                else:
                    found.setdefault(address.lower(), address)
    return tuple(found.values()), tuple(problems)


def _clean_fax_address(item: str, domain: str) -> str | None:
    address = parse_single_address(item)
    if address is None:
        return None
    local, _, at = address.rpartition("@")
    if at != domain:
        return None
    # Only "address" or "Name <address>": a comment or anything else next to the
    # address could hide part of the number ("(212)5550100@..." parses as 5550100).
    spelled = re.escape(local) + "@" + re.escape(domain)
    if re.fullmatch(spelled, item, re.IGNORECASE):
        return address
    if item.count("<") == 1 and re.search("<" + spelled + ">$", item, re.IGNORECASE):
        return address
    return None


def split_mailboxes(value: str) -> list[str]:
    """Split an address-list header value at top-level commas (quotes, comments, <> kept)."""
    items: list[str] = []
    current: list[str] = []
    depth = 0
    quoted = escaped = angle = False
    for ch in value:
        if escaped:
            escaped = False
        elif ch == "\\" and (quoted or depth):
            escaped = True
        elif quoted:
            quoted = ch != '"'
        elif depth:
            depth += {"(": 1, ")": -1}.get(ch, 0)
        elif ch == '"':
            quoted = True
        elif ch == "(":
            depth = 1
        elif ch in "<>":
            angle = ch == "<"
        elif ch == "," and not angle:
            items.append("".join(current))
            current = []
            continue
        current.append(ch)
    items.append("".join(current))
    return [item.strip() for item in items if item.strip()]
