"""Submission exactly once: the Submitter against a real store and the sandbox over HTTP.

Every test drives ``Submitter.run_once`` with a clock it moves by hand, so retries,
grace windows and deadlines are crossed without waiting for any timer.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from bridge import wiring
from bridge.jobs import Job, JobState
from bridge.outbound import BuildFailed, Submission, SubmitSettings, Submitter
from bridge.sandbox.server import RunningSandbox
from bridge.store import Store
from bridge.workers import AuthGate
from tests.bridge_harness import eventually
from tests.conftest import SandboxControl, minimal_pdf
from tests.outbound_kit import (
    DESTINATION,
    FAST_BACKOFF,
    Outbound,
    client_for,
    enqueue,
    kit_config,
    outbound,
    pdf_mail,
)

GRACE = 120.0
SETTINGS = SubmitSettings(
    backoff=FAST_BACKOFF, in_doubt_grace=GRACE, in_doubt_deadline=3600.0, max_submit_age=7200.0
)


@pytest.fixture
async def ob(tmp_path: Path, sandbox: RunningSandbox) -> AsyncIterator[Outbound]:
    async with outbound(tmp_path, sandbox, settings=SETTINGS) as running:
        yield running


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def fax_by_hand(api: httpx.AsyncClient, reference: str, number: str | None = None) -> int:
    """Send a fax straight through the sandbox API (as another process would have)."""
    response = await api.post(
        "/outbound/faxes",
        params={"faxNumber": number or DESTINATION, "reference": reference},
        content=minimal_pdf(),
        headers={"Content-Type": "application/pdf"},
    )
    assert response.status_code == 201, response.text
    return int(response.headers["Location"].rstrip("/").rsplit("/", 1)[1])


async def due_at(ob: Outbound, job: Job) -> Job:
    """Move the clock to the job's next attempt; returns the job as stored."""
    current = await ob.job(job.id)
    ob.clock.now = max(ob.clock.now, current.next_attempt_at)
    return current


# -- the normal case ------------------------------------------------------------------------


async def test_submission_records_the_fax_id_at_once_with_reference_and_contact(
    ob: Outbound, sandbox_control: SandboxControl
) -> None:
    pdf = minimal_pdf(pages=2, text="exactly once")
    [first, second] = [
        await ob.enqueue(pdf_mail(pdf=pdf), destinations=[DESTINATION]),
        await ob.enqueue(pdf_mail(pdf=pdf, message_id="<m2@clinic.example.org>")),
    ]
    assert await ob.submitter.run_once() is True
    assert not ob.finished.is_set()  # nothing to report yet

    job = await ob.job(first.id)
    [fax] = await sandbox_control.outbound()
    assert job.state is JobState.SUBMITTED
    assert job.fax_id == fax["id"]
    assert job.last_error is None
    assert fax["reference"] == job.reference == first.reference
    assert 0 < len(job.reference) <= 60
    assert fax["contact"] == "Lab results"
    assert job.result is not None
    assert job.result["subject"] == "Lab results"
    assert hashlib.sha256(pdf).hexdigest() in [d["sha256"] for d in fax["documents"]]

    assert await ob.submitter.run_once() is True
    assert await ob.submitter.run_once() is False
    faxes = await sandbox_control.outbound()
    assert len(faxes) == 2
    assert {f["reference"] for f in faxes} == {first.reference, second.reference}
    assert first.reference != second.reference
    assert ob.client.count("POST", "/outbound/faxes") == 2


# -- transient failures before the request went out ------------------------------------------


