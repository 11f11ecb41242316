"""The SQLite schema of the durable store and the mapping from rows to values.

``MIGRATIONS[i]`` takes a database from ``PRAGMA user_version`` ``i`` to
``i + 1``. :mod:`bridge.store` applies each step inside its own
``BEGIN IMMEDIATE`` transaction together with the version bump, so a step is
applied completely or not at all. A released step is never edited: a schema
change is a new step appended at the end. The SQL deliberately spells state
values out instead of deriving them from the enums, so that adding an enum
member cannot silently change what an old step meant.

Below the migrations: the converters from rows to the frozen dataclasses of
:mod:`bridge.jobs`, and :class:`StoreBase`, the contract between
:class:`bridge.store.Store` (which owns the sqlite3 connection and its thread)
and the mixins that hold the outbound and inbound SQL
(:mod:`bridge.store_outbound`, :mod:`bridge.store_inbound`). Those modules see
the connection only through the :class:`Connection` protocol, so sqlite3 is
imported by :mod:`bridge.store` alone.
"""

from __future__ import annotations

import abc
import json
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from typing import Any, Final, Protocol, TypeVar

from bridge.jobs import (
    UNCHANGED,
    DeliveryChannel,
    DeliveryState,
    InboundDelivery,
    InboundFax,
    InboundState,
    Job,
    JobState,
    Message,
    MessageSource,
)

_V1: Final = (
    """
    CREATE TABLE messages (
        id                INTEGER PRIMARY KEY,
        received_at       REAL    NOT NULL,
        source            TEXT    NOT NULL CHECK (source IN ('smtp', 'imap', 'cli')),
        mail_from         TEXT    NOT NULL,
        from_header       TEXT    NOT NULL,
        message_id_header TEXT,
        size              INTEGER NOT NULL CHECK (size >= 0),
        sha256            TEXT    NOT NULL CHECK (length(sha256) = 64),
        raw               BLOB    NOT NULL,
        trace_id          TEXT    NOT NULL
    )
    """,
    "CREATE INDEX messages_message_id_header ON messages (message_id_header)",
    "CREATE INDEX messages_received_at ON messages (received_at)",
    """
    CREATE TABLE jobs (
        id              INTEGER PRIMARY KEY,
        message_id      INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
        destination     TEXT    NOT NULL CHECK (
                            destination GLOB '+[1-9]*'
                            AND destination NOT GLOB '+*[^0-9]*'
                            AND length(destination) BETWEEN 8 AND 16),
        sender          TEXT    NOT NULL CHECK (sender <> ''),
        reference       TEXT    NOT NULL UNIQUE CHECK (length(reference) BETWEEN 1 AND 60),
        fax_id          INTEGER,
        state           TEXT    NOT NULL CHECK (state IN (
                            'accepted', 'submitting', 'in_doubt', 'submitted', 'sent',
                            'failed', 'reported', 'held', 'cancelled')),
        attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
        next_attempt_at REAL    NOT NULL,
        in_doubt_since  REAL,
        created_at      REAL    NOT NULL,
        updated_at      REAL    NOT NULL,
        last_error      TEXT,
        fax_status      INTEGER,
        result          TEXT,
        trace_id        TEXT    NOT NULL
    )
    """,
    "CREATE INDEX jobs_due ON jobs (state, next_attempt_at, id)",
    "CREATE INDEX jobs_message ON jobs (message_id)",
    "CREATE INDEX jobs_fax_id ON jobs (fax_id) WHERE fax_id IS NOT NULL",
    """
    CREATE TABLE rate_events (
        id  INTEGER PRIMARY KEY,
        key TEXT    NOT NULL,
        at  REAL    NOT NULL,
        n   INTEGER NOT NULL DEFAULT 1 CHECK (n > 0)
    )
    """,
    "CREATE INDEX rate_events_key_at ON rate_events (key, at)",
    """
    CREATE TABLE inbound_faxes (
        message_id      INTEGER PRIMARY KEY,
        state           TEXT    NOT NULL CHECK (state IN (
                            'seen', 'downloaded', 'delivered', 'marked_read', 'unrouted')),
        phone_number    TEXT    NOT NULL,
        caller_id       TEXT,
        remote_csid     TEXT,
        pages           INTEGER NOT NULL,
        receive_time    REAL    NOT NULL,
        message_status  INTEGER NOT NULL,
        meta            TEXT    NOT NULL,
        image           BLOB,
        image_type      TEXT,
        created_at      REAL    NOT NULL,
        updated_at      REAL    NOT NULL,
        attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
        next_attempt_at REAL    NOT NULL,
        last_error      TEXT
    )
    """,
    "CREATE INDEX inbound_faxes_due ON inbound_faxes (state, next_attempt_at)",
    """
    CREATE TABLE inbound_deliveries (
        message_id      INTEGER NOT NULL
                            REFERENCES inbound_faxes (message_id) ON DELETE CASCADE,
        recipient       TEXT    NOT NULL CHECK (recipient <> ''),
        channel         TEXT    NOT NULL CHECK (channel IN ('smtp', 'maildir', 'imap')),
        state           TEXT    NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
        smtp_message_id TEXT,
        delivered_at    REAL,
        attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
        last_error      TEXT,
        PRIMARY KEY (message_id, recipient)
    ) WITHOUT ROWID
    """,
)

