"""The durable store: one SQLite database in ``state_dir`` (the only sqlite3 importer).

Durability. The database runs in WAL mode with ``synchronous=FULL``: each
COMMIT fsyncs the WAL before it returns, so a committed transaction survives a
crash or power loss, including the ones a promise rests on (the SMTP 250 after
``accept_message``; ``inbound_delivery_done``, which keeps a fax from being mailed
twice and is under way while the fax's mark-read goes out). A few
inbound bookkeeping writes use ``durable=False`` (``synchronous=NORMAL`` for
that one commit): a process crash keeps them, a power cut may undo them, and
the next durable commit makes them durable too, because the WAL is written in
order. Only records whose loss repeats harmless work qualify: a listed page
(``inbound_seen_page``) and a fax marked read (``inbound_marked_read``).
``busy_timeout`` lets a second process (the admin CLI) share the file, and claims
run inside ``BEGIN IMMEDIATE`` so two processes never claim the same job. The
state directory must be on a local filesystem.

Message bytes are a BLOB in the ``messages`` row, written in the same
transaction as the message's job rows. One commit (one WAL fsync) makes the
bytes and the jobs durable together, so no crash can leave a job without its
content or a spool file without a job, and there is no second fsync protocol
(file, rename, directory) to get right. The bytes are written twice (WAL, then
the checkpoint), which is cheap at fax sizes (the SMTP limit is 25 MB), and
``journal_size_limit`` keeps the WAL from staying large after a big message.

Threading. One writer connection is owned by a dedicated single worker thread;
every public method is ``async`` and runs its SQL there, so no store call ever
blocks the event loop and transactions never interleave. A caller cancelled
while its transaction runs does not stop the transaction: a cancelled
``accept_message`` may still commit, and the client's retry is then caught by
duplicate suppression.

Errors. sqlite3 errors are translated here, once, into
:class:`bridge.errors.StoreError` (a ``TransientError``) with the cause
chained; no sqlite3 type leaves this module. Rows leave as the frozen
dataclasses of :mod:`bridge.jobs`.

Schema versions live in ``PRAGMA user_version`` and are upgraded by the steps
of :mod:`bridge.store_schema`, each in its own transaction; a database from a
newer fax-bridge is refused with :class:`bridge.jobs.StoreVersionError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any, Final, TypeVar

from bridge import store_schema as schema
from bridge.errors import StoreError
from bridge.fsync import fsync_dir
from bridge.jobs import PurgeReport, StoreDiagnostics, StoreVersionError
from bridge.store_imap import ImapStore
from bridge.store_inbound import InboundStore
from bridge.store_outbound import OutboundStore
from bridge.store_rates import RateStore
from bridge.store_schema import Connection

__all__ = ["DB_FILENAME", "SCHEMA_VERSION", "Store"]

DB_FILENAME: Final = "fax-bridge.sqlite3"
SCHEMA_VERSION: Final = len(schema.MIGRATIONS)
_WAL_SIZE_LIMIT: Final = 64 * 1024 * 1024

_T = TypeVar("_T")


class Store(OutboundStore, RateStore, InboundStore, ImapStore):
    """The bridge's durable state. Create with :meth:`open`; close with :meth:`close`.

    The public methods are defined by the mixins: :class:`OutboundStore`
    (messages, jobs, rate limits), :class:`InboundStore` (the inbound
    ledger) and :class:`ImapStore` (the IMAP intake ledger). This class owns
    the connection, its thread and the transactions.
    """

    def __init__(self, path: Path, executor: ThreadPoolExecutor, conn: sqlite3.Connection) -> None:
        """Use :meth:`open`: the connection must belong to the executor's thread."""
        self.path = path
        self._executor = executor
        self._conn = conn
        self._closed = False

    # -- lifecycle ----------------------------------------------------------------

    @classmethod
    async def open(cls, state_dir: Path, *, busy_timeout: float = 10.0) -> Store:
        """Open (creating the directory and database if needed) and migrate.

        Raises :class:`StoreError` when the database cannot be opened and
        :class:`StoreVersionError` when a newer fax-bridge wrote it.
        """
        path = Path(state_dir) / DB_FILENAME
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fax-bridge-store")
        loop = asyncio.get_running_loop()
        try:
            conn = await loop.run_in_executor(executor, _connect, path, busy_timeout)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(path, executor, conn)

    async def close(self) -> None:
        """Finish queued calls, close the connection and stop the worker thread."""
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._close_connection)
        finally:
            self._executor.shutdown(wait=True)

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def diagnostics(self) -> StoreDiagnostics:
        """The pragmas in force on the writer connection (for logs and tests)."""

        def run(conn: Connection) -> StoreDiagnostics:
            def pragma(name: str) -> Any:
                return conn.execute(f"PRAGMA {name}").fetchone()[0]

            return StoreDiagnostics(
                path=str(self.path),
                schema_version=int(pragma("user_version")),
                journal_mode=str(pragma("journal_mode")),
                synchronous=int(pragma("synchronous")),
                foreign_keys=bool(pragma("foreign_keys")),
                busy_timeout_ms=int(pragma("busy_timeout")),
            )

        return await self._read(run)

    # -- retention ------------------------------------------------------------------

    async def purge(self, older_than: float) -> PurgeReport:
        """Drop what is finished and older than ``older_than`` (epoch seconds).

        * messages (bytes included) whose jobs are all REPORTED or CANCELLED and
          were last updated before the cutoff, with those jobs;
        * inbound faxes MARKED_READ before the cutoff, with their deliveries;
        * the images of DELIVERED and UNROUTED faxes: their rows stay, because
          such a fax is still unread at InterFAX and the row is what stops a
          second delivery;
        * rate-limit events before the cutoff (keep it beyond the longest window).
        """

        def run(conn: Connection) -> PurgeReport:
            done = (
                "SELECT m.id FROM messages m WHERE m.received_at < :cutoff AND NOT EXISTS"
                " (SELECT 1 FROM jobs j WHERE j.message_id = m.id"
                "  AND (j.state NOT IN ('reported', 'cancelled') OR j.updated_at >= :cutoff))"
            )
            arg = {"cutoff": older_than}
            jobs = conn.execute(
                f"SELECT count(*) FROM jobs WHERE message_id IN ({done})",  # noqa: S608 (constant)
                arg,
            ).fetchone()[0]
            messages = conn.execute(f"DELETE FROM messages WHERE id IN ({done})", arg).rowcount  # noqa: S608 (constant)
            faxes = conn.execute(
                "DELETE FROM inbound_faxes WHERE state = 'marked_read' AND updated_at < :cutoff",
                arg,
            ).rowcount
            images = conn.execute(
                "UPDATE inbound_faxes SET image = NULL WHERE image IS NOT NULL"
                " AND state IN ('delivered', 'unrouted') AND updated_at < :cutoff",
                arg,
            ).rowcount
            events = conn.execute("DELETE FROM rate_events WHERE at < :cutoff", arg).rowcount
            return PurgeReport(messages, jobs, faxes, images, events)

        return await self._write(run)

    # -- plumbing -------------------------------------------------------------------

    async def _read(self, fn: Callable[[Connection], _T]) -> _T:
        return await self._submit(fn, write=False)

    async def _write(self, fn: Callable[[Connection], _T], *, durable: bool = True) -> _T:
        return await self._submit(fn, write=True, durable=durable)

    async def _submit(
        self, fn: Callable[[Connection], _T], *, write: bool, durable: bool = True
    ) -> _T:
        if self._closed:
            raise StoreError(f"{self.path}: the store is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call, fn, write, durable)

    def _close_connection(self) -> None:
        try:
            self._conn.close()
        except sqlite3.Error as exc:
            raise _translate(exc, self.path) from exc

    def _call(self, fn: Callable[[Connection], _T], write: bool, durable: bool) -> _T:
        """Run ``fn`` on the store thread, in a write transaction if asked.

        A write that is not ``durable`` commits without waiting for fsync
        (``synchronous = NORMAL``): a process crash keeps it, a power loss may undo it,
        and the next durable commit makes it durable too (the WAL is written in order).
        """
        try:
            if not write:
                return fn(self._conn)
            if durable:
                with _immediate(self._conn):
                    return fn(self._conn)
            self._conn.execute("PRAGMA synchronous = NORMAL")
            try:
                with _immediate(self._conn):
                    return fn(self._conn)
            finally:
                self._conn.execute("PRAGMA synchronous = FULL")
        except sqlite3.Error as exc:
            raise _translate(exc, self.path) from exc


# -- helpers that run on the store thread ------------------------------------------------


def _connect(path: Path, busy_timeout: float) -> sqlite3.Connection:
    try:
        created = not path.parent.is_dir()
        path.parent.mkdir(parents=True, exist_ok=True)
        if created:
            fsync_dir(path.parent.parent)
    except OSError as exc:
        raise StoreError(f"{path.parent}: cannot create the state directory: {exc}") from exc
    new_file = not path.exists()
    try:
        conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None)
    except sqlite3.Error as exc:
        raise _translate(exc, path) from exc
    try:
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"{path}: cannot use WAL (journal mode is {mode}); use a local disk")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute(f"PRAGMA journal_size_limit = {_WAL_SIZE_LIMIT}")
        _migrate(conn, path)
        if new_file:  # SQLite syncs the directory for its journals, not for a new database
            fsync_dir(path.parent)
    except BaseException as exc:
        conn.close()
        if isinstance(exc, sqlite3.Error):
            raise _translate(exc, path) from exc
        if isinstance(exc, OSError):
            raise StoreError(f"{path.parent}: cannot sync the state directory: {exc}") from exc
        raise
    return conn


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Apply the missing schema steps, one transaction each."""
    while True:
        with _immediate(conn):
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if version > SCHEMA_VERSION:
                raise StoreVersionError(
                    f"{path}: database schema version {version} is newer than this"
                    f" fax-bridge supports ({SCHEMA_VERSION}); upgrade fax-bridge"
                )
            if version == SCHEMA_VERSION:
                return
            for statement in schema.MIGRATIONS[version]:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version + 1}")


@contextlib.contextmanager
def _immediate(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        raise


def _translate(exc: sqlite3.Error, path: Path) -> StoreError:
    kind = "integrity violation" if isinstance(exc, sqlite3.IntegrityError) else "error"
    name = getattr(exc, "sqlite_errorname", type(exc).__name__)
    return StoreError(f"{path}: database {kind}: {exc} ({name})")
