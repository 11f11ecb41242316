"""The sandbox's model: outbound faxes, inbound faxes, uploaded documents, balance.

Status progression is computed lazily from the clock on every read, so no
background task is needed: a fax submitted at ``t`` (or at its ``postponeTime``)
reports -1, then -2 at ``t + step``, -3 at ``t + 2 step`` and its final status
at ``t + 3 step``. With ``step_seconds <= 0`` faxes stay at -1 until the control
API moves them. Once a fax has been moved by hand (advance or cancel), the clock
no longer moves it.

The final status is chosen by the destination number's last four digits:
``0001`` busy (3931), ``0002`` no answer (8021), ``0003`` rendering failure
(204000); any other number succeeds (0). A fax whose document bytes plainly are
not what their Content-Type claims (a "PDF" without ``%PDF-``) also ends in 204000.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal

from bridge.sandbox import errors
from bridge.sandbox.model import (
    BASIS,
    BUSY,
    CANCELLED,
    CENT,
    IN_PROGRESS,
    MAX_CHUNK_BYTES,
    MULTI_USE_SECONDS,
    NO_ANSWER,
    RENDER_FAILED,
    FaxDocument,
    FaxOptions,
    ForwardEmail,
    InboundFax,
    OutboundFax,
    Progress,
    UploadDocument,
    outcome_for,
)


class SandboxState:
    """Everything the sandbox knows. Every mutation calls :attr:`on_change`."""

    def __init__(
        self,
        *,
        username: str,
        step_seconds: float,
        initial_balance: Decimal,
        cost_per_unit: Decimal,
        clock: Callable[[], float],
    ) -> None:
        self.username = username
        self.step_seconds = step_seconds
        self.initial_balance = initial_balance
        self.cost_per_unit = cost_per_unit.quantize(BASIS)
        self.clock = clock
        self.on_change: Callable[[], None] = lambda: None
        # Ids only ever grow, even across reset, so a client's cache never sees one reused.
        self.next_fax_id = 700_000_001
        self.next_message_id = 290_000_001
        self.credit = initial_balance
        self.faxes: dict[int, OutboundFax] = {}
        self.inbound: dict[int, InboundFax] = {}
        self.documents: dict[str, UploadDocument] = {}

    def reset(self) -> None:
        """Forget every fax and document and restore the initial balance."""
        self.faxes.clear()
        self.inbound.clear()
        self.documents.clear()
        self.credit = self.initial_balance
        self.on_change()

    # --- outbound ---------------------------------------------------------------

    def add_fax(
        self,
        fax_number: str,
        options: FaxOptions,
        documents: list[FaxDocument],
        renderable: bool = True,
    ) -> OutboundFax:
        """Commit a new fax; it starts at -1. Unrenderable documents end in 204000."""
        fax = OutboundFax(
            id=self.next_fax_id,
            fax_number=fax_number,
            options=options,
            documents=list(documents),
            submit_time=self.clock(),
            outcome=outcome_for(fax_number) if renderable else RENDER_FAILED,
            renderable=renderable,
        )
        self.next_fax_id += 1
        self.faxes[fax.id] = fax
        self.on_change()
        return fax

    def get_fax(self, fax_id: int) -> OutboundFax:
        """The fax with this id (hidden ones included), or 404 -1005."""
        fax = self.faxes.get(fax_id)
        if fax is None:
            raise errors.fax_not_found(fax_id, self.username)
        return fax

    def visible_faxes(self) -> list[OutboundFax]:
        """Faxes that were not hidden, in ascending id order."""
        return [fax for _, fax in sorted(self.faxes.items()) if not fax.hidden]

    def progress(self, fax: OutboundFax) -> Progress:
        """The fax's status now, with completion details once it is final."""
        if fax.forced_status is not None:
            status, done_at = fax.forced_status, fax.forced_time
        elif self.step_seconds <= 0:
            status, done_at = IN_PROGRESS[0], None
        else:
            start = max(fax.submit_time, fax.options.postpone_time or 0.0)
            steps = max(0, int((self.clock() - start) // self.step_seconds))
            status = IN_PROGRESS[steps] if steps < len(IN_PROGRESS) else fax.outcome
            done_at = start + len(IN_PROGRESS) * self.step_seconds
        if status < 0:
            return Progress(status, None, 0, 0, 0, Decimal("0.00"), "")
        pages = fax.pages_submitted if status == 0 else 0
        if status == 0:
            attempts = 1
        elif status in (BUSY, NO_ANSWER):
            attempts = fax.options.attempts_to_perform
        elif status in (CANCELLED, RENDER_FAILED):
            attempts = 0
        else:
            attempts = 1
        return Progress(
            status=status,
            completion_time=done_at,
            pages_sent=pages,
            attempts_made=attempts,
            duration=20 * pages + 10 if pages else 0,
            units=Decimal(pages).quantize(CENT),
            remote_csid=fax.fax_number[-20:] if status == 0 else "",
        )

    def cancel(self, fax_id: int) -> None:
        """Cancel a fax still in progress (it ends at 403); 409 -162 once final."""
        fax = self.get_fax(fax_id)
        if self.progress(fax).status >= 0:
            raise errors.wrong_status(fax_id)
        self._force(fax, CANCELLED)

    def hide(self, fax_id: int) -> None:
        """Hide a fax from list and search for good."""
        self.get_fax(fax_id).hidden = True
        self.on_change()

    def resend(self, fax_id: int, fax_number: str | None) -> OutboundFax:
        """Send a fax's documents again, to its own or a new number, as a new fax."""
        original = self.get_fax(fax_id)
        options = replace(original.options, postpone_time=None)
        number = fax_number or original.fax_number
        return self.add_fax(number, options, original.documents, original.renderable)

    def advance(self, fax_id: int | None, status: int | None) -> list[int]:
        """Move one fax (or every fax in progress) to ``status`` or its final status."""
        if fax_id is not None:
            targets = [self.get_fax(fax_id)]
        else:
            targets = [fax for fax in self.faxes.values() if self.progress(fax).status < 0]
        for fax in targets:
            self._force(fax, fax.outcome if status is None else status, notify=False)
        self.on_change()
        return [fax.id for fax in targets]

    def _force(self, fax: OutboundFax, status: int, notify: bool = True) -> None:
        fax.forced_status = status
        fax.forced_time = self.clock()
        if notify:
            self.on_change()

    def spent(self) -> Decimal:
        """What every completed fax has cost: units x costPerUnit."""
        return sum(
            (self.progress(fax).units * self.cost_per_unit for fax in self.faxes.values()),
            Decimal(0),
        )

    def balance(self) -> Decimal:
        """The prepaid balance, four decimals."""
        return (self.credit - self.spent()).quantize(BASIS)

    def set_balance(self, balance: Decimal) -> None:
        """Top up (or drain) the account so that the balance reads ``balance`` now."""
        self.credit = balance + self.spent()
        self.on_change()

    # --- inbound ----------------------------------------------------------------

    def add_inbound(self, fax: InboundFax) -> InboundFax:
        """Receive a fax; its ``message_id`` is assigned here."""
        fax = replace(fax, message_id=self.next_message_id)
        self.next_message_id += 1
        self.inbound[fax.message_id] = fax
        self.on_change()
        return fax

    def get_inbound(self, message_id: int) -> InboundFax:
        """The inbound fax with this id, or 404 -3001."""
        fax = self.inbound.get(message_id)
        if fax is None:
            raise errors.inbound_not_found(message_id)
        return fax

    def inbound_page(self, unread_only: bool, limit: int, last_id: int | None) -> list[InboundFax]:
        """Inbound faxes, always by descending id, ``last_id`` an exclusive cursor."""
        faxes = sorted(self.inbound.values(), key=lambda fax: fax.message_id, reverse=True)
        selected = [
            fax
            for fax in faxes
            if not (unread_only and fax.read) and (last_id is None or fax.message_id < last_id)
        ]
        return selected[:limit]

    def mark(self, message_id: int, read: bool) -> None:
        """Mark an inbound fax read or unread."""
        self.get_inbound(message_id).read = read
        self.on_change()

    def resend_inbound(self, message_id: int, email: str | None) -> None:
        """Forward again, to ``email`` or to every address it went to before."""
        fax = self.get_inbound(message_id)
        now = self.clock()
        if email is None:
            for forward in fax.emails:
                forward.status, forward.completion_time = 0, now
        else:
            existing = [f for f in fax.emails if f.address.lower() == email.lower()]
            if existing:
                existing[0].status, existing[0].completion_time = 0, now
            else:
                fax.emails.append(ForwardEmail(email, 0, now))
        self.on_change()

    # --- documents --------------------------------------------------------------

    def create_document(
        self, file_name: str, file_size: int, disposition: str, sharing: str
    ) -> UploadDocument:
        """Open an upload session."""
        now = self.clock()
        document = UploadDocument(
            id=uuid.uuid4().hex,
            file_name=file_name,
            file_size=file_size,
            disposition=disposition,
            sharing=sharing,
            creation_time=now,
            last_usage_time=now,
        )
        self.documents[document.id] = document
        self.on_change()
        return document

    def get_document(self, document_id: str) -> UploadDocument:
        """A live document, or 404 -1062 (unknown, deleted, consumed or expired)."""
        document = self.documents.get(document_id.lower())
        if document is None:
            raise errors.document_not_found()
        expired = document.disposition == "MultiUse" and document.used
        if expired and self.clock() - document.last_usage_time > MULTI_USE_SECONDS:
            del self.documents[document.id]
            self.on_change()
            raise errors.document_not_found()
        return document

    def live_documents(self) -> list[UploadDocument]:
        """Every live document in creation order."""
        for document_id in list(self.documents):
            try:
                self.get_document(document_id)
            except errors.ApiError:
                continue
        return sorted(self.documents.values(), key=lambda document: document.creation_time)

    def upload_chunk(self, document_id: str, start: int, end: int, chunk: bytes) -> bool:
        """Append one chunk (inclusive ``start``-``end``); True when the document is Ready."""
        document = self.get_document(document_id)
        uploaded = len(document.data)
        if uploaded >= document.file_size:
            raise errors.too_large(f"Document {document.id} is already completely uploaded")
        if end < start or len(chunk) != end - start + 1:
            raise errors.invalid_chunk(
                f"Range bytes={start}-{end} announces {end - start + 1} bytes, "
                f"the body has {len(chunk)}"
            )
        if len(chunk) > MAX_CHUNK_BYTES:
            raise errors.invalid_chunk(f"A chunk may hold at most {MAX_CHUNK_BYTES} bytes")
        if end >= document.file_size:
            raise errors.too_large(
                f"Range ends at byte {end}, beyond the document's size of {document.file_size}"
            )
        if start != uploaded:
            raise errors.missing_chunk(f"Expected a chunk starting at byte {uploaded}")
        document.data += chunk
        document.last_usage_time = self.clock()
        self.on_change()
        return len(document.data) == document.file_size

    def delete_document(self, document_id: str) -> None:
        """Tear down an upload or delete a finished document."""
        del self.documents[self.get_document(document_id).id]
        self.on_change()

    def use_documents(self, documents: list[UploadDocument]) -> None:
        """Record that a fax used these documents: single-use ones are consumed."""
        now = self.clock()
        for document in documents:
            if document.disposition == "SingleUse":
                self.documents.pop(document.id, None)
            else:
                document.used, document.last_usage_time = True, now
        self.on_change()