async def test_unreachable_interfax_backs_off_counts_attempts_then_expires(
    tmp_path: Path, sandbox: RunningSandbox, sandbox_control: SandboxControl
) -> None:
    base_url = f"http://127.0.0.1:{closed_port()}"
    async with outbound(tmp_path, sandbox, settings=SETTINGS, base_url=base_url) as ob:
        job = await ob.enqueue(pdf_mail())
        schedule = []
        for attempt in (1, 2, 3):
            assert await ob.submitter.run_once() is True
            current = await ob.job(job.id)
            assert current.state is JobState.ACCEPTED
            assert current.attempts == attempt
            assert current.fax_id is None
            assert current.next_attempt_at > ob.clock.now
            assert current.last_error is not None
            assert "nothing was sent" in current.last_error
            assert await ob.submitter.run_once() is False  # not due yet: no busy loop
            schedule.append(current.next_attempt_at - ob.clock.now)
            await due_at(ob, current)

        ob.clock.advance(SETTINGS.max_submit_age)
        assert await ob.submitter.run_once() is True
        failed = await ob.job(job.id)
    assert failed.state is JobState.FAILED
    assert failed.result is not None
    assert failed.result["kind"] == "expired"
    assert "could not be reached in time" in failed.result["reason"]
    assert failed.result["subject"] == "Lab results"
    assert "nothing was sent" in failed.result["reason"]  # the cause the sender can act on
    assert all(0 < delay <= FAST_BACKOFF.cap for delay in schedule)
    assert await sandbox_control.outbound() == []


async def test_rate_limit_is_retried_no_earlier_than_retry_after(
    ob: Outbound, sandbox_control: SandboxControl, sandbox_api: httpx.AsyncClient
) -> None:
    await sandbox_control.faults(rate_limit_per_minute=1, paths=["/outbound/faxes"])
    assert (await sandbox_api.get("/outbound/faxes")).status_code == 200  # uses up the minute
    job = await ob.enqueue(pdf_mail())

    assert await ob.submitter.run_once() is True
    waiting = await ob.job(job.id)
    assert waiting.state is JobState.ACCEPTED
    assert waiting.attempts == 1
    # Our own backoff is at most 5 s here; only the sandbox's Retry-After (up to 60 s) can
    # push the next attempt this far out.
    assert waiting.next_attempt_at - ob.clock.now >= 30.0
    assert waiting.last_error is not None
    assert "429" in waiting.last_error
    assert await sandbox_control.outbound() == []

    ob.clock.advance(20.0)
    assert await ob.submitter.run_once() is False
    await sandbox_control.clear_faults()
    await due_at(ob, waiting)
    assert await ob.submitter.run_once() is True
    done = await ob.job(job.id)
    assert done.state is JobState.SUBMITTED
    assert done.attempts == 2
    assert len(await sandbox_control.outbound()) == 1


# -- ambiguous failures -------------------------------------------------------------------------


async def test_lost_response_goes_in_doubt_then_adopts_the_fax_that_exists(
    ob: Outbound, sandbox_control: SandboxControl
) -> None:
    await sandbox_control.faults(drop_after_commit=1)
    job = await ob.enqueue(pdf_mail())
    start = ob.clock.now

    assert await ob.submitter.run_once() is True
    doubt = await ob.job(job.id)
    assert doubt.state is JobState.IN_DOUBT
    assert doubt.fax_id is None
    assert doubt.in_doubt_since == start
    assert doubt.next_attempt_at == start + GRACE
    [fax] = await sandbox_control.outbound()
    assert fax["reference"] == job.reference

    ob.clock.now = start + GRACE - 1
    assert await ob.submitter.run_once() is False  # within the grace window: nothing at all
    assert ob.client.count("GET", "/outbound/search") == 0

    ob.clock.now = start + GRACE
    assert await ob.submitter.run_once() is True
    adopted = await ob.job(job.id)
    assert adopted.state is JobState.SUBMITTED
    assert adopted.fax_id == fax["id"]
    assert adopted.result is not None
    assert adopted.result["subject"] == "Lab results"
    assert len(await sandbox_control.outbound()) == 1
    assert ob.client.count("POST", "/outbound/faxes") == 1
    assert await ob.submitter.run_once() is False


