"""IMAP intake against a real Dovecot: requests in a mailbox become faxes, refusals are filed."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from bridge.config import Secret
from bridge.imap import ImapSettings
from bridge.imap_intake import ImapIntakeSettings
from bridge.jobs import MessageSource
from bridge.store_imap import ImapState
from tests.bridge_harness import eventually
from tests.dovecot import Dovecot, running_dovecot
from tests.imap_kit import ALICE, MALLORY, counted, fax_request, rig_for, running


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Dovecot]:
    with running_dovecot() as server:
        yield server


async def test_with_idle_a_request_is_queued_once_and_filed_in_done(
    tmp_path: Path, dovecot: Dovecot
) -> None:
    # A 5-minute poll: only an IDLE push can make this message be seen in time.
    async with rig_for(tmp_path, dovecot, poll="5m") as rig:
        raw = fax_request(subject="Contract for Bob")
        worker = rig.worker()
        async with running(worker):
            await eventually(lambda: counted(worker, "idles"), what="the worker idling")
            uid = await rig.put(raw)
            [done] = await eventually(lambda: rig.folder("Faxed"), what="the request filed")
        assert worker.counters["polls"] == 0
        assert await rig.folder("INBOX") == []
        assert done.body == raw
        assert "\\Seen" not in done.flags  # read with BODY.PEEK: the user's flags are theirs
        [job] = await rig.jobs()
        assert (job.destination, job.sender) == ("+12025550100", ALICE)
        message = await rig.store.get_message(job.message_id)
        assert message is not None
        assert (message.source, message.mail_from) == (MessageSource.IMAP, ALICE)
        assert await rig.store.message_raw(job.message_id) == raw
        assert {"Faxed", "Rejected"} <= await rig.folders()
        entry = await rig.entry(uid)
        assert entry is not None
        assert entry.state is ImapState.DONE
        assert rig.notices == []


async def test_idle_is_issued_again_after_idle_renew_on_the_same_connection(
    tmp_path: Path, dovecot: Dovecot
) -> None:
    async with rig_for(tmp_path, dovecot, poll="5m") as rig:
        worker = rig.worker(settings=replace(rig.settings, idle_renew=0.1))
        async with running(worker):
            await eventually(lambda: counted(worker, "idles", 3), what="IDLE issued thrice")
            await rig.put(fax_request())
            await eventually(lambda: rig.folder("Faxed"), what="the request filed")
        assert worker.counters["connects"] == 1
        assert worker.counters["session_errors"] == 0


async def test_without_idle_the_folder_is_polled(tmp_path: Path, dovecot: Dovecot) -> None:
    async with rig_for(tmp_path, dovecot, poll="0.05s") as rig:
        worker = rig.worker(hide=frozenset({"IDLE"}))
        async with running(worker):
            await eventually(lambda: counted(worker, "polls"), what="a first poll")
            await rig.put(fax_request())
            await eventually(lambda: rig.folder("Faxed"), what="the request filed")
        assert worker.counters["idles"] == 0
        assert len(await rig.jobs()) == 1


async def test_every_fax_address_in_to_and_cc_gets_one_job(
    tmp_path: Path, dovecot: Dovecot
) -> None:
    async with rig_for(tmp_path, dovecot) as rig:
        raw = fax_request(
            to="Bob <bob@example.org>, +12025550100@fax.local,"
            " +1 (202) 555-0101 <+1-202-555-0101@FAX.local>",
            cc="+12025550100@fax.local, +12025550123@Fax.Local, carol@example.org",
        )
        await rig.put(raw)
        worker = rig.worker()
        async with running(worker):
            await eventually(lambda: rig.folder("Faxed"), what="the request filed")
        jobs = await rig.jobs()
        assert sorted(job.destination for job in jobs) == [
            "+12025550100",
            "+12025550101",
            "+12025550123",
        ]
        assert len({job.message_id for job in jobs}) == 1


@pytest.mark.parametrize(
    "raw",
    [
        fax_request(sender=MALLORY),
        fax_request(headers={"Auto-Submitted": "auto-replied"}),
        fax_request(sender=f"{ALICE}, {MALLORY}"),
        fax_request(sender=f"{ALICE} <{MALLORY}>"),
    ],
    ids=["not-allowed", "automatic", "two-senders", "cve-2023-27043"],
)
async def test_a_request_from_anybody_not_allowed_is_filed_as_rejected_without_a_word(
    tmp_path: Path, dovecot: Dovecot, raw: bytes
) -> None:
    async with rig_for(tmp_path, dovecot) as rig:
        uid = await rig.put(raw)
        worker = rig.worker()
        async with running(worker):
            [rejected] = await eventually(lambda: rig.folder("Rejected"), what="the refusal filed")
        assert rejected.body == raw
        assert await rig.jobs() == []
        assert rig.notices == []
        assert await rig.folder("INBOX") == []
        entry = await rig.entry(uid)
        assert entry is not None
        assert (entry.state, entry.report_to) == (ImapState.REJECTED, None)


async def test_an_allowed_sender_with_a_bad_number_is_rejected_and_told_why(
    tmp_path: Path, dovecot: Dovecot
) -> None:
    async with rig_for(tmp_path, dovecot) as rig:
        raw = fax_request(to="+12025550100@fax.local, +1555@fax.local", subject="Lab results")
        message_id = raw.split(b"Message-ID: ")[1].split(b"\r\n")[0].decode()
        await rig.put(raw)
        worker = rig.worker()
        async with running(worker):
            await eventually(lambda: rig.folder("Rejected"), what="the refusal filed")
        assert await rig.jobs() == []  # all or nothing: the good number is not faxed either
        [notice] = rig.notices
        assert notice.recipient == ALICE
        assert notice.subject == "Lab results"
        assert notice.message_id == message_id
        assert "+1555@fax.local" in notice.reason
        assert "not a valid phone number" in notice.reason
        assert "+12025550100" not in notice.reason


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (fax_request(sender="bob@lawfirm.example", to="bob@example.org"), "no fax number"),
        (fax_request(to="(202)5550100@fax.local"), "is not one clear address"),
        (fax_request(to="+442079460000@fax.local"), "country"),
    ],
    ids=["no-number", "unclear-address", "destination-policy"],
)
async def test_every_refusal_of_an_allowed_sender_is_reported(
    tmp_path: Path, dovecot: Dovecot, raw: bytes, reason: str
) -> None:
    async with rig_for(tmp_path, dovecot) as rig:
        await rig.put(raw)
        worker = rig.worker()
        async with running(worker):
            await eventually(lambda: rig.folder("Rejected"), what="the refusal filed")
        [notice] = rig.notices
        assert reason in notice.reason
        assert await rig.jobs() == []


async def test_a_report_that_cannot_go_out_yet_keeps_the_mail_until_it_does(
    tmp_path: Path, dovecot: Dovecot
) -> None:
    async with rig_for(tmp_path, dovecot, poll="0.05s") as rig:
        rig.failing_notices = 10**9
        uid = await rig.put(fax_request(to="+1555@fax.local"))
        worker = rig.worker(hide=frozenset({"IDLE"}))
        async with running(worker):

            async def retried() -> bool:
                entry = await rig.entry(uid)
                return entry is not None and entry.attempts >= 2

            await eventually(retried, what="the report tried twice")
            entry = await rig.entry(uid)
            assert entry is not None
            assert (entry.state, entry.report_due) == (ImapState.REFUSED, True)
            assert entry.last_error is not None
            assert "451" in entry.last_error
            assert [m.uid for m in await rig.folder("INBOX")] == [uid]
            rig.failing_notices = 0
            await eventually(lambda: rig.folder("Rejected"), what="the refusal filed")
        assert len(rig.notices) == 1
        assert worker.counters["reports"] == 1
        entry = await rig.entry(uid)
        assert entry is not None
        assert (entry.state, entry.report_due) == (ImapState.REJECTED, False)


async def test_a_message_too_large_to_fax_is_refused_from_its_header_alone(
    tmp_path: Path, dovecot: Dovecot
) -> None:
    async with rig_for(tmp_path, dovecot, smtp="max_message_size: 4KB") as rig:
        await rig.put(fax_request(body="x" * 10_000 + "\n"))
        worker = rig.worker()
        async with running(worker):
            await eventually(lambda: rig.folder("Rejected"), what="the refusal filed")
        [notice] = rig.notices
        assert "larger than" in notice.reason
        assert await rig.jobs() == []


async def test_a_rate_limited_request_waits_in_the_folder(tmp_path: Path, dovecot: Dovecot) -> None:
    limits = "rate_limits:\n  per_sender:\n    per_hour: 1\n"
    async with rig_for(tmp_path, dovecot, outbound=limits) as rig:
        await rig.put(fax_request(subject="first"))
        second = await rig.put(fax_request(subject="second"))
        worker = rig.worker()
        async with running(worker):
            await eventually(lambda: counted(worker, "deferred"), what="the second deferred")
            assert len(await rig.folder("Faxed")) == 1
        [waiting] = await rig.folder("INBOX")
        assert waiting.uid == second
        entry = await rig.entry(second)
        assert entry is not None
        assert entry.state is ImapState.SEEN
        assert entry.last_error is not None
        assert "rate limit" in entry.last_error.lower()
        assert len(await rig.jobs()) == 1
        assert rig.notices == []


async def test_a_refused_login_is_retried_with_backoff_and_never_crashes_the_worker(
    tmp_path: Path, dovecot: Dovecot
) -> None:
    async with rig_for(tmp_path, dovecot) as rig:
        connection = replace(rig.settings.connection, password=Secret("wrong"))
        worker = rig.worker(settings=replace(rig.settings, connection=connection))
        async with running(worker):
            await eventually(lambda: counted(worker, "session_errors", 2), what="two failed logins")
        assert worker.last_error is not None
        assert "ImapAuthError" in worker.last_error
        assert worker.counters["connects"] == 0


@pytest.mark.parametrize("renew", [0.0, 29 * 60.0, 3600.0])
def test_idle_must_be_renewed_within_29_minutes(renew: float) -> None:
    connection = ImapSettings("127.0.0.1", 143, "none", "u", Secret("p"))
    with pytest.raises(ValueError, match="29 minutes"):
        ImapIntakeSettings(connection, idle_renew=renew)
