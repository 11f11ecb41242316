"""Email to fax end to end: SMTP in, the sandbox over HTTP, reports caught by a real sink."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest

from bridge.jobs import JobState
from bridge.sandbox.server import RunningSandbox
from tests.bridge_harness import ALICE, RunningBridge, bridge_yaml, eventually, load, running_bridge
from tests.conftest import SandboxControl
from tests.smtp_sink import RunningSink, running_sink


def mail_with_pdf(
    pdf: bytes, *, subject: str = "Lab results", message_id: str = "<m1@clinic>"
) -> bytes:
    from email.message import EmailMessage

    msg = EmailMessage()
    msg["From"] = f"Alice <{ALICE}>"
    msg["To"] = "+12125550100@fax.local"
    msg["Subject"] = subject
    msg["Message-ID"] = message_id
    msg.set_content("Please see the attached results.\n")
    msg.add_attachment(pdf, maintype="application", subtype="pdf", filename="results.pdf")
    return msg.as_bytes()


@pytest.fixture
async def sink() -> AsyncIterator[RunningSink]:
    async with running_sink() as s:
        yield s


@pytest.fixture
async def bridge(
    tmp_path: Path, sandbox: RunningSandbox, sink: RunningSink
) -> AsyncIterator[RunningBridge]:
    text = bridge_yaml(tmp_path / "state", interfax_url=sandbox.base_url, relay_port=sink.port)
    async with running_bridge(load(text, tmp_path)) as running:
        yield running


async def _faxes(control: SandboxControl, count: int) -> list[dict[str, Any]]:
    async def check() -> list[dict[str, Any]] | None:
        faxes = await control.outbound()
        return faxes if len(faxes) >= count else None

    result: list[dict[str, Any]] = await eventually(check, what=f"{count} fax(es) at the sandbox")
    return result


async def test_mail_with_pdf_becomes_one_fax_and_one_threaded_report(
    bridge: RunningBridge,
    sandbox_control: SandboxControl,
    sink: RunningSink,
    make_pdf: Callable[..., bytes],
) -> None:
    pdf = make_pdf(pages=2)
    refused, reply = await bridge.send(mail_with_pdf(pdf))
    assert refused == {}
    assert reply.startswith("2.0.0 Queued for faxing as fb-")

    [fax] = await _faxes(sandbox_control, 1)
    assert fax["faxNumber"] in ("+12125550100", "12125550100")
    assert fax["contact"] == "Lab results"
    assert fax["reference"].startswith("fb-")
    shas = [doc["sha256"] for doc in fax["documents"]]
    assert hashlib.sha256(pdf).hexdigest() in shas

    await sandbox_control.advance(fax["id"])
    [report] = await sink.handler.wait_for(1)
    msg = report.parsed()
    assert report.rcpt_tos == [ALICE]
    assert msg["In-Reply-To"] == "<m1@clinic>"
    assert msg["References"] == "<m1@clinic>"
    assert msg["Subject"] == "Fax to +1 212-555-0100 delivered: Lab results"
    assert msg["Auto-Submitted"] == "auto-replied"
    text = msg.get_body(preferencelist=("plain",))
    assert text is not None
    assert str(fax["id"]) in text.get_content()

    async def reported() -> bool:
        jobs = await bridge.service.store.jobs()
        return all(job.state is JobState.REPORTED for job in jobs)

    await eventually(reported, what="job reported")
    assert len(sink.received) == 1


async def test_busy_destination_reports_failure_with_reason(
    bridge: RunningBridge,
    sandbox_control: SandboxControl,
    sink: RunningSink,
    make_pdf: Callable[..., bytes],
) -> None:
    raw = mail_with_pdf(make_pdf())
    await bridge.send(raw, recipients=["+1-212-555-0001@fax.local"])
    [fax] = await _faxes(sandbox_control, 1)
    await sandbox_control.advance(fax["id"])
    [report] = await sink.handler.wait_for(1)
    msg = report.parsed()
    assert msg["Subject"].startswith("Fax to +1 212-555-0001 failed")
    body = msg.get_body(preferencelist=("plain",))
    assert body is not None
    assert "busy" in body.get_content().lower()


async def test_resent_message_after_timeout_gives_250_but_one_fax(
    bridge: RunningBridge, sandbox_control: SandboxControl, make_pdf: Callable[..., bytes]
) -> None:
    raw = mail_with_pdf(make_pdf(), message_id="<again@clinic>")
    _, first = await bridge.send(raw)
    _, second = await bridge.send(raw)
    assert first.startswith("2.0.0")
    assert second.startswith("2.0.0 Already queued")
    await _faxes(sandbox_control, 1)
    jobs = await bridge.service.store.jobs()
    assert len(jobs) == 1


async def test_one_job_per_recipient(
    bridge: RunningBridge, sandbox_control: SandboxControl, make_pdf: Callable[..., bytes]
) -> None:
    raw = mail_with_pdf(make_pdf())
    await bridge.send(raw, recipients=["+12125550100@fax.local", "+12125550111@FAX.LOCAL"])
    faxes = await _faxes(sandbox_control, 2)
    assert len({f["reference"] for f in faxes}) == 2
    assert len(message_from_bytes(raw, policy=policy.default).get_all("To", [])) == 1