async def test_server_error_on_send_is_in_doubt_then_resent_once_with_the_same_reference(
    ob: Outbound, sandbox_control: SandboxControl
) -> None:
    await sandbox_control.faults(error_rate=1, error_status=503, paths=["/outbound/faxes"])
    job = await ob.enqueue(pdf_mail())
    assert await ob.submitter.run_once() is True
    doubt = await ob.job(job.id)
    assert doubt.state is JobState.IN_DOUBT
    assert doubt.last_error is not None
    assert "503" in doubt.last_error
    assert await sandbox_control.outbound() == []

    await sandbox_control.clear_faults()
    ob.clock.advance(GRACE)
    assert await ob.submitter.run_once() is True
    sent = await ob.job(job.id)
    [fax] = await sandbox_control.outbound()
    assert sent.state is JobState.SUBMITTED
    assert sent.fax_id == fax["id"]
    assert fax["reference"] == job.reference
    assert ob.client.count("GET", "/outbound/search") == 1
    assert ob.client.count("POST", "/outbound/faxes") == 2


async def test_job_that_was_in_doubt_still_expires_after_max_submit_age(
    ob: Outbound, sandbox_control: SandboxControl, sandbox_api: httpx.AsyncClient
) -> None:
    await sandbox_control.faults(error_rate=1, error_status=503, paths=["/outbound/faxes"])
    job = await ob.enqueue(pdf_mail())
    assert await ob.submitter.run_once() is True  # 503: in doubt
    # The search finds nothing; the resubmission is rate limited (no request went out).
    await sandbox_control.faults(rate_limit_per_minute=1, paths=["/outbound/faxes"])
    assert (await sandbox_api.get("/outbound/faxes")).status_code == 200
    ob.clock.advance(GRACE)
    assert await ob.submitter.run_once() is True
    queued = await ob.job(job.id)
    assert queued.state is JobState.ACCEPTED
    assert queued.in_doubt_since is None

    ob.clock.advance(SETTINGS.max_submit_age)
    assert await ob.submitter.run_once() is True
    expired = await ob.job(job.id)
    assert expired.state is JobState.FAILED
    assert expired.result is not None
    assert expired.result["kind"] == "expired"
    assert await sandbox_control.outbound() == []


async def test_search_failing_past_the_deadline_holds_the_job(
    ob: Outbound, sandbox_control: SandboxControl
) -> None:
    await sandbox_control.faults(drop_after_commit=1)
    job = await ob.enqueue(pdf_mail())
    assert await ob.submitter.run_once() is True
    await sandbox_control.faults(error_rate=1, error_status=503, paths=["/outbound/search"])

    ob.clock.advance(GRACE)
    assert await ob.submitter.run_once() is True
    retrying = await ob.job(job.id)
    assert retrying.state is JobState.IN_DOUBT
    assert retrying.next_attempt_at > ob.clock.now
    assert retrying.last_error is not None
    assert retrying.last_error.startswith("search failed")

    ob.clock.advance(SETTINGS.in_doubt_deadline)
    assert await ob.submitter.run_once() is True
    held = await ob.job(job.id)
    assert held.state is JobState.HELD
    assert held.last_error is not None
    assert "reconciliation failed" in held.last_error
    assert held.fax_id is None
    assert await ob.submitter.run_once() is False
    assert len(await sandbox_control.outbound()) == 1
    assert ob.client.count("POST", "/outbound/faxes") == 1


