"""Who gets a received fax: the ledger's deliveries merged with the route (pure)."""

from __future__ import annotations

from bridge.inbound_plan import plan_deliveries
from bridge.jobs import DeliveryChannel, DeliveryState, InboundDelivery, InboundRecipient
from bridge.routing import Target

SMTP, MAILDIR = DeliveryChannel.SMTP, DeliveryChannel.MAILDIR


def recorded(recipient: str, state: DeliveryState, attempts: int = 1) -> InboundDelivery:
    return InboundDelivery(7, recipient, SMTP, state, None, None, attempts, None)


def test_a_new_fax_gets_a_pending_delivery_per_target_all_to_record() -> None:
    plan = plan_deliveries(7, [], [Target("b@x.org", SMTP), Target("/var/fax", MAILDIR)])
    assert [(d.recipient, d.channel, d.state) for d in plan.deliveries] == [
        ("/var/fax", MAILDIR, DeliveryState.PENDING),
        ("b@x.org", SMTP, DeliveryState.PENDING),
    ]
    assert plan.new == (InboundRecipient("b@x.org"), InboundRecipient("/var/fax", MAILDIR))
    assert plan.todo == plan.deliveries


def test_recorded_deliveries_keep_their_state_and_only_new_targets_are_added() -> None:
    done = recorded("a@x.org", DeliveryState.DELIVERED)
    failed = recorded("c@x.org", DeliveryState.FAILED, attempts=3)
    plan = plan_deliveries(7, [done, failed], [Target("a@x.org", SMTP), Target("b@x.org", SMTP)])
    assert [d.recipient for d in plan.deliveries] == ["a@x.org", "b@x.org", "c@x.org"]
    assert plan.deliveries[0] is done
    assert plan.deliveries[2] is failed  # promised earlier, no longer routed: still served
    assert plan.new == (InboundRecipient("b@x.org"),)
    assert [d.recipient for d in plan.todo] == ["b@x.org", "c@x.org"]


def test_without_a_route_only_the_recorded_deliveries_remain() -> None:
    assert plan_deliveries(7, [], []).deliveries == ()
    pending = recorded("a@x.org", DeliveryState.PENDING)
    plan = plan_deliveries(7, [pending], [])
    assert (plan.deliveries, plan.new) == ((pending,), ())


def test_a_target_listed_twice_is_one_delivery() -> None:
    plan = plan_deliveries(7, [], [Target("a@x.org", SMTP), Target("a@x.org", SMTP)])
    assert [d.recipient for d in plan.deliveries] == ["a@x.org"]
    assert plan.new == (InboundRecipient("a@x.org"),)
