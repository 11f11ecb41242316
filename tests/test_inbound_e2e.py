"""Fax to email end to end: the InterFAX sandbox over HTTP, a real aiosmtpd relay, the store."""

from __future__ import annotations

import asyncio
import mailbox
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest

from bridge.jobs import DeliveryState, InboundState
from tests.bridge_harness import eventually
from tests.conftest import minimal_pdf
from tests.inbound_harness import ADMIN, InboundHarness
from tests.inbound_helpers import (
    CVE_PAYLOAD,
    attachments_of,
    g4_tiff,
    pdf_page_count,
    text_body,
)

ROUTES = """\
routes:
  "+12125550100":
    to: [front@clinic.example.org]
    cc: [records@clinic.example.org]
  "+1 212 555 0101": [lab@clinic.example.org]
default_route: [catchall@clinic.example.org]
sender_routes:
  - caller_id: "+12125550123"
    to: [oncall@clinic.example.org]
"""


def parsed(data: bytes) -> EmailMessage:
    message = message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


async def test_each_recipient_gets_exactly_one_mail_with_the_pdf_intact_then_read(
    h: InboundHarness,
) -> None:
    pdf = minimal_pdf(pages=3)
    fax_id = await h.control.receive_fax(pdf, phone_number="+12125550100", caller_id="+12125550199")
    worker = h.worker(ROUTES)
    report = await worker.poll_once()
    assert (report.listed, report.new, report.delivered, report.marked_read) == (1, 1, 1, 1)
    assert sorted(m.rcpt_tos[0] for m in h.sink.received) == [
        "front@clinic.example.org",
        "records@clinic.example.org",
    ]
    ids = set()
    for mail in h.sink.received:
        assert len(mail.rcpt_tos) == 1
        message = parsed(mail.data)
        [(name, kind, data)] = attachments_of(message)
        assert (name.endswith(".pdf"), kind, data) == (True, "application/pdf", pdf)
        assert pdf_page_count(data) == 3
        assert str(message["Subject"]) == "Fax from +1 212-555-0199 to +1 212-555-0100 (3 pages)"
        assert (str(message["To"]), str(message["Cc"])) == (
            "front@clinic.example.org",
            "records@clinic.example.org",
        )
        ids.add(str(message["Message-ID"]))
    assert len(ids) == 2
    assert await h.image_status(fax_id) == "READ"
    assert (await h.fax(fax_id)).state is InboundState.MARKED_READ
    await worker.poll_once()
    assert len(h.sink.received) == 2


async def test_routing_by_number_default_route_and_sender_override(h: InboundHarness) -> None:
    pdf = minimal_pdf()
    to_lab = await h.control.receive_fax(pdf, phone_number="212-555-0101", caller_id=None)
    to_other = await h.control.receive_fax(pdf, phone_number="+12125550177")
    from_oncall = await h.control.receive_fax(
        pdf, phone_number="+12125550100", caller_id="1 (212) 555-0123"
    )
    await h.worker(ROUTES).poll_once()
    assert sorted(m.rcpt_tos[0] for m in h.sink.received) == [
        "catchall@clinic.example.org",
        "lab@clinic.example.org",
        "oncall@clinic.example.org",
    ]
    for fax_id in (to_lab, to_other, from_oncall):
        assert await h.image_status(fax_id) == "READ"


