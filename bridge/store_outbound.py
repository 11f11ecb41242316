"""Outbound SQL of the store: messages and the ``jobs`` queue.

A mixin of :class:`bridge.store.Store`; every method runs its SQL on the
store's thread through :class:`bridge.store_schema.StoreBase`. See
:mod:`bridge.store` for durability and threading.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from bridge import store_schema as schema
from bridge.jobs import (
    DUPLICATE_WINDOW_SECONDS,
    UNCHANGED,
    AcceptResult,
    DuplicateRecipient,
    Job,
    JobState,
    Message,
    MessageMissing,
    MessageSource,
    NewJob,
    RateLimitCheck,
    RecoveryReport,
    Unchanged,
)
from bridge.store_rates import add_events, check_limits
from bridge.store_schema import Connection, StoreBase


class OutboundStore(StoreBase):
    """Accepting messages, claiming and moving jobs, rate-limit counters."""

    async def accept_message(
        self,
        raw: bytes,
        *,
        source: MessageSource,
        mail_from: str,
        from_header: str,
        message_id_header: str | None,
        recipients: Sequence[NewJob],
        now: float,
        rate_limits: Sequence[RateLimitCheck] = (),
        trace_id: str | None = None,
    ) -> AcceptResult:
        """Store a message and one ACCEPTED job per new recipient, durably.

        One ``BEGIN IMMEDIATE`` transaction, committed (WAL fsynced) before this
        returns. A recipient with the same Message-ID header, destination and
        sender as a job created within :data:`DUPLICATE_WINDOW_SECONDS` (or
        earlier in ``recipients``) gets no new job; when every recipient is a
        duplicate the bytes are not stored. Each ``rate_limits`` check counts the
        new jobs under its key; if any would be exceeded, :class:`RateLimited`
        is raised and nothing is written. Otherwise one event per new job is
        recorded under each distinct key.
        """
        if not recipients:
            raise ValueError("accept_message needs at least one recipient")
        message_trace = trace_id or uuid.uuid4().hex

        def run(conn: Connection) -> AcceptResult:
            fresh: dict[tuple[str, str], NewJob] = {}
            found: list[tuple[NewJob, int | None]] = []  # None: resolved after insert
            for rcpt in recipients:
                key = (rcpt.destination, rcpt.sender)
                if key in fresh:
                    found.append((rcpt, None))
                    continue
                existing = _find_duplicate(conn, message_id_header, rcpt, now)
                if existing is None:
                    fresh[key] = rcpt
                else:
                    found.append((rcpt, existing))
            if not fresh:  # then every entry of found has its existing job id
                dups = tuple(DuplicateRecipient(r, i) for r, i in found if i is not None)
                return AcceptResult(None, (), dups)
            check_limits(conn, rate_limits, len(fresh), now)
            message_id = _insert_message(
                conn, raw, source, mail_from, from_header, message_id_header, now, message_trace
            )
            job_ids = {key: _insert_job(conn, message_id, rcpt, now) for key, rcpt in fresh.items()}
            for event_key in dict.fromkeys(check.key for check in rate_limits):
                add_events(conn, event_key, now, len(fresh))
            created = tuple(
                schema.job(row)
                for row in conn.execute(
                    "SELECT * FROM jobs WHERE message_id = ? ORDER BY id", (message_id,)
                )
            )
            duplicates = tuple(
                DuplicateRecipient(r, i if i is not None else job_ids[(r.destination, r.sender)])
                for r, i in found
            )
            return AcceptResult(message_id, created, duplicates)

        return await self._write(run)

    async def claim_next(
        self, state: JobState, to: JobState, *, now: float, next_attempt_at: float | None = None
    ) -> Job | None:
        """Move the longest-due job in ``state`` (``next_attempt_at <= now``) to ``to``.

        Runs in ``BEGIN IMMEDIATE``, so across threads and processes each job is
        claimed once. Increments ``attempts``; sets ``next_attempt_at`` when given
        (a lease, for claims that keep the state). None when nothing is due.
        """

        def run(conn: Connection) -> Job | None:
            row = conn.execute(
                "SELECT id FROM jobs WHERE state = ? AND next_attempt_at <= ?"
                " ORDER BY next_attempt_at, id LIMIT 1",
                (state, now),
            ).fetchone()
            if row is None:
                return None
            conn.execute(
                "UPDATE jobs SET state = ?, attempts = attempts + 1, updated_at = ?,"
                " next_attempt_at = coalesce(?, next_attempt_at) WHERE id = ?",
                (to, now, next_attempt_at, row["id"]),
            )
            return _job(conn, row["id"])

        return await self._write(run)

    async def transition(
        self,
        job_id: int,
        *,
        expect: JobState | Collection[JobState],
        to: JobState,
        now: float,
        fax_id: int | Unchanged | None = UNCHANGED,
        next_attempt_at: float | Unchanged = UNCHANGED,
        in_doubt_since: float | Unchanged | None = UNCHANGED,
        last_error: str | Unchanged | None = UNCHANGED,
        fax_status: int | Unchanged | None = UNCHANGED,
        result: Mapping[str, Any] | Unchanged | None = UNCHANGED,
        attempts: int | Unchanged = UNCHANGED,
    ) -> Job | None:
        """Compare-and-set: move the job to ``to`` only if its state is in ``expect``.

        Also sets the given fields (``UNCHANGED`` leaves one alone, ``None`` clears
        it) and ``updated_at = now``. ``to`` may equal the current state, which
        reschedules (``next_attempt_at``) or records progress. Returns the updated
        job, or None when the state did not match or the job does not exist.
        """
        fields = schema.present(
            fax_id=fax_id,
            next_attempt_at=next_attempt_at,
            in_doubt_since=in_doubt_since,
            last_error=last_error,
            fax_status=fax_status,
            result=_dump(result),
            attempts=attempts,
        )

        def run(conn: Connection) -> Job | None:
            moved = schema.update_where_state(
                conn, "jobs", "id = ?", (job_id,), expect, to, now, fields
            )
            return _job(conn, job_id) if moved else None

        return await self._write(run)

    async def next_due(self, states: Collection[JobState]) -> float | None:
        """The earliest ``next_attempt_at`` among jobs in ``states`` (None when there are none).

        Lets a worker sleep exactly until its next job is due instead of polling.
        """
        marks = ", ".join("?" * len(states))

        def run(conn: Connection) -> float | None:
            row = conn.execute(
                f"SELECT min(next_attempt_at) AS due FROM jobs WHERE state IN ({marks})",  # noqa: S608 (placeholders only)
                tuple(states),
            ).fetchone()
            return None if row["due"] is None else float(row["due"])

        return await self._read(run)

    async def requeue(self, job_id: int, *, now: float) -> Job | None:
        """A fresh ACCEPTED job (new reference) for the same message and destination.

        Used by ``fax-bridge queue retry``. The old job keeps its state and reference: a
        reference is never reused, so reconciliation can never mistake one fax for another.
        Returns None when the job does not exist or its message bytes are gone.
        """

        def run(conn: Connection) -> Job | None:
            row = conn.execute(
                "SELECT j.message_id, j.destination, j.sender FROM jobs j"
                " JOIN message_bodies b ON b.id = j.message_id"
                " WHERE j.id = ? AND length(b.raw) > 0",
                (job_id,),
            ).fetchone()
            if row is None:
                return None
            new_id = _insert_job(
                conn, row["message_id"], NewJob(row["destination"], row["sender"]), now
            )
            return _job(conn, new_id)

        return await self._write(run)

    async def recover_interrupted(self, now: float) -> RecoveryReport:
        """Move every SUBMITTING job to IN_DOUBT (the POST may have gone out).

        Only the submitter calls this, when it starts and after an error, while it has
        no submission in flight: another process must not, as it would take live
        submissions for interrupted ones. The
        inbound ledger needs no recovery: it has no in-flight state (a delivery
        cut short stays PENDING and is retried under the same Message-ID).
        """

        def run(conn: Connection) -> RecoveryReport:
            ids = tuple(
                r["id"]
                for r in conn.execute(
                    "SELECT id FROM jobs WHERE state = ? ORDER BY id", (JobState.SUBMITTING,)
                )
            )
            conn.execute(
                "UPDATE jobs SET state = ?, in_doubt_since = ?, next_attempt_at = ?,"
                " updated_at = ? WHERE state = ?",
                (JobState.IN_DOUBT, now, now, now, JobState.SUBMITTING),
            )
            return RecoveryReport(in_doubt_job_ids=ids)

        return await self._write(run)

    async def get_job(self, job_id: int) -> Job | None:
        """One job, or None."""
        return await self._read(lambda conn: _job(conn, job_id))

    async def jobs(self, states: Collection[JobState] | None = None, limit: int = 100) -> list[Job]:
        """Jobs, newest first, optionally only those in ``states``."""

        def run(conn: Connection) -> list[Job]:
            if states is None:
                cur = conn.execute("SELECT * FROM jobs ORDER BY id DESC LIMIT ?", (limit,))
            else:
                marks = ", ".join("?" * len(states))
                cur = conn.execute(
                    f"SELECT * FROM jobs WHERE state IN ({marks}) ORDER BY id DESC LIMIT ?",  # noqa: S608 (placeholders only)
                    (*states, limit),
                )
            return [schema.job(row) for row in cur]

        return await self._read(run)

    async def jobs_with_fax_ids(self, state: JobState = JobState.SUBMITTED) -> list[Job]:
        """Jobs in ``state`` that have an InterFAX fax id (for batch status polls)."""

        def run(conn: Connection) -> list[Job]:
            cur = conn.execute(
                "SELECT * FROM jobs WHERE state = ? AND fax_id IS NOT NULL ORDER BY id", (state,)
            )
            return [schema.job(row) for row in cur]

        return await self._read(run)

    async def make_due(self, states: Collection[JobState], *, now: float) -> int:
        """Jobs in ``states`` waiting until after ``now`` become due now; how many did."""
        marks = ", ".join("?" * len(states))

        def run(conn: Connection) -> int:
            where = f"state IN ({marks}) AND next_attempt_at > ?"
            sql = f"UPDATE jobs SET next_attempt_at = ?, updated_at = ? WHERE {where}"  # noqa: S608 (placeholders only)
            return conn.execute(sql, (now, now, *states, now)).rowcount

        return await self._write(run)

    async def count_by_state(self) -> dict[JobState, int]:
        """Number of jobs in every state (zero included)."""

        def run(conn: Connection) -> dict[JobState, int]:
            counts = dict.fromkeys(JobState, 0)
            for row in conn.execute("SELECT state, count(*) AS n FROM jobs GROUP BY state"):
                counts[JobState(row["state"])] = row["n"]
            return counts

        return await self._read(run)

    async def get_message(self, message_id: int) -> Message | None:
        """A message's metadata, or None."""

        def run(conn: Connection) -> Message | None:
            row = conn.execute(
                f"SELECT {schema.MESSAGE_COLUMNS} FROM messages WHERE id = ?",  # noqa: S608 (constant)
                (message_id,),
            ).fetchone()
            return None if row is None else schema.message(row)

        return await self._read(run)

    async def message_raw(self, message_id: int) -> bytes:
        """A message's bytes as received. :class:`MessageMissing` if purged or unknown."""

        def run(conn: Connection) -> bytes:
            found = conn.execute("SELECT id FROM message_bodies WHERE id = ?", (message_id,))
            if found.fetchone() is None:
                raise MessageMissing(f"message {message_id} is not in the store")
            # Through the BLOB handle: a SELECT would assemble the value in SQLite's
            # memory and then copy it, two copies of a 25 MB message at once. (Purged
            # in between, it fails as a store error and is retried.)
            blob = conn.blobopen("message_bodies", "raw", message_id, readonly=True)
            try:
                return blob.read()
            finally:
                blob.close()

        return await self._read(run)


