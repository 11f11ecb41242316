"""The durable store against real SQLite files (tests may use sqlite3 to look inside)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import pytest

from bridge import store as store_module
from bridge import store_schema
from bridge.errors import StoreError, TransientError
from bridge.jobs import (
    DUPLICATE_WINDOW_SECONDS,
    UNCHANGED,
    AcceptResult,
    DeliveryChannel,
    DeliveryState,
    InboundRecipient,
    InboundRecord,
    InboundState,
    JobState,
    MessageMissing,
    MessageSource,
    NewJob,
    RateLimitCheck,
    RateLimited,
    StoreVersionError,
)
from bridge.store import DB_FILENAME, SCHEMA_VERSION, Store
from tests.conftest import database_at

T0 = 1_700_000_000.0
HOUR = 3600.0
ALICE = "alice@example.org"
RAW = b"From: alice@example.org\r\nSubject: hi\r\nMessage-ID: <m1@example.org>\r\n\r\nbody\r\n"
REPO = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def raw_db(state_dir: Path) -> Iterator[sqlite3.Connection]:
    """A separate plain connection, to look at what the store wrote."""
    conn = sqlite3.connect(state_dir / DB_FILENAME, isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


def count(state_dir: Path, table: str) -> int:
    with raw_db(state_dir) as conn:
        value: int = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    return value


def number(i: int) -> str:
    return f"+1212555{i:04d}"


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
async def store(state_dir: Path) -> AsyncIterator[Store]:
    async with await Store.open(state_dir) as opened:
        yield opened


async def accept(
    store: Store,
    destinations: Sequence[str],
    *,
    now: float = T0,
    message_id_header: str | None = "<m1@example.org>",
    sender: str = ALICE,
    raw: bytes = RAW,
    rate_limits: Sequence[RateLimitCheck] = (),
) -> AcceptResult:
    return await store.accept_message(
        raw,
        source=MessageSource.SMTP,
        mail_from=sender,
        from_header=f"Alice <{sender}>",
        message_id_header=message_id_header,
        recipients=[NewJob(destination=d, sender=sender) for d in destinations],
        now=now,
        rate_limits=rate_limits,
    )


def inbound_record(message_id: int) -> InboundRecord:
    return InboundRecord(
        message_id=message_id,
        phone_number="+12125550100",
        caller_id="+442084978672",
        remote_csid="Interfax",
        pages=2,
        receive_time=T0,
        message_status=0,
        meta={"recordingDuration": 35},
    )


async def _create(state_dir: Path) -> None:
    async with await Store.open(state_dir):
        pass


# -- opening, migrations, pragmas ------------------------------------------------------


async def test_open_creates_the_state_dir_and_migrates_to_the_current_version(
    state_dir: Path,
) -> None:
    async with await Store.open(state_dir):
        pass
    with raw_db(state_dir) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"messages", "jobs", "rate_events", "inbound_faxes", "inbound_deliveries"} <= tables


async def test_reopening_is_idempotent_and_keeps_the_data(state_dir: Path) -> None:
    async with await Store.open(state_dir) as store:
        result = await accept(store, [number(1)])
    async with await Store.open(state_dir) as store:
        assert (await store.diagnostics()).schema_version == SCHEMA_VERSION
        job = await store.get_job(result.created[0].id)
        assert job == result.created[0]
    assert count(state_dir, "messages") == 1


async def test_a_database_from_a_newer_version_is_refused_untouched(state_dir: Path) -> None:
    async with await Store.open(state_dir):
        pass
    with raw_db(state_dir) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreVersionError, match="newer than this fax-bridge supports"):
        await Store.open(state_dir)
    with raw_db(state_dir) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1


async def test_migration_steps_apply_in_order_and_a_failing_step_changes_nothing(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with await Store.open(state_dir):
        pass
    broken = ("CREATE TABLE extra (x INTEGER)", "INSERT INTO no_such_table VALUES (1)")
    monkeypatch.setattr(store_schema, "MIGRATIONS", (*store_schema.MIGRATIONS, broken))
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with pytest.raises(StoreError) as caught:
        await Store.open(state_dir)
    assert not isinstance(caught.value, sqlite3.Error)
    with raw_db(state_dir) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert (
            conn.execute("SELECT count(*) FROM sqlite_master WHERE name='extra'").fetchone()[0] == 0
        )

    good = ("CREATE TABLE extra (x INTEGER)", "INSERT INTO extra VALUES (1)")
    monkeypatch.setattr(store_schema, "MIGRATIONS", (*store_schema.MIGRATIONS[:-1], good))
    async with await Store.open(state_dir) as store:
        assert (await store.diagnostics()).schema_version == SCHEMA_VERSION + 1
    with raw_db(state_dir) as conn:
        assert conn.execute("SELECT x FROM extra").fetchall() == [(1,)]


async def test_wal_synchronous_full_and_foreign_keys_are_in_force(
    store: Store, state_dir: Path
) -> None:
    diag = await store.diagnostics()
    assert diag.journal_mode == "wal"
    assert diag.synchronous == 2  # FULL
    assert diag.foreign_keys is True
    assert diag.busy_timeout_ms == 10_000
    with raw_db(state_dir) as conn:  # WAL is a property of the file: visible from outside
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_values_and_sql_modules_do_not_import_sqlite3() -> None:
    code = (
        "import sys\n"
        "import bridge.jobs, bridge.store_schema, bridge.store_outbound, bridge.store_inbound\n"
        "assert 'sqlite3' not in sys.modules, 'sqlite3 imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


# -- accepting ---------------------------------------------------------------------------


async def test_accept_stores_bytes_and_one_accepted_job_per_recipient(store: Store) -> None:
    result = await accept(store, [number(1), number(2)])
    assert result.message_id is not None
    assert result.duplicates == ()
    assert [j.destination for j in result.created] == [number(1), number(2)]
    for job in result.created:
        assert job.state is JobState.ACCEPTED
        assert job.attempts == 0
        assert job.next_attempt_at == T0
        assert job.reference.startswith("fb-")
        assert len(job.reference) <= 60
        assert job.trace_id in job.reference
    assert len({j.reference for j in result.created}) == 2
    assert await store.message_raw(result.message_id) == RAW
    message = await store.get_message(result.message_id)
    assert message is not None
    assert message.sha256 == hashlib.sha256(RAW).hexdigest()
    assert message.size == len(RAW)
    assert message.source is MessageSource.SMTP
    assert message.message_id_header == "<m1@example.org>"


async def test_accept_is_atomic_when_a_recipient_violates_a_constraint(
    store: Store, state_dir: Path
) -> None:
    limit = RateLimitCheck("global", HOUR, 10)
    with pytest.raises(StoreError) as caught:
        await accept(store, [number(1), "12345"], rate_limits=[limit])
    assert not isinstance(caught.value, sqlite3.Error)
    assert isinstance(caught.value.__cause__, sqlite3.IntegrityError)
    assert "integrity" in str(caught.value)
    for table in ("messages", "jobs", "rate_events"):
        assert count(state_dir, table) == 0
    assert (await accept(store, [number(1)])).message_id is not None  # still usable


async def test_a_resend_within_24_hours_creates_no_second_job(
    store: Store, state_dir: Path
) -> None:
    first = await accept(store, [number(1)])
    again = await accept(store, [number(1)], now=T0 + DUPLICATE_WINDOW_SECONDS - 1)
    assert again.message_id is None
    assert again.created == ()
    assert [(d.recipient.destination, d.existing_job_id) for d in again.duplicates] == [
        (number(1), first.created[0].id)
    ]
    assert count(state_dir, "messages") == 1  # the bytes were not stored again
    assert count(state_dir, "jobs") == 1


async def test_a_resend_with_a_new_recipient_creates_a_job_only_for_it(store: Store) -> None:
    first = await accept(store, [number(1)])
    again = await accept(store, [number(1), number(2)], now=T0 + 60)
    assert [j.destination for j in again.created] == [number(2)]
    assert [d.existing_job_id for d in again.duplicates] == [first.created[0].id]


async def test_a_resend_after_24_hours_or_from_another_sender_is_a_new_fax(store: Store) -> None:
    await accept(store, [number(1)])
    later = await accept(store, [number(1)], now=T0 + DUPLICATE_WINDOW_SECONDS + 1)
    other = await accept(store, [number(1)], now=T0 + 60, sender="bob@example.org")
    assert len(later.created) == 1
    assert len(other.created) == 1


async def test_without_a_message_id_nothing_is_suppressed_across_messages(store: Store) -> None:
    await accept(store, [number(1)], message_id_header=None)
    again = await accept(store, [number(1)], message_id_header=None, now=T0 + 1)
    assert len(again.created) == 1


async def test_the_same_recipient_twice_in_one_message_gets_one_job(store: Store) -> None:
    result = await accept(store, [number(1), number(1)], message_id_header=None)
    assert len(result.created) == 1
    assert [d.existing_job_id for d in result.duplicates] == [result.created[0].id]


async def test_accept_without_recipients_is_a_programming_error(store: Store) -> None:
    with pytest.raises(ValueError, match="recipient"):
        await accept(store, [])


# -- claiming and transitions --------------------------------------------------------------


async def test_claim_takes_the_longest_due_job_and_counts_the_attempt(store: Store) -> None:
    jobs = (await accept(store, [number(1), number(2), number(3)])).created
    await store.transition(
        jobs[0].id, expect=JobState.ACCEPTED, to=JobState.ACCEPTED, now=T0, next_attempt_at=T0 + 99
    )
    claimed = await store.claim_next(JobState.ACCEPTED, JobState.SUBMITTING, now=T0 + 10)
    assert claimed is not None
    assert claimed.id == jobs[1].id
    assert claimed.state is JobState.SUBMITTING
    assert claimed.attempts == 1
    assert claimed.updated_at == T0 + 10
    second = await store.claim_next(JobState.ACCEPTED, JobState.SUBMITTING, now=T0 + 10)
    assert second is not None
    assert second.id == jobs[2].id
    # jobs[0] is not due until T0 + 99
    assert await store.claim_next(JobState.ACCEPTED, JobState.SUBMITTING, now=T0 + 10) is None
    leased = await store.claim_next(
        JobState.ACCEPTED, JobState.ACCEPTED, now=T0 + 99, next_attempt_at=T0 + 500
    )
    assert leased is not None
    assert leased.id == jobs[0].id
    assert leased.next_attempt_at == T0 + 500


async def test_two_stores_on_one_file_claim_each_job_exactly_once(state_dir: Path) -> None:
    async with await Store.open(state_dir) as a, await Store.open(state_dir) as b:
        ids: list[int] = []
        for batch in range(3):
            result = await accept(
                a, [number(batch * 20 + i) for i in range(20)], message_id_header=None
            )
            ids += [j.id for j in result.created]

        async def drain(store: Store) -> list[int]:
            got = []
            while job := await store.claim_next(JobState.ACCEPTED, JobState.SUBMITTING, now=T0):
                got.append(job.id)
            return got

        results = await asyncio.gather(*(drain(s) for s in (a, b) * 4))
        claimed = [job_id for got in results for job_id in got]
        assert sorted(claimed) == sorted(ids)  # every job, none twice
        jobs = await a.jobs(limit=1000)
        assert {j.state for j in jobs} == {JobState.SUBMITTING}
        assert {j.attempts for j in jobs} == {1}


async def test_transition_is_a_compare_and_set_that_refuses_stale_state(store: Store) -> None:
    (job,) = (await accept(store, [number(1)])).created
    claimed = await store.claim_next(JobState.ACCEPTED, JobState.SUBMITTING, now=T0)
    assert claimed is not None
    stale = await store.transition(job.id, expect=JobState.ACCEPTED, to=JobState.HELD, now=T0)
    assert stale is None
    assert (await store.get_job(job.id)) == claimed  # untouched

    sent = await store.transition(
        job.id,
        expect={JobState.SUBMITTING, JobState.IN_DOUBT},
        to=JobState.SUBMITTED,
        now=T0 + 1,
        fax_id=750682415,
        last_error="timeout",
        result={"status": -2, "pages": [1, 2]},
    )
    assert sent is not None
    assert (sent.state, sent.fax_id, sent.updated_at) == (JobState.SUBMITTED, 750682415, T0 + 1)
    assert sent.result == {"status": -2, "pages": [1, 2]}
    assert sent.attempts == 1  # unchanged

    again = await store.transition(
        job.id, expect=JobState.SUBMITTING, to=JobState.SUBMITTED, now=T0 + 2
    )
    assert again is None
    cleared = await store.transition(
        job.id,
        expect=JobState.SUBMITTED,
        to=JobState.SENT,
        now=T0 + 3,
        last_error=None,
        fax_status=0,
        result=UNCHANGED,
    )
    assert cleared is not None
    assert (cleared.last_error, cleared.fax_status) == (None, 0)
    assert cleared.result == {"status": -2, "pages": [1, 2]}
    assert await store.transition(999, expect=JobState.SENT, to=JobState.REPORTED, now=T0) is None


async def test_every_job_state_is_accepted_by_the_schema(store: Store) -> None:
    (job,) = (await accept(store, [number(1)])).created
    state = JobState.ACCEPTED
    for target in JobState:
        moved = await store.transition(job.id, expect=state, to=target, now=T0)
        assert moved is not None
        assert moved.state is target
        state = target
    counts = await store.count_by_state()
    assert counts == {s: int(s is JobState.CANCELLED) for s in JobState}


async def test_recovery_moves_interrupted_submissions_to_in_doubt(store: Store) -> None:
    jobs = (await accept(store, [number(1), number(2), number(3)])).created
    for _ in range(2):
        await store.claim_next(JobState.ACCEPTED, JobState.SUBMITTING, now=T0)
    report = await store.recover_interrupted(T0 + 50)
    assert report.in_doubt_job_ids == (jobs[0].id, jobs[1].id)
    assert report.in_doubt == 2
    for job in jobs[:2]:
        moved = await store.get_job(job.id)
        assert moved is not None
        assert (moved.state, moved.in_doubt_since, moved.next_attempt_at) == (
            JobState.IN_DOUBT,
            T0 + 50,
            T0 + 50,
        )
    untouched = await store.get_job(jobs[2].id)
    assert untouched is not None
    assert untouched.state is JobState.ACCEPTED
    assert (await store.recover_interrupted(T0 + 60)).in_doubt == 0


async def test_listing_jobs_by_state_and_fax_id(store: Store) -> None:
    jobs = (await accept(store, [number(1), number(2)])).created
    await store.transition(jobs[0].id, expect=JobState.ACCEPTED, to=JobState.SUBMITTED, now=T0)
    await store.transition(
        jobs[1].id, expect=JobState.ACCEPTED, to=JobState.SUBMITTED, now=T0, fax_id=42
    )
    assert [j.id for j in await store.jobs_with_fax_ids(JobState.SUBMITTED)] == [jobs[1].id]
    assert [j.id for j in await store.jobs(states=[JobState.SUBMITTED])] == [
        jobs[1].id,
        jobs[0].id,
    ]
    assert await store.jobs(states=[JobState.SENT]) == []
    assert len(await store.jobs(limit=1)) == 1


async def test_bytes_of_an_unknown_message_are_a_permanent_error(store: Store) -> None:
    with pytest.raises(MessageMissing):
        await store.message_raw(12345)
    assert await store.get_message(12345) is None


# -- rate limits -------------------------------------------------------------------------


async def test_rate_limit_refuses_without_writing_anything(store: Store, state_dir: Path) -> None:
    limits = [RateLimitCheck(f"sender:{ALICE}", HOUR, 3), RateLimitCheck("global", 24 * HOUR, 100)]
    await accept(store, [number(1), number(2)], rate_limits=limits)
    assert await store.count_recent(f"sender:{ALICE}", T0 - HOUR) == 2
    assert await store.count_recent("global", T0 - HOUR) == 2

    with pytest.raises(RateLimited) as caught:
        await accept(
            store,
            [number(3), number(4)],
            now=T0 + 600,
            message_id_header="<m2@x>",
            rate_limits=limits,
        )
    assert isinstance(caught.value, TransientError)
    assert caught.value.check.key == f"sender:{ALICE}"
    # Counted per minute (schema v3): the window may reach back to the minute's start.
    assert HOUR - 600 - 60 < caught.value.retry_after <= HOUR - 600
    assert count(state_dir, "messages") == 1
    assert count(state_dir, "jobs") == 2
    assert await store.count_recent(f"sender:{ALICE}", T0 - HOUR) == 2

    # A resend of an accepted message is not a new fax: it passes even at the limit.
    dup = await accept(store, [number(1)], now=T0 + 600, rate_limits=limits)
    assert dup.created == ()
    assert len(dup.duplicates) == 1

    later = await accept(
        store,
        [number(3), number(4)],
        now=T0 + HOUR + 60,
        message_id_header="<m2@x>",
        rate_limits=limits,
    )
    assert len(later.created) == 2
    assert await store.count_recent("global", T0 - 1) == 4


async def test_rate_events_are_one_row_per_key_and_minute(store: Store, state_dir: Path) -> None:
    for i in range(500):
        await store.record_event("global", T0 + i * 0.1)
    assert await store.count_recent("global", T0 - HOUR) == 500
    assert count(state_dir, "rate_events") <= 2


async def test_rate_limit_counters_survive_a_restart(state_dir: Path) -> None:
    async with await Store.open(state_dir) as store:
        await store.record_event("sender:bob@example.org", T0)
        await store.record_event("sender:bob@example.org", T0 + 5, n=2)
        await store.record_event("sender:bob@example.org", T0 + 120)
        await store.record_event("global", T0 + 5)
    async with await Store.open(state_dir) as store:
        assert await store.count_recent("sender:bob@example.org", T0) == 4
        # Counted per minute: a window never starts inside a minute, it takes all of it.
        assert await store.count_recent("sender:bob@example.org", T0 + 1) == 4
        assert await store.count_recent("sender:bob@example.org", T0 + 100) == 1
        with pytest.raises(RateLimited):
            await accept(
                store, [number(1)], now=T0 + 10, rate_limits=[RateLimitCheck("global", HOUR, 1)]
            )


# -- inbound ledger ----------------------------------------------------------------------


async def test_inbound_seen_page_is_idempotent(store: Store) -> None:
    [first] = await store.inbound_seen_page([inbound_record(292626603)], now=T0)
    assert first.created is True
    assert first.state is InboundState.SEEN
    assert first.meta == {"recordingDuration": 35}
    assert first.image_size is None
    [again] = await store.inbound_seen_page([inbound_record(292626603)], now=T0 + 60)
    assert again.created is False
    assert again.created_at == T0
    assert (await store.inbound_get(292626603)) == again
    assert (await store.inbound_count_by_state())[InboundState.SEEN] == 1


async def test_inbound_delivery_is_tracked_per_recipient(store: Store) -> None:
    await store.inbound_seen_page([inbound_record(7)], now=T0)
    pdf = b"%PDF-1.4 fake"
    rcpts = [InboundRecipient("a@example.org"), InboundRecipient("b@example.org")]
    fax = await store.inbound_delivery_done(
        7,
        "a@example.org",
        "<fax-7-a@bridge>",
        now=T0 + 3,
        recipients=rcpts,
        image=(pdf, "application/pdf"),
    )
    assert fax is not None
    assert (fax.state, fax.image_size) == (InboundState.DOWNLOADED, len(pdf))
    assert await store.inbound_image(7) == (pdf, "application/pdf")

    # Recipients kept again (after a restart, a new route) keep what was delivered.
    failed = await store.inbound_delivery_failed(
        7,
        "b@example.org",
        "421 try later",
        now=T0 + 4,
        recipients=[*rcpts, InboundRecipient("c@x.org", DeliveryChannel.MAILDIR)],
    )
    assert failed is not None
    assert (failed.state, failed.attempts, failed.last_error) == (
        DeliveryState.PENDING,
        1,
        "421 try later",
    )
    states = {d.recipient: d.state for d in await store.inbound_deliveries(7)}
    assert states == {
        "a@example.org": DeliveryState.DELIVERED,
        "b@example.org": DeliveryState.PENDING,
        "c@x.org": DeliveryState.PENDING,
    }
    hard = await store.inbound_delivery_failed(7, "c@x.org", "quota", now=T0, permanent=True)
    assert hard is not None
    assert hard.state is DeliveryState.FAILED
    fax = await store.inbound_delivery_done(7, "b@example.org", "<fax-7-b@bridge>", now=T0 + 4)
    assert fax is not None
    assert fax.state is InboundState.DOWNLOADED
    fax = await store.inbound_delivery_done(7, "c@x.org", "<fax-7-c@bridge>", now=T0 + 5)
    assert fax is not None
    assert fax.state is InboundState.DELIVERED

    repeat = await store.inbound_delivery_done(7, "a@example.org", "<other>", now=T0 + 9)
    assert repeat is not None
    (a,) = [d for d in await store.inbound_deliveries(7) if d.recipient == "a@example.org"]
    assert (a.smtp_message_id, a.delivered_at, a.attempts) == ("<fax-7-a@bridge>", T0 + 3, 1)
    assert await store.inbound_delivery_done(7, "nobody@x.org", "<x>", now=T0) is None
    assert await store.inbound_delivery_failed(7, "nobody@x.org", "x", now=T0) is None

    marked = await store.inbound_transition(
        7, expect=InboundState.DELIVERED, to=InboundState.MARKED_READ, now=T0 + 6
    )
    assert marked is not None
    assert marked.state is InboundState.MARKED_READ
    assert (
        await store.inbound_transition(
            7, expect=InboundState.DELIVERED, to=InboundState.MARKED_READ, now=T0 + 7
        )
        is None
    )


async def test_inbound_pending_lists_due_unfinished_faxes(store: Store) -> None:
    for message_id in (1, 2, 3, 4):
        await store.inbound_seen_page([inbound_record(message_id)], now=T0)
    await store.inbound_transition(
        2,
        expect=InboundState.SEEN,
        to=InboundState.SEEN,
        now=T0,
        next_attempt_at=T0 + 300,
        last_error="relay down",
        count_attempt=True,
    )
    await store.inbound_transition(3, expect=InboundState.SEEN, to=InboundState.UNROUTED, now=T0)
    await store.inbound_transition(4, expect=InboundState.SEEN, to=InboundState.MARKED_READ, now=T0)
    assert [f.message_id for f in await store.inbound_pending(now=T0 + 1)] == [1]
    due = await store.inbound_pending(now=T0 + 300)
    assert [f.message_id for f in due] == [1, 2]
    assert (due[1].attempts, due[1].last_error) == (1, "relay down")
    assert [f.message_id for f in await store.inbound_faxes()] == [4, 3, 2, 1]
    assert [f.message_id for f in await store.inbound_faxes([InboundState.UNROUTED])] == [3]


async def test_every_inbound_state_is_accepted_by_the_schema(store: Store) -> None:
    await store.inbound_seen_page([inbound_record(1)], now=T0)
    state = InboundState.SEEN
    for target in InboundState:
        moved = await store.inbound_transition(1, expect=state, to=target, now=T0)
        assert moved is not None
        assert moved.state is target
        state = target


# -- retention ---------------------------------------------------------------------------


async def test_purge_removes_only_finished_rows_older_than_the_cutoff(
    store: Store, state_dir: Path
) -> None:
    async def job_in(state: JobState, *, mid: str, at: float = T0) -> int:
        (job,) = (await accept(store, [number(1)], message_id_header=mid, now=at)).created
        await store.transition(job.id, expect=JobState.ACCEPTED, to=state, now=at)
        return job.message_id

    done = await job_in(JobState.REPORTED, mid="<a>")
    cancelled = await job_in(JobState.CANCELLED, mid="<b>")
    held = await job_in(JobState.HELD, mid="<c>")
    recent = await job_in(JobState.REPORTED, mid="<d>", at=T0 + 1000)
    (late,) = (await accept(store, [number(1)], message_id_header="<f>")).created
    await store.transition(late.id, expect=JobState.ACCEPTED, to=JobState.REPORTED, now=T0 + 1000)
    mixed = await accept(store, [number(1), number(2)], message_id_header="<e>")
    await store.transition(
        mixed.created[0].id, expect=JobState.ACCEPTED, to=JobState.REPORTED, now=T0
    )

    image = (b"%PDF", "application/pdf")
    for message_id in (1, 2, 3):
        await store.inbound_seen_page([inbound_record(message_id)], now=T0)
        rcpts = [InboundRecipient("a@example.org")]
        await store.inbound_delivery_failed(
            message_id, "a@example.org", "421", now=T0, recipients=rcpts, image=image
        )
    for message_id, final in ((1, InboundState.MARKED_READ), (2, InboundState.DELIVERED)):
        await store.inbound_transition(message_id, expect=InboundState.DOWNLOADED, to=final, now=T0)
    await store.record_event("global", T0)
    await store.record_event("global", T0 + 1000)

    report = await store.purge(T0 + 500)
    assert (report.messages, report.jobs) == (2, 2)
    assert (report.inbound_faxes, report.inbound_images, report.rate_events) == (1, 1, 1)
    for gone in (done, cancelled):
        with pytest.raises(MessageMissing):
            await store.message_raw(gone)
    for kept in (held, recent, mixed.message_id, late.message_id):
        assert kept is not None
        assert await store.message_raw(kept) == RAW
    assert count(state_dir, "jobs") == 5
    assert await store.inbound_get(1) is None
    assert count(state_dir, "inbound_deliveries") == 2  # fax 1's went with it
    delivered = await store.inbound_get(2)
    assert delivered is not None
    assert delivered.image_size is None
    assert await store.inbound_image(3) == (b"%PDF", "application/pdf")
    assert await store.count_recent("global", 0) == 1


# -- failures become StoreError ----------------------------------------------------------


async def test_a_locked_database_is_a_store_error_not_a_sqlite_error(state_dir: Path) -> None:
    async with await Store.open(state_dir, busy_timeout=0.05) as store:
        with raw_db(state_dir) as locker:
            locker.execute("BEGIN IMMEDIATE")
            with pytest.raises(StoreError) as caught:
                await accept(store, [number(1)])
            locker.execute("ROLLBACK")
        assert not isinstance(caught.value, sqlite3.Error)
        assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
        assert "locked" in str(caught.value)
        assert (await accept(store, [number(1)])).message_id is not None


async def test_waiting_for_the_lock_does_not_block_the_event_loop(state_dir: Path) -> None:
    async with await Store.open(state_dir, busy_timeout=60) as store:
        with raw_db(state_dir) as locker:
            locker.execute("BEGIN IMMEDIATE")
            task = asyncio.create_task(accept(store, [number(1)]))
            for _ in range(20):
                await asyncio.sleep(0)
            assert not task.done()  # the loop runs while the store thread waits
            locker.execute("COMMIT")  # only possible because the loop is free
            result = await task
        assert len(result.created) == 1


def test_a_full_disk_is_a_store_error_and_changes_nothing(state_dir: Path) -> None:
    asyncio.run(_create(state_dir))
    child = textwrap.dedent(
        """
        import asyncio, resource, signal, sys
        from pathlib import Path
        from bridge.errors import StoreError
        from bridge.jobs import MessageSource, NewJob
        from bridge.store import Store

        async def main() -> None:
            store = await Store.open(Path(sys.argv[1]))
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of a signal
            resource.setrlimit(resource.RLIMIT_FSIZE, (512 * 1024, 512 * 1024))
            try:
                await store.accept_message(
                    b"x" * (4 * 1024 * 1024), source=MessageSource.SMTP, mail_from="a@x.org",
                    from_header="a@x.org", message_id_header=None,
                    recipients=[NewJob("+12125550100", "a@x.org")], now=0.0,
                )
            except StoreError as exc:
                print("StoreError", type(exc.__cause__).__name__, exc)
            except BaseException as exc:
                print("other", type(exc).__name__, exc)
            else:
                print("stored")
            await store.close()

        asyncio.run(main())
        """
    )
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    out = subprocess.run(
        [sys.executable, "-c", child, str(state_dir)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.startswith("StoreError OperationalError"), out
    assert count(state_dir, "messages") == 0
    assert count(state_dir, "jobs") == 0


async def test_a_closed_store_refuses_calls_with_store_error(state_dir: Path) -> None:
    store = await Store.open(state_dir)
    await store.close()
    await store.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        await store.count_by_state()


async def test_an_unusable_state_dir_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError, match="state directory"):
        await Store.open(blocker / "state")


# -- crash -------------------------------------------------------------------------------


@pytest.mark.slow
def test_an_accepted_message_survives_sigkill_right_after_accept(state_dir: Path) -> None:
    child = textwrap.dedent(
        """
        import asyncio, sys
        from pathlib import Path
        from bridge.jobs import MessageSource, NewJob
        from bridge.store import Store

        async def main() -> None:
            store = await Store.open(Path(sys.argv[1]))
            result = await store.accept_message(
                bytes(range(256)) * 1000, source=MessageSource.SMTP, mail_from="a@x.org",
                from_header="a@x.org", message_id_header="<crash@x>",
                recipients=[NewJob("+12125550100", "a@x.org"), NewJob("+12125550101", "a@x.org")],
                now=1.0,
            )
            print(result.message_id, *(job.id for job in result.created), flush=True)
            await asyncio.Event().wait()  # stay alive until killed

        asyncio.run(main())
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", child, str(state_dir)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    message_id, *job_ids = (int(part) for part in line.split())

    async def check() -> None:
        async with await Store.open(state_dir) as store:
            assert await store.message_raw(message_id) == bytes(range(256)) * 1000
            jobs = [await store.get_job(job_id) for job_id in job_ids]
            assert [j.state if j else None for j in jobs] == [JobState.ACCEPTED] * 2

    asyncio.run(check())


