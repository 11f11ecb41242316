"""Requests a received fax starts ahead of the step that waits for them (bridge.inbound_ahead).

The first mail's envelope (MAIL, RCPT) goes to the relay while the image downloads. The
tests hold the download until the relay has seen that envelope: without the overlap
the hold times out and no mail goes out. (The mark-read that overlaps the last delivery
record is proven in ``test_inbound_crash``.)
"""

from __future__ import annotations

from pathlib import Path

from bridge.interfax_models import InboundImage
from bridge.jobs import InboundState
from tests.conftest import minimal_pdf
from tests.inbound_harness import FROM, HOUR, InboundHarness
from tests.inbound_helpers import attachments_of

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
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "inbound.txt.j2").write_text("{{ pages / 0 }}\n")
    fax_id = await h.control.receive_fax(minimal_pdf(), phone_number="+12125550100")
    hold_downloads_until_the_envelope(h)
    await h.worker(ROUTE, templates=templates).poll_once()
    assert h.sink.handler.commands[-1] == "RSET"
    assert h.sink.received == []
    assert (await h.fax(fax_id)).state is InboundState.DOWNLOADED
    assert await h.image_status(fax_id) == "UNREAD"
