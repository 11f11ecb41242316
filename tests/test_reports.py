"""Reports to senders: the Reporter with a real store, the sandbox and an aiosmtpd sink.

Jobs reach SENT or FAILED through the real Submitter and StatusPoller; the Reporter is
driven with ``run_once`` and a hand-moved clock. The Reply-To rule and the attached
image are proven through the running service, where intake and the image download live.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bridge import wiring
from bridge.imaging import pdf_pages
from bridge.jobs import Job, JobState
from bridge.mailer import Mailer
from bridge.reports import Notify, Reporter, ReportSettings
from bridge.sandbox.server import RunningSandbox
from bridge.store import Store
from tests.bridge_harness import ALICE, bridge_yaml, eventually, load, running_bridge
from tests.conftest import SandboxControl, minimal_pdf
from tests.outbound_kit import Outbound, outbound, pdf_mail, relay, sink_on_port
from tests.smtp_sink import ReceivedMail, RunningSink, running_sink

NEW_YORK = ZoneInfo("America/New_York")
CVE_2024_6923 = "=?utf-8?q?hello=0AX-Injected=3A_yes?="


@pytest.fixture
async def ob(tmp_path: Path, sandbox: RunningSandbox) -> AsyncIterator[Outbound]:
    async with outbound(tmp_path, sandbox) as running:
        yield running


@pytest.fixture
async def sink() -> AsyncIterator[RunningSink]:
    async with running_sink() as running:
        yield running


async def finished(
    ob: Outbound,
    control: SandboxControl,
    destination: str = "+12125550100",
    *,
    raw: bytes | None = None,
    message_id: str = "<m1@clinic.example.org>",
) -> Job:
    """A job taken through submission and status polling to SENT or FAILED."""
    job = await ob.enqueue(raw or pdf_mail(message_id=message_id), destinations=[destination])
    assert await ob.submitter.run_once() is True
    fax_id = (await ob.job(job.id)).fax_id
    if fax_id is not None:
        await control.advance(fax_id)
        assert await ob.poller.poll_once() == 1
    done = await ob.job(job.id)
    assert done.state in (JobState.SENT, JobState.FAILED)
    return done


async def report_all(reporter: Reporter) -> None:
    """Run the reporter until nothing is due."""
    for _ in range(20):
        if not await reporter.run_once():
            return
    raise AssertionError("the reporter never ran out of work")


def new_york_reporter(ob: Outbound, port: int) -> Reporter:
    base = wiring.report_settings(ob.config)
    settings = ReportSettings(
        sender=base.sender, timezone=NEW_YORK, message_id_domain=base.message_id_domain
    )
    return ob.reporter(relay(port), settings=settings)


def bodies(mail: ReceivedMail) -> tuple[str, str]:
    """The text and HTML bodies of a report."""
    msg = mail.parsed()
    text, html = msg.get_body(("plain",)), msg.get_body(("html",))
    assert text is not None
    assert html is not None
    return text.get_content(), html.get_content()


def line(label: str, value: str, text: str) -> bool:
    """True when ``text`` has the line ``label:   value`` (any alignment)."""
    return re.search(rf"(?m)^{re.escape(label)}:\s+{re.escape(value)}\r?$", text) is not None


def local(iso_utc: str) -> str:
    """A sandbox time (UTC, no zone) as the report shows it in New York."""
    moment = datetime.fromisoformat(iso_utc).replace(tzinfo=UTC)
    return moment.astimezone(NEW_YORK).strftime("%Y-%m-%d %H:%M:%S %Z")


# -- who gets a report ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("notify", "expected"),
    [
        (Notify.ALWAYS, {"delivered", "failed"}),
        (Notify.FAILURE, {"failed"}),
        (Notify.SUCCESS, {"delivered"}),
        (Notify.NEVER, set()),
    ],
)
async def test_notify_policy_decides_which_outcomes_are_reported(
    ob: Outbound,
    sandbox_control: SandboxControl,
    sink: RunningSink,
    notify: Notify,
    expected: set[str],
) -> None:
    good = await finished(ob, sandbox_control, "+12125550100")
    busy = await finished(ob, sandbox_control, "+12125550001", message_id="<m2@clinic.example.org>")
    assert (good.state, busy.state) == (JobState.SENT, JobState.FAILED)

    await report_all(ob.reporter(relay(sink.port), notify=notify))
    outcomes = set()
    for mail in sink.received:
        match = re.fullmatch(
            r"Fax to \+1 212-555-0\d{3} (\w+): Lab results", mail.parsed()["Subject"]
        )
        assert match is not None
        outcomes.add(match.group(1))
    assert outcomes == expected
    assert len(sink.received) == len(expected)
    assert {job.state for job in await ob.store.jobs()} == {JobState.REPORTED}


# -- what a report says ---------------------------------------------------------------------------


async def test_delivered_report_threads_under_the_mail_and_gives_every_detail(
    ob: Outbound, sandbox_control: SandboxControl, sink: RunningSink
) -> None:
    job = await finished(ob, sandbox_control)
    [fax] = await sandbox_control.outbound()
    sandbox_record = await ob.client.get_outbound(fax["id"])
    assert sandbox_record.completion_time is not None
    completed_utc = sandbox_record.completion_time.strftime("%Y-%m-%dT%H:%M:%S")

    ob.clock.advance(86400.0)  # the report is dated by the worker's clock
    await report_all(new_york_reporter(ob, sink.port))
    [mail] = sink.received
    msg = mail.parsed()
    assert mail.rcpt_tos == [ALICE]
    assert msg["To"] == ALICE
    assert msg["From"] == "Fax Bridge <fax@bridge.example.org>"
    assert msg["Subject"] == "Fax to +1 212-555-0100 delivered: Lab results"
    assert msg["In-Reply-To"] == "<m1@clinic.example.org>"
    assert msg["References"] == "<m1@clinic.example.org>"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["Date"] is not None
    assert msg["Date"].datetime == datetime.fromtimestamp(int(ob.clock.now), UTC)

    text, html = bodies(mail)
    for body in (text, html):
        assert "was delivered" in body
        assert "Sent successfully and confirmed by the receiving fax machine" in body
        assert "Lab results" in body
        assert str(job.fax_id) in body
        assert job.reference in body
        assert local(fax["submitTime"]) in body
        assert local(completed_utc) in body
        assert "EST" in body or "EDT" in body
        assert "0.4500" in body  # 3 units (cover + 2 pages) at 0.15
        assert "+12125550100" in body  # the remote CSID
    assert line("Pages sent", "3 of 3", text)
    assert line("Duration", "70 seconds", text)
    assert line("Attempts", "1", text)
    assert line("Receiving machine", "+12125550100", text)
    assert "<td>3 of 3</td>" in html
    assert "<td>70 seconds</td>" in html

    final = await ob.job(job.id)
    assert final.state is JobState.REPORTED


async def test_failed_fax_report_gives_the_reason(
    ob: Outbound, sandbox_control: SandboxControl, sink: RunningSink
) -> None:
    await finished(ob, sandbox_control, "+12125550001")
    await report_all(ob.reporter(relay(sink.port)))
    [mail] = sink.received
    assert mail.parsed()["Subject"] == "Fax to +1 212-555-0001 failed: Lab results"
    text, html = bodies(mail)
    for body in (text, html):
        assert "could not be delivered" in body
        assert "The line was busy (InterFAX status 3931)" in body
    assert line("Pages sent", "0 of 3", text)


def _exe_mail() -> bytes:
    msg = EmailMessage()
    msg["From"] = ALICE
    msg["To"] = "+12125550100@fax.local"
    msg["Subject"] = "Installer /rf"
    msg["Message-ID"] = "<exe@clinic.example.org>"
    msg.set_content("Please fax this.\n")
    msg.add_attachment(
        b"MZ\x90\x00", maintype="application", subtype="x-msdownload", filename="setup.exe"
    )
    return msg.as_bytes()


async def test_unsupported_attachment_report_names_the_file_and_the_supported_types(
    ob: Outbound, sandbox_control: SandboxControl, sink: RunningSink
) -> None:
    job = await finished(ob, sandbox_control, raw=_exe_mail())
    assert job.fax_id is None
    await report_all(ob.reporter(relay(sink.port)))
    [mail] = sink.received
    msg = mail.parsed()
    assert msg["Subject"] == "Fax to +1 212-555-0100 not sent: Installer"
    assert msg["In-Reply-To"] == "<exe@clinic.example.org>"
    text, html = bodies(mail)
    for body in (text, html):
        assert "was not faxed" in body
        assert "setup.exe" in body
        assert "Supported file types: bmp, doc, docx" in body
        assert "pdf" in body
        assert "tiff" in body
    assert await sandbox_control.outbound() == []


async def test_interfax_refusal_report_quotes_interfax(
    ob: Outbound, sandbox_control: SandboxControl, sink: RunningSink
) -> None:
    await sandbox_control.faults(error_rate=1, error_status=400, paths=["/outbound/faxes"])
    await finished(ob, sandbox_control)
    await report_all(ob.reporter(relay(sink.port)))
    [mail] = sink.received
    assert mail.parsed()["Subject"] == "Fax to +1 212-555-0100 not sent: Lab results"
    text, _ = bodies(mail)
    assert "Internal system error" in text
    assert "Fault injected by the sandbox" in text


async def test_expired_submission_report_says_interfax_was_not_reached(
    tmp_path: Path, sandbox: RunningSandbox, sink: RunningSink
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    async with outbound(tmp_path, sandbox, base_url=dead) as ob:
        job = await ob.enqueue(pdf_mail())
        assert await ob.submitter.run_once() is True
        ob.clock.advance(ob.settings.max_submit_age + 1)
        assert await ob.submitter.run_once() is True
        assert (await ob.job(job.id)).state is JobState.FAILED
        await report_all(ob.reporter(relay(sink.port)))
    [mail] = sink.received
    assert mail.parsed()["Subject"] == "Fax to +1 212-555-0100 not sent: Lab results"
    text, _ = bodies(mail)
    assert "InterFAX could not be reached in time" in text


# -- getting the report out -----------------------------------------------------------------------


async def test_report_waits_for_a_relay_that_is_down_and_is_sent_once_it_is_back(
    ob: Outbound, sandbox_control: SandboxControl
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    reporter = ob.reporter(relay(port))
    job = await finished(ob, sandbox_control)

    assert await reporter.run_once() is True
    waiting = await ob.job(job.id)
    assert waiting.state is JobState.SENT
    assert waiting.next_attempt_at > ob.clock.now
    assert waiting.last_error is not None
    assert "relay unreachable" in waiting.last_error
    assert await reporter.run_once() is False  # not due yet

    async with sink_on_port(port) as back:
        ob.clock.now = waiting.next_attempt_at
        assert await reporter.run_once() is True
        assert (await ob.job(job.id)).state is JobState.REPORTED
        ob.clock.advance(3600.0)
        assert await reporter.run_once() is False
    [mail] = back.received
    assert mail.parsed()["Subject"] == "Fax to +1 212-555-0100 delivered: Lab results"


async def test_relay_deferring_the_report_is_retried_then_sent_exactly_once(
    ob: Outbound, sandbox_control: SandboxControl, sink: RunningSink
) -> None:
    reporter = ob.reporter(relay(sink.port))
    job = await finished(ob, sandbox_control, "+12125550001")
    sink.handler.data_reply = "451 4.3.0 Try again later"
    assert await reporter.run_once() is True
    waiting = await ob.job(job.id)
    assert waiting.state is JobState.FAILED  # still owed a report
    assert waiting.next_attempt_at > ob.clock.now
    assert waiting.last_error is not None
    assert "451" in waiting.last_error

    sink.handler.data_reply = None
    ob.clock.now = waiting.next_attempt_at
    await report_all(reporter)
    assert len(sink.received) == 1
    assert (await ob.job(job.id)).state is JobState.REPORTED


async def test_relay_refusing_the_report_is_logged_and_ends_the_job(
    ob: Outbound,
    sandbox_control: SandboxControl,
    sink: RunningSink,
    caplog: pytest.LogCaptureFixture,
) -> None:
    reporter = ob.reporter(relay(sink.port))
    job = await finished(ob, sandbox_control)
    sink.handler.data_reply = "554 5.7.1 Message refused"
    with caplog.at_level(logging.ERROR, logger="bridge.reports"):
        assert await reporter.run_once() is True
    done = await ob.job(job.id)
    assert done.state is JobState.REPORTED
    assert done.last_error is not None
    assert done.last_error.startswith("report refused")
    assert any("refused" in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records)
    ob.clock.advance(86400.0)
    assert await reporter.run_once() is False  # no retry loop
    assert sink.received == []


# -- hostile values never become headers -------------------------------------------------------


def header_names(mail: ReceivedMail) -> list[str]:
    msg = message_from_bytes(mail.data, policy=policy.default)
    return sorted(name.lower() for name in msg)


async def test_hostile_subject_from_the_mail_never_adds_a_report_header(
    ob: Outbound, sandbox_control: SandboxControl, sink: RunningSink
) -> None:
    await finished(ob, sandbox_control)
    hostile = pdf_mail(subject=CVE_2024_6923, message_id="<evil@clinic.example.org>")
    await finished(ob, sandbox_control, "+12125550111", raw=hostile)
    await report_all(ob.reporter(relay(sink.port)))
    benign, evil = sorted(sink.received, key=lambda m: "evil" in m.data.decode())
    assert header_names(evil) == header_names(benign)
    parsed = evil.parsed()
    assert "X-Injected" not in parsed
    assert "\n" not in parsed["Subject"]
    assert "\r" not in parsed["Subject"]
    assert "hello" in parsed["Subject"]


@pytest.mark.parametrize(
    "subject",
    [
        CVE_2024_6923,
        "hello\r\nX-Injected: yes",
        "hello\nX-Injected: yes\n\nbody",
        "=?utf-8?b?aGVsbG8NClgtSW5qZWN0ZWQ6IHllcw==?=",
        "hello\u2028X-Injected: yes",
    ],
    ids=["cve-qp", "crlf", "lf-body", "encoded-crlf", "line-separator"],
)
async def test_hostile_subject_recorded_for_a_job_never_adds_a_report_header(
    ob: Outbound, sandbox_control: SandboxControl, sink: RunningSink, subject: str
) -> None:
    job = await finished(ob, sandbox_control)
    assert job.result is not None
    await ob.store.transition(
        job.id,
        expect=JobState.SENT,
        to=JobState.SENT,
        now=ob.clock.now,
        result={**job.result, "subject": subject, "remote_csid": "ACME\r\nX-Injected: yes"},
    )
    await report_all(ob.reporter(relay(sink.port)))
    [mail] = sink.received
    expected = [
        "auto-submitted",
        "content-type",
        "date",
        "from",
        "in-reply-to",
        "message-id",
        "mime-version",
        "references",
        "subject",
        "to",
    ]
    assert header_names(mail) == expected
    parsed = mail.parsed()
    assert "\n" not in parsed["Subject"]
    assert "\r" not in parsed["Subject"]
    assert parsed["Subject"].strip().startswith("Fax to +1 212-555-0100 delivered: ")


# -- through the running service: Reply-To and the transmitted image --------------------------


async def _service_report(
    tmp_path: Path,
    sandbox: RunningSandbox,
    control: SandboxControl,
    raw: bytes,
    *,
    outbound_yaml: str = "",
) -> ReceivedMail:
    async with running_sink() as sink:
        text = bridge_yaml(
            tmp_path / "state",
            interfax_url=sandbox.base_url,
            relay_port=sink.port,
            outbound=outbound_yaml,
        )
        async with running_bridge(load(text, tmp_path)) as bridge:
            refused, _ = await bridge.send(raw)
            assert refused == {}

            async def one_fax() -> list[int]:
                return [fax["id"] for fax in await control.outbound()]

            [fax_id] = await eventually(one_fax, what="the fax at the sandbox")
            await control.advance(fax_id)
            [mail] = await sink.handler.wait_for(1)
    return mail


@pytest.mark.parametrize(
    ("reply_to", "expected"),
    [
        ("Bob <bob@lawfirm.example>", "bob@lawfirm.example"),
        ("Eve <eve@evil.example>", ALICE),
        (None, ALICE),
    ],
    ids=["allowed-reply-to", "foreign-reply-to", "no-reply-to"],
)
async def test_report_goes_to_reply_to_only_when_that_address_may_send_faxes(
    tmp_path: Path,
    sandbox: RunningSandbox,
    sandbox_control: SandboxControl,
    reply_to: str | None,
    expected: str,
) -> None:
    extra = [("Reply-To", reply_to)] if reply_to else []
    mail = await _service_report(tmp_path, sandbox, sandbox_control, pdf_mail(extra_headers=extra))
    assert mail.rcpt_tos == [expected]
    assert mail.parsed()["To"] == expected


async def test_attach_sent_image_attaches_the_transmitted_fax_as_pdf(
    tmp_path: Path,
    sandbox: RunningSandbox,
    sandbox_control: SandboxControl,
    make_pdf: Callable[..., bytes],
) -> None:
    raw = pdf_mail(pdf=make_pdf(pages=2))
    mail = await _service_report(
        tmp_path, sandbox, sandbox_control, raw, outbound_yaml="attach_sent_image: true\n"
    )
    [fax] = await sandbox_control.outbound()
    attachments = list(mail.parsed().iter_attachments())
    assert [a.get_filename() for a in attachments] == [f"fax-{fax['id']}.pdf"]
    assert attachments[0].get_content_type() == "application/pdf"
    image = attachments[0].get_content()
    assert isinstance(image, bytes)
    assert pdf_pages(image) == fax["pages"] == 3


async def test_without_attach_sent_image_the_report_has_no_attachment(
    tmp_path: Path, sandbox: RunningSandbox, sandbox_control: SandboxControl
) -> None:
    mail = await _service_report(tmp_path, sandbox, sandbox_control, pdf_mail(pdf=minimal_pdf()))
    assert list(mail.parsed().iter_attachments()) == []


# -- waking up ------------------------------------------------------------------------------


class FaxFinishesDuringClaim(Store):
    """A store where the poller records a finished fax right after the reporter found none."""

    finish: Callable[[], Awaitable[object]] | None = None

    async def claim_next(self, state: JobState, to: JobState, **kwargs: Any) -> Job | None:
        job = await super().claim_next(state, to, **kwargs)
        if job is None and state is JobState.SENT and self.finish is not None:
            finish, self.finish = self.finish, None
            await finish()
        return job


async def test_fax_finishing_while_the_reporter_looks_for_work_is_reported_without_delay(
    tmp_path: Path, sandbox: RunningSandbox, sandbox_control: SandboxControl, sink: RunningSink
) -> None:
    async with outbound(tmp_path, sandbox, store_class=FaxFinishesDuringClaim) as ob:
        job = await ob.enqueue(pdf_mail())
        assert await ob.submitter.run_once() is True
        await sandbox_control.advance((await ob.job(job.id)).fax_id)
        store = ob.store
        assert isinstance(store, FaxFinishesDuringClaim)
        store.finish = ob.poller.poll_once  # sets ob.finished, the reporter's wake event
        reporter = Reporter(
            store,
            Mailer(relay(sink.port)),
            wiring.renderer(ob.config),
            wiring.report_settings(ob.config),
            wake=ob.finished,
            idle_poll=600.0,
        )
        stopping = asyncio.Event()
        task = asyncio.create_task(reporter.run(stopping))
        try:
            [mail] = await sink.handler.wait_for(1, within=10.0)
        finally:
            stopping.set()
            await task
    assert mail.parsed()["Subject"] == "Fax to +1 212-555-0100 delivered: Lab results"
