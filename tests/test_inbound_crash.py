"""Crash safety of fax to email: a worker dies at each step, a new one resumes from the ledger.

A crash is simulated by a ``BaseException`` raised right after (or before) one durable
step, which no handler in the worker catches: the poll dies mid-fax as a killed process
would, with the ledger exactly as that step left it. The restart opens a new store
handle and a new InterFAX client on the same state directory. Every scenario must end
with the fax marked read and exactly one mail per recipient, except for a crash between
the relay's 250 and that mail's record: then the mail goes once more, with the same
Message-ID.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from email import message_from_bytes, policy
from typing import Any

import pytest

from bridge.jobs import InboundState
from tests.conftest import minimal_pdf
from tests.inbound_harness import InboundHarness

A, B = "a@clinic.example.org", "b@clinic.example.org"
ROUTE = f'routes:\n  "+12125550100": [{A}, {B}]\n'


class Crash(BaseException):
    """The process died here."""


def crash_after(target: object, name: str, *, calls: int = 1) -> None:
    """Make ``target.name`` crash right after its ``calls``-th call returned."""
    original: Callable[..., Awaitable[Any]] = getattr(target, name)
    seen = 0

    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        nonlocal seen
        result = await original(*args, **kwargs)
        seen += 1
        if seen == calls:
            raise Crash(name)
        return result

    setattr(target, name, wrapper)


def crash_before(target: object, name: str) -> None:
    """Make ``target.name`` crash instead of running."""

    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        raise Crash(name)

    setattr(target, name, wrapper)


async def crashed_poll(h: InboundHarness) -> None:
    with pytest.raises(BaseExceptionGroup) as info:
        await h.worker(ROUTE).poll_once()
    assert info.group_contains(Crash)


async def restart_and_poll(h: InboundHarness, fax_id: int) -> list[int]:
    """Restart, poll once, check the fax ended read; the image downloads of that poll."""
    await h.restart()
    downloads = h.count_downloads()
    await h.worker(ROUTE).poll_once()
    assert (await h.fax(fax_id)).state is InboundState.MARKED_READ
    assert await h.image_status(fax_id) == "READ"
    return downloads


def assert_one_mail_each(h: InboundHarness) -> None:
    assert sorted(m.rcpt_tos[0] for m in h.sink.received) == [A, B]


async def test_crash_after_the_download_downloads_again_and_mails_each_once(
    h: InboundHarness,
) -> None:
    # Nothing is recorded between the download and the first delivery record.
    fax_id = await h.control.receive_fax(minimal_pdf(pages=2), phone_number="+12125550100")
    assert h.client is not None
    crash_after(h.client, "inbound_image")
    await crashed_poll(h)
    assert (await h.fax(fax_id)).state is InboundState.SEEN
    assert h.sink.received == []
    assert await restart_and_poll(h, fax_id) == [fax_id]
    assert_one_mail_each(h)


async def test_crash_after_one_delivery_was_recorded_mails_only_the_other_from_the_kept_image(
    h: InboundHarness,
) -> None:
    fax_id = await h.control.receive_fax(minimal_pdf(), phone_number="+12125550100")
    crash_after(h.store, "inbound_delivery_done")
    await crashed_poll(h)
    assert len(h.sink.received) == 1
    fax = await h.fax(fax_id)
    assert (fax.state, fax.image_size) == (InboundState.DOWNLOADED, len(minimal_pdf()))
    assert await restart_and_poll(h, fax_id) == []
    assert_one_mail_each(h)


async def test_crash_after_every_delivery_before_the_mark(h: InboundHarness) -> None:
    fax_id = await h.control.receive_fax(minimal_pdf(), phone_number="+12125550100")
    assert h.client is not None
    crash_before(h.client, "mark_read")
    await crashed_poll(h)
    assert (await h.fax(fax_id)).state is InboundState.DELIVERED
    assert await h.image_status(fax_id) == "UNREAD"
    assert await restart_and_poll(h, fax_id) == []
    assert_one_mail_each(h)


async def test_crash_after_the_mark_before_its_commit_marks_again_harmlessly(
    h: InboundHarness,
) -> None:
    fax_id = await h.control.receive_fax(minimal_pdf(), phone_number="+12125550100")
    assert h.client is not None
    crash_after(h.client, "mark_read")
    await crashed_poll(h)
    assert (await h.fax(fax_id)).state is InboundState.DELIVERED
    assert await h.image_status(fax_id) == "READ"
    await restart_and_poll(h, fax_id)
    assert_one_mail_each(h)


async def test_crash_between_the_relay_250_and_the_ledger_repeats_the_same_message(
    h: InboundHarness,
) -> None:
    # The one window the ledger cannot close: the relay took the mail, we died before
    # recording it. The repeat carries the same Message-ID, so mail systems can drop it.
    fax_id = await h.control.receive_fax(minimal_pdf(), phone_number="+12125550100")
    crash_before(h.store, "inbound_delivery_done")
    await crashed_poll(h)
    [first] = h.sink.received
    await restart_and_poll(h, fax_id)
    to_first = [m for m in h.sink.received if m.rcpt_tos == first.rcpt_tos]
    assert len(to_first) == 2
    ids = {str(message_from_bytes(m.data, policy=policy.default)["Message-ID"]) for m in to_first}
    assert len(ids) == 1
    assert sorted({m.rcpt_tos[0] for m in h.sink.received}) == [A, B]


async def test_the_mark_goes_out_beside_the_last_record_and_a_crash_there_repeats_only_that_mail(
    h: InboundHarness,
) -> None:
    # The mark-read request overlaps the last delivery record. Dying in that record
    # leaves the fax read at InterFAX while the ledger still owes B its mail: the ledger,
    # not the unread flag, drives the restart, which mails B again (same Message-ID).
    fax_id = await h.control.receive_fax(minimal_pdf(), phone_number="+12125550100")
    assert h.client is not None
    assert h.store is not None
    marked = asyncio.Event()
    mark_read = h.client.mark_read
    record = h.store.inbound_delivery_done
    records = 0

    async def mark_and_tell(message_id: int, read: bool = True) -> None:
        await mark_read(message_id, read)
        marked.set()

    async def die_in_the_last_record(*args: Any, **kwargs: Any) -> Any:
        nonlocal records
        records += 1
        if records == 1:
            return await record(*args, **kwargs)
        # Without the overlap the mark waits for this record, and this wait times out.
        await asyncio.wait_for(marked.wait(), timeout=10)
        raise Crash("inbound_delivery_done")

    h.client.mark_read = mark_and_tell  # type: ignore[method-assign]
    h.store.inbound_delivery_done = die_in_the_last_record  # type: ignore[method-assign]
    await crashed_poll(h)
    assert await h.image_status(fax_id) == "READ"
    assert (await h.fax(fax_id)).state is InboundState.DOWNLOADED
    assert await restart_and_poll(h, fax_id) == []  # from the image the first record kept
    to_b = [m for m in h.sink.received if m.rcpt_tos == [B]]
    assert len(to_b) == 2
    ids = {str(message_from_bytes(m.data, policy=policy.default)["Message-ID"]) for m in to_b}
    assert len(ids) == 1
    assert [m.rcpt_tos for m in h.sink.received].count([A]) == 1
