"""From the raw bytes of one received email to plain values, bounded and guarded (pure).

How hostile input is contained:

* Before parsing: the message size and the size of the top-level header block.
* While parsing, through a policy that is ``email.policy.default`` plus bounds
  enforced from inside the parser: the number of MIME parts (counted by the
  message factory), the nesting depth (checked when the parser attaches a part
  to its parent, so the parser's own recursion stays shallow), and the header
  text the modern header parser may chew on: each header at most
  ``max_header_chars``, all together at most ``max_header_parse_chars``
  (parsed headers are cached, so reading one twice costs nothing). The header
  parser is super-linear on some inputs (RFC 2231 continuations and long
  parameter lists: 200 KB of them take seconds), hence this bound. With the
  size limit, these bound the parse time.
* Every call into the email package goes through a guard
  (:func:`bridge.mailwalk.strict` or :func:`bridge.mailheaders.lenient`):
  whatever it raises (``IndexError``, ``HeaderParseError``, ``RecursionError``,
  ``ValueError`` ...) becomes a :class:`MailRefusal` saying what was malformed,
  or a fallback value; never a crash. Our own code runs outside the guards, so
  a bug of ours still surfaces as an exception, which the SMTP layer answers
  with a 4xx rather than a permanent 5xx.
* Headers we only show (Subject, From, Reply-To, Date, Message-ID, X-Fax-*)
  degrade instead of refusing (:mod:`bridge.mailheaders`). The structural ones
  (Content-Type, Content-Disposition, Content-Transfer-Encoding) refuse:
  without them we cannot tell what to fax. To and Cc are never read; the fax
  number comes from the envelope.

Everything leaving this module is plain data (:class:`ParsedMail`); no email
package object escapes, so nothing downstream can trip over a lazy parse.
Subject, names and file names are decoded but untrusted: sanitise them again
before they go into any header.
"""

from __future__ import annotations

from email.feedparser import BytesFeedParser
from email.message import EmailMessage, Message
from email.policy import EmailPolicy
from typing import TYPE_CHECKING, Any

from bridge import mailheaders
from bridge.mailhollow import Hollows, hollow
from bridge.mailmodel import (
    BodySegment,
    HeaderUnparsable,
    MailAttachment,
    MailHeaders,
    MailRefusal,
    ParsedMail,
    ParseLimits,
    Refused,
    header_label,
    refuse,
)
from bridge.mailwalk import StructureWalker
from bridge.senders import auto_submitted_marker

__all__ = [
    "BodySegment",
    "MailAttachment",
    "MailHeaders",
    "MailRefusal",
    "ParseLimits",
    "ParsedMail",
    "parse_headers",
    "parse_message",
]


def parse_message(raw: bytes, *, limits: ParseLimits) -> ParsedMail | MailRefusal:
    """Parse one received message (the bytes as received, headers included).

    Returns a :class:`MailRefusal` for anything the message itself gets wrong
    or that exceeds ``limits``; never raises because of the message's content.
    Base64 runs of at least ``limits.hollow_min_bytes`` are decoded straight from
    ``raw`` (:mod:`bridge.mailhollow`), not copied through the email package.
    """
    if len(raw) > limits.max_message_bytes:
        return MailRefusal(f"message larger than {limits.max_message_bytes} bytes", 552, "5.3.4")
    if _header_block_too_large(raw, limits.max_header_block_bytes):
        return MailRefusal(
            f"message header larger than {limits.max_header_block_bytes} bytes", 552, "5.3.4"
        )
    budget = _Budget(limits)
    raw, budget.hollows = hollow(raw, min_bytes=limits.hollow_min_bytes)
    try:
        return _extract(_parse(raw, budget))
    except Refused as refused:
        return refused.refusal


def parse_headers(raw: bytes, *, limits: ParseLimits) -> MailHeaders | MailRefusal:
    """Parse only the header block of ``raw`` (for decisions during the SMTP dialogue).

    Applies the same size and header bounds as :func:`parse_message`; never raises
    because of the message's content.
    """
    if len(raw) > limits.max_message_bytes:
        return MailRefusal(f"message larger than {limits.max_message_bytes} bytes", 552, "5.3.4")
    if _header_block_too_large(raw, limits.max_header_block_bytes):
        return MailRefusal(
            f"message header larger than {limits.max_header_block_bytes} bytes", 552, "5.3.4"
        )
    try:
        message = _parse(raw[: _header_end(raw)], _Budget(limits))
    except Refused as refused:
        return refused.refusal
    reply_to, _ = mailheaders.mailbox(message, "reply-to")
    from_address, _ = mailheaders.mailbox(message, "from")
    return MailHeaders(
        message_id=mailheaders.message_id(message),
        from_address=from_address,
        reply_to_address=reply_to,
        from_values=mailheaders.raw_values(message, "from"),
        automatic=auto_submitted_marker(mailheaders.raw_headers(message)),
    )


def _header_end(raw: bytes) -> int:
    """Where the header block ends (after its blank line), or the end of ``raw``."""
    ends = [i for i in (raw.find(b"\n\n"), raw.find(b"\n\r\n")) if i >= 0]
    if not ends:
        return len(raw)
    end = min(ends)
    return end + (2 if raw[end : end + 2] == b"\n\n" else 3)


_FEED_SLICE = 64 * 1024


