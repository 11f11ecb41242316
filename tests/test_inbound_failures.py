"""Fax to email when things go wrong: relay down or refusing, no route, InterFAX failing."""

from __future__ import annotations

import asyncio
import gc
import socket
from dataclasses import replace
from datetime import datetime
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest

from bridge.errors import AuthError, PermanentError, TransientError
from bridge.interfax import InterfaxClient
from bridge.jobs import (
    DeliveryChannel,
    DeliveryState,
    InboundFax,
    InboundRecipient,
    InboundState,
)
from bridge.render import TemplateRenderer
from bridge.sandbox.server import RunningSandbox
from tests.conftest import SandboxControl, minimal_pdf
from tests.inbound_harness import ADMIN, HOUR, InboundHarness, inbound_harness
from tests.inbound_helpers import attachments_of, broken_templates

A, B = "a@clinic.example.org", "b@clinic.example.org"
ROUTE = f'routes:\n  "+12125550100": [{A}, {B}]\n'
UNROUTED = f'routes:\n  "+12125550100": [{A}]\n'


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_relay_unreachable_leaves_the_fax_unread_and_downloaded(h: InboundHarness) -> None:
    fax_id = await h.control.receive_fax(minimal_pdf(), phone_number="+12125550100")
    await h.worker(ROUTE, relay_port=closed_port()).poll_once()
    fax = await h.fax(fax_id)
    assert fax.state is InboundState.DOWNLOADED
    assert fax.next_attempt_at > h.clock.now
    assert "relay unreachable" in (fax.last_error or "")
    assert await h.image_status(fax_id) == "UNREAD"
    # The relay comes back; once the retry is due, each recipient gets exactly one mail.
    h.clock.advance(2 * HOUR)
    await h.worker(ROUTE).poll_once()
    assert sorted(m.rcpt_tos[0] for m in h.sink.received) == [A, B]
    assert await h.image_status(fax_id) == "READ"


async def test_relay_deferring_is_retried_with_backoff_not_in_a_hot_loop(
    h: InboundHarness,
) -> None:
    fax_id = await h.control.receive_fax(minimal_pdf(), phone_number="+12125550100")
    h.sink.handler.data_reply = "451 4.3.0 try again later"
    worker = h.worker(ROUTE)
    await worker.poll_once()
    await worker.poll_once()  # not due yet: no second attempt
    deliveries = await h.store.inbound_deliveries(fax_id)  # type: ignore[union-attr]
    assert [(d.state, d.attempts) for d in deliveries] == [(DeliveryState.PENDING, 1)] * 2
    assert (await h.fax(fax_id)).attempts == 1
    assert await h.image_status(fax_id) == "UNREAD"
    h.sink.handler.data_reply = None
    h.clock.advance(2 * HOUR)
    await worker.poll_once()
    assert len(h.sink.received) == 2
    assert await h.image_status(fax_id) == "READ"


async def test_a_partial_failure_retries_only_the_failed_recipient(h: InboundHarness) -> None:
    fax_id = await h.control.receive_fax(minimal_pdf(), phone_number="+12125550100")
    h.sink.handler.rcpt_replies[B] = "450 4.2.1 mailbox busy"
    worker = h.worker(ROUTE)
    await worker.poll_once()
    assert [m.rcpt_tos for m in h.sink.received] == [[A]]
    assert await h.image_status(fax_id) == "UNREAD"
    del h.sink.handler.rcpt_replies[B]
    h.clock.advance(2 * HOUR)
    await worker.poll_once()
    assert sorted(m.rcpt_tos[0] for m in h.sink.received) == [A, B]
    assert await h.image_status(fax_id) == "READ"


async def test_too_large_for_the_relay_sends_a_notice_instead(
    sandbox: RunningSandbox, sandbox_control: SandboxControl, tmp_path: Path
) -> None:
    big = minimal_pdf(pages=400)
    assert len(big) > 40_000
    async with inbound_harness(sandbox, sandbox_control, tmp_path, data_size_limit=30_000) as h:
        fax_id = await h.control.receive_fax(big, phone_number="+12125550100")
        worker = h.worker(UNROUTED)
        await worker.poll_once()
        [mail] = h.sink.received
        message = message_from_bytes(mail.data, policy=policy.default)
        assert attachments_of(message) == []  # type: ignore[arg-type]
        assert "too large for the mail server" in mail.data.decode()
        assert await h.image_status(fax_id) == "READ"
        [delivery] = await h.store.inbound_deliveries(fax_id)  # type: ignore[union-attr]
        assert delivery.state is DeliveryState.DELIVERED
        assert worker.counters["too_large"] == 1