def _version_2_database(state_dir: Path) -> None:
    with contextlib.closing(database_at(state_dir, 2)) as conn, conn:
        conn.executemany(
            "INSERT INTO rate_events (key, at, n) VALUES (?, ?, ?)",
            [("global", T0, 1), ("global", T0 + 1, 2), ("global", T0 + 300, 1), ("x", T0, 5)],
        )


async def test_version_2_rate_events_migrate_into_minute_buckets(state_dir: Path) -> None:
    _version_2_database(state_dir)
    async with await Store.open(state_dir) as store:
        assert await store.count_recent("global", T0 - HOUR) == 4
        assert await store.count_recent("x", T0 - HOUR) == 5
        assert await store.count_recent("global", T0 + 240) == 1
    assert count(state_dir, "rate_events") == 3


def _version_3_database_with_a_job(state_dir: Path) -> None:
    with contextlib.closing(database_at(state_dir, 3)) as conn, conn:
        conn.execute(
            "INSERT INTO messages (id, received_at, source, mail_from, from_header, size,"
            " sha256, raw, trace_id) VALUES (7, ?, 'smtp', 'a@example.org', 'a@example.org',"
            " 3, ?, x'010203', 'trace')",
            (T0, "0" * 64),
        )
        conn.execute(
            "INSERT INTO jobs (id, message_id, destination, sender, reference, state,"
            " next_attempt_at, created_at, updated_at, trace_id)"
            " VALUES (9, 7, '+12125550100', 'a@example.org', 'ref-7', 'accepted', ?, ?, ?, 't')",
            (T0, T0, T0),
        )