async def test_two_faxes_with_one_reference_adopt_one_and_cancel_the_other(
    ob: Outbound, sandbox_control: SandboxControl, sandbox_api: httpx.AsyncClient
) -> None:
    await sandbox_control.faults(error_rate=1, error_status=503, paths=["/outbound/faxes"])
    job = await ob.enqueue(pdf_mail())
    assert await ob.submitter.run_once() is True
    await sandbox_control.clear_faults()
    first = await fax_by_hand(sandbox_api, job.reference)
    second = await fax_by_hand(sandbox_api, job.reference)

    ob.clock.advance(GRACE)
    assert await ob.submitter.run_once() is True
    adopted = await ob.job(job.id)
    assert adopted.state is JobState.SUBMITTED
    assert adopted.fax_id == first
    status = {fax["id"]: fax["status"] for fax in await sandbox_control.outbound()}
    assert status == {first: -1, second: 403}  # the duplicate was cancelled while queued
    assert ob.client.count("POST", f"/outbound/faxes/{second}/cancel") == 1
    assert ob.client.count("POST", "/outbound/faxes") == 1  # the failed one; never resent


async def test_a_fax_to_another_number_under_the_reference_is_never_adopted_or_cancelled(
    ob: Outbound, sandbox_control: SandboxControl, sandbox_api: httpx.AsyncClient
) -> None:
    await sandbox_control.faults(error_rate=1, error_status=503, paths=["/outbound/faxes"])
    job = await ob.enqueue(pdf_mail())
    assert await ob.submitter.run_once() is True
    await sandbox_control.clear_faults()
    stranger = await fax_by_hand(sandbox_api, job.reference, number="+13125550100")

    ob.clock.advance(GRACE)
    assert await ob.submitter.run_once() is True  # not found for this number: sent again
    resent = await ob.job(job.id)
    assert resent.state is JobState.SUBMITTED
    assert resent.fax_id != stranger
    status = {fax["id"]: fax["status"] for fax in await sandbox_control.outbound()}
    assert status[stranger] == -1  # left alone


# -- crash recovery -------------------------------------------------------------------------------


@pytest.mark.parametrize("posted_before_crash", [True, False])
async def test_job_interrupted_mid_submission_is_reconciled_after_restart(
    tmp_path: Path,
    sandbox: RunningSandbox,
    sandbox_control: SandboxControl,
    sandbox_api: httpx.AsyncClient,
    posted_before_crash: bool,
) -> None:
    async with outbound(tmp_path, sandbox, settings=SETTINGS) as before:
        job = await before.enqueue(pdf_mail())
        claimed = await before.store.claim_next(
            JobState.ACCEPTED, JobState.SUBMITTING, now=before.clock.now
        )
        assert claimed is not None
        assert claimed.id == job.id
        if posted_before_crash:
            fax_id = await fax_by_hand(sandbox_api, job.reference)
    # ...the process died here; a new one opens the same state directory.
    async with outbound(tmp_path, sandbox, settings=SETTINGS) as after:
        report = await after.store.recover_interrupted(after.clock.now)
        assert report.in_doubt_job_ids == (job.id,)
        assert (await after.job(job.id)).state is JobState.IN_DOUBT

        assert await after.submitter.run_once() is True
        if posted_before_crash:
            adopted = await after.job(job.id)
            assert adopted.state is JobState.SUBMITTED
            assert adopted.fax_id == fax_id
            assert adopted.result is not None
            assert adopted.result["subject"] == "Lab results"
        else:
            # Nothing found yet: the search may lag behind a POST, so wait out the grace.
            waiting = await after.job(job.id)
            assert waiting.state is JobState.IN_DOUBT
            assert waiting.next_attempt_at == after.clock.now + GRACE
            assert await sandbox_control.outbound() == []
            after.clock.advance(GRACE)
            assert await after.submitter.run_once() is True
            assert (await after.job(job.id)).state is JobState.SUBMITTED
        assert await after.submitter.run_once() is False
        [fax] = await sandbox_control.outbound()
        assert fax["reference"] == job.reference
        assert (await after.job(job.id)).fax_id == fax["id"]
        assert after.client.count("POST", "/outbound/faxes") == (0 if posted_before_crash else 1)


# -- credentials ----------------------------------------------------------------------------------