# Version 2: the IMAP intake ledger (bridge/store_imap.py), one row per message seen in
# a watched folder, keyed like IMAP itself identifies a message for good.
_V2: Final = (
    """
    CREATE TABLE imap_seen (
        account     TEXT    NOT NULL CHECK (account <> ''),
        folder      TEXT    NOT NULL CHECK (folder <> ''),
        uidvalidity INTEGER NOT NULL CHECK (uidvalidity > 0),
        uid         INTEGER NOT NULL CHECK (uid > 0),
        state       TEXT    NOT NULL CHECK (state IN (
                        'seen', 'enqueued', 'refused', 'done', 'rejected', 'vanished')),
        message_id  TEXT,
        sha256      TEXT    NOT NULL CHECK (length(sha256) = 64),
        subject     TEXT,
        reason      TEXT,
        report_to   TEXT,
        reported_at REAL,
        attempts    INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
        last_error  TEXT,
        created_at  REAL    NOT NULL,
        updated_at  REAL    NOT NULL,
        PRIMARY KEY (account, folder, uidvalidity, uid)
    ) WITHOUT ROWID
    """,
    "CREATE INDEX imap_seen_open ON imap_seen (account, folder, state)",
)

# Version 3: rate events counted per (key, minute) instead of one row per event, so a
# rate-limit check sums at most a day's 1,440 rows whatever the traffic. Windows start on
# a minute boundary: a check may count up to 59 s more than its window (stricter, safe).
_V3: Final = (
    """
    CREATE TABLE rate_buckets (
        key TEXT    NOT NULL,
        at  REAL    NOT NULL,
        n   INTEGER NOT NULL CHECK (n > 0),
        PRIMARY KEY (key, at)
    ) WITHOUT ROWID
    """,
    """
    INSERT INTO rate_buckets (key, at, n)
    SELECT key, CAST(at / 60 AS INTEGER) * 60.0, sum(n) FROM rate_events
    GROUP BY key, CAST(at / 60 AS INTEGER)
    """,
    "DROP TABLE rate_events",
    "ALTER TABLE rate_buckets RENAME TO rate_events",
)

# The message bytes move to a table of their own, as the last field of its rows: only
# there does SQLite keep the zeroblob that reserves them (see ``_insert_message``)
# unexpanded; anywhere else it builds the whole record in memory, two copies of a 25 MB
# message. ``messages.raw`` stays, always empty: SQLite before 3.35 cannot drop a column.
_V4: Final = (
    """
    CREATE TABLE message_bodies (
        id  INTEGER PRIMARY KEY REFERENCES messages (id) ON DELETE CASCADE,
        raw BLOB    NOT NULL
    )
    """,
    "INSERT INTO message_bodies (id, raw) SELECT id, raw FROM messages",
    "UPDATE messages SET raw = x''",
)

#: Every schema step, oldest first. ``len(MIGRATIONS)`` is the current version.
MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (_V1, _V2, _V3, _V4)


# -- rows to values -----------------------------------------------------------------


class Row(Protocol):
    """What the converters need from a database row: access by column name."""

    def __getitem__(self, key: str, /) -> Any: ...


