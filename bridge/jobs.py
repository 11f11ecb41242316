"""Values that leave the durable store: states, rows and store-level errors.

This module holds no I/O and does not import sqlite3, so every part of the
bridge can use these types without touching the database layer. The store
(:mod:`bridge.store`) is the only producer of :class:`Job`, :class:`Message`,
:class:`InboundFax` and :class:`InboundDelivery` values.

Times are epoch seconds (``float``, UTC) everywhere; callers pass ``now`` in.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from bridge.errors import BridgeError, PermanentError, TransientError

__all__ = [
    "DUPLICATE_WINDOW_SECONDS",
    "TERMINAL_JOB_STATES",
    "UNCHANGED",
    "AcceptResult",
    "DeliveryChannel",
    "DeliveryState",
    "DuplicateRecipient",
    "InboundDelivery",
    "InboundFax",
    "InboundRecipient",
    "InboundRecord",
    "InboundState",
    "Job",
    "JobState",
    "Message",
    "MessageMissing",
    "MessageSource",
    "NewJob",
    "PurgeReport",
    "RateLimitCheck",
    "RateLimited",
    "RecoveryReport",
    "StoreDiagnostics",
    "StoreVersionError",
    "Unchanged",
]

#: A re-sent message (same Message-ID header, destination and sender) within
#: this many seconds of the first one creates no second job.
DUPLICATE_WINDOW_SECONDS: Final = 24 * 3600.0


class MessageSource(enum.StrEnum):
    """How a message to be faxed reached the bridge."""

    SMTP = "smtp"
    IMAP = "imap"
    CLI = "cli"


class JobState(enum.StrEnum):
    """States of one outbound fax job (one message to one destination).

    See shared/reliability-design.md: ACCEPTED -> SUBMITTING -> SUBMITTED ->
    SENT | FAILED -> REPORTED; SUBMITTING -> IN_DOUBT when the POST may have
    gone out; HELD waits for an operator; CANCELLED ends a job on request.
    """

    ACCEPTED = "accepted"
    SUBMITTING = "submitting"
    IN_DOUBT = "in_doubt"
    SUBMITTED = "submitted"
    SENT = "sent"
    FAILED = "failed"
    REPORTED = "reported"
    HELD = "held"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        """True when nothing more will ever happen to a job in this state."""
        return self in TERMINAL_JOB_STATES


TERMINAL_JOB_STATES: Final = frozenset({JobState.REPORTED, JobState.CANCELLED})


class InboundState(enum.StrEnum):
    """States of one received fax in the inbound ledger.

    SEEN -> DOWNLOADED -> DELIVERED (every recipient accepted it) ->
    MARKED_READ; UNROUTED when no route matched (the fax stays unread).
    """

    SEEN = "seen"
    DOWNLOADED = "downloaded"
    DELIVERED = "delivered"
    MARKED_READ = "marked_read"
    UNROUTED = "unrouted"


class DeliveryState(enum.StrEnum):
    """Delivery of one received fax to one recipient."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class DeliveryChannel(enum.StrEnum):
    """How a received fax reaches a recipient."""

    SMTP = "smtp"
    MAILDIR = "maildir"
    IMAP = "imap"


class Unchanged(enum.Enum):
    """Type of :data:`UNCHANGED`, the default of optional update fields."""

    UNCHANGED = "unchanged"


#: Default of the optional fields of ``transition``: leave the column as it is
#: (``None`` means "set to NULL").
UNCHANGED: Final = Unchanged.UNCHANGED


# -- store errors ---------------------------------------------------------------


class RateLimited(TransientError):
    """Accepting would exceed a rate limit; nothing was written.

    ``retry_after`` estimates the seconds until the window has room again.
    """

    def __init__(self, check: RateLimitCheck, *, current: int, retry_after: float) -> None:
        super().__init__(
            f"rate limit {check.key!r} reached: {current} of {check.max} "
            f"in {check.window_seconds:g}s",
            retry_after=retry_after,
        )
        self.check = check
        self.current = current


class StoreVersionError(BridgeError):
    """The database was written by a newer fax-bridge; retrying cannot help."""


class MessageMissing(PermanentError):
    """A job's message bytes are gone (purged or never stored)."""


