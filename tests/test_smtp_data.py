"""Our DATA phase (one buffer instead of aiosmtpd's line list) keeps SMTP's rules."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.bridge_harness import ALICE, RunningBridge
from tests.smtp_kit import FAX, bridge_with, mail, on_disk, ready_for_data
from tests.smtp_probe import SmtpProbe


@pytest.fixture
async def bridge(tmp_path: Path) -> AsyncIterator[RunningBridge]:
    async with bridge_with(tmp_path) as running:
        yield running


@pytest.fixture
async def session(bridge: RunningBridge) -> AsyncIterator[SmtpProbe]:
    async with ready_for_data(bridge) as probe:
        yield probe


async def _raw_data(probe: SmtpProbe, wire: bytes) -> str:
    go = await probe.command("DATA")
    assert go.code == 354
    probe.writer.write(wire)
    await probe.writer.drain()
    return str(await probe.read_reply())


async def test_dot_stuffed_lines_are_unstuffed_and_stored_exactly(
    session: SmtpProbe, tmp_path: Path
) -> None:
    body = "line one\r\n.starts with a dot\r\n..two dots\r\nlast\r\n"
    reply = await session.data(mail(body=body))
    assert reply.code == 250
    [stored] = on_disk(tmp_path / "state").messages
    assert bytes(stored["raw"]) == mail(body=body)


async def test_a_bare_lf_dot_lf_does_not_end_the_data(session: SmtpProbe, tmp_path: Path) -> None:
    # SMTP smuggling (CVE-2023-51764 family): only CRLF.CRLF ends the data.
    wire = mail(body="text\r\n") + b"\n.\nMAIL FROM:<x@evil.example>\r\n.\r\n"
    reply = await _raw_data(session, wire)
    assert reply.startswith("250")
    [stored] = on_disk(tmp_path / "state").messages
    assert b"\n.\nMAIL FROM:<x@evil.example>" in bytes(stored["raw"])


async def test_a_line_over_1000_octets_is_refused_after_the_data_and_nothing_stored(
    session: SmtpProbe, tmp_path: Path
) -> None:
    wire = mail(body="x" * 1200 + "\r\nmore\r\n") + b".\r\n"
    reply = await _raw_data(session, wire)
    assert reply.startswith("500")
    assert on_disk(tmp_path / "state").messages == []
    # The session goes on: a proper message afterwards is accepted.
    assert (await session.mail(ALICE)).code == 250
    assert (await session.rcpt(FAX)).code == 250
    assert (await session.data(mail(message_id="<after@clinic.example.org>"))).code == 250