def _json(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def job(row: Row) -> Job:
    """A ``jobs`` row as a :class:`Job`."""
    return Job(
        id=row["id"],
        message_id=row["message_id"],
        destination=row["destination"],
        sender=row["sender"],
        reference=row["reference"],
        fax_id=row["fax_id"],
        state=JobState(row["state"]),
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"],
        in_doubt_since=row["in_doubt_since"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        last_error=row["last_error"],
        fax_status=row["fax_status"],
        result=_json(row["result"]),
        trace_id=row["trace_id"],
    )


#: Every ``messages`` column but the bytes.
MESSAGE_COLUMNS: Final = (
    "id, received_at, source, mail_from, from_header, message_id_header, size, sha256, trace_id"
)


def message(row: Row) -> Message:
    """A ``messages`` row (selected with :data:`MESSAGE_COLUMNS`) as a :class:`Message`."""
    return Message(
        id=row["id"],
        received_at=row["received_at"],
        source=MessageSource(row["source"]),
        mail_from=row["mail_from"],
        from_header=row["from_header"],
        message_id_header=row["message_id_header"],
        size=row["size"],
        sha256=row["sha256"],
        trace_id=row["trace_id"],
    )


#: Every ``inbound_faxes`` column but the image, plus the image's size.
INBOUND_COLUMNS: Final = (
    "message_id, state, phone_number, caller_id, remote_csid, pages, receive_time,"
    " message_status, meta, image_type, length(image) AS image_size, created_at,"
    " updated_at, attempts, next_attempt_at, last_error"
)


def inbound_fax(row: Row, *, created: bool = False) -> InboundFax:
    """An ``inbound_faxes`` row (selected with :data:`INBOUND_COLUMNS`)."""
    return InboundFax(
        message_id=row["message_id"],
        state=InboundState(row["state"]),
        phone_number=row["phone_number"],
        caller_id=row["caller_id"],
        remote_csid=row["remote_csid"],
        pages=row["pages"],
        receive_time=row["receive_time"],
        message_status=row["message_status"],
        meta=_json(row["meta"]),
        image_type=row["image_type"],
        image_size=row["image_size"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"],
        last_error=row["last_error"],
        created=created,
    )


def inbound_delivery(row: Row) -> InboundDelivery:
    """An ``inbound_deliveries`` row as an :class:`InboundDelivery`."""
    return InboundDelivery(
        message_id=row["message_id"],
        recipient=row["recipient"],
        channel=DeliveryChannel(row["channel"]),
        state=DeliveryState(row["state"]),
        smtp_message_id=row["smtp_message_id"],
        delivered_at=row["delivered_at"],
        attempts=row["attempts"],
        last_error=row["last_error"],
    )


# -- the connection as the SQL modules see it -----------------------------------------

Params = Sequence[object] | Mapping[str, object]
_T = TypeVar("_T")


class Cursor(Protocol):
    """The part of a DB-API cursor the store uses."""

    @property
    def rowcount(self) -> int: ...

    @property
    def lastrowid(self) -> int | None: ...

    def fetchone(self) -> Any: ...

    def __iter__(self) -> Iterator[Any]: ...


class Blob(Protocol):
    """An open BLOB for incremental reading and writing (``sqlite3.Blob``)."""

    def read(self, length: int = -1, /) -> bytes: ...

    def write(self, data: bytes | memoryview, /) -> None: ...

    def close(self) -> None: ...


class Connection(Protocol):
    """The part of the store's connection the SQL modules use."""

    def execute(self, sql: str, parameters: Params = (), /) -> Cursor: ...

    def blobopen(self, table: str, column: str, row: int, /, *, readonly: bool = False) -> Blob: ...

    def executemany(self, sql: str, parameters: Iterable[Params], /) -> Cursor: ...


class StoreBase(abc.ABC):
    """Runs functions of a connection on the store thread (see :class:`bridge.store.Store`)."""

    @abc.abstractmethod
    async def _read(self, fn: Callable[[Connection], _T]) -> _T:
        """Run ``fn`` outside any explicit transaction (each statement is atomic)."""

    @abc.abstractmethod
    async def _write(self, fn: Callable[[Connection], _T], *, durable: bool = True) -> _T:
        """Run ``fn`` inside ``BEGIN IMMEDIATE`` ... ``COMMIT`` (rolled back on error).

        Not ``durable``: the commit does not wait for fsync. Only for records whose
        loss in a power cut costs a repeat of harmless work, never a second mail or fax.
        """


def present(**fields: object) -> dict[str, object]:
    """The keyword arguments that are not :data:`bridge.jobs.UNCHANGED`."""
    return {name: value for name, value in fields.items() if value is not UNCHANGED}


def update_where_state(
    conn: Connection,
    table: str,
    where: str,
    key: Sequence[object],
    expect: str | Collection[str],
    to: str,
    now: float,
    fields: Mapping[str, object],
    *,
    count_attempt: bool = False,
) -> bool:
    """The compare-and-set behind every transition: the row ``where`` (with the parameters
    ``key``) selects moves to ``to`` if its state is one of ``expect``. SQL text is ours."""
    expected = (expect,) if isinstance(expect, str) else tuple(expect)
    sets = "".join(f", {column} = ?" for column in fields)
    if count_attempt:
        sets += ", attempts = attempts + 1"
    marks = ", ".join("?" * len(expected))
    cur = conn.execute(
        f"UPDATE {table} SET state = ?, updated_at = ?{sets}"  # noqa: S608 (names are ours)
        f" WHERE {where} AND state IN ({marks})",
        (to, now, *fields.values(), *key, *expected),
    )
    return cur.rowcount == 1
