"""Operator commands: ``queue``, ``send``, ``balance``, ``check-config --probe``.

They open the same database as the running service. That is safe: SQLite in WAL mode
lets readers and one writer at a time share it, every state change is a compare-and-set
inside ``BEGIN IMMEDIATE``, and no command here claims work the service could be
doing (no command calls ``recover_interrupted``).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

from bridge import wiring
from bridge.config import Config
from bridge.config_schema import ImapConnection
from bridge.errors import BridgeError
from bridge.intake import Intake, IntakePolicy, Reply
from bridge.jobs import Job, JobState, MessageSource
from bridge.mailer import Mailer
from bridge.mediatypes import extension_of, mime_for_extension
from bridge.store import Store

#: What ``queue list`` shows for people (``--json`` gives every field).
QUEUE_COLUMNS = (
    "id",
    "state",
    "destination",
    "sender",
    "fax_id",
    "attempts",
    "updated",
    "last_error",
)

_PUNCTUATION = str.maketrans("", "", " -().")

#: States from which a job can be cancelled locally, before InterFAX has it.
_CANCELLABLE = (JobState.ACCEPTED, JobState.IN_DOUBT, JobState.HELD)


def _when(epoch: float | None) -> str:
    if epoch is None:
        return ""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    """Print ``rows`` as an aligned text table with ``columns``."""
    cells = [[col.upper() for col in columns]]
    cells += [["" if row.get(c) is None else str(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    for line in cells:
        print("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())


def emit(value: Any, *, as_json: bool, columns: Sequence[str] | None = None) -> None:
    """Print ``value`` as JSON for scripts or as a table / key list for people."""
    if as_json:
        json.dump(value, sys.stdout, indent=2, default=str)
        print()
    elif isinstance(value, list):
        print_table(value, columns or (list(value[0]) if value else []))
    else:
        width = max((len(k) for k in value), default=0)
        for key, item in value.items():
            print(f"{key.ljust(width)}  {item if item is not None else ''}")


def job_row(job: Job) -> dict[str, Any]:
    """A job as plain values."""
    row = asdict(job)
    row["state"] = str(job.state)
    row["updated"] = _when(job.updated_at)
    row["created"] = _when(job.created_at)
    return row


async def queue_list(store: Store, *, state: str | None, limit: int) -> list[dict[str, Any]]:
    """The newest jobs, optionally in one state."""
    states = [JobState(state)] if state else None
    return [job_row(job) for job in await store.jobs(states, limit=limit)]


async def queue_show(store: Store, job_id: int) -> dict[str, Any] | None:
    """Everything about one job."""
    job = await store.get_job(job_id)
    return None if job is None else job_row(job)


async def queue_retry(store: Store, job_id: int) -> str:
    """Queue the job's message to its destination again, as a new job."""
    job = await store.get_job(job_id)
    if job is None:
        raise BridgeError(f"no job {job_id}")
    if job.state not in (JobState.FAILED, JobState.HELD, JobState.REPORTED, JobState.CANCELLED):
        raise BridgeError(
            f"job {job_id} is {job.state}: only failed, held, reported or cancelled jobs retry"
        )
    if job.state is JobState.HELD:
        # A held job may have reached InterFAX: put it back to reconciliation, not a new send.
        moved = await store.transition(
            job_id,
            expect=JobState.HELD,
            to=JobState.IN_DOUBT,
            now=time.time(),
            next_attempt_at=time.time(),
        )
        return f"job {job_id} goes back to reconciliation" if moved else "job changed meanwhile"
    new = await store.requeue(job_id, now=time.time())
    if new is None:
        return f"job {job_id}: its message is no longer stored (retention)"
    return f"queued again as job {new.id} ({new.reference})"


async def queue_cancel(store: Store, config: Config, job_id: int) -> str:
    """Cancel a job; a fax InterFAX already has (or may have) is cancelled there too."""
    job = await store.get_job(job_id)
    if job is None:
        raise BridgeError(f"no job {job_id}")
    if job.state is JobState.SUBMITTED and job.fax_id is not None:
        async with wiring.interfax_client(config) as client:
            await client.cancel(job.fax_id)
        return f"fax {job.fax_id} cancelled at InterFAX; the report follows its final status"
    if job.state not in _CANCELLABLE:
        raise BridgeError(f"job {job_id} is {job.state} and cannot be cancelled")
    cancelled: list[int] = []
    if job.state is not JobState.ACCEPTED:
        # In doubt or held: the POST may have created the fax. Find and cancel it first;
        # if InterFAX cannot be asked, refuse rather than let a fax go out unseen.
        async with wiring.interfax_client(config) as client:
            for fax in await client.search(reference=job.reference):
                await client.cancel(fax.id)
                cancelled.append(fax.id)
    moved = await store.transition(
        job_id,
        expect=_CANCELLABLE,
        to=JobState.CANCELLED,
        now=time.time(),
        last_error="cancelled by an operator",
    )
    if moved is None:
        raise BridgeError(f"job {job_id} changed meanwhile; look again and retry")
    at_interfax = f" (and fax {', '.join(map(str, cancelled))} at InterFAX)" if cancelled else ""
    return f"job {job_id} cancelled{at_interfax}"