def _dump(value: Mapping[str, Any] | Unchanged | None) -> str | Unchanged | None:
    if value is None or value is UNCHANGED:
        return value
    return json.dumps(dict(value), sort_keys=True)


def _find_duplicate(
    conn: Connection, message_id_header: str | None, rcpt: NewJob, now: float
) -> int | None:
    if message_id_header is None:
        return None
    row = conn.execute(
        "SELECT j.id FROM jobs j JOIN messages m ON m.id = j.message_id"
        " WHERE m.message_id_header = ? AND j.destination = ? AND j.sender = ?"
        " AND j.created_at >= ? ORDER BY j.id LIMIT 1",
        (message_id_header, rcpt.destination, rcpt.sender, now - DUPLICATE_WINDOW_SECONDS),
    ).fetchone()
    return None if row is None else int(row["id"])


_BLOB_SLICE = 1024 * 1024


def _insert_message(
    conn: Connection,
    raw: bytes,
    source: MessageSource,
    mail_from: str,
    from_header: str,
    message_id_header: str | None,
    now: float,
    trace_id: str,
) -> int:
    cur = conn.execute(
        "INSERT INTO messages (received_at, source, mail_from, from_header,"
        " message_id_header, size, sha256, raw, trace_id)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, x'', ?)",
        (
            now,
            source,
            mail_from,
            from_header,
            message_id_header,
            len(raw),
            hashlib.sha256(raw).hexdigest(),
            trace_id,
        ),
    )
    assert cur.lastrowid is not None
    # The bytes go in through an incremental BLOB write: binding them as a parameter makes
    # SQLite take a private copy of the whole message (tens of MB for a large fax).
    conn.execute(
        "INSERT INTO message_bodies (id, raw) VALUES (?, zeroblob(?))", (cur.lastrowid, len(raw))
    )
    if raw:
        blob = conn.blobopen("message_bodies", "raw", cur.lastrowid)
        try:
            view = memoryview(raw)
            for start in range(0, len(raw), _BLOB_SLICE):
                blob.write(view[start : start + _BLOB_SLICE])
        finally:
            blob.close()
    return cur.lastrowid


def _insert_job(conn: Connection, message_id: int, rcpt: NewJob, now: float) -> int:
    """Insert an ACCEPTED job with a fresh trace id; its reference embeds the trace id."""
    trace_id = uuid.uuid4().hex
    cur = conn.execute(
        "INSERT INTO jobs (message_id, destination, sender, reference, state,"
        " next_attempt_at, created_at, updated_at, trace_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            message_id,
            rcpt.destination,
            rcpt.sender,
            f"fb-{trace_id}",
            JobState.ACCEPTED,
            now,
            now,
            now,
            trace_id,
        ),
    )
    assert cur.lastrowid is not None
    return cur.lastrowid


def _job(conn: Connection, job_id: int) -> Job | None:
    row = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return None if row is None else schema.job(row)
