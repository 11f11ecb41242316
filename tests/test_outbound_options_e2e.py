"""Body modes, subject tags and X-Fax-* headers end to end: what InterFAX really receives.

Mail goes over SMTP to the running service; the assertions are on the sandbox's record
of each fax (documents in order with their types and bytes, and the send options).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from bridge.jobs import Job, JobState
from bridge.sandbox.server import RunningSandbox
from tests import mail_samples
from tests.bridge_harness import ALICE, RunningBridge, bridge_yaml, eventually, load, running_bridge
from tests.conftest import SandboxControl, minimal_pdf
from tests.smtp_sink import RunningSink, running_sink

PDF = minimal_pdf(pages=2, text="the attachment")
PDF_SHA = hashlib.sha256(PDF).hexdigest()
SAMPLE_PDF_SHA = hashlib.sha256(mail_samples.PDF).hexdigest()
BODY = "Dear Dr. Smith,\n\nplease find the lab results attached.\n\nAlice\n"
NEW_YORK = ZoneInfo("America/New_York")
HTML, TEXT, APP_PDF = "text/html", "text/plain", "application/pdf"


def mail(
    subject: str = "Lab results",
    *,
    body: str | None = BODY,
    attach: bool = True,
    headers: dict[str, str] | None = None,
    message_id: str = "<opt1@clinic.example.org>",
) -> bytes:
    """A mail from Alice with an optional body and an optional PDF attachment."""
    msg = EmailMessage()
    msg["From"] = f"Alice <{ALICE}>"
    msg["To"] = "+12125550100@fax.local"
    msg["Subject"] = subject
    msg["Message-ID"] = message_id
    for name, value in (headers or {}).items():
        msg[name] = value
    if body is not None:
        msg.set_content(body)
    if attach:
        msg.add_attachment(PDF, maintype="application", subtype="pdf", filename="results.pdf")
    return msg.as_bytes()


@asynccontextmanager
async def bridge_with(
    tmp_path: Path, sandbox: RunningSandbox, *, outbound: str = "", extra: str = ""
) -> AsyncIterator[tuple[RunningBridge, RunningSink]]:
    async with running_sink() as sink:
        text = bridge_yaml(
            tmp_path / "state",
            interfax_url=sandbox.base_url,
            relay_port=sink.port,
            outbound=outbound,
            extra=extra,
        )
        async with running_bridge(load(text, tmp_path)) as bridge:
            yield bridge, sink


async def fax_for(bridge: RunningBridge, control: SandboxControl, raw: bytes) -> dict[str, Any]:
    """Send ``raw`` over SMTP; the sandbox's record of the fax it became."""
    refused, reply = await bridge.send(raw)
    assert refused == {}
    match = re.search(r"Queued for faxing as (fb-[0-9a-f]+)", reply)
    assert match is not None, reply
    reference = match.group(1)

    async def arrived() -> dict[str, Any] | None:
        found = [f for f in await control.outbound() if f["reference"] == reference]
        return found[0] if found else None

    fax: dict[str, Any] = await eventually(arrived, what=f"the fax {reference}")
    return fax


def types(fax: dict[str, Any]) -> list[str]:
    return [doc["contentType"] for doc in fax["documents"]]


async def document_text(control: SandboxControl, doc: dict[str, Any]) -> str:
    response = await control.http.get(doc["url"])
    response.raise_for_status()
    return response.content.decode("utf-8-sig")


@pytest.fixture
async def default_bridge(tmp_path: Path, sandbox: RunningSandbox) -> AsyncIterator[RunningBridge]:
    async with bridge_with(tmp_path, sandbox, extra="timezone: America/New_York\n") as (b, _):
        yield b


# -- body modes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("auto", [HTML, APP_PDF]),
        ("cover", [HTML, APP_PDF]),
        ("document", [TEXT, APP_PDF]),
        ("ignore", [APP_PDF]),
    ],
)
async def test_body_mode_decides_what_precedes_the_attachment(
    tmp_path: Path,
    sandbox: RunningSandbox,
    sandbox_control: SandboxControl,
    mode: str,
    expected: list[str],
) -> None:
    async with bridge_with(tmp_path, sandbox, outbound=f"body: {mode}\n") as (bridge, _):
        fax = await fax_for(bridge, sandbox_control, mail())
    assert types(fax) == expected
    assert fax["documents"][-1]["sha256"] == PDF_SHA
    if len(expected) == 2:
        first = await document_text(sandbox_control, fax["documents"][0])
        assert "please find the lab results attached." in first
        if expected[0] == HTML:
            assert "<h1>FAX</h1>" in first  # the cover page, not the bare body
            assert "Lab results" in first
            assert "+1 212-555-0100" in first
            assert "results.pdf" in first