async def test_a_permanent_refusal_tells_the_admin_once_and_keeps_the_fax_unread(
    h: InboundHarness,
) -> None:
    fax_id = await h.control.receive_fax(minimal_pdf(), phone_number="+12125550100")
    h.sink.handler.rcpt_replies[A] = "550 5.1.1 no such user"
    worker = h.worker(UNROUTED)
    for _ in range(3):
        await worker.poll_once()
        h.clock.advance(2 * HOUR)
    [notice] = h.mails_to(ADMIN)
    assert "no such user" in notice.data.decode()
    assert h.mails_to(A) == []
    fax = await h.fax(fax_id)
    assert fax.state is InboundState.DOWNLOADED
    assert "550" in (fax.last_error or "")
    assert await h.image_status(fax_id) == "UNREAD"
    [delivery] = await h.store.inbound_deliveries(fax_id)  # type: ignore[union-attr]
    assert (delivery.state, delivery.attempts) == (DeliveryState.FAILED, 3)
    # The address is fixed on the mail side: the next due retry delivers it.
    del h.sink.handler.rcpt_replies[A]
    await worker.poll_once()
    assert len(h.mails_to(A)) == 1
    assert await h.image_status(fax_id) == "READ"


async def test_an_unrouted_fax_stays_unread_and_the_admin_is_told_once(h: InboundHarness) -> None:
    fax_id = await h.control.receive_fax(minimal_pdf(), phone_number="+12125550199")
    worker = h.worker(UNROUTED)
    for _ in range(3):
        report = await worker.poll_once()
        assert report.unrouted == 1
        h.clock.advance(2 * HOUR)
    [notice] = h.sink.received
    assert notice.rcpt_tos == [ADMIN]
    assert "No route" in str(message_from_bytes(notice.data, policy=policy.default)["Subject"])
    assert (await h.fax(fax_id)).state is InboundState.UNROUTED
    assert await h.image_status(fax_id) == "UNREAD"
    assert worker.counters["faxes_unrouted"] == 1
    # A reload adds a default route: the next poll delivers it.
    worker.replace_settings(h.settings(UNROUTED + f"default_route: [{B}]\n"), TemplateRenderer())
    await worker.poll_once()
    assert [m.rcpt_tos for m in h.mails_to(B)] == [[B]]
    assert await h.image_status(fax_id) == "READ"


async def test_an_unrouted_fax_waits_for_the_admin_notice_when_the_relay_is_down(
    h: InboundHarness,
) -> None:
    fax_id = await h.control.receive_fax(minimal_pdf(), phone_number="+12125550199")
    await h.worker(UNROUTED, relay_port=closed_port()).poll_once()
    assert (await h.fax(fax_id)).state is InboundState.SEEN
    h.clock.advance(2 * HOUR)
    await h.worker(UNROUTED).poll_once()
    assert [m.rcpt_tos for m in h.sink.received] == [[ADMIN]]
    assert (await h.fax(fax_id)).state is InboundState.UNROUTED


async def test_a_failed_mark_read_is_retried_without_a_second_mail(h: InboundHarness) -> None:
    fax_id = await h.control.receive_fax(minimal_pdf(), phone_number="+12125550100")
    await h.control.faults(error_rate=1, error_status=503, paths=[f"/inbound/faxes/{fax_id}/mark"])
    worker = h.worker(ROUTE)
    await worker.poll_once()
    assert (await h.fax(fax_id)).state is InboundState.DELIVERED
    assert await h.image_status(fax_id) == "UNREAD"
    await h.control.clear_faults()
    await worker.poll_once()  # listed unread, but the retry is not due yet
    assert (await h.fax(fax_id)).state is InboundState.DELIVERED
    h.clock.advance(2 * HOUR)
    await worker.poll_once()
    assert (await h.fax(fax_id)).state is InboundState.MARKED_READ
    assert await h.image_status(fax_id) == "READ"
    assert len(h.sink.received) == 2


async def test_a_failed_download_is_retried_later(h: InboundHarness) -> None:
    fax_id = await h.control.receive_fax(minimal_pdf(), phone_number="+12125550100")
    await h.control.faults(error_rate=1, error_status=500, paths=[f"/inbound/faxes/{fax_id}/image"])
    worker = h.worker(ROUTE)
    await worker.poll_once()
    fax = await h.fax(fax_id)
    assert (fax.state, fax.attempts, h.sink.received) == (InboundState.SEEN, 1, [])
    await h.control.clear_faults()
    h.clock.advance(2 * HOUR)
    await worker.poll_once()
    assert len(h.sink.received) == 2


async def test_listing_errors_back_off_to_a_ceiling_and_reset_on_success(
    h: InboundHarness,
) -> None:
    worker = h.worker(ROUTE + "poll_interval: 60s\n")
    await h.control.faults(error_rate=1, error_status=503, paths=["/inbound/faxes"])
    with pytest.raises(TransientError):
        await worker.poll_once()
    delays = [await worker.tick() for _ in range(8)]
    assert all(60 <= d <= 900 for d in delays)
    assert delays[-1] > 300  # grown towards the ceiling
    assert worker.counters["poll_errors"] == 8
    await h.control.clear_faults()
    assert await worker.tick() == 60