async def test_401_pauses_every_submission_and_resumes_when_credentials_work(
    ob: Outbound, sandbox_control: SandboxControl
) -> None:
    await sandbox_control.faults(error_rate=1, error_status=401)
    first = await ob.enqueue(pdf_mail())
    second = await ob.enqueue(pdf_mail(message_id="<m2@clinic.example.org>"))

    assert await ob.submitter.run_once() is True
    assert ob.gate.paused
    paused = await ob.job(first.id)
    assert paused.state is JobState.ACCEPTED  # not failed
    assert paused.result is None
    assert paused.next_attempt_at <= ob.clock.now

    for _ in range(3):
        ob.clock.advance(60.0)
        assert await ob.submitter.run_once() is False  # probes credentials, sends nothing
    assert ob.gate.paused
    assert ob.client.count("POST", "/outbound/faxes") == 1
    assert ob.client.count("GET", "/accounts/self/ppcards/balance") == 3
    assert {j.state for j in await ob.store.jobs()} == {JobState.ACCEPTED}

    await sandbox_control.clear_faults()
    assert await ob.submitter.run_once() is True
    assert not ob.gate.paused
    assert await ob.submitter.run_once() is True
    assert await ob.submitter.run_once() is False
    for job in (first, second):
        assert (await ob.job(job.id)).state is JobState.SUBMITTED
    assert len(await sandbox_control.outbound()) == 2


async def test_interfax_refusing_the_fax_fails_the_job_quoting_its_message(
    ob: Outbound, sandbox_control: SandboxControl
) -> None:
    # Our clock runs two days ahead of InterFAX's: a postpone time 29 days after the
    # message (fine for us) is 31 days ahead for InterFAX, which refuses it with a 400.
    later = datetime.fromtimestamp(time.time(), UTC) + timedelta(days=31)
    ob.clock.advance(2 * 86400.0)
    raw = pdf_mail(extra_headers=[("X-Fax-Postpone", later.strftime("%Y-%m-%dT%H:%M+00:00"))])
    job = await ob.enqueue(raw)
    assert await ob.submitter.run_once() is True
    failed = await ob.job(job.id)
    assert failed.state is JobState.FAILED
    assert not ob.gate.paused
    assert failed.result is not None
    assert failed.result["kind"] == "interfax"
    assert "Postpone date is more than 30 days ahead" in failed.result["reason"]
    assert failed.result["subject"] == "Lab results"
    assert await ob.submitter.run_once() is False
    assert ob.client.count("POST", "/outbound/faxes") == 1
    assert await sandbox_control.outbound() == []


async def test_http_400_on_send_fails_the_job_quoting_interfax(
    ob: Outbound, sandbox_control: SandboxControl
) -> None:
    await sandbox_control.faults(error_rate=1, error_status=400, paths=["/outbound/faxes"])
    job = await ob.enqueue(pdf_mail())
    assert await ob.submitter.run_once() is True
    failed = await ob.job(job.id)
    assert failed.state is JobState.FAILED
    assert failed.result is not None
    assert failed.result["kind"] == "interfax"
    assert "Internal system error" in failed.result["reason"]
    assert "Fault injected by the sandbox" in failed.result["reason"]
    assert await ob.submitter.run_once() is False
    assert ob.client.count("POST", "/outbound/faxes") == 1


# -- messages that cannot become a fax ----------------------------------------------------------


def _mail_with(part: bytes, content_type: str, filename: str) -> bytes:
    from email.message import EmailMessage

    msg = EmailMessage()
    msg["From"] = "alice@clinic.example.org"
    msg["To"] = f"{DESTINATION}@fax.local"
    msg["Subject"] = "Odd attachment"
    msg["Message-ID"] = "<odd@clinic.example.org>"
    msg.set_content("See attached.\n")
    maintype, subtype = content_type.split("/")
    msg.add_attachment(part, maintype=maintype, subtype=subtype, filename=filename)
    return msg.as_bytes()