def _stored_bytes(state_dir: Path) -> tuple[list[str], list[tuple[int, bytes, bytes]]]:
    """The body table's columns, and each message's (id, messages.raw, body)."""
    with sqlite3.connect(state_dir / DB_FILENAME) as conn:
        columns = [row[1] for row in conn.execute("PRAGMA table_info(message_bodies)")]
        rows = conn.execute(
            "SELECT m.id, m.raw, b.raw FROM messages m JOIN message_bodies b ON b.id = m.id"
        ).fetchall()
    return columns, rows


async def test_version_3_message_bytes_move_to_their_own_table_with_jobs_intact(
    state_dir: Path,
) -> None:
    _version_3_database_with_a_job(state_dir)
    async with await Store.open(state_dir) as store:
        assert await store.message_raw(7) == b"\x01\x02\x03"
        job = await store.get_job(9)
        assert job is not None
        assert (job.message_id, job.reference) == (7, "ref-7")
    # Only as the last field does SQLite keep a zeroblob unexpanded (see _V4).
    assert _stored_bytes(state_dir) == (["id", "raw"], [(7, b"", b"\x01\x02\x03")])


async def test_make_due_moves_only_later_jobs_in_the_states_named(store: Store) -> None:
    result = await accept(store, [number(1), number(2), number(3), number(4)])
    ids = [job.id for job in result.created]
    plan = [
        (JobState.SENT, T0 + 600),  # a lease left by a killed process: due now
        (JobState.FAILED, T0 + 60),  # a relay backoff: tried once early
        (JobState.SENT, T0 - 5),  # already due: left alone
        (JobState.SUBMITTED, T0 + 600),  # another state: left alone
    ]
    for job_id, (state, at) in zip(ids, plan, strict=True):
        await store.transition(
            job_id, expect=JobState.ACCEPTED, to=state, now=T0, next_attempt_at=at
        )
    assert await store.make_due((JobState.SENT, JobState.FAILED), now=T0) == 2
    due = {job.id: job.next_attempt_at for job in await store.jobs()}
    assert [due[i] for i in ids] == [T0, T0, T0 - 5, T0 + 600]