async def test_a_401_pauses_the_gate_and_a_good_poll_resumes_it(h: InboundHarness) -> None:
    await h.control.receive_fax(minimal_pdf(), phone_number="+12125550100")
    assert h.client is not None
    async with InterfaxClient(h.sandbox.base_url, "user", "wrong") as bad:
        worker = h.worker(ROUTE, client=bad)
        with pytest.raises(AuthError):
            await worker.poll_once()
        assert await worker.tick() == 60
        assert h.gate.paused
    assert h.sink.received == []
    await h.worker(ROUTE).poll_once()
    assert not h.gate.paused
    assert len(h.sink.received) == 2


class MarkSignallingClient(InterfaxClient):
    """The real client, telling the test when a fax was marked read."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.marked = asyncio.Event()

    async def mark_read(self, message_id: int, read: bool = True) -> None:
        await super().mark_read(message_id, read)
        self.marked.set()


async def test_run_delivers_on_its_first_poll_and_stops_promptly(h: InboundHarness) -> None:
    fax_id = await h.control.receive_fax(minimal_pdf(), phone_number="+12125550100")
    stopping = asyncio.Event()
    async with MarkSignallingClient(h.sandbox.base_url, "user", "secret") as client:
        task = asyncio.create_task(h.worker(ROUTE, client=client).run(stopping))
        await asyncio.wait_for(client.marked.wait(), 10)
        stopping.set()
        await asyncio.wait_for(task, 10)
    assert len(h.sink.received) == 2
    assert await h.image_status(fax_id) == "READ"


IMAP_OUT = "imap_out:\n  host: 127.0.0.1\n  tls: none\n  username: fax\n  password: x\n"
IMAP_ROUTE = 'routes:\n  "+12125550100":\n    deliver: imap\n    folder: Faxes\n'


async def test_deliver_imap_without_an_imap_delivery_leaves_the_fax_unread(
    h: InboundHarness,
) -> None:
    fax_id = await h.control.receive_fax(minimal_pdf(), phone_number="+12125550100")
    await h.worker(IMAP_ROUTE, extra=IMAP_OUT).poll_once()
    fax = await h.fax(fax_id)
    assert fax.state is InboundState.SEEN
    assert "imap is not available" in (fax.last_error or "")
    assert fax.next_attempt_at >= h.clock.now + HOUR  # not retried at every poll
    assert await h.store.inbound_deliveries(fax_id) == []  # type: ignore[union-attr]
    assert await h.image_status(fax_id) == "UNREAD"
    assert h.sink.received == []


class FakeImap:
    """Stands in for ImapDelivery.append_fax_mail (the real one is tested with Dovecot)."""

    def __init__(self, error: Exception | None = None) -> None:
        self.appended: list[tuple[bytes, str, datetime]] = []
        self.error = error

    async def append(self, data: bytes, folder: str, internal_date: datetime) -> None:
        if self.error is not None:
            raise self.error
        self.appended.append((data, folder, internal_date))


async def test_deliver_imap_appends_once_dated_by_the_fax_then_marks_read(
    h: InboundHarness,
) -> None:
    pdf = minimal_pdf()
    fax_id = await h.control.receive_fax(pdf, phone_number="+12125550100")
    imap = FakeImap()
    await h.worker(IMAP_ROUTE, extra=IMAP_OUT, imap=imap.append).poll_once()
    [(data, folder, when)] = imap.appended
    fax = await h.fax(fax_id)
    assert folder == "Faxes"
    assert when.tzinfo is not None
    assert when.timestamp() == fax.receive_time
    message = message_from_bytes(data, policy=policy.default)
    assert [a for _, _, a in attachments_of(message)] == [pdf]  # type: ignore[arg-type]
    [delivery] = await h.store.inbound_deliveries(fax_id)  # type: ignore[union-attr]
    assert delivery.smtp_message_id == str(message["Message-ID"])
    assert await h.image_status(fax_id) == "READ"
    assert h.sink.received == []


async def test_an_imap_refusal_keeps_the_fax_unread_and_tells_the_admin_once(
    h: InboundHarness,
) -> None:
    fax_id = await h.control.receive_fax(minimal_pdf(), phone_number="+12125550100")
    imap = FakeImap(PermanentError("NO [OVERQUOTA] Quota exceeded"))
    worker = h.worker(IMAP_ROUTE, extra=IMAP_OUT, imap=imap.append)
    for _ in range(2):
        await worker.poll_once()
        h.clock.advance(2 * HOUR)
    assert [m.rcpt_tos for m in h.sink.received] == [[ADMIN]]
    assert "Quota exceeded" in h.sink.received[0].data.decode()
    assert await h.image_status(fax_id) == "UNREAD"
    assert (await h.fax(fax_id)).state is InboundState.DOWNLOADED


async def test_an_early_download_a_fresh_ledger_row_makes_needless_is_dropped_quietly(
    h: InboundHarness, caplog: pytest.LogCaptureFixture
) -> None:
    # The snapshot that schedules a fax says SEEN, so its download starts at once; the
    # ledger (read meanwhile) already keeps the image. The kept image is mailed, and the
    # early download, failing here, is dropped without a word.
    fax_id = await h.control.receive_fax(minimal_pdf(pages=2), phone_number="+12125550100")
    await h.worker(ROUTE, relay_port=closed_port()).poll_once()
    assert (await h.fax(fax_id)).state is InboundState.DOWNLOADED
    image_path = f"/inbound/faxes/{fax_id}/image"
    await h.control.faults(error_rate=1.0, error_status=500, paths=[image_path])
    assert h.store is not None
    seen_page = h.store.inbound_seen_page

    async def stale(*args: Any, **kwargs: Any) -> list[InboundFax]:
        rows = await seen_page(*args, **kwargs)
        return [replace(row, state=InboundState.SEEN, next_attempt_at=0.0) for row in rows]

    h.store.inbound_seen_page = stale  # type: ignore[method-assign]
    downloads = h.count_downloads()
    await h.worker(ROUTE).poll_once()
    assert downloads == [fax_id]
    assert sorted(m.rcpt_tos[0] for m in h.sink.received) == [A, B]
    for mail in h.sink.received:
        [(_, _, data)] = attachments_of(message_from_bytes(mail.data, policy=policy.default))
        assert data == minimal_pdf(pages=2)
    assert (await h.fax(fax_id)).state is InboundState.MARKED_READ
    gc.collect()  # a task whose failure nobody retrieved is reported when it is collected
    assert "never retrieved" not in caplog.text


async def test_a_fax_our_own_template_holds_up_keeps_its_image_and_is_downloaded_once(
    h: InboundHarness, tmp_path: Path
) -> None:
    templates = broken_templates(tmp_path)
    pdf = minimal_pdf(pages=2)
    fax_id = await h.control.receive_fax(pdf, phone_number="+12125550100")
    downloads = h.count_downloads()
    await h.worker(ROUTE, templates=templates).poll_once()
    fax = await h.fax(fax_id)
    assert (fax.state, fax.image_size) == (InboundState.DOWNLOADED, len(pdf))
    assert h.sink.received == []
    deliveries = await h.store.inbound_deliveries(fax_id)  # type: ignore[union-attr]
    assert [(d.recipient, d.state) for d in deliveries] == [
        (A, DeliveryState.PENDING),
        (B, DeliveryState.PENDING),
    ]
    assert "ZeroDivisionError" in (deliveries[0].last_error or "")
    # The template is mended: the retry mails the kept image, InterFAX is not asked again.
    h.clock.advance(2 * HOUR)
    await h.worker(ROUTE).poll_once()
    assert downloads == [fax_id]
    assert sorted(m.rcpt_tos[0] for m in h.sink.received) == [A, B]
    assert (await h.fax(fax_id)).state is InboundState.MARKED_READ


async def test_a_recorded_imap_delivery_without_imap_waits_while_the_others_are_mailed(
    h: InboundHarness,
) -> None:
    # An older route promised the fax to a folder (recorded), and imap_out is gone since.
    fax_id = await h.control.receive_fax(minimal_pdf(), phone_number="+12125550100")
    await h.worker(ROUTE, relay_port=closed_port()).poll_once()  # records A and B, keeps image
    assert h.store is not None
    folder = InboundRecipient("Faxes", DeliveryChannel.IMAP)
    await h.store.inbound_delivery_failed(
        fax_id, A, "relay unreachable", now=h.clock.now, recipients=[folder]
    )
    h.clock.advance(2 * HOUR)
    await h.worker(ROUTE).poll_once()
    assert sorted(m.rcpt_tos[0] for m in h.sink.received) == [A, B]
    fax = await h.fax(fax_id)
    assert fax.state is InboundState.DOWNLOADED
    assert "imap is not available" in (fax.last_error or "")
    assert fax.next_attempt_at >= h.clock.now + HOUR
    assert await h.image_status(fax_id) == "UNREAD"
    states = {d.recipient: d.state for d in await h.store.inbound_deliveries(fax_id)}
    assert states == {
        A: DeliveryState.DELIVERED,
        B: DeliveryState.DELIVERED,
        "Faxes": DeliveryState.PENDING,
    }