async def test_auto_mode_without_real_text_sends_no_cover(
    default_bridge: RunningBridge, sandbox_control: SandboxControl
) -> None:
    quoted = "\n-- \nAlice Example\nClinic\n"
    fax = await fax_for(default_bridge, sandbox_control, mail(body=quoted))
    assert types(fax) == [APP_PDF]


async def test_auto_mode_without_attachments_faxes_the_body(
    default_bridge: RunningBridge, sandbox_control: SandboxControl
) -> None:
    fax = await fax_for(default_bridge, sandbox_control, mail(attach=False))
    assert types(fax) == [TEXT]
    assert "please find the lab results attached." in await document_text(
        sandbox_control, fax["documents"][0]
    )


# -- subject tags ------------------------------------------------------------------------------


def _in_three_days() -> tuple[str, str]:
    """A ``/d`` date in New York three days ahead, and the UTC time InterFAX should get."""
    when = (datetime.now(NEW_YORK) + timedelta(days=3)).replace(second=0, microsecond=0)
    utc = when.astimezone(ZoneInfo("UTC"))
    return when.strftime("%Y-%m-%d %H:%M"), utc.strftime("%Y-%m-%dT%H:%M:%S")


async def test_resolution_tags(
    default_bridge: RunningBridge, sandbox_control: SandboxControl
) -> None:
    fine = await fax_for(default_bridge, sandbox_control, mail("Lab results /rf"))
    plain = await fax_for(
        default_bridge,
        sandbox_control,
        mail("Lab /RS results", message_id="<opt2@clinic.example.org>"),
    )
    assert fine["options"]["resolution"] == "Fine"
    assert plain["options"]["resolution"] == "Standard"
    assert fine["contact"] == "Lab results"
    assert plain["contact"] == "Lab results"


async def test_standard_tag_overrides_a_fine_default(
    tmp_path: Path, sandbox: RunningSandbox, sandbox_control: SandboxControl
) -> None:
    config = "defaults:\n  resolution: fine\n"
    async with bridge_with(tmp_path, sandbox, outbound=config) as (bridge, _):
        default = await fax_for(bridge, sandbox_control, mail("Lab results"))
        tagged = await fax_for(
            bridge, sandbox_control, mail("/rs Lab results", message_id="<opt2@clinic.example.org>")
        )
    assert default["options"]["resolution"] == "Fine"
    assert tagged["options"]["resolution"] == "Standard"


async def test_postpone_tag_in_the_configured_time_zone(
    default_bridge: RunningBridge, sandbox_control: SandboxControl
) -> None:
    local, utc = _in_three_days()
    fax = await fax_for(default_bridge, sandbox_control, mail(f"Lab results /d {local}"))
    assert fax["options"]["postponeTime"] == utc
    assert fax["contact"] == "Lab results"


async def test_page_header_tags(
    default_bridge: RunningBridge, sandbox_control: SandboxControl
) -> None:
    header = await fax_for(
        default_bridge, sandbox_control, mail("Lab results /h Clinic {From} to {To} /rf")
    )
    none = await fax_for(
        default_bridge,
        sandbox_control,
        mail("/hn Lab results", message_id="<o2@clinic.example.org>"),
    )
    assert header["options"]["pageHeader"] == "Clinic {From} to {To}"
    assert header["options"]["resolution"] == "Fine"
    assert header["contact"] == "Lab results"
    assert none["options"]["pageHeader"] == "N"
    assert none["contact"] == "Lab results"


@pytest.mark.parametrize(
    ("tag", "body", "expected"),
    [
        ("/b", "\n-- \nAlice\n", [HTML, APP_PDF]),  # a cover although auto would send none
        ("/bn", BODY, [APP_PDF]),  # no body although auto would make a cover
        ("/bb", BODY, [TEXT, APP_PDF]),  # the body as a document of its own
    ],
)
async def test_body_tags_override_the_configured_mode(
    default_bridge: RunningBridge,
    sandbox_control: SandboxControl,
    tag: str,
    body: str,
    expected: list[str],
) -> None:
    fax = await fax_for(default_bridge, sandbox_control, mail(f"Lab results {tag}", body=body))
    assert types(fax) == expected
    assert fax["contact"] == "Lab results"
    assert fax["documents"][-1]["sha256"] == PDF_SHA