async def test_notify_only_route_sends_no_image_and_never_downloads_it(h: InboundHarness) -> None:
    fax_id = await h.control.receive_fax(minimal_pdf(), phone_number="+12125550100")
    await h.worker(
        'routes:\n  "+12125550100":\n    to: [hr@clinic.example.org]\n    attach: false\n'
    ).poll_once()
    [mail] = h.sink.received
    message = parsed(mail.data)
    assert attachments_of(message) == []
    assert "not attached" in text_body(message)
    fax = await h.fax(fax_id)
    assert (fax.state, fax.image_size) == (InboundState.MARKED_READ, None)


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ("pdf", [("application/pdf", ".pdf")]),
        ("tiff", [("image/tiff", ".tif")]),
        ("both", [("application/pdf", ".pdf"), ("image/tiff", ".tif")]),
    ],
)
async def test_a_g4_tiff_fax_arrives_in_the_route_format(
    h: InboundHarness, fmt: str, expected: list[tuple[str, str]]
) -> None:
    tiff = g4_tiff(4)
    await h.control.receive_fax(tiff, phone_number="+12125550100", filename="fax.tif")
    route = f'routes:\n  "+12125550100":\n    to: [a@clinic.example.org]\n    format: {fmt}\n'
    await h.worker(route).poll_once()
    [mail] = h.sink.received
    found = attachments_of(parsed(mail.data))
    assert [(kind, name[-4:]) for name, kind, _ in found] == expected
    for _, kind, data in found:
        if kind == "application/pdf":
            assert pdf_page_count(data) == 4
        else:
            assert data == tiff


async def test_maildir_route_delivers_into_the_maildir(h: InboundHarness) -> None:
    pdf = minimal_pdf(pages=2)
    fax_id = await h.control.receive_fax(pdf, phone_number="+12125550100")
    box_path = h.tmp / "mail" / "Maildir"
    route = f'routes:\n  "+12125550100":\n    deliver: maildir\n    path: {box_path}\n'
    await h.worker(route).poll_once()
    assert h.sink.received == []
    [message] = list(mailbox.Maildir(box_path, create=False))
    again = parsed(message.as_bytes())
    assert [data for _, _, data in attachments_of(again)] == [pdf]
    assert str(again["To"]) == "fax@clinic.example.org"
    [delivery] = await h.store.inbound_deliveries(fax_id)  # type: ignore[union-attr]
    assert (delivery.recipient, delivery.state) == (str(box_path), DeliveryState.DELIVERED)
    assert await h.image_status(fax_id) == "READ"


async def test_hostile_csid_and_caller_id_cannot_add_headers_or_recipients(
    h: InboundHarness,
) -> None:
    await h.control.receive_fax(
        minimal_pdf(),
        phone_number="+12125550100",
        caller_id="+1 212\r\nBcc: victim@evil.example",
        remote_csid=f"ACME\r\nX-Injected: yes {CVE_PAYLOAD}",
    )
    await h.worker(ROUTES).poll_once()
    assert len(h.sink.received) == 2
    for mail in h.sink.received:
        assert len(mail.rcpt_tos) == 1
        assert "victim@evil.example" not in mail.rcpt_tos
        message = parsed(mail.data)
        assert sorted(name.lower() for name in message) == [
            "auto-submitted",
            "cc",
            "content-type",
            "date",
            "from",
            "message-id",
            "mime-version",
            "subject",
            "to",
        ]
        assert b"\r\nX-Injected" not in mail.data
        assert b"\r\nBcc" not in mail.data
        assert "\n" not in str(message["Subject"])


async def test_paging_delivers_every_fax_beyond_the_first_page(h: InboundHarness) -> None:
    pdf = minimal_pdf()
    ids = [await h.control.receive_fax(pdf, phone_number="+12125550101") for _ in range(31)]
    report = await h.worker(ROUTES).poll_once()
    assert (report.listed, report.delivered) == (31, 31)
    assert len(h.sink.received) == 31
    assert {entry["imageStatus"] for entry in await h.control.inbound()} == {"READ"}
    assert {(await h.fax(i)).state for i in ids} == {InboundState.MARKED_READ}


async def test_mark_read_false_leaves_faxes_unread_and_never_mails_twice(
    h: InboundHarness,
) -> None:
    fax_id = await h.control.receive_fax(minimal_pdf(), phone_number="+12125550101")
    worker = h.worker(ROUTES + "mark_read: false\n")
    await worker.poll_once()
    h.clock.advance(10 * 86400)
    await worker.poll_once()
    assert len(h.sink.received) == 1
    assert await h.image_status(fax_id) == "UNREAD"
    assert (await h.fax(fax_id)).state is InboundState.DELIVERED
    # Switching marking on later marks what was delivered, still without a second mail.
    await h.worker(ROUTES).poll_once()
    assert await h.image_status(fax_id) == "READ"
    assert len(h.sink.received) == 1


