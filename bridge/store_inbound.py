"""Inbound SQL of the store: the ledger of received faxes and their deliveries.

Keyed by the InterFAX message id, so that a restart, a failed mark-read or an
operator's "mark unread" never produces a second email. A mixin of
:class:`bridge.store.Store`; see :mod:`bridge.store` for durability and
threading.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence

from bridge import store_schema as schema
from bridge.jobs import (
    UNCHANGED,
    InboundDelivery,
    InboundFax,
    InboundRecipient,
    InboundRecord,
    InboundState,
    Unchanged,
)
from bridge.store_schema import Connection, StoreBase


class InboundStore(StoreBase):
    """The inbound ledger: SEEN -> DOWNLOADED -> DELIVERED -> MARKED_READ, or UNROUTED."""

    async def inbound_seen_page(
        self, records: Sequence[InboundRecord], *, now: float
    ) -> list[InboundFax]:
        """Record listed faxes in state SEEN unless the ledger already has them.

        Idempotent: a returned fax has ``created=True`` only when this call inserted
        it; existing rows are returned unchanged, in the order of ``records``. One
        transaction that does not wait for fsync: a row lost in a power cut is
        recorded again at the next listing, as the fax is still unread (unless
        somebody read it in the InterFAX portal in the seconds before the cut).
        """

        def run(conn: Connection) -> list[InboundFax]:
            faxes = []
            for record in records:
                cur = conn.execute(
                    "INSERT INTO inbound_faxes (message_id, state, phone_number, caller_id,"
                    " remote_csid, pages, receive_time, message_status, meta, created_at,"
                    " updated_at, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (message_id) DO NOTHING",
                    (
                        record.message_id,
                        InboundState.SEEN,
                        record.phone_number,
                        record.caller_id,
                        record.remote_csid,
                        record.pages,
                        record.receive_time,
                        record.message_status,
                        json.dumps(dict(record.meta), sort_keys=True),
                        now,
                        now,
                        now,
                    ),
                )
                fax = _inbound(conn, record.message_id, created=cur.rowcount == 1)
                assert fax is not None  # inserted or already present, in this transaction
                faxes.append(fax)
            return faxes

        return await self._write(run, durable=False)

    async def inbound_image(self, message_id: int) -> tuple[bytes, str] | None:
        """The stored image and its content type, or None (not downloaded or purged)."""

        def run(conn: Connection) -> tuple[bytes, str] | None:
            row = conn.execute(
                "SELECT image, image_type FROM inbound_faxes WHERE message_id = ?", (message_id,)
            ).fetchone()
            if row is None or row["image"] is None:
                return None
            return bytes(row["image"]), str(row["image_type"])

        return await self._read(run)

    async def inbound_delivery_done(
        self,
        message_id: int,
        recipient: str,
        smtp_message_id: str,
        *,
        now: float,
        recipients: Sequence[InboundRecipient] = (),
        image: tuple[bytes, str] | None = None,
    ) -> InboundFax | None:
        """Record (durably) that ``recipient`` accepted the fax mail.

        ``recipients`` and ``image`` are kept first, in the same transaction (see
        :func:`_keep`): the first record of a fax carries its recipients and its image.
        When this was the last undelivered recipient, the fax moves from
        DOWNLOADED (or SEEN, for a notify-only route that never downloads the
        image) to DELIVERED in the same transaction. Returns the fax, or None
        when there is no such delivery. A repeated call changes nothing.
        """

        def run(conn: Connection) -> InboundFax | None:
            _keep(conn, message_id, recipients, image, now)
            cur = conn.execute(
                "UPDATE inbound_deliveries SET state = 'delivered', smtp_message_id = ?,"
                " delivered_at = ?, attempts = attempts + 1, last_error = NULL"
                " WHERE message_id = ? AND recipient = ? AND state <> 'delivered'",
                (smtp_message_id, now, message_id, recipient),
            )
            if not cur.rowcount and not _delivery_exists(conn, message_id, recipient):
                return None
            conn.execute(
                "UPDATE inbound_faxes SET state = ?, updated_at = ? WHERE message_id = ?"
                " AND state IN (?, ?) AND NOT EXISTS (SELECT 1 FROM inbound_deliveries d"
                " WHERE d.message_id = ? AND d.state <> 'delivered')",
                (
                    InboundState.DELIVERED,
                    now,
                    message_id,
                    InboundState.SEEN,
                    InboundState.DOWNLOADED,
                    message_id,
                ),
            )
            return _inbound(conn, message_id)

        return await self._write(run)

    async def inbound_delivery_failed(
        self,
        message_id: int,
        recipient: str,
        error: str,
        *,
        now: float,
        permanent: bool = False,
        recipients: Sequence[InboundRecipient] = (),
        image: tuple[bytes, str] | None = None,
    ) -> InboundDelivery | None:
        """Count a failed delivery attempt; ``permanent`` marks it FAILED.

        ``recipients`` and ``image`` are kept first, as by :meth:`inbound_delivery_done`.
        A delivered recipient is left alone. None when there is no such delivery.
        """

        def run(conn: Connection) -> InboundDelivery | None:
            _keep(conn, message_id, recipients, image, now)
            conn.execute(
                "UPDATE inbound_deliveries SET attempts = attempts + 1, last_error = ?,"
                " state = CASE WHEN ? THEN 'failed' ELSE state END"
                " WHERE message_id = ? AND recipient = ? AND state <> 'delivered'",
                (error, permanent, message_id, recipient),
            )
            row = conn.execute(
                "SELECT * FROM inbound_deliveries WHERE message_id = ? AND recipient = ?",
                (message_id, recipient),
            ).fetchone()
            return None if row is None else schema.inbound_delivery(row)

        return await self._write(run)

    async def inbound_transition(
        self,
        message_id: int,
        *,
        expect: InboundState | Collection[InboundState],
        to: InboundState,
        now: float,
        next_attempt_at: float | Unchanged = UNCHANGED,
        last_error: str | Unchanged | None = UNCHANGED,
        count_attempt: bool = False,
    ) -> InboundFax | None:
        """Compare-and-set on a fax's state, like :meth:`transition`.

        ``count_attempt`` increments ``attempts``. None when the state did not
        match or the fax is unknown.
        """
        fields = schema.present(next_attempt_at=next_attempt_at, last_error=last_error)
        return await self._inbound_cas(message_id, expect, to, now, fields, count_attempt)

    async def inbound_marked_read(
        self, message_id: int, *, now: float, last_error: str | None
    ) -> InboundFax | None:
        """DELIVERED -> MARKED_READ (None if the fax was not DELIVERED).

        Not waiting for fsync: should a power cut undo it, the fax is DELIVERED again,
        and marking it read once more is harmless.
        """
        delivered, marked = InboundState.DELIVERED, InboundState.MARKED_READ
        fields = {"last_error": last_error}
        return await self._inbound_cas(message_id, delivered, marked, now, fields, durable=False)

    async def _inbound_cas(
        self,
        message_id: int,
        expect: InboundState | Collection[InboundState],
        to: InboundState,
        now: float,
        fields: Mapping[str, object],
        count_attempt: bool = False,
        *,
        durable: bool = True,
    ) -> InboundFax | None:
        def run(conn: Connection) -> InboundFax | None:
            table, where = "inbound_faxes", "message_id = ?"
            key = (message_id,)
            if not schema.update_where_state(
                conn, table, where, key, expect, to, now, fields, count_attempt=count_attempt
            ):
                return None
            return _inbound(conn, message_id)

        return await self._write(run, durable=durable)

    async def inbound_pending(self, *, now: float, limit: int = 100) -> list[InboundFax]:
        """Faxes with work left (SEEN, DOWNLOADED, DELIVERED) that are due, oldest first."""

        def run(conn: Connection) -> list[InboundFax]:
            cur = conn.execute(
                f"SELECT {schema.INBOUND_COLUMNS} FROM inbound_faxes"  # noqa: S608 (constant)
                " WHERE state IN (?, ?, ?) AND next_attempt_at <= ?"
                " ORDER BY next_attempt_at, message_id LIMIT ?",
                (InboundState.SEEN, InboundState.DOWNLOADED, InboundState.DELIVERED, now, limit),
            )
            return [schema.inbound_fax(row) for row in cur]

        return await self._read(run)

    async def inbound_redeliver(self, message_id: int, *, now: float) -> InboundFax | None:
        """Deliver a received fax again to every recipient (``fax-bridge inbound redeliver``).

        Every delivery goes back to PENDING and ``meta["redelivery"]`` counts up, so the
        new mails get new Message-IDs (a mailbox that deduplicates on Message-ID would
        otherwise hide them). The fax goes back to DOWNLOADED, or to SEEN when retention
        removed its image, and is due now. None when there is no such fax.
        """

        def run(conn: Connection) -> InboundFax | None:
            row = conn.execute(
                "SELECT meta, image IS NOT NULL AS has_image FROM inbound_faxes"
                " WHERE message_id = ?",
                (message_id,),
            ).fetchone()
            if row is None:
                return None
            meta = json.loads(row["meta"] or "{}")
            meta["redelivery"] = int(meta.get("redelivery", 0)) + 1
            state = InboundState.DOWNLOADED if row["has_image"] else InboundState.SEEN
            conn.execute(
                "UPDATE inbound_faxes SET state = ?, meta = ?, next_attempt_at = ?, attempts = 0,"
                " last_error = NULL, updated_at = ? WHERE message_id = ?",
                (state, json.dumps(meta, sort_keys=True), now, now, message_id),
            )
            conn.execute(
                "UPDATE inbound_deliveries SET state = 'pending', smtp_message_id = NULL,"
                " delivered_at = NULL, attempts = 0, last_error = NULL WHERE message_id = ?",
                (message_id,),
            )
            return _inbound(conn, message_id)

        return await self._write(run)

    async def inbound_get(self, message_id: int) -> InboundFax | None:
        """One fax of the ledger, or None."""
        return await self._read(lambda conn: _inbound(conn, message_id))

    async def inbound_work(
        self, message_id: int
    ) -> tuple[InboundFax, list[InboundDelivery]] | None:
        """One fax of the ledger with its deliveries, read together; None if unknown."""

        def run(conn: Connection) -> tuple[InboundFax, list[InboundDelivery]] | None:
            fax = _inbound(conn, message_id)
            return None if fax is None else (fax, _deliveries(conn, message_id))

        return await self._read(run)

    async def inbound_faxes(
        self, states: Collection[InboundState] | None = None, limit: int = 100
    ) -> list[InboundFax]:
        """Faxes of the ledger, newest message id first, optionally only in ``states``."""

        def run(conn: Connection) -> list[InboundFax]:
            wanted = tuple(InboundState) if states is None else tuple(states)
            marks = ", ".join("?" * len(wanted))
            cur = conn.execute(
                f"SELECT {schema.INBOUND_COLUMNS} FROM inbound_faxes"  # noqa: S608 (placeholders)
                f" WHERE state IN ({marks}) ORDER BY message_id DESC LIMIT ?",
                (*wanted, limit),
            )
            return [schema.inbound_fax(row) for row in cur]

        return await self._read(run)

    async def inbound_deliveries(self, message_id: int) -> list[InboundDelivery]:
        """Every recipient's delivery of one fax."""
        return await self._read(lambda conn: _deliveries(conn, message_id))

    async def inbound_count_by_state(self) -> dict[InboundState, int]:
        """Number of ledger faxes in every state (zero included)."""

        def run(conn: Connection) -> dict[InboundState, int]:
            counts = dict.fromkeys(InboundState, 0)
            for row in conn.execute(
                "SELECT state, count(*) AS n FROM inbound_faxes GROUP BY state"
            ):
                counts[InboundState(row["state"])] = row["n"]
            return counts

        return await self._read(run)