async def test_x_fax_headers_set_every_option(
    default_bridge: RunningBridge, sandbox_control: SandboxControl
) -> None:
    local, utc = _in_three_days()
    headers = {
        "X-Fax-Resolution": "fine",
        "X-Fax-Page-Size": "letter",
        "X-Fax-Orientation": "landscape",
        "X-Fax-CSID": "CLINIC 42",
        "X-Fax-Postpone": local,  # no offset: the configured time zone
        "X-Fax-Page-Header": "From the clinic",
    }
    fax = await fax_for(default_bridge, sandbox_control, mail(headers=headers))
    options = fax["options"]
    assert options["resolution"] == "Fine"
    assert options["pageSize"] == "Letter"
    assert options["pageOrientation"] == "Landscape"
    assert options["csid"] == "CLINIC 42"
    assert options["postponeTime"] == utc
    assert options["pageHeader"] == "From the clinic"
    assert fax["contact"] == "Lab results"


async def test_subject_tag_wins_over_the_header(
    default_bridge: RunningBridge, sandbox_control: SandboxControl
) -> None:
    raw = mail("Lab results /rs", headers={"X-Fax-Resolution": "fine", "X-Fax-Page-Header": "H"})
    fax = await fax_for(default_bridge, sandbox_control, raw)
    assert fax["options"]["resolution"] == "Standard"
    assert fax["options"]["pageHeader"] == "H"


async def test_invalid_option_sends_nothing_and_fails_the_job_with_the_reason(
    default_bridge: RunningBridge, sandbox_control: SandboxControl
) -> None:
    refused, _ = await default_bridge.send(mail("Lab results /d 2001-01-01 10:00"))
    assert refused == {}
    store = default_bridge.service.store

    async def failed() -> list[Job]:
        return await store.jobs([JobState.FAILED, JobState.REPORTED])

    [job] = await eventually(failed, what="the job to fail")
    assert job.last_error is not None
    assert "Invalid fax option" in job.last_error
    assert "2001-01-01 10:00" in job.last_error
    assert "in the past" in job.last_error
    assert await sandbox_control.outbound() == []


# -- mail as real clients send it ----------------------------------------------------------------


def _from_alice(raw: bytes) -> bytes:
    return raw.replace(b"alice@example.com", ALICE.encode())


async def test_gmail_nested_multipart_sends_cover_and_pdf_but_not_the_inline_logo(
    default_bridge: RunningBridge, sandbox_control: SandboxControl
) -> None:
    fax = await fax_for(default_bridge, sandbox_control, _from_alice(mail_samples.gmail()))
    assert types(fax) == [HTML, APP_PDF]
    assert fax["documents"][1]["sha256"] == SAMPLE_PDF_SHA
    assert fax["contact"] == "Signed contract"
    cover = await document_text(sandbox_control, fax["documents"][0])
    assert "the signed contract is attached." in cover
    assert "Vertrag Müller.pdf" in cover  # the encoded-word file name, decoded
    assert "logo.png" not in cover.split('class="documents"')[1].split("</ul>")[0]


async def test_outlook_octet_stream_pdf_is_faxed_by_its_name(
    default_bridge: RunningBridge, sandbox_control: SandboxControl
) -> None:
    raw = _from_alice(mail_samples.outlook(subject="Scan /rf /hn"))
    fax = await fax_for(default_bridge, sandbox_control, raw)
    assert types(fax) == [HTML, APP_PDF]
    assert fax["documents"][1]["sha256"] == SAMPLE_PDF_SHA
    assert fax["options"]["resolution"] == "Fine"
    assert fax["options"]["pageHeader"] == "N"
    assert fax["contact"] == "Scan"
    cover = await document_text(sandbox_control, fax["documents"][0])
    assert "Please fax the attached scan." in cover
    assert "Scan 2024-06-03.pdf" in cover
    assert "image001.png" not in cover


async def test_forwarded_message_brings_its_pdf(
    default_bridge: RunningBridge, sandbox_control: SandboxControl
) -> None:
    fax = await fax_for(default_bridge, sandbox_control, _from_alice(mail_samples.forwarded()))
    assert types(fax) == [HTML, APP_PDF]
    assert fax["documents"][1]["sha256"] == SAMPLE_PDF_SHA
    cover = await document_text(sandbox_control, fax["documents"][0])
    assert "the quote is attached" in cover


async def test_options_reach_interfax_over_the_wire_unchanged(
    default_bridge: RunningBridge, sandbox_control: SandboxControl, sandbox: RunningSandbox
) -> None:
    fax = await fax_for(default_bridge, sandbox_control, mail("Lab results /rf"))
    auth = (sandbox.username, sandbox.password)
    async with httpx.AsyncClient(base_url=sandbox.base_url, auth=auth) as api:
        record = (await api.get(f"/outbound/faxes/{fax['id']}")).json()
    assert record["resolution"] == "Fine"
    assert record["contact"] == "Lab results"
    assert record["pagesSubmitted"] == 3
