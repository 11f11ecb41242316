"""The IMAP intake ledger in the store: schema step 2, transitions, recovery queries."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path

import pytest

from bridge.errors import StoreError
from bridge.jobs import MessageSource, NewJob
from bridge.store import DB_FILENAME, SCHEMA_VERSION, Store
from bridge.store_imap import ImapKey, ImapState
from tests.conftest import database_at

KEY = ImapKey("fax@example.org@imap.example.org", "INBOX", 1795742580, 7)
RAW = b"From: alice@clinic.example.org\r\nSubject: x\r\n\r\nbody\r\n"
SHA = hashlib.sha256(RAW).hexdigest()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with await Store.open(tmp_path) as opened:
        yield opened


async def test_a_version_1_database_is_migrated_and_keeps_its_rows(tmp_path: Path) -> None:
    # Written as fax-bridge's first schema held it (today's code writes today's schema).
    with closing(database_at(tmp_path, 1)) as conn, conn:
        conn.execute(
            "INSERT INTO messages (id, received_at, source, mail_from, from_header, size,"
            " sha256, raw, trace_id) VALUES (1, 1.0, 'smtp', 'alice@clinic.example.org',"
            " 'alice@clinic.example.org', ?, ?, ?, 'trace')",
            (len(RAW), SHA, RAW),
        )
        conn.execute(
            "INSERT INTO jobs (message_id, destination, sender, reference, state,"
            " next_attempt_at, created_at, updated_at, trace_id) VALUES (1, '+12125550100',"
            " 'alice@clinic.example.org', 'ref-1', 'accepted', 1.0, 1.0, 1.0, 't')"
        )
    async with await Store.open(tmp_path) as new:
        assert (await new.diagnostics()).schema_version == SCHEMA_VERSION >= 2
        assert len(await new.jobs()) == 1
        assert await new.message_raw(1) == RAW
        assert await new.imap_get(KEY) is None
    with closing(sqlite3.connect(tmp_path / DB_FILENAME)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("SELECT count(*) FROM imap_seen").fetchone()[0] == 0


async def test_recording_is_idempotent_and_keeps_the_first_row(store: Store) -> None:
    first = await store.imap_record(KEY, message_id="<a@b>", sha256=SHA, now=10.0)
    again = await store.imap_record(KEY, message_id="<other@b>", sha256="0" * 64, now=20.0)
    assert first == again
    assert (first.state, first.message_id, first.sha256, first.created_at) == (
        ImapState.SEEN,
        "<a@b>",
        SHA,
        10.0,
    )


async def test_a_row_moves_only_from_the_state_the_caller_expects(store: Store) -> None:
    await store.imap_record(KEY, message_id=None, sha256=SHA, now=1.0)
    assert (
        await store.imap_transition(KEY, expect=ImapState.ENQUEUED, to=ImapState.DONE, now=2.0)
        is None
    )
    queued = await store.imap_transition(KEY, expect=ImapState.SEEN, to=ImapState.ENQUEUED, now=3.0)
    assert queued is not None
    assert queued.state is ImapState.ENQUEUED
    done = await store.imap_transition(KEY, expect=ImapState.ENQUEUED, to=ImapState.DONE, now=4.0)
    assert done is not None
    assert (done.state, done.updated_at) == (ImapState.DONE, 4.0)
    assert await store.imap_open_entries(KEY.account, KEY.folder) == []


async def test_a_refusal_keeps_who_gets_the_report_until_it_is_sent(store: Store) -> None:
    await store.imap_record(KEY, message_id="<a@b>", sha256=SHA, now=1.0)
    refused = await store.imap_refuse(
        KEY, reason="not a valid phone number", subject="Hi", report_to="a@b.example", now=2.0
    )
    assert refused is not None
    assert refused.report_due
    await store.imap_failed_attempt(KEY, "relay down", now=3.0)
    pending = await store.imap_get(KEY)
    assert pending is not None
    assert (pending.attempts, pending.last_error, pending.report_due) == (1, "relay down", True)
    sent = await store.imap_report_sent(KEY, now=4.0)
    assert sent is not None
    assert (sent.state, sent.report_due, sent.reported_at, sent.last_error) == (
        ImapState.REFUSED,
        False,
        4.0,
        None,
    )
    assert await store.imap_refuse(KEY, reason="x", subject="", report_to=None, now=5.0) is None


async def test_open_entries_are_those_with_work_left_in_that_folder(store: Store) -> None:
    keys = [ImapKey(KEY.account, KEY.folder, KEY.uidvalidity, uid) for uid in (3, 1, 2)]
    for key in keys:
        await store.imap_record(key, message_id=None, sha256=SHA, now=1.0)
    await store.imap_record(
        ImapKey(KEY.account, "Other", 5, 1), message_id=None, sha256=SHA, now=1.0
    )
    await store.imap_transition(keys[0], expect=ImapState.SEEN, to=ImapState.VANISHED, now=2.0)
    found = await store.imap_open_entries(KEY.account, KEY.folder)
    assert [entry.key.uid for entry in found] == [1, 2]
    counts = await store.imap_count_by_state()
    assert (counts[ImapState.SEEN], counts[ImapState.VANISHED], counts[ImapState.DONE]) == (3, 1, 0)


async def test_accepted_since_finds_only_imap_messages_with_these_bytes_from_then_on(
    store: Store,
) -> None:
    async def accept(raw: bytes, source: MessageSource, now: float) -> None:
        await store.accept_message(
            raw,
            source=source,
            mail_from="alice@clinic.example.org",
            from_header="alice@clinic.example.org",
            message_id_header=None,
            recipients=[NewJob("+12125550100", "alice@clinic.example.org")],
            now=now,
        )

    await accept(RAW, MessageSource.SMTP, 100.0)
    assert not await store.imap_accepted_since(SHA, 50.0)
    await accept(RAW, MessageSource.IMAP, 100.0)
    assert await store.imap_accepted_since(SHA, 50.0)
    assert not await store.imap_accepted_since(SHA, 150.0)
    assert not await store.imap_accepted_since("0" * 64, 50.0)


async def test_purge_drops_only_finished_rows_older_than_the_cutoff(store: Store) -> None:
    old, recent, open_ = (ImapKey(KEY.account, KEY.folder, 1, uid) for uid in (1, 2, 3))
    for key in (old, recent, open_):
        await store.imap_record(key, message_id=None, sha256=SHA, now=1.0)
    await store.imap_transition(old, expect=ImapState.SEEN, to=ImapState.VANISHED, now=10.0)
    await store.imap_transition(recent, expect=ImapState.SEEN, to=ImapState.VANISHED, now=30.0)
    assert await store.imap_purge(20.0) == 1
    assert await store.imap_get(old) is None
    assert await store.imap_get(recent) is not None
    assert await store.imap_get(open_) is not None


async def test_the_schema_refuses_rows_the_ledger_must_never_hold(store: Store) -> None:
    with pytest.raises(StoreError):
        await store.imap_record(KEY, message_id=None, sha256="short", now=1.0)
    with pytest.raises(StoreError):
        await store.imap_record(
            ImapKey(KEY.account, KEY.folder, 0, 1), message_id=None, sha256=SHA, now=1.0
        )
