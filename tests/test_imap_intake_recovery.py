"""IMAP intake across crashes, lost connections and server restarts: nothing lost, no fax twice."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from bridge.imap import ImapClient
from bridge.intake import Intake, IntakePolicy, Reply
from bridge.jobs import MessageSource
from bridge.numbers import FaxNumber
from bridge.store_imap import ImapState
from tests.bridge_harness import eventually
from tests.dovecot import Dovecot, running_dovecot
from tests.imap_kit import Crash, Rig, counted, fax_request, rig_for, running


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Dovecot]:
    with running_dovecot() as server:
        yield server


class CrashBeforeMove(ImapClient):
    """The process dies when the worker is about to move the message."""

    async def move(self, uid: int, folder: str) -> None:
        raise Crash


class CrashAfterCommit(Intake):
    """The process dies right after the queue committed the message."""

    async def accept(
        self,
        raw: bytes,
        *,
        mail_from: str,
        recipients: Sequence[FaxNumber],
        source: MessageSource,
    ) -> Reply:
        reply = await super().accept(raw, mail_from=mail_from, recipients=recipients, source=source)
        assert reply.accepted, reply
        raise Crash


async def crash_once(rig: Rig, **worker_options: Any) -> None:
    """Run a worker until it 'dies', then open the store again as a new process would."""
    with pytest.raises(Crash):
        await asyncio.wait_for(rig.worker(**worker_options).run(asyncio.Event()), 15)
    await rig.restart_store()


async def finish(rig: Rig) -> None:
    """Start a healthy worker and let it file everything."""
    worker = rig.worker()
    async with running(worker):
        await eventually(lambda: rig.folder("Faxed"), what="the request filed")
        await eventually(lambda: _inbox_empty(rig), what="an empty INBOX")


async def _inbox_empty(rig: Rig) -> bool:
    return not await rig.folder("INBOX")


@pytest.mark.parametrize("message_id", [True, False], ids=["with-message-id", "no-message-id"])
async def test_a_crash_after_the_enqueue_and_before_the_move_sends_no_second_fax(
    tmp_path: Path, dovecot: Dovecot, message_id: bool
) -> None:
    async with rig_for(tmp_path, dovecot) as rig:
        uid = await rig.put(fax_request(message_id=message_id))
        await crash_once(rig, client_factory=CrashBeforeMove)
        entry = await rig.entry(uid)
        assert entry is not None
        assert entry.state is ImapState.ENQUEUED  # recorded before the move was tried
        assert len(await rig.jobs()) == 1
        assert len(await rig.folder("INBOX")) == 1

        await finish(rig)
        assert len(await rig.jobs()) == 1
        assert len(await rig.folder("Faxed")) == 1
        entry = await rig.entry(uid)
        assert entry is not None
        assert entry.state is ImapState.DONE


async def test_a_crash_between_the_queue_commit_and_the_ledger_sends_no_second_fax(
    tmp_path: Path, dovecot: Dovecot
) -> None:
    # Without a Message-ID the queue's own duplicate check cannot help: the ledger must.
    async with rig_for(tmp_path, dovecot) as rig:
        uid = await rig.put(fax_request(message_id=False))
        crashing = CrashAfterCommit(rig.store, IntakePolicy.from_config(rig.config))
        await crash_once(rig, intake=crashing)
        entry = await rig.entry(uid)
        assert entry is not None
        assert entry.state is ImapState.SEEN
        assert len(await rig.jobs()) == 1

        await finish(rig)
        assert len(await rig.jobs()) == 1
        entry = await rig.entry(uid)
        assert entry is not None
        assert entry.state is ImapState.DONE


async def test_a_message_someone_moved_away_after_the_enqueue_is_forgotten_not_faxed_again(
    tmp_path: Path, dovecot: Dovecot
) -> None:
    async with rig_for(tmp_path, dovecot) as rig:
        uid = await rig.put(fax_request())
        await crash_once(rig, client_factory=CrashBeforeMove)
        async with ImapClient(rig.settings.connection) as client:
            await client.ensure_folder("Archive")
            await client.select("INBOX")
            await client.move(uid, "Archive")

        worker = rig.worker()
        async with running(worker):
            await eventually(lambda: counted(worker, "vanished"), what="the message forgotten")
        assert len(await rig.jobs()) == 1
        entry = await rig.entry(uid)
        assert entry is not None
        assert entry.state is ImapState.VANISHED


async def test_a_server_restart_while_idling_reconnects_and_loses_nothing(tmp_path: Path) -> None:
    with running_dovecot() as server:
        async with rig_for(tmp_path, server, poll="5m") as rig:
            worker = rig.worker()
            async with running(worker):
                await eventually(lambda: counted(worker, "idles"), what="the worker idling")
                await asyncio.to_thread(server.restart)
                await eventually(lambda: counted(worker, "connects", 2), what="a reconnect")
                await eventually(lambda: counted(worker, "idles", 2), what="idling again")
                await rig.put(fax_request())
                await eventually(lambda: rig.folder("Faxed"), what="the request filed")
            assert worker.counters["session_errors"] >= 1
            assert worker.last_error is None
            assert len(await rig.jobs()) == 1