class _Budget:
    """The work one parse may still do; shared by the policy and the message factory."""

    def __init__(self, limits: ParseLimits) -> None:
        self.limits = limits
        self.parts = 0
        self.header_chars = 0
        self.parsed: dict[tuple[str, str], Any] = {}
        self.hollows: Hollows | None = None

    def count_part(self) -> None:
        self.parts += 1
        if self.parts > self.limits.max_parts:
            raise refuse(f"more than {self.limits.max_parts} MIME parts")

    def check_depth(self, depth: int) -> None:
        if depth > self.limits.max_depth:
            raise refuse(f"MIME parts nested more than {self.limits.max_depth} levels deep")

    def charge_header(self, name: str, size: int) -> None:
        if size > self.limits.max_header_chars:
            raise refuse(
                f"{header_label(name)} header longer than {self.limits.max_header_chars} characters"
            )
        self.header_chars += size
        if self.header_chars > self.limits.max_header_parse_chars:
            raise refuse("too much MIME header text to parse")


if TYPE_CHECKING:
    _Policy = EmailPolicy[EmailMessage]
else:  # EmailPolicy is generic only in the type stubs
    _Policy = EmailPolicy


class _BoundedPolicy(_Policy):
    """``email.policy.default`` whose header parsing is bounded and cached."""

    budget: _Budget

    def __init__(self, budget: _Budget) -> None:
        super().__init__(message_factory=_BoundedMessage)
        object.__setattr__(self, "budget", budget)  # policies are immutable by design

    def header_fetch_parse(self, name: str, value: str) -> Any:
        key = (name, value)
        if key in self.budget.parsed:
            return self.budget.parsed[key]
        self.budget.charge_header(name, len(value))
        try:
            parsed = super().header_fetch_parse(name, value)
        except Exception as exc:  # the header parser raises anything on hostile input
            raise HeaderUnparsable(name) from exc
        self.budget.parsed[key] = parsed
        return parsed


class _BoundedMessage(EmailMessage):
    """A parsed part that counts itself against the budget and knows its depth."""

    def __init__(self, policy: Any = None) -> None:
        super().__init__(policy)
        self.nesting = 0
        if isinstance(policy, _BoundedPolicy):
            policy.budget.count_part()

    def attach(self, payload: Any) -> None:
        if isinstance(self.policy, _BoundedPolicy) and isinstance(payload, _BoundedMessage):
            payload.nesting = self.nesting + 1
            self.policy.budget.check_depth(payload.nesting)
        super().attach(payload)

    def get_payload(self, i: Any = None, decode: bool = False) -> Any:
        """The payload, with the text of hollowed base64 runs back in place."""
        stdlib: Any = super()
        hollows = self.policy.budget.hollows if isinstance(self.policy, _BoundedPolicy) else None
        payload = self.__dict__.get("_payload")  # the stdlib's own attribute
        if hollows is None or not isinstance(payload, str) or not hollows.holds_token(payload):
            return stdlib.get_payload(i, decode)
        cte = str(self.get("content-transfer-encoding", "")).lower()
        if decode and i is None and cte == "base64":
            data = hollows.decode_base64(payload)
            if data is not None:
                return data
        self.__dict__["_payload"] = hollows.restore(payload)
        try:
            return stdlib.get_payload(i, decode)
        finally:
            self.__dict__["_payload"] = payload


def _header_block_too_large(raw: bytes, limit: int) -> bool:
    if raw.startswith((b"\n", b"\r\n")):
        return False
    ends = [
        index
        for index in (raw.find(b"\n\n", 0, limit + 2), raw.find(b"\n\r\n", 0, limit + 3))
        if index >= 0
    ]
    return (min(ends) + 1 if ends else len(raw)) > limit


def _parse(raw: bytes, budget: _Budget) -> Message:
    try:
        # Fed in slices rather than BytesParser.parsebytes, which decodes the whole message
        # into one str and copies it into a StringIO (4 bytes a character): a 25 MB
        # message then costs over 100 MB before parsing even starts.
        parser = BytesFeedParser(policy=_BoundedPolicy(budget))
        view = memoryview(raw)
        for start in range(0, len(raw), _FEED_SLICE):
            parser.feed(bytes(view[start : start + _FEED_SLICE]))
        return parser.close()
    except Refused:
        raise
    except HeaderUnparsable as exc:
        raise refuse(
            f"malformed {header_label(exc.name)} header", detail=type(exc.__cause__).__name__
        ) from exc
    except Exception as exc:  # RecursionError, IndexError ... from the parser itself
        raise refuse("malformed MIME structure", detail=type(exc).__name__) from exc


def _extract(message: Message) -> ParsedMail:
    walker = StructureWalker()
    content = walker.walk(message, "", forwarded=False)
    reply_to, _ = mailheaders.mailbox(message, "reply-to")
    from_address, sender = mailheaders.mailbox(message, "from")
    return ParsedMail(
        subject=mailheaders.subject(message),
        message_id=mailheaders.message_id(message),
        from_address=from_address,
        sender_display=sender,
        reply_to_address=reply_to,
        date=mailheaders.date(message),
        body=tuple(content.segments),
        attachments=walker.pages(content),
        fax_headers=mailheaders.fax_headers(message),
        encrypted=walker.encrypted,
        from_values=mailheaders.raw_values(message, "from"),
        automatic=auto_submitted_marker(mailheaders.raw_headers(message)),
    )
