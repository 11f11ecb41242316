"""`fax-bridge demo` as a newcomer uses it: a fax out, a report back, a fax in as email."""

from __future__ import annotations

import asyncio
import email
import socket
import sys
from email import policy
from pathlib import Path

import aiosmtplib
import httpx
import pytest

from tests.bridge_harness import eventually
from tests.conftest import minimal_pdf


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _mail(maildir: Path) -> list[email.message.EmailMessage]:
    found = []
    for path in sorted((maildir / "new").iterdir()):
        msg = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        assert isinstance(msg, email.message.EmailMessage)
        found.append(msg)
    return found


@pytest.mark.slow
async def test_demo_sends_a_fax_reports_it_and_delivers_a_received_fax(tmp_path: Path) -> None:
    sandbox_port, smtp_port, catcher_port = _free_ports(3)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge", "demo", "--dir", str(tmp_path),
        "--sandbox-port", str(sandbox_port), "--smtp-port", str(smtp_port),
        "--catcher-port", str(catcher_port), "--http-port", "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        printed = ""
        while "Press Ctrl-C to stop." not in printed:
            line = await asyncio.wait_for(proc.stdout.readline(), 30)
            assert line, "the demo ended before it was ready"
            printed += line.decode()
        assert "+12125550100@fax.local" in printed
        assert f"127.0.0.1:{smtp_port}" in printed

        msg = email.message.EmailMessage()
        msg["From"] = "you@example.com"
        msg["To"] = "+12125550100@fax.local"
        msg["Subject"] = "Hello fax"
        msg.set_content("Hello from fax-bridge!")
        await aiosmtplib.send(msg, hostname="127.0.0.1", port=smtp_port, timeout=20)

        maildir = tmp_path / "mail"

        async def report() -> bool:
            return any("delivered" in str(m["Subject"]) for m in _mail(maildir))

        await eventually(report, within=60, what="the report of the sent fax")

        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{sandbox_port}") as http:
            reply = await http.post(
                "/_sandbox/inbound",
                data={"phoneNumber": "+12125550100", "callerId": "+12125550199"},
                files={"file": ("fax.pdf", minimal_pdf(2), "application/pdf")},
            )
            assert reply.status_code == 200
            page = (await http.get("/")).text

        async def received() -> list[email.message.EmailMessage]:
            return [m for m in _mail(maildir) if str(m["Subject"]).startswith("Fax from")]

        [fax_mail] = await eventually(received, within=60, what="the received fax as email")
        assert fax_mail["To"] == "front-desk@example.com"
        [attachment] = list(fax_mail.iter_attachments())
        assert attachment.get_content_type() == "application/pdf"
        assert "Mail the bridge sent" in page
    finally:
        proc.send_signal(2)  # SIGINT, as Ctrl-C
        code = await asyncio.wait_for(proc.wait(), 30)
    assert code == 0
