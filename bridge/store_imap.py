"""IMAP intake SQL of the store: the ledger that makes mailbox intake exactly-once.

One row per message seen in a watched folder, keyed by what identifies an IMAP message
for good: (account, folder, UIDVALIDITY, UID). A mixin of :class:`bridge.store.Store`;
see :mod:`bridge.store` for durability and threading.

States, each arrow one durable transaction taken after the step it records::

    SEEN --accept committed--> ENQUEUED --moved to done_folder--> DONE
      |
      +--refused--> REFUSED --report sent (if due), moved to rejected_folder--> REJECTED
    SEEN / ENQUEUED / REFUSED --the UID left the folder before we moved it--> VANISHED

SEEN is written before the message goes to :meth:`~bridge.intake.Intake.accept`, with
the SHA-256 of the bytes. A crash after the accept committed and before ENQUEUED is
recognised at restart by :meth:`ImapStore.imap_accepted_since`: the queue already holds
a message from IMAP with exactly these bytes, accepted after the row was written.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Final

from bridge import store_schema as schema
from bridge.store_schema import Connection, Row, StoreBase

__all__ = ["ImapEntry", "ImapKey", "ImapState", "ImapStore"]


class ImapState(enum.StrEnum):
    """Where one message of a watched folder stands (see the module doc)."""

    SEEN = "seen"
    ENQUEUED = "enqueued"
    REFUSED = "refused"
    DONE = "done"
    REJECTED = "rejected"
    VANISHED = "vanished"


@dataclass(frozen=True, slots=True)
class ImapKey:
    """One message of one folder of one mailbox, for as long as UIDVALIDITY holds."""

    account: str
    folder: str
    uidvalidity: int
    uid: int

    def __str__(self) -> str:
        return f"{self.account}/{self.folder}/{self.uidvalidity}/{self.uid}"


@dataclass(frozen=True, slots=True)
class ImapEntry:
    """A ledger row.

    ``report_to`` is set on a refused message whose sender gets a report;
    ``reported_at`` once the report was handed over. ``subject`` is the cleaned subject,
    kept for that report.
    """

    key: ImapKey
    state: ImapState
    message_id: str | None
    sha256: str
    subject: str | None
    reason: str | None
    report_to: str | None
    reported_at: float | None
    attempts: int
    last_error: str | None
    created_at: float
    updated_at: float

    @property
    def report_due(self) -> bool:
        """True while a refusal report is wanted and not yet sent."""
        return self.report_to is not None and self.reported_at is None


_WHERE_KEY: Final = "account = ? AND folder = ? AND uidvalidity = ? AND uid = ?"


def _params(key: ImapKey) -> tuple[str, str, int, int]:
    return (key.account, key.folder, key.uidvalidity, key.uid)


def _entry(row: Row) -> ImapEntry:
    return ImapEntry(
        key=ImapKey(row["account"], row["folder"], row["uidvalidity"], row["uid"]),
        state=ImapState(row["state"]),
        message_id=row["message_id"],
        sha256=row["sha256"],
        subject=row["subject"],
        reason=row["reason"],
        report_to=row["report_to"],
        reported_at=row["reported_at"],
        attempts=row["attempts"],
        last_error=row["last_error"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _get(conn: Connection, key: ImapKey) -> ImapEntry | None:
    row = conn.execute(f"SELECT * FROM imap_seen WHERE {_WHERE_KEY}", _params(key)).fetchone()  # noqa: S608 (constant)
    return None if row is None else _entry(row)


class ImapStore(StoreBase):
    """The IMAP intake ledger."""

    async def imap_record(
        self, key: ImapKey, *, message_id: str | None, sha256: str, now: float
    ) -> ImapEntry:
        """Record a message as SEEN unless the ledger has it; return its row (idempotent)."""

        def run(conn: Connection) -> ImapEntry:
            conn.execute(
                "INSERT INTO imap_seen (account, folder, uidvalidity, uid, state, message_id,"
                " sha256, created_at, updated_at) VALUES (?, ?, ?, ?, 'seen', ?, ?, ?, ?)"
                " ON CONFLICT (account, folder, uidvalidity, uid) DO NOTHING",
                (*_params(key), message_id, sha256, now, now),
            )
            entry = _get(conn, key)
            assert entry is not None  # inserted or already there, in this transaction
            return entry

        return await self._write(run)

    async def imap_get(self, key: ImapKey) -> ImapEntry | None:
        """The ledger row of one message, or None."""
        return await self._read(lambda conn: _get(conn, key))

    async def imap_transition(
        self,
        key: ImapKey,
        *,
        expect: ImapState | Collection[ImapState],
        to: ImapState,
        now: float,
    ) -> ImapEntry | None:
        """Compare-and-set on a row's state; None when the state did not match."""
        return await self._update(key, expect, to, now, {"last_error": None})

    async def imap_refuse(
        self, key: ImapKey, *, reason: str, subject: str, report_to: str | None, now: float
    ) -> ImapEntry | None:
        """SEEN -> REFUSED with the reason, and who gets a report (None: nobody)."""
        fields = {"reason": reason, "subject": subject, "report_to": report_to, "last_error": None}
        return await self._update(key, ImapState.SEEN, ImapState.REFUSED, now, fields)

    async def imap_report_sent(self, key: ImapKey, *, now: float) -> ImapEntry | None:
        """Record that the refusal report went out (the row stays REFUSED until moved)."""
        fields = {"reported_at": now, "last_error": None}
        return await self._update(key, ImapState.REFUSED, ImapState.REFUSED, now, fields)

    async def imap_failed_attempt(self, key: ImapKey, error: str, *, now: float) -> None:
        """Count an attempt that has to be repeated later, with its error."""

        def run(conn: Connection) -> None:
            conn.execute(
                "UPDATE imap_seen SET attempts = attempts + 1, last_error = ?,"  # noqa: S608 (constant)
                f" updated_at = ? WHERE {_WHERE_KEY}",
                (error[:1000], now, *_params(key)),
            )

        await self._write(run)

    async def imap_open_entries(self, account: str, folder: str) -> list[ImapEntry]:
        """Rows of one folder with work left (any UIDVALIDITY), oldest UID first."""

        def run(conn: Connection) -> list[ImapEntry]:
            cur = conn.execute(
                "SELECT * FROM imap_seen WHERE account = ? AND folder = ?"
                " AND state IN ('seen', 'enqueued', 'refused') ORDER BY uidvalidity, uid",
                (account, folder),
            )
            return [_entry(row) for row in cur]

        return await self._read(run)

    async def imap_accepted_since(self, sha256: str, since: float) -> bool:
        """True when a message from IMAP with these exact bytes was queued at ``since`` or later."""

        def run(conn: Connection) -> bool:
            row = conn.execute(
                "SELECT 1 FROM messages WHERE received_at >= ? AND sha256 = ? AND source = 'imap'"
                " LIMIT 1",
                (since, sha256),
            ).fetchone()
            return row is not None

        return await self._read(run)

    async def imap_count_by_state(self) -> dict[ImapState, int]:
        """Ledger rows in every state (zero included), for metrics and the status page."""

        def run(conn: Connection) -> dict[ImapState, int]:
            counts = dict.fromkeys(ImapState, 0)
            for row in conn.execute("SELECT state, count(*) AS n FROM imap_seen GROUP BY state"):
                counts[ImapState(row["state"])] = row["n"]
            return counts

        return await self._read(run)

    async def imap_purge(self, older_than: float) -> int:
        """Delete finished rows last updated before ``older_than``; how many went.

        Safe at any age: a finished message has left the folder, and IMAP never gives
        its UID to another message while UIDVALIDITY holds.
        """

        def run(conn: Connection) -> int:
            cur = conn.execute(
                "DELETE FROM imap_seen WHERE state IN (?, ?, ?) AND updated_at < ?",
                (ImapState.DONE, ImapState.REJECTED, ImapState.VANISHED, older_than),
            )
            return cur.rowcount

        return await self._write(run)

    async def _update(
        self,
        key: ImapKey,
        expect: ImapState | Collection[ImapState],
        to: ImapState,
        now: float,
        fields: Mapping[str, object],
    ) -> ImapEntry | None:
        def run(conn: Connection) -> ImapEntry | None:
            moved = schema.update_where_state(
                conn, "imap_seen", _WHERE_KEY, _params(key), expect, to, now, fields
            )
            return _get(conn, key) if moved else None

        return await self._write(run)
