"""What we ask InterFAX to send: documents and per-fax options.

These frozen dataclasses are the vocabulary shared by the message-to-fax logic,
the submission worker and the InterFAX client; none of them does any I/O.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime


class PageSize(enum.StrEnum):
    """Paper size (``pageSize``)."""

    A4 = "a4"
    LETTER = "letter"
    LEGAL = "legal"
    B4 = "b4"


class Resolution(enum.StrEnum):
    """Transmission resolution (``resolution``)."""

    STANDARD = "standard"
    FINE = "fine"


class Orientation(enum.StrEnum):
    """Page orientation (``pageOrientation``)."""

    PORTRAIT = "portrait"
    LANDSCAPE = "landscape"


class FitToPage(enum.StrEnum):
    """Scaling (``fitToPage``)."""

    SCALE = "scale"
    NOSCALE = "noscale"


class Rendering(enum.StrEnum):
    """Rendering (``rendering``); the docs spell greyscale ``grayscale``."""

    GRAYSCALE = "grayscale"
    BW = "bw"


@dataclass(frozen=True, slots=True)
class FaxDocument:
    """One document of a fax, inline.

    ``filename`` always ends in an extension InterFAX supports (see
    :mod:`bridge.mediatypes`), because InterFAX types uploaded documents by it.
    """

    filename: str
    content_type: str
    data: bytes = field(repr=False)

    @property
    def size(self) -> int:
        """Size of the document in bytes."""
        return len(self.data)


@dataclass(frozen=True, slots=True)
class DocumentRef:
    """A document already uploaded through ``/outbound/documents`` (its absolute URI)."""

    uri: str


@dataclass(frozen=True, slots=True)
class SendOptions:
    """Options of one outbound fax. ``None`` means "the account's setting"."""

    reference: str | None = None
    contact: str | None = None
    postpone_time: datetime | None = None
    retries_to_perform: int | None = None
    csid: str | None = None
    page_header: str | None = None
    reply_address: str | None = None
    page_size: PageSize | None = None
    fit_to_page: FitToPage | None = None
    page_orientation: Orientation | None = None
    resolution: Resolution | None = None
    rendering: Rendering | None = None
