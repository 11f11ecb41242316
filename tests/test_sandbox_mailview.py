"""The sandbox page lists the demo's caught mail, escaped, and serves it as .eml."""

from __future__ import annotations

from pathlib import Path

import httpx

from bridge.sandbox.server import running_sandbox
from tests.conftest import sandbox_settings

MAIL = (
    b"From: fax@bridge.example.org\r\nTo: alice@example.com\r\n"
    b"Subject: <script>alert(1)</script> report\r\nDate: Fri, 27 Nov 2026 09:00:00 +0000\r\n"
    b"\r\nhello\r\n"
)


async def test_caught_mail_is_listed_escaped_and_downloadable(tmp_path: Path) -> None:
    maildir = tmp_path / "mail"
    for sub in ("new", "cur", "tmp"):
        (maildir / sub).mkdir(parents=True)
    (maildir / "new" / "1700000000.1.demo").write_bytes(MAIL)
    async with (
        running_sandbox(sandbox_settings(mailbox=maildir)) as sandbox,
        httpx.AsyncClient(base_url=sandbox.base_url) as http,
    ):
        page = (await http.get("/")).text
        eml = await http.get("/_sandbox/mail/1700000000.1.demo")
        missing = await http.get("/_sandbox/mail/..%2Fsecret")
    assert "Mail the bridge sent (1)" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; report" in page
    assert "<script>alert(1)</script>" not in page
    assert eml.status_code == 200
    assert eml.content == MAIL
    assert missing.status_code == 404


async def test_without_a_mailbox_the_page_has_no_mail_section(tmp_path: Path) -> None:
    async with (
        running_sandbox(sandbox_settings()) as sandbox,
        httpx.AsyncClient(base_url=sandbox.base_url) as http,
    ):
        page = (await http.get("/")).text
    assert "Mail the bridge sent" not in page
