"""The inbound ledger's first delivery record: the recipients and the image are kept with
it, in one durable commit, and which inbound writes may skip fsync."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from pathlib import Path

import pytest

from bridge.jobs import (
    DeliveryChannel,
    DeliveryState,
    InboundRecipient,
    InboundState,
    MessageSource,
    NewJob,
)
from bridge.store import Store
from tests.test_store import T0, inbound_record

A, B = InboundRecipient("a@example.org"), InboundRecipient("b@example.org")
PDF = (b"%PDF-1.4 fake", "application/pdf")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with await Store.open(tmp_path / "state") as opened:
        yield opened


async def test_the_first_delivery_record_keeps_the_image_and_every_recipient(
    store: Store,
) -> None:
    await store.inbound_seen_page([inbound_record(7)], now=T0)
    fax = await store.inbound_delivery_done(
        7, A.recipient, "<a@fax.example.org>", now=T0 + 1, recipients=[A, B], image=PDF
    )
    assert fax is not None
    assert (fax.state, fax.image_size, fax.updated_at) == (InboundState.DOWNLOADED, 13, T0 + 1)
    assert await store.inbound_image(7) == PDF
    work = await store.inbound_work(7)
    assert work is not None
    assert work[0] == fax
    assert [(d.recipient, d.state) for d in work[1]] == [
        (A.recipient, DeliveryState.DELIVERED),
        (B.recipient, DeliveryState.PENDING),
    ]


async def test_a_failed_first_delivery_keeps_them_too(store: Store) -> None:
    await store.inbound_seen_page([inbound_record(7)], now=T0)
    failed = await store.inbound_delivery_failed(
        7, A.recipient, "421 later", now=T0 + 1, recipients=[A, B], image=PDF
    )
    assert failed is not None
    assert (failed.state, failed.attempts, failed.last_error) == (
        DeliveryState.PENDING,
        1,
        "421 later",
    )
    assert await store.inbound_image(7) == PDF
    assert [d.recipient for d in await store.inbound_deliveries(7)] == [A.recipient, B.recipient]
    fax = await store.inbound_get(7)
    assert fax is not None
    assert fax.state is InboundState.DOWNLOADED


async def test_a_later_record_keeps_the_first_image_and_the_recorded_deliveries(
    store: Store,
) -> None:
    await store.inbound_seen_page([inbound_record(7)], now=T0)
    await store.inbound_delivery_done(
        7, A.recipient, "<a@x>", now=T0 + 1, recipients=[A], image=PDF
    )
    maildir = InboundRecipient("/var/mail/fax", DeliveryChannel.MAILDIR)
    fax = await store.inbound_delivery_done(
        7,
        maildir.recipient,
        "<m@x>",
        now=T0 + 2,
        recipients=[A, maildir],
        image=(b"II*\x00 other", "image/tiff"),
    )
    assert fax is not None
    assert fax.state is InboundState.DELIVERED
    assert await store.inbound_image(7) == PDF
    by_recipient = {d.recipient: d for d in await store.inbound_deliveries(7)}
    assert by_recipient[A.recipient].smtp_message_id == "<a@x>"
    assert by_recipient[maildir.recipient].channel is DeliveryChannel.MAILDIR


async def test_a_record_for_an_unknown_fax_changes_nothing(store: Store) -> None:
    assert await store.inbound_delivery_done(99, "a@x.org", "<x>", now=T0, recipients=[A]) is None
    failed = await store.inbound_delivery_failed(99, "a@x.org", "x", now=T0, image=PDF)
    assert failed is None
    assert await store.inbound_work(99) is None
    assert await store.inbound_image(99) is None


async def test_a_listed_page_is_recorded_in_order_and_only_new_rows_count_as_created(
    store: Store,
) -> None:
    await store.inbound_seen_page([inbound_record(8)], now=T0)
    faxes = await store.inbound_seen_page(
        [inbound_record(9), inbound_record(8), inbound_record(7)], now=T0 + 5
    )
    assert [(f.message_id, f.created) for f in faxes] == [(9, True), (8, False), (7, True)]
    assert [f.created_at for f in faxes] == [T0 + 5, T0, T0 + 5]


async def test_writes_that_skip_fsync_leave_the_connection_synchronous_full(
    store: Store,
) -> None:
    await store.inbound_seen_page([inbound_record(7)], now=T0)
    await store.inbound_delivery_done(7, A.recipient, "<a@x>", now=T0 + 2, recipients=[A])
    marked = await store.inbound_marked_read(7, now=T0 + 3, last_error=None)
    assert marked is not None
    assert marked.state is InboundState.MARKED_READ
    assert (await store.diagnostics()).synchronous == 2  # FULL, for every other commit


async def test_only_records_whose_loss_repeats_harmless_work_skip_fsync(store: Store) -> None:
    """A lost delivery record means a second mail: those commits must wait for fsync."""
    statements: list[str] = []
    # The connection lives on the store thread, and so does the callback.
    await store._read(lambda conn: conn.set_trace_callback(statements.append))  # type: ignore[attr-defined]

    async def skips_fsync(write: Awaitable[object]) -> bool:
        statements.clear()
        await write
        return "PRAGMA synchronous = NORMAL" in statements

    record = inbound_record(7)
    assert await skips_fsync(store.inbound_seen_page([record], now=T0))
    assert not await skips_fsync(
        store.inbound_delivery_done(7, A.recipient, "<a@x>", now=T0, recipients=[A, B], image=PDF)
    )
    assert not await skips_fsync(
        store.inbound_delivery_failed(7, B.recipient, "550 no", now=T0, permanent=False)
    )
    assert not await skips_fsync(store.inbound_delivery_done(7, B.recipient, "<b@x>", now=T0))
    assert await skips_fsync(store.inbound_marked_read(7, now=T0, last_error=None))
    assert not await skips_fsync(
        store.accept_message(
            b"Subject: x\r\n\r\nbody\r\n",
            source=MessageSource.SMTP,
            mail_from="a@example.org",
            from_header="a@example.org",
            message_id_header=None,
            recipients=[NewJob(destination="+12125550100", sender="a@example.org")],
            now=T0,
        )
    )
