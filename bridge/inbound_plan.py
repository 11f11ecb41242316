"""Who gets a received fax: its recorded deliveries merged with its route (pure, no I/O).

A recipient recorded in the ledger was promised the fax and keeps its delivery, in
whatever state, even when a reload has since taken it out of the route. A target of the
route that the ledger does not hold yet gets a PENDING delivery that exists only here
until the fax's first delivery record, done or failed, writes it (see
``Store.inbound_delivery_done`` and ``Store.inbound_delivery_failed``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bridge.jobs import DeliveryState, InboundDelivery, InboundRecipient
from bridge.routing import Target


@dataclass(frozen=True, slots=True)
class DeliveryPlan:
    """Every recipient's delivery of one fax (by recipient), and those to record."""

    deliveries: tuple[InboundDelivery, ...]
    new: tuple[InboundRecipient, ...]

    @property
    def todo(self) -> tuple[InboundDelivery, ...]:
        """The deliveries still to make, in order."""
        return tuple(d for d in self.deliveries if d.state is not DeliveryState.DELIVERED)


def plan_deliveries(
    message_id: int, recorded: Sequence[InboundDelivery], targets: Sequence[Target]
) -> DeliveryPlan:
    """``recorded`` (the ledger's deliveries of the fax) with the route's ``targets`` added."""
    known = {d.recipient for d in recorded}
    new: list[InboundRecipient] = []
    for target in targets:
        if target.recipient not in known:
            known.add(target.recipient)
            new.append(InboundRecipient(target.recipient, target.channel))
    added = (_pending(message_id, r) for r in new)
    deliveries = sorted([*recorded, *added], key=lambda d: d.recipient)
    return DeliveryPlan(tuple(deliveries), tuple(new))


def _pending(message_id: int, recipient: InboundRecipient) -> InboundDelivery:
    """A delivery not recorded yet, as the ledger will hold it."""
    return InboundDelivery(
        message_id=message_id,
        recipient=recipient.recipient,
        channel=recipient.channel,
        state=DeliveryState.PENDING,
        smtp_message_id=None,
        delivered_at=None,
        attempts=0,
        last_error=None,
    )