def _empty_mail() -> bytes:
    return (
        b"From: alice@clinic.example.org\r\nTo: +12125550100@fax.local\r\n"
        b"Subject: nothing\r\nMessage-ID: <empty@clinic.example.org>\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n\r\n\r\n"
    )


def _encrypted_mail() -> bytes:
    return (
        b"From: alice@clinic.example.org\r\nTo: +12125550100@fax.local\r\n"
        b"Subject: secret\r\nMessage-ID: <smime@clinic.example.org>\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name="smime.p7m"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\nMIAGCSqGSIb3DQEHA6CAMIACAQAxggE=\r\n"
    )


@pytest.mark.parametrize(
    ("raw", "kind", "words"),
    [
        (
            _mail_with(b"MZ\x90\x00", "application/x-msdownload", "setup.exe"),
            "unsupported_attachment",
            ['"setup.exe"', "Supported file types:", "pdf", "tiff", "docx"],
        ),
        (_empty_mail(), "nothing_to_fax", ["nothing to fax"]),
        (_encrypted_mail(), "encrypted", ["encrypted", "without encryption"]),
    ],
    ids=["unsupported", "nothing", "encrypted"],
)
async def test_message_that_cannot_be_faxed_fails_with_its_reason(
    ob: Outbound, sandbox_control: SandboxControl, raw: bytes, kind: str, words: list[str]
) -> None:
    job = await ob.enqueue(raw)
    assert await ob.submitter.run_once() is True
    failed = await ob.job(job.id)
    assert failed.state is JobState.FAILED
    assert failed.result is not None
    assert failed.result["kind"] == kind
    for word in words:
        assert word in failed.result["reason"]
    assert ob.client.calls == []
    assert await sandbox_control.outbound() == []
    assert ob.finished.is_set()  # the reporter is woken: the sender hears at once


async def test_a_builder_crash_never_leaves_the_job_submitting_and_is_quarantined(
    tmp_path: Path, sandbox: RunningSandbox, sandbox_control: SandboxControl
) -> None:
    def broken(job: Job, raw: bytes) -> Submission | BuildFailed:
        raise RuntimeError("template engine exploded")

    settings = SubmitSettings(backoff=FAST_BACKOFF, quarantine_after=2)
    async with outbound(tmp_path, sandbox, settings=settings, builder=broken) as ob:
        job = await ob.enqueue(pdf_mail())
        assert await ob.submitter.run_once() is True
        retry = await ob.job(job.id)
        assert retry.state is JobState.ACCEPTED
        assert retry.last_error is not None
        assert "template engine exploded" in retry.last_error
        await due_at(ob, retry)
        assert await ob.submitter.run_once() is True
        held = await ob.job(job.id)
    assert held.state is JobState.HELD
    assert held.last_error is not None
    assert held.last_error.startswith("quarantined")
    assert await sandbox_control.outbound() == []


# -- waking up ------------------------------------------------------------------------------


class MailArrivesDuringClaim(Store):
    """A store where intake commits a message right after the submitter found no work.

    That is the interleaving of the live service: intake's commit lands on the store
    thread just behind the submitter's empty claim, and intake sets the wake event
    before the submitter goes to sleep.
    """

    arrive: Callable[[], Awaitable[None]] | None = None

    async def claim_next(self, state: JobState, to: JobState, **kwargs: Any) -> Job | None:
        job = await super().claim_next(state, to, **kwargs)
        if job is None and state is JobState.ACCEPTED and self.arrive is not None:
            arrive, self.arrive = self.arrive, None
            await arrive()
        return job


