"""The sandbox's records: faxes, documents and their fixed rules (limits, outcomes)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cached_property

IN_PROGRESS = (-1, -2, -3)
BUSY, NO_ANSWER, RENDER_FAILED, CANCELLED = 3931, 8021, 204000, 403
OUTCOME_BY_SUFFIX = {"0001": BUSY, "0002": NO_ANSWER, "0003": RENDER_FAILED}
MAX_DOCUMENT_BYTES = 20 * 1024 * 1024
MAX_CHUNK_BYTES = 1024 * 1024
MULTI_USE_SECONDS = 60 * 60
PRIORITY = 2
CENT, BASIS = Decimal("0.01"), Decimal("0.0001")


@dataclass(frozen=True)
class FaxOptions:
    """The send options of a fax, already validated and in their reported form."""

    contact: str | None = None
    reference: str | None = None
    reply_email: str = ""
    csid: str = "Interfax"
    page_header: str = "0"
    attempts_to_perform: int = 4
    page_size: str = "A4"
    resolution: str = "Standard"
    page_orientation: str = "Portrait"
    rendering: str = "Fine"
    fit_to_page: str = "Scale"
    postpone_time: float | None = None


@dataclass(frozen=True)
class FaxDocument:
    """One document of a fax: ``inline`` bytes, a sandbox ``document``, or an
    ``external`` URL that is accepted without being fetched (so it has no bytes)."""

    kind: str
    content_type: str | None
    data: bytes = b""
    location: str | None = None
    filename: str | None = None
    pages: int = 1

    @cached_property
    def sha256(self) -> str | None:
        """Hex SHA-256 of the bytes; None for an external URL."""
        return None if self.kind == "external" else hashlib.sha256(self.data).hexdigest()


@dataclass
class OutboundFax:
    """A submitted fax. Its status is not stored: see :meth:`SandboxState.progress`."""

    id: int
    fax_number: str
    options: FaxOptions
    documents: list[FaxDocument]
    submit_time: float
    outcome: int
    renderable: bool = True
    forced_status: int | None = None
    forced_time: float | None = None
    hidden: bool = False

    @property
    def pages_submitted(self) -> int:
        """Total pages of all documents."""
        return sum(document.pages for document in self.documents)

    @property
    def destination_fax(self) -> str:
        """The resolved number, international ``+`` written as ``00`` (as recorded)."""
        digits = "".join(ch for ch in self.fax_number if ch.isdigit())
        return "00" + digits if self.fax_number.startswith("+") else digits


@dataclass(frozen=True)
class Progress:
    """A fax's status and completion details at one instant."""

    status: int
    completion_time: float | None
    pages_sent: int
    attempts_made: int
    duration: int
    units: Decimal
    remote_csid: str


@dataclass
class ForwardEmail:
    """An address an inbound fax was forwarded to."""

    address: str
    status: int
    completion_time: float | None


@dataclass
class InboundFax:
    """A received fax, injected through the control API."""

    message_id: int
    phone_number: str
    caller_id: str | None
    remote_csid: str
    message_status: int
    pages: int
    receive_time: float
    image: bytes
    content_type: str
    filename: str | None = None
    read: bool = False
    emails: list[ForwardEmail] = field(default_factory=list)

    @property
    def image_status(self) -> str:
        """``imageStatus`` as the API spells it."""
        return "READ" if self.read else "UNREAD"


@dataclass
class UploadDocument:
    """A document upload session (``/outbound/documents``)."""

    id: str
    file_name: str
    file_size: int
    disposition: str
    sharing: str
    creation_time: float
    last_usage_time: float
    data: bytearray = field(default_factory=bytearray)
    used: bool = False

    @property
    def status(self) -> str:
        """``Created``, ``PartiallyUploaded`` or ``Ready``."""
        if len(self.data) >= self.file_size:
            return "Ready"
        return "PartiallyUploaded" if self.data else "Created"


def outcome_for(fax_number: str) -> int:
    """The final status a destination number forces (0 for a normal number)."""
    digits = "".join(ch for ch in fax_number if ch.isdigit())
    return OUTCOME_BY_SUFFIX.get(digits[-4:], 0)