def _inbound(conn: Connection, message_id: int, *, created: bool = False) -> InboundFax | None:
    row = conn.execute(
        f"SELECT {schema.INBOUND_COLUMNS} FROM inbound_faxes WHERE message_id = ?",  # noqa: S608 (constant)
        (message_id,),
    ).fetchone()
    return None if row is None else schema.inbound_fax(row, created=created)


def _deliveries(conn: Connection, message_id: int) -> list[InboundDelivery]:
    cur = conn.execute(
        "SELECT * FROM inbound_deliveries WHERE message_id = ? ORDER BY recipient", (message_id,)
    )
    return [schema.inbound_delivery(row) for row in cur]


def _delivery_exists(conn: Connection, message_id: int, recipient: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM inbound_deliveries WHERE message_id = ? AND recipient = ?",
        (message_id, recipient),
    ).fetchone()
    return row is not None


def _keep(
    conn: Connection,
    message_id: int,
    recipients: Sequence[InboundRecipient],
    image: tuple[bytes, str] | None,
    now: float,
) -> None:
    """Add a PENDING delivery per recipient not in the ledger yet, and keep ``image``
    (nothing at all for a fax the ledger does not know).

    The image is kept only while the fax is SEEN, which moves it to DOWNLOADED. Nothing is
    recorded between the download and the first delivery record (a mail accepted, or an
    attempt failed for any reason, ours included): a crash in between costs a second
    download, never a second mail, and a fax whose deliveries all succeed at once takes
    a single durable commit per recipient.
    """
    if recipients:
        conn.executemany(
            "INSERT INTO inbound_deliveries (message_id, recipient, channel, state)"
            " SELECT message_id, ?, ?, 'pending' FROM inbound_faxes WHERE message_id = ?"
            " ON CONFLICT (message_id, recipient) DO NOTHING",
            [(r.recipient, r.channel, message_id) for r in recipients],
        )
    if image is not None:
        conn.execute(
            "UPDATE inbound_faxes SET image = ?, image_type = ?, state = ?, updated_at = ?"
            " WHERE message_id = ? AND state = ?",
            (*image, InboundState.DOWNLOADED, now, message_id, InboundState.SEEN),
        )