async def test_mail_accepted_while_the_submitter_looks_for_work_is_sent_without_delay(
    tmp_path: Path, sandbox: RunningSandbox, sandbox_control: SandboxControl
) -> None:
    config = kit_config(tmp_path, sandbox.base_url)
    store = await MailArrivesDuringClaim.open(tmp_path / "state")
    wake, stopping = asyncio.Event(), asyncio.Event()

    async def arrive() -> None:
        await enqueue(store, pdf_mail(), now=time.time())
        wake.set()  # what Intake's on_accepted does

    store.arrive = arrive
    async with client_for(sandbox.base_url) as client:
        submitter = Submitter(
            store,
            client,
            wiring.fax_builder(config, wiring.renderer(config)),
            SubmitSettings(idle_poll=600.0),
            gate=AuthGate("InterFAX"),
            wake=wake,
        )
        task = asyncio.create_task(submitter.run(stopping))
        try:
            faxes = await eventually(sandbox_control.outbound, within=10.0, what="the fax")
        finally:
            stopping.set()
            await task
            await store.close()
    assert len(faxes) == 1


async def test_unexpected_error_after_the_post_is_reconciled_never_resent(
    ob: Outbound, sandbox_control: SandboxControl, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_send = ob.client.send_fax

    async def send_then_break(*args: Any, **kwargs: Any) -> int:
        await real_send(*args, **kwargs)  # the fax exists at InterFAX...
        raise RuntimeError("bug after the POST")  # ...and then our code fails

    monkeypatch.setattr(ob.client, "send_fax", send_then_break)
    job = await ob.enqueue(pdf_mail())
    assert await ob.submitter.run_once() is True
    doubt = await ob.job(job.id)
    assert doubt.state is JobState.IN_DOUBT
    assert doubt.last_error is not None
    assert "bug after the POST" in doubt.last_error

    monkeypatch.setattr(ob.client, "send_fax", real_send)
    await due_at(ob, doubt)
    assert await ob.submitter.run_once() is True
    [fax] = await sandbox_control.outbound()
    adopted = await ob.job(job.id)
    assert adopted.state is JobState.SUBMITTED
    assert adopted.fax_id == fax["id"]
    assert ob.client.count("POST", "/outbound/faxes") == 1


async def test_a_401_outage_longer_than_max_submit_age_does_not_expire_the_job(
    ob: Outbound, sandbox_control: SandboxControl
) -> None:
    await sandbox_control.faults(error_rate=1, error_status=401)
    job = await ob.enqueue(pdf_mail())
    assert await ob.submitter.run_once() is True
    assert ob.gate.paused
    # Two days of refused credentials, probed every hour.
    for _ in range(48):
        ob.clock.advance(3600.0)
        assert await ob.submitter.run_once() is False
    await sandbox_control.clear_faults()
    assert await ob.submitter.run_once() is True  # resumes and submits
    assert (await ob.job(job.id)).state is JobState.SUBMITTED
    assert len(await sandbox_control.outbound()) == 1


async def test_a_store_failure_after_the_post_leaves_no_job_stuck_submitting(
    ob: Outbound, sandbox_control: SandboxControl, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bridge.errors import StoreError

    real = ob.store.transition
    failed: list[int] = []

    async def flaky(job_id: int, **kwargs: Any) -> Job | None:
        if kwargs.get("to") is JobState.SUBMITTED and not failed:
            failed.append(job_id)
            raise StoreError("disk I/O error")
        return await real(job_id, **kwargs)

    monkeypatch.setattr(ob.store, "transition", flaky)
    job = await ob.enqueue(pdf_mail())
    stopping = asyncio.Event()
    worker = asyncio.create_task(ob.submitter.run(stopping))
    try:

        async def submitted() -> bool:
            return (await ob.job(job.id)).state is JobState.SUBMITTED

        await eventually(submitted, within=30, what="the job reconciled to SUBMITTED")
    finally:
        stopping.set()
        await asyncio.wait_for(worker, 30)
    assert failed == [job.id]
    [fax] = await sandbox_control.outbound()  # sent once, adopted after the store failure
    assert (await ob.job(job.id)).fax_id == fax["id"]