# -- outbound -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewJob:
    """One recipient of a message being accepted.

    ``destination`` is an E.164 number (``+`` and 7-15 digits); ``sender`` is the
    authorised address the report about this fax goes to.
    """

    destination: str
    sender: str


@dataclass(frozen=True, slots=True)
class Job:
    """One outbound fax: a message to one destination, as stored."""

    id: int
    message_id: int
    destination: str
    sender: str
    reference: str
    fax_id: int | None
    state: JobState
    attempts: int
    next_attempt_at: float
    in_doubt_since: float | None
    created_at: float
    updated_at: float
    last_error: str | None
    fax_status: int | None
    result: Mapping[str, Any] | None
    trace_id: str

    @property
    def label(self) -> str:
        """How logs name the job: its id and its reference, which carries the trace id.

        The same reference is what InterFAX stores and what the sender's report shows, so
        one grep follows a fax from the SMTP dialogue to InterFAX and back.
        """
        return f"job {self.id} ({self.reference})"


@dataclass(frozen=True, slots=True)
class Message:
    """Metadata of an accepted message (its bytes: ``Store.message_raw``)."""

    id: int
    received_at: float
    source: MessageSource
    mail_from: str
    from_header: str
    message_id_header: str | None
    size: int
    sha256: str
    trace_id: str


@dataclass(frozen=True, slots=True)
class DuplicateRecipient:
    """A recipient that got no new job: ``existing_job_id`` already covers it."""

    recipient: NewJob
    existing_job_id: int


@dataclass(frozen=True, slots=True)
class AcceptResult:
    """Outcome of ``Store.accept_message``.

    ``message_id`` is None when every recipient was a duplicate: the bytes were
    not stored again.
    """

    message_id: int | None
    created: tuple[Job, ...]
    duplicates: tuple[DuplicateRecipient, ...]


@dataclass(frozen=True, slots=True)
class RateLimitCheck:
    """At most ``max`` events under ``key`` within the last ``window_seconds``."""

    key: str
    window_seconds: float
    max: int


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    """What ``Store.recover_interrupted`` changed at start-up."""

    in_doubt_job_ids: tuple[int, ...]

    @property
    def in_doubt(self) -> int:
        """Number of jobs moved from SUBMITTING to IN_DOUBT."""
        return len(self.in_doubt_job_ids)


@dataclass(frozen=True, slots=True)
class PurgeReport:
    """Row counts removed by ``Store.purge``."""

    messages: int
    jobs: int
    inbound_faxes: int
    inbound_images: int
    rate_events: int


@dataclass(frozen=True, slots=True)
class StoreDiagnostics:
    """The settings in force on the store's writer connection."""

    path: str
    schema_version: int
    journal_mode: str
    synchronous: int
    foreign_keys: bool
    busy_timeout_ms: int


# -- inbound --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InboundRecord:
    """A received fax as listed by InterFAX, to be recorded in the ledger.

    ``receive_time`` is epoch seconds (InterFAX sends GMT without a zone).
    ``meta`` holds any further JSON-serialisable fields worth keeping.
    """

    message_id: int
    phone_number: str
    caller_id: str | None
    remote_csid: str | None
    pages: int
    receive_time: float
    message_status: int
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class InboundFax:
    """A received fax in the ledger (without the image bytes).

    ``created`` is True only on the value returned by the ``inbound_seen_page`` call
    that inserted the row.
    """

    message_id: int
    state: InboundState
    phone_number: str
    caller_id: str | None
    remote_csid: str | None
    pages: int
    receive_time: float
    message_status: int
    meta: Mapping[str, Any]
    image_type: str | None
    image_size: int | None
    created_at: float
    updated_at: float
    attempts: int
    next_attempt_at: float
    last_error: str | None
    created: bool = False


@dataclass(frozen=True, slots=True)
class InboundRecipient:
    """Where a received fax must be delivered."""

    recipient: str
    channel: DeliveryChannel = DeliveryChannel.SMTP


@dataclass(frozen=True, slots=True)
class InboundDelivery:
    """Delivery of one received fax to one recipient, as stored."""

    message_id: int
    recipient: str
    channel: DeliveryChannel
    state: DeliveryState
    smtp_message_id: str | None
    delivered_at: float | None
    attempts: int
    last_error: str | None
