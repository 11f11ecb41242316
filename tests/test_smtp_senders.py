"""Sender authorisation in the SMTP dialogue: deny by default, refuse with 550 5.7.1.

Every refusal is checked three ways: the exact reply on the wire, no message or job in
the database file, and no mail at all reaching the relay (a real SMTP sink) once the
service has stopped: a refused sender is never sent a report or a bounce.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.bridge_harness import ALICE, MALLORY, RunningBridge
from tests.smtp_kit import FAX, OnDisk, bridge_with, mail, on_disk
from tests.smtp_probe import SmtpProbe
from tests.smtp_sink import RunningSink, running_sink

NOT_AUTHORISED = "550 5.7.1 Sender is not authorised to send faxes"
AUTOMATIC = "550 5.7.1 Automatically generated mail is never faxed"


@pytest.fixture
async def sink() -> AsyncIterator[RunningSink]:
    async with running_sink() as running:
        yield running


@asynccontextmanager
async def refusing(
    tmp_path: Path, sink: RunningSink, **config: Any
) -> AsyncIterator[RunningBridge]:
    """Run the service; once it has stopped, prove nothing was queued and nothing mailed."""
    async with bridge_with(tmp_path, relay_port=sink.port, **config) as bridge:
        yield bridge
    assert on_disk(tmp_path / "state") == OnDisk([], [])
    assert sink.received == []


async def _envelope(bridge: RunningBridge, sender: str = ALICE) -> SmtpProbe:
    probe = await SmtpProbe.open(bridge.smtp_port)
    await probe.ehlo()
    assert (await probe.mail(sender)).code == 250
    assert (await probe.rcpt(FAX)).code == 250
    return probe


@pytest.mark.parametrize(
    "sender",
    [
        MALLORY,
        "alice@clinic.example.org.evil.example",
        "alice@sub.clinic.example.org",
        # aiosmtpd alone would read both as alice@clinic.example.org.
        '"alice"@clinic.example.org',
        "@evil.example:alice@clinic.example.org",
    ],
)
async def test_unauthorised_envelope_sender_is_550_5_7_1_at_mail(
    tmp_path: Path, sink: RunningSink, sender: str
) -> None:
    async with refusing(tmp_path, sink) as bridge, await SmtpProbe.open(bridge.smtp_port) as p:
        await p.ehlo()
        assert str(await p.mail(sender)) == NOT_AUTHORISED
        assert (await p.rcpt(FAX)).code == 503  # no transaction was opened


@pytest.mark.parametrize(
    "from_",
    [
        MALLORY,
        f"Alice <{MALLORY}>",
        "alice@clinic.example.org.evil.example",
    ],
)
async def test_authorised_envelope_with_unauthorised_from_is_550_5_7_1_after_data(
    tmp_path: Path, sink: RunningSink, from_: str
) -> None:
    async with refusing(tmp_path, sink) as bridge, await _envelope(bridge) as probe:
        assert str(await probe.data(mail(from_=from_))) == NOT_AUTHORISED


async def test_two_from_headers_are_refused_even_when_both_are_allowed(
    tmp_path: Path, sink: RunningSink
) -> None:
    async with refusing(tmp_path, sink) as bridge, await _envelope(bridge) as probe:
        for second in (MALLORY, ALICE):
            raw = mail(headers=(f"From: {second}",))
            assert str(await probe.data(raw)) == NOT_AUTHORISED
            assert (await probe.mail(ALICE)).code == 250
            assert (await probe.rcpt(FAX)).code == 250


@pytest.mark.parametrize(
    "from_",
    [
        # CVE-2023-27043: older parseaddr reads the first as alice.
        f"{ALICE} <{MALLORY}>",
        f"{MALLORY} <{ALICE}>",
        f'"{ALICE}" <{MALLORY}>',
        f"{ALICE} ({MALLORY})",
        f"{ALICE}, {MALLORY}",
        f"Friends: {ALICE};",
        None,  # no From header at all
    ],
)
async def test_ambiguous_or_missing_from_is_refused(
    tmp_path: Path, sink: RunningSink, from_: str | None
) -> None:
    async with refusing(tmp_path, sink) as bridge, await _envelope(bridge) as probe:
        assert str(await probe.data(mail(from_=from_))) == NOT_AUTHORISED


async def test_null_sender_never_opens_a_transaction(tmp_path: Path, sink: RunningSink) -> None:
    async with refusing(tmp_path, sink) as bridge, await SmtpProbe.open(bridge.smtp_port) as p:
        await p.ehlo()
        assert str(await p.command("MAIL FROM:<>")) == NOT_AUTHORISED
        assert (await p.rcpt(FAX)).code == 503
        assert (await p.command("DATA")).code == 503


@pytest.mark.parametrize(
    "header",
    [
        "Auto-Submitted: auto-replied",
        "Auto-Submitted: auto-generated",
        "Auto-Submitted: auto-replied (vacation)",
        "Precedence: bulk",
    ],
)
async def test_automatic_mail_is_refused(tmp_path: Path, sink: RunningSink, header: str) -> None:
    async with refusing(tmp_path, sink) as bridge, await _envelope(bridge) as probe:
        assert str(await probe.data(mail(headers=(header,)))) == AUTOMATIC


async def test_mail_marked_auto_submitted_no_is_a_person_and_is_queued(tmp_path: Path) -> None:
    async with bridge_with(tmp_path) as bridge, await _envelope(bridge) as probe:
        reply = await probe.data(mail(headers=("Auto-Submitted: no",)))
        assert reply.status == "250 2.0.0"
    assert len(on_disk(tmp_path / "state").jobs) == 1


@pytest.mark.parametrize("sender", [ALICE, "bob@lawfirm.example"])
async def test_empty_allowed_senders_denies_everyone(
    tmp_path: Path, sink: RunningSink, sender: str
) -> None:
    async with (
        refusing(tmp_path, sink, outbound={"allowed_senders": []}) as bridge,
        await SmtpProbe.open(bridge.smtp_port) as probe,
    ):
        await probe.ehlo()
        assert str(await probe.mail(sender)) == NOT_AUTHORISED


async def test_allowed_envelope_and_from_are_queued(tmp_path: Path) -> None:
    """The positive control for this file: the same dialogue with allowed values works."""
    async with bridge_with(tmp_path) as bridge, await _envelope(bridge, "bob@lawfirm.example") as p:
        reply = await p.data(mail(from_="Bob <bob@LAWFIRM.example>"))
        assert reply.status == "250 2.0.0"
    [job] = on_disk(tmp_path / "state").jobs
    assert job["sender"].lower() == "bob@lawfirm.example"
