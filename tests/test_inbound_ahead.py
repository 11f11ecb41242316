"""Requests a received fax starts ahead of the step that waits for them (bridge.inbound_ahead).

The first mail's envelope (MAIL, RCPT) goes to the relay while the image downloads. The
tests hold the download until the relay has seen that envelope: without the overlap
the hold times out and no mail goes out. The mark-read goes out beside the last
delivery record, and only when every other recipient has the fax (a crash in that
record is in ``test_inbound_crash``).
"""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path
from typing import Any

from bridge.errors import StoreError
from bridge.interfax_models import InboundImage
from bridge.jobs import InboundState
from tests.conftest import minimal_pdf
from tests.inbound_harness import FROM, HOUR, InboundHarness
from tests.inbound_helpers import attachments_of, broken_templates

A, B = "a@clinic.example.org", "b@clinic.example.org"
ROUTE = f'routes:\n  "+12125550100": [{A}, {B}]\n'


def hold_downloads_until_the_envelope(h: InboundHarness) -> None:
    """Every image download first waits until the relay answered RCPT for A."""
    assert h.client is not None
    download = h.client.inbound_image

    async def held(message_id: int) -> InboundImage:
        await h.sink.handler.wait_for_command(f"RCPT {A}", within=5)
        return await download(message_id)

    h.client.inbound_image = held  # type: ignore[method-assign]


async def test_the_first_mails_envelope_opens_while_the_image_downloads(
    h: InboundHarness,
) -> None:
    pdf = minimal_pdf(pages=2)
    fax_id = await h.control.receive_fax(pdf, phone_number="+12125550100")
    hold_downloads_until_the_envelope(h)
    await h.worker(ROUTE).poll_once()
    assert h.sink.handler.commands == [f"MAIL {FROM}", f"RCPT {A}", f"MAIL {FROM}", f"RCPT {B}"]
    assert [m.rcpt_tos[0] for m in h.sink.received] == [A, B]
    assert [attachments_of(m.parsed())[0][2] for m in h.sink.received] == [pdf, pdf]
    assert (await h.fax(fax_id)).state is InboundState.MARKED_READ
    assert await h.image_status(fax_id) == "READ"


async def test_a_failed_download_resets_the_opened_envelope_and_mails_nothing(
    h: InboundHarness,
) -> None:
    fax_id = await h.control.receive_fax(minimal_pdf(), phone_number="+12125550100")
    await h.control.faults(error_rate=1, error_status=500, paths=[f"/inbound/faxes/{fax_id}/image"])
    hold_downloads_until_the_envelope(h)
    worker = h.worker(ROUTE)
    await worker.poll_once()
    assert h.sink.handler.commands[-1] == "RSET"
    fax = await h.fax(fax_id)
    assert (fax.state, fax.attempts, h.sink.received) == (InboundState.SEEN, 1, [])
    assert await h.image_status(fax_id) == "UNREAD"
    await h.control.clear_faults()
    h.clock.advance(2 * HOUR)
    await worker.poll_once()
    assert sorted(m.rcpt_tos[0] for m in h.sink.received) == [A, B]
    assert (await h.fax(fax_id)).state is InboundState.MARKED_READ


async def test_our_own_failure_after_the_envelope_opened_resets_it_and_mails_nothing(
    h: InboundHarness, tmp_path: Path
) -> None:
    templates = broken_templates(tmp_path)
    fax_id = await h.control.receive_fax(minimal_pdf(), phone_number="+12125550100")
    hold_downloads_until_the_envelope(h)
    await h.worker(ROUTE, templates=templates).poll_once()
    assert h.sink.handler.commands[-1] == "RSET"
    assert h.sink.received == []
    assert (await h.fax(fax_id)).state is InboundState.DOWNLOADED
    assert await h.image_status(fax_id) == "UNREAD"


async def test_an_envelope_the_relay_dropped_during_the_download_is_sent_on_a_new_connection(
    h: InboundHarness,
) -> None:
    fax_id = await h.control.receive_fax(minimal_pdf(), phone_number="+12125550100")
    assert h.client is not None
    download = h.client.inbound_image

    async def held(message_id: int) -> InboundImage:
        await h.sink.handler.wait_for_command(f"RCPT {A}", within=5)
        h.sink.drop_connections()  # an idle timeout at the relay, say
        return await download(message_id)

    h.client.inbound_image = held  # type: ignore[method-assign]
    await h.worker(ROUTE).poll_once()
    assert [m.rcpt_tos[0] for m in h.sink.received] == [A, B]
    assert (await h.fax(fax_id)).state is InboundState.MARKED_READ


async def test_the_mark_waits_while_an_earlier_recipient_failed_even_if_the_last_took_it(
    h: InboundHarness,
) -> None:
    fax_id = await h.control.receive_fax(minimal_pdf(), phone_number="+12125550100")
    h.sink.handler.rcpt_replies[A] = "450 4.2.1 Mailbox busy"
    worker = h.worker(ROUTE)
    await worker.poll_once()
    assert [m.rcpt_tos[0] for m in h.sink.received] == [B]
    assert (await h.fax(fax_id)).state is InboundState.DOWNLOADED
    assert await h.image_status(fax_id) == "UNREAD"
    del h.sink.handler.rcpt_replies[A]
    h.clock.advance(2 * HOUR)
    await worker.poll_once()
    assert [m.rcpt_tos[0] for m in h.sink.received] == [B, A]
    assert await h.image_status(fax_id) == "READ"


async def test_a_failing_last_record_leaves_the_fax_to_the_ledger_which_mails_again(
    h: InboundHarness,
) -> None:
    # The mark-read went out beside the record that failed: the fax may be read at
    # InterFAX, but the ledger still owes B the mail and the retry sends it.
    loop_errors: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _, ctx: loop_errors.append(ctx))
    fax_id = await h.control.receive_fax(minimal_pdf(), phone_number="+12125550100")
    assert h.store is not None
    record = h.store.inbound_delivery_done
    records = 0

    async def failing_second(*args: Any, **kwargs: Any) -> Any:
        nonlocal records
        records += 1
        if records == 2:
            raise StoreError("disk full")
        return await record(*args, **kwargs)

    h.store.inbound_delivery_done = failing_second  # type: ignore[method-assign]
    worker = h.worker(ROUTE)
    await worker.poll_once()
    fax = await h.fax(fax_id)
    assert (fax.state, fax.attempts) == (InboundState.DOWNLOADED, 1)
    h.clock.advance(2 * HOUR)
    await worker.poll_once()
    assert [m.rcpt_tos[0] for m in h.sink.received] == [A, B, B]
    assert (await h.fax(fax_id)).state is InboundState.MARKED_READ
    assert await h.image_status(fax_id) == "READ"
    gc.collect()
    await asyncio.sleep(0)
    assert loop_errors == []
