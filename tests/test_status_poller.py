"""Status tracking: the StatusPoller against a real store and the sandbox over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote

import pytest

from bridge import fax_status
from bridge.errors import AuthError
from bridge.jobs import Job, JobState
from bridge.sandbox.server import RunningSandbox
from tests.conftest import SandboxControl, minimal_pdf
from tests.outbound_kit import Outbound, outbound, pdf_mail

COMPLETED = "/outbound/faxes/completed"


@pytest.fixture
async def ob(tmp_path: Path, sandbox: RunningSandbox) -> AsyncIterator[Outbound]:
    async with outbound(tmp_path, sandbox, batch_size=2) as running:
        yield running


async def submitted(ob: Outbound, *destinations: str, pages: int = 2) -> list[Job]:
    """One submitted job per destination (each from its own mail)."""
    jobs = []
    for index, destination in enumerate(destinations):
        raw = pdf_mail(pdf=minimal_pdf(pages=pages), message_id=f"<poll{index}@clinic.example.org>")
        job = await ob.enqueue(raw, destinations=[destination])
        assert await ob.submitter.run_once() is True
        jobs.append(await ob.job(job.id))
    assert all(job.state is JobState.SUBMITTED for job in jobs)
    return jobs


def polled_ids(ob: Outbound) -> list[list[int]]:
    """The ids asked about in each ``completed`` request, in order."""
    batches = []
    for method, path, query in ob.client.calls:
        if method == "GET" and path == COMPLETED:
            [(name, value)] = [part.split("=", 1) for part in query.split("&")]
            assert name == "ids"
            batches.append([int(i) for i in unquote(value).split(",")])
    return batches


def record_fetches(ob: Outbound) -> int:
    return sum(
        1
        for method, path, _ in ob.client.calls
        if method == "GET" and path.startswith("/outbound/faxes/") and path[16:].isdigit()
    )


async def test_every_fax_in_flight_is_polled_in_batches_until_all_finish(
    ob: Outbound, sandbox_control: SandboxControl
) -> None:
    jobs = await submitted(ob, *(f"+1212555{n:04d}" for n in range(100, 105)))
    fax_ids = sorted(job.fax_id for job in jobs if job.fax_id is not None)
    ob.client.calls.clear()

    assert await ob.poller.poll_once() == 0  # all still in progress
    first_round = polled_ids(ob)
    assert [len(batch) for batch in first_round] == [2, 2, 1]
    assert sorted(i for batch in first_round for i in batch) == fax_ids
    assert record_fetches(ob) == 0
    assert not ob.finished.is_set()

    for fax_id in fax_ids[:2]:
        await sandbox_control.advance(fax_id)
    assert await ob.poller.poll_once() == 2
    assert ob.finished.is_set()
    states = {job.fax_id: (await ob.job(job.id)).state for job in jobs}
    assert [states[i] for i in fax_ids] == [JobState.SENT] * 2 + [JobState.SUBMITTED] * 3
    assert sorted(i for batch in polled_ids(ob)[3:] for i in batch) == fax_ids

    await sandbox_control.advance()
    ob.client.calls.clear()
    assert await ob.poller.poll_once() == 3
    assert [len(batch) for batch in polled_ids(ob)] == [2, 1]  # finished faxes are not asked
    assert {(await ob.job(job.id)).state for job in jobs} == {JobState.SENT}
    assert record_fetches(ob) == 3

    ob.client.calls.clear()
    assert await ob.poller.poll_once() == 0
    assert ob.client.calls == []  # nothing in flight: no request at all


@pytest.mark.parametrize(
    ("destination", "code", "category", "words"),
    [
        ("+12125550001", 3931, "busy", "busy"),
        ("+12125550002", 8021, "no_answer", "No fax machine answered"),
        ("+12125550003", 204000, "rendering", "could not be converted"),
    ],
    ids=["busy", "no-answer", "rendering"],
)
async def test_final_failure_status_is_recorded_with_a_human_reason(
    ob: Outbound,
    sandbox_control: SandboxControl,
    destination: str,
    code: int,
    category: str,
    words: str,
) -> None:
    [job] = await submitted(ob, destination)
    await sandbox_control.advance(job.fax_id)
    assert await ob.poller.poll_once() == 1
    failed = await ob.job(job.id)
    assert failed.state is JobState.FAILED
    assert failed.fax_status == code
    assert failed.last_error == fax_status.describe(code)
    assert failed.result is not None
    assert failed.result["status"] == code
    assert failed.result["category"] == category
    assert words in failed.result["reason"]
    assert f"InterFAX status {code}" in failed.result["reason"]
    assert failed.result["subject"] == "Lab results"  # what the submitter recorded stays


async def test_success_records_pages_duration_attempts_csid_times_and_cost(
    ob: Outbound, sandbox_control: SandboxControl
) -> None:
    [job] = await submitted(ob, "+12125550100", pages=3)
    await sandbox_control.advance(job.fax_id)
    ob.client.calls.clear()
    assert await ob.poller.poll_once() == 1
    assert ob.client.count("GET", f"/outbound/faxes/{job.fax_id}") == 1  # the full record, once

    sent = await ob.job(job.id)
    [fax] = await sandbox_control.outbound()
    assert sent.state is JobState.SENT
    assert sent.fax_status == 0
    assert sent.last_error is None
    result = sent.result
    assert result is not None
    assert result["kind"] == "status"
    assert result["category"] == "sent"
    assert fax["pages"] == 4  # the cover page and the three pages of the PDF
    assert result["pages_sent"] == 4
    assert result["pages_submitted"] == 4
    assert result["duration"] == 90
    assert result["attempts"] == 1
    assert result["remote_csid"] == "+12125550100"
    submit = datetime.fromisoformat(fax["submitTime"]).replace(tzinfo=UTC)
    assert datetime.fromisoformat(result["submit_time"]).replace(tzinfo=UTC) == submit
    assert result["completion_time"] is not None
    assert datetime.fromisoformat(result["completion_time"]).replace(tzinfo=UTC) >= submit
    assert result["units"] == "4.00"
    assert result["cost_per_unit"] == "0.1500"
    assert result["subject"] == "Lab results"

    ob.client.calls.clear()
    assert await ob.poller.poll_once() == 0
    assert record_fetches(ob) == 0


async def test_unavailable_full_record_finishes_the_fax_from_its_summary(
    ob: Outbound, sandbox_control: SandboxControl
) -> None:
    [job] = await submitted(ob, "+12125550100")
    await sandbox_control.advance(job.fax_id)
    await sandbox_control.faults(
        error_rate=1, error_status=503, paths=[f"/outbound/faxes/{job.fax_id}"]
    )
    assert await ob.poller.poll_once() == 1
    sent = await ob.job(job.id)
    assert sent.state is JobState.SENT
    assert sent.result is not None
    assert sent.result["pages_sent"] == 3  # cover page and two pages, from the summary
    assert sent.result["pages_submitted"] is None


async def test_refused_credentials_while_polling_raise_auth_and_change_nothing(
    ob: Outbound, sandbox_control: SandboxControl
) -> None:
    [job] = await submitted(ob, "+12125550100")
    await sandbox_control.advance(job.fax_id)
    await sandbox_control.faults(error_rate=1, error_status=401)
    with pytest.raises(AuthError):
        await ob.poller.poll_once()
    assert (await ob.job(job.id)).state is JobState.SUBMITTED
    await sandbox_control.clear_faults()
    assert await ob.poller.poll_once() == 1
