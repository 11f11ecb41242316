"""Our own failures answer ``451 4.3.0``: never 5xx, never exception text on the wire.

Faults are injected into real components: the service's store is closed under it, a
second sqlite3 connection makes the commit itself fail, and (as the brief allows for
I/O faults that cannot be provoked as root) a store method raises ENOSPC.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from bridge.store import DB_FILENAME
from tests.bridge_harness import ALICE, RunningBridge
from tests.smtp_kit import (
    FAX,
    OnDisk,
    assert_clean_refusal,
    bridge_with,
    mail,
    on_disk,
    ready_for_data,
)
from tests.smtp_probe import SmtpProbe

TRY_LATER = "451 4.3.0 Temporary local problem, please try again later"


@pytest.fixture
async def bridge(tmp_path: Path) -> AsyncIterator[RunningBridge]:
    async with bridge_with(tmp_path) as running:
        yield running


@pytest.fixture
async def session(bridge: RunningBridge) -> AsyncIterator[SmtpProbe]:
    async with ready_for_data(bridge) as probe:
        yield probe


def _sql(state_dir: Path, statement: str) -> None:
    with closing(sqlite3.connect(state_dir / DB_FILENAME)) as conn:
        conn.execute(statement)
        conn.commit()


async def test_store_closed_under_the_service_answers_451_without_internals(
    bridge: RunningBridge, session: SmtpProbe, tmp_path: Path
) -> None:
    await bridge.service.store.close()
    reply = await session.data(mail())
    assert str(reply) == TRY_LATER
    assert_clean_refusal(str(reply))
    assert on_disk(tmp_path / "state").messages == []


async def test_failed_commit_answers_451_and_leaves_neither_message_nor_jobs(
    session: SmtpProbe, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    # The message row goes in first, then the job rows fail: all must roll back.
    _sql(
        state,
        "CREATE TRIGGER fault BEFORE INSERT ON jobs"
        " BEGIN SELECT RAISE(ABORT, 'disk I/O error: No space left on device'); END",
    )
    raw = mail(message_id="<retry@clinic.example.org>")
    reply = await session.data(raw)
    assert str(reply) == TRY_LATER
    assert_clean_refusal(str(reply))
    assert on_disk(state) == OnDisk([], [])

    # The client retries on the same connection once the fault is gone.
    _sql(state, "DROP TRIGGER fault")
    assert (await session.mail(ALICE)).code == 250
    assert (await session.rcpt(FAX)).code == 250
    assert (await session.data(raw)).status == "250 2.0.0"
    disk = on_disk(state)
    assert len(disk.messages) == 1
    assert len(disk.jobs) == 1


async def test_disk_full_in_the_store_answers_451_without_errno(
    bridge: RunningBridge, session: SmtpProbe, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def disk_full(*args: Any, **kwargs: Any) -> Any:
        raise OSError(28, "No space left on device", "/var/lib/fax-bridge/fax-bridge.sqlite3")

    monkeypatch.setattr(bridge.service.store, "accept_message", disk_full)
    reply = await session.data(mail())
    assert str(reply) == TRY_LATER
    assert_clean_refusal(str(reply))


@pytest.mark.parametrize("hook", ["check_sender", "check_recipient"])
async def test_bug_in_an_envelope_decision_answers_451_without_internals(
    bridge: RunningBridge, monkeypatch: pytest.MonkeyPatch, hook: str
) -> None:
    def bug(*args: Any, **kwargs: Any) -> Any:
        raise KeyError("/etc/secret: Traceback")

    assert bridge.service.intake is not None
    monkeypatch.setattr(bridge.service.intake, hook, bug)
    async with await SmtpProbe.open(bridge.smtp_port) as probe:
        await probe.ehlo()
        reply = await probe.mail(ALICE)
        if hook == "check_recipient":
            assert reply.code == 250
            reply = await probe.rcpt(FAX)
        assert str(reply) == TRY_LATER
        assert_clean_refusal(str(reply))


async def test_bug_at_end_of_data_answers_451_and_ends_the_transaction(
    bridge: RunningBridge, session: SmtpProbe, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    async def bug(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom in /srv/bridge/intake.py")

    assert bridge.service.intake is not None
    monkeypatch.setattr(bridge.service.intake, "accept", bug)
    reply = await session.data(mail())
    assert str(reply) == TRY_LATER
    assert_clean_refusal(str(reply))
    # After the final dot the transaction is over, even when it failed: a new MAIL
    # on the same connection must not be "503 nested MAIL command".
    monkeypatch.undo()
    assert (await session.mail(ALICE)).code == 250
    assert (await session.rcpt(FAX)).code == 250
    assert (await session.data(mail())).status == "250 2.0.0"
    assert len(on_disk(tmp_path / "state").jobs) == 1