#: What ``inbound list`` shows for people.
INBOUND_COLUMNS = ("message_id", "state", "phone_number", "caller_id", "remote_csid", "pages",
                   "received", "last_error")  # fmt: skip


async def inbound_list(store: Store, *, limit: int) -> list[dict[str, Any]]:
    """The newest received faxes with their delivery state."""
    rows = []
    for fax in await store.inbound_faxes(limit=limit):
        row = asdict(fax)
        row["state"] = str(fax.state)
        row["received"] = _when(fax.receive_time)
        row["deliveries"] = [
            {"recipient": d.recipient, "state": str(d.state), "last_error": d.last_error}
            for d in await store.inbound_deliveries(fax.message_id)
        ]
        rows.append(row)
    return rows


async def inbound_redeliver(store: Store, message_id: int) -> str:
    """Deliver a received fax again to all its recipients (by the running service)."""
    fax = await store.inbound_redeliver(message_id, now=time.time())
    if fax is None:
        raise BridgeError(f"no received fax {message_id}")
    return f"fax {message_id} will be delivered again ({fax.state}); the service does it shortly"


def _attachment_type(path: Path) -> tuple[str, str]:
    ext = extension_of(path.name)
    try:
        mime = mime_for_extension(ext)
    except KeyError:
        raise BridgeError(f"{path}: InterFAX does not accept .{ext or '?'} files") from None
    maintype, _, subtype = mime.partition("/")
    return maintype, subtype


async def send_files(
    store: Store, config: Config, number: str, files: Sequence[Path], sender: str
) -> Reply:
    """Queue a fax of ``files`` through the same intake checks as mail."""
    # The same punctuation a mail client may use in the local part is dropped here.
    recipient = f"{number.translate(_PUNCTUATION)}@{config.smtp_server.fax_domain}"
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = recipient
    msg["Subject"] = ", ".join(p.name for p in files)
    msg["Message-ID"] = make_msgid(domain="fax-bridge.cli")
    msg.set_content("")
    for path in files:
        maintype, subtype = _attachment_type(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise BridgeError(f"{path}: {exc.strerror}") from None
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=path.name)
    intake = Intake(store, IntakePolicy.from_config(config))
    refusal = intake.check_sender(sender)
    if refusal is not None:
        return refusal
    number_or_refusal = intake.check_recipient(recipient, accepted_so_far=0)
    if isinstance(number_or_refusal, Reply):
        return number_or_refusal
    return await intake.accept(
        msg.as_bytes(), mail_from=sender, recipients=[number_or_refusal], source=MessageSource.CLI
    )


async def probe(config: Config) -> list[tuple[str, bool, str]]:
    """Try every remote service the configuration names; (what, ok, detail) each."""
    results: list[tuple[str, bool, str]] = []
    try:
        async with wiring.interfax_client(config) as client:
            balance = await client.balance()
        results.append(("InterFAX credentials", True, f"balance {balance}"))
    except BridgeError as exc:
        results.append(("InterFAX credentials", False, str(exc)))
    try:
        detail = await Mailer(wiring.relay_settings(config)).probe()
        results.append(("mail relay", True, detail))
    except BridgeError as exc:
        results.append(("mail relay", False, str(exc)))
    if config.imap_in is not None:
        results.append(await _probe_imap("IMAP intake", config.imap_in, config.imap_in.folder))
    if config.imap_out is not None:
        results.append(await _probe_imap("IMAP delivery", config.imap_out, None))
    return results


async def _probe_imap(
    what: str, section: ImapConnection, folder: str | None
) -> tuple[str, bool, str]:
    # Imported here: the IMAP extra is optional (config refuses imap_* without it).
    from bridge.imap import ImapClient, ImapSettings

    try:
        async with ImapClient(ImapSettings.from_config(section)) as client:
            if folder is not None:
                selection = await client.select(folder)
                detail = f"{folder} holds {selection.exists} message(s)"
                return what, True, f"{section.username} at {section.host}: {detail}"
        return what, True, f"logged in as {section.username} at {section.host}"
    except BridgeError as exc:
        return what, False, str(exc)