async def test_an_operator_marking_a_fax_unread_does_not_resend_it(h: InboundHarness) -> None:
    fax_id = await h.control.receive_fax(minimal_pdf(), phone_number="+12125550101")
    worker = h.worker(ROUTES)
    await worker.poll_once()
    assert h.client is not None
    await h.client.mark_read(fax_id, read=False)
    report = await worker.poll_once()
    assert (report.listed, report.already_delivered) == (1, 1)
    assert len(h.sink.received) == 1
    assert await h.image_status(fax_id) == "UNREAD"


async def test_an_unclean_reception_is_flagged(h: InboundHarness) -> None:
    await h.control.receive_fax(minimal_pdf(), phone_number="+12125550101", messageStatus="3")
    await h.worker(ROUTES).poll_once()
    [mail] = h.sink.received
    message = parsed(mail.data)
    assert str(message["Subject"]).startswith("[incomplete] Fax from")
    assert "not received cleanly" in text_body(message)


async def test_admin_gets_nothing_when_all_goes_well(h: InboundHarness) -> None:
    await h.control.receive_fax(minimal_pdf(), phone_number="+12125550101")
    await h.worker(ROUTES).poll_once()
    assert h.mails_to(ADMIN) == []


async def test_a_fax_gives_its_place_back_before_its_last_ledger_write(
    h: InboundHarness,
) -> None:
    # Concurrency 1: the second fax can only be downloaded while the first one's
    # MARKED_READ record is held if the first fax gave its place back before it.
    for _ in range(2):
        await h.control.receive_fax(minimal_pdf(), phone_number="+12125550101")
    assert h.store is not None
    assert h.client is not None
    held, go = asyncio.Event(), asyncio.Event()
    marked_read, image = h.store.inbound_marked_read, h.client.inbound_image

    async def held_mark_record(*args: Any, **kwargs: Any) -> Any:
        if not held.is_set():
            held.set()
            await go.wait()
        return await marked_read(*args, **kwargs)

    async def counted_image(message_id: int) -> Any:
        if held.is_set():
            go.set()
        return await image(message_id)

    h.store.inbound_marked_read = held_mark_record  # type: ignore[method-assign]
    h.client.inbound_image = counted_image  # type: ignore[method-assign]
    worker = h.worker(ROUTES + "concurrency: 1\n")
    report = await asyncio.wait_for(worker.poll_once(), 30)
    assert (report.delivered, report.marked_read) == (2, 2)
    assert go.is_set()


async def test_a_new_fax_is_downloaded_once_while_its_ledger_row_is_read(
    h: InboundHarness,
) -> None:
    ids = [
        await h.control.receive_fax(minimal_pdf(), phone_number="+12125550101") for _ in range(3)
    ]
    downloads = h.count_downloads()
    assert h.store is not None
    read = h.store.inbound_work

    async def read_after_the_download_started(message_id: int) -> Any:
        # Without the early download this waits for a download that never starts.
        async def started() -> bool:
            return message_id in downloads

        await eventually(started, within=5, what="the download to start first")
        return await read(message_id)

    h.store.inbound_work = read_after_the_download_started  # type: ignore[method-assign]
    report = await h.worker(ROUTES).poll_once()
    assert report.delivered == 3
    assert sorted(downloads) == sorted(ids)


async def test_one_poll_mails_every_fax_over_at_most_concurrency_connections(
    h: InboundHarness,
) -> None:
    for n in range(6):
        await h.control.receive_fax(
            minimal_pdf(), phone_number="+12125550101", caller_id=f"+1212555020{n}"
        )
    worker = h.worker(ROUTES + "concurrency: 2\n")
    report = await worker.poll_once()
    assert report.delivered == 6
    assert len(h.mails_to("lab@clinic.example.org")) == 6
    assert len({m.peer for m in h.sink.received}) <= 2

    async def closed() -> bool:
        return not h.sink.connections

    await eventually(closed, within=5, what="the poll's relay connections to close")
