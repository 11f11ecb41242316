"""Typed, frozen views of InterFAX's JSON objects (shared/interfax-api.md §6). Pure, no I/O.

Parsing reads the live field names exactly as InterFAX sends them (``remoteCSID``,
``senderCSID``, ``lastusageTime`` ...) and exposes them as snake_case
attributes. Timestamps arrive as ``YYYY-MM-DDTHH:MM:SS`` in GMT with no zone and
become timezone-aware UTC datetimes; money and units become :class:`Decimal`
(the JSON must be decoded with ``parse_float=Decimal`` so ``0.1500`` keeps its
digits). Unknown fields are ignored; a missing optional field is ``None``; a
missing required field or a value of the wrong type raises :class:`ModelError`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import TypeVar
from urllib.parse import urlsplit

from bridge import fax_status

_T = TypeVar("_T")


class ModelError(ValueError):
    """A JSON object from InterFAX does not have the shape the reference describes."""


class Disposition(enum.StrEnum):
    """How long an uploaded document lives (§5.16); sent lowercased, as .NET does."""

    SINGLE_USE = "singleUse"
    MULTI_USE = "multiUse"
    PERMANENT = "permanent"


def _object(raw: object, what: str) -> Mapping[str, object]:
    if not isinstance(raw, Mapping):
        raise ModelError(f"{what}: expected a JSON object, got {type(raw).__name__}")
    return raw


def _int(obj: Mapping[str, object], key: str, *, required: bool = False) -> int | None:
    value = obj.get(key)
    if value is None:
        if required:
            raise ModelError(f"missing required field {key!r}")
        return None
    # bool is an int in Python but never a valid count or id in InterFAX's JSON.
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise ModelError(f"field {key!r}: expected an integer, got {value!r}")
    if isinstance(value, Decimal) and (not value.is_finite() or value != int(value)):
        raise ModelError(f"field {key!r}: expected an integer, got {value!r}")
    return int(value)


def _req_int(obj: Mapping[str, object], key: str) -> int:
    value = _int(obj, key, required=True)
    assert value is not None
    return value


def _str(obj: Mapping[str, object], key: str, *, required: bool = False) -> str | None:
    value = obj.get(key)
    if value is None:
        if required:
            raise ModelError(f"missing required field {key!r}")
        return None
    if not isinstance(value, str):
        raise ModelError(f"field {key!r}: expected a string, got {value!r}")
    return value


def _req_str(obj: Mapping[str, object], key: str) -> str:
    value = _str(obj, key, required=True)
    assert value is not None
    return value


def _decimal(obj: Mapping[str, object], key: str) -> Decimal | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | Decimal | float):
        raise ModelError(f"field {key!r}: expected a number, got {value!r}")
    # str() first: a float (JSON decoded without parse_float) keeps its shortest form.
    number = Decimal(str(value))
    if not number.is_finite():
        raise ModelError(f"field {key!r}: expected a finite number, got {value!r}")
    return number


def parse_timestamp(text: str) -> datetime:
    """Parse an InterFAX timestamp; a value without a zone is GMT (§1)."""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ModelError(f"not an ISO-8601 timestamp: {text!r}") from None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _time(obj: Mapping[str, object], key: str) -> datetime | None:
    text = _str(obj, key)
    if text is None:
        return None
    parsed = parse_timestamp(text)
    # .NET's DateTime.MinValue stands for "not yet" where a field may not be null
    # (completionTime while a fax is in progress, §6.1): that is no time at all.
    return None if parsed.year == 1 else parsed


def parse_decimal(raw: object) -> Decimal:
    """Parse a bare JSON number (the balance body, §5.21) into a Decimal."""
    return _req_decimal({"value": raw}, "value")


def _req_decimal(obj: Mapping[str, object], key: str) -> Decimal:
    value = _decimal(obj, key)
    if value is None:
        raise ModelError(f"missing required number {key!r}")
    return value


@dataclass(frozen=True, slots=True)
class OutboundFax:
    """An outbound fax at "summary" or "full" detail (§6.1).

    ``completed`` returns summary objects, so the full-only fields are ``None``
    there. ``id`` and ``status`` are always present.
    """

    id: int
    status: int
    uri: str | None = None
    # summary level
    user_id: str | None = None
    pages_sent: int | None = None
    completion_time: datetime | None = None
    remote_csid: str | None = None
    duration: int | None = None
    priority: int | None = None
    units: Decimal | None = None
    cost_per_unit: Decimal | None = None
    attempts_made: int | None = None
    # full level
    submit_time: datetime | None = None
    contact: str | None = None
    destination_fax: str | None = None
    reply_email: str | None = None
    subject: str | None = None
    pages_submitted: int | None = None
    sender_csid: str | None = None
    attempts_to_perform: int | None = None
    page_size: str | None = None
    resolution: str | None = None
    page_resolution: str | None = None
    page_orientation: str | None = None
    rendering: str | None = None
    page_header: str | None = None

    @classmethod
    def from_json(cls, raw: object) -> OutboundFax:
        """Build from one decoded JSON object of §6.1."""
        obj = _object(raw, "outbound fax")
        return cls(
            id=_req_int(obj, "id"),
            status=_req_int(obj, "status"),
            uri=_str(obj, "uri"),
            user_id=_str(obj, "userId"),
            pages_sent=_int(obj, "pagesSent"),
            completion_time=_time(obj, "completionTime"),
            remote_csid=_str(obj, "remoteCSID"),
            duration=_int(obj, "duration"),
            priority=_int(obj, "priority"),
            units=_decimal(obj, "units"),
            cost_per_unit=_decimal(obj, "costPerUnit"),
            attempts_made=_int(obj, "attemptsMade"),
            submit_time=_time(obj, "submitTime"),
            contact=_str(obj, "contact"),
            destination_fax=_str(obj, "destinationFax"),
            reply_email=_str(obj, "replyEmail"),
            subject=_str(obj, "subject"),
            pages_submitted=_int(obj, "pagesSubmitted"),
            sender_csid=_str(obj, "senderCSID"),
            attempts_to_perform=_int(obj, "attemptsToPerform"),
            page_size=_str(obj, "pageSize"),
            resolution=_str(obj, "resolution"),
            page_resolution=_str(obj, "pageResolution"),
            page_orientation=_str(obj, "pageOrientation"),
            rendering=_str(obj, "rendering"),
            page_header=_str(obj, "pageHeader"),
        )

    @property
    def is_final(self) -> bool:
        """True once the fax was sent or failed for good."""
        return fax_status.is_final(self.status)

    @property
    def is_success(self) -> bool:
        """True when the fax was sent and confirmed."""
        return fax_status.is_success(self.status)

    @property
    def description(self) -> str:
        """A human sentence for :attr:`status`."""
        return fax_status.describe(self.status)

    @property
    def cost(self) -> Decimal | None:
        """``units × costPerUnit`` when both are known."""
        if self.units is None or self.cost_per_unit is None:
            return None
        return self.units * self.cost_per_unit


@dataclass(frozen=True, slots=True)
class InboundFax:
    """A received fax (§6.2)."""

    message_id: int
    user_id: str | None = None
    phone_number: str | None = None
    remote_csid: str | None = None
    message_status: int | None = None
    pages: int | None = None
    message_size: int | None = None
    message_type: int | None = None
    receive_time: datetime | None = None
    caller_id: str | None = None
    recording_duration: int | None = None
    image_status: str | None = None
    num_of_emails: int | None = None
    num_of_failed_emails: int | None = None

    @classmethod
    def from_json(cls, raw: object) -> InboundFax:
        """Build from one decoded JSON object of §6.2."""
        obj = _object(raw, "inbound fax")
        return cls(
            message_id=_req_int(obj, "messageId"),
            user_id=_str(obj, "userId"),
            phone_number=_str(obj, "phoneNumber"),
            remote_csid=_str(obj, "remoteCSID"),
            message_status=_int(obj, "messageStatus"),
            pages=_int(obj, "pages"),
            message_size=_int(obj, "messageSize"),
            message_type=_int(obj, "messageType"),
            receive_time=_time(obj, "receiveTime"),
            caller_id=_str(obj, "callerId"),
            recording_duration=_int(obj, "recordingDuration"),
            image_status=_str(obj, "imageStatus"),
            num_of_emails=_int(obj, "numOfEmails"),
            num_of_failed_emails=_int(obj, "numOfFailedEmails"),
        )

    @property
    def is_read(self) -> bool:
        """True when InterFAX reports the image as read."""
        return (self.image_status or "").upper() == "READ"


@dataclass(frozen=True, slots=True)
class ForwardingEmail:
    """One address a received fax was forwarded to (§6.3)."""

    email_address: str
    message_status: int
    completion_time: datetime | None = None

    @classmethod
    def from_json(cls, raw: object) -> ForwardingEmail:
        """Build from one decoded JSON object of §6.3."""
        obj = _object(raw, "forwarding email")
        return cls(
            email_address=_req_str(obj, "emailAddress"),
            message_status=_req_int(obj, "messageStatus"),
            completion_time=_time(obj, "completionTime"),
        )


@dataclass(frozen=True, slots=True)
class UploadSession:
    """A document upload session (§6.4). InterFAX gives no id field: it is the URI's tail."""

    uri: str
    user_id: str | None = None
    file_name: str | None = None
    file_size: int | None = None
    uploaded: int | None = None
    creation_time: datetime | None = None
    last_usage_time: datetime | None = None
    status: str | None = None
    disposition: str | None = None
    sharing: str | None = None

    @classmethod
    def from_json(cls, raw: object) -> UploadSession:
        """Build from one decoded JSON object of §6.4."""
        obj = _object(raw, "upload session")
        return cls(
            uri=_req_str(obj, "uri"),
            user_id=_str(obj, "userId"),
            file_name=_str(obj, "fileName"),
            file_size=_int(obj, "fileSize"),
            uploaded=_int(obj, "uploaded"),
            creation_time=_time(obj, "creationTime"),
            last_usage_time=_time(obj, "lastusageTime"),
            status=_str(obj, "status"),
            disposition=_str(obj, "disposition"),
            sharing=_str(obj, "sharing"),
        )

    @property
    def id(self) -> str:
        """The document id: the last path segment of :attr:`uri`."""
        return urlsplit(self.uri).path.rstrip("/").rsplit("/", 1)[-1]

    @property
    def is_ready(self) -> bool:
        """True when every byte arrived and the document can be faxed."""
        return (self.status or "").lower() == "ready"


@dataclass(frozen=True, slots=True)
class InboundImage:
    """The image of a received fax: PDF or TIFF, as InterFAX chose (§5.12)."""

    data: bytes = field(repr=False)
    content_type: str

    @property
    def extension(self) -> str:
        """``pdf`` for a PDF, otherwise ``tiff`` (the rule the official clients use)."""
        mime = self.content_type.split(";", 1)[0].strip().lower()
        return "pdf" if mime == "application/pdf" else "tiff"


def list_parser(build: Callable[[object], _T], what: str) -> Callable[[object], list[_T]]:
    """A parser of a JSON array whose items ``build`` turns into models."""

    def parse(raw: object) -> list[_T]:
        if not isinstance(raw, list):
            raise ModelError(f"{what}: expected a JSON array, got {type(raw).__name__}")
        return [build(item) for item in raw]

    return parse
