"""SMTP AUTH and STARTTLS on the listener, over real SMTP with a trustme certificate.

Peers outside ``smtp_server.trusted_networks`` must authenticate before MAIL; AUTH is
only offered and accepted after STARTTLS; users come from the scrypt users file, written
by :func:`bridge.smtp_auth.set_password` or by the ``fax-bridge passwd`` command.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import ssl
import sys
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
import trustme

from bridge import smtp_auth, smtp_server
from bridge.sandbox.server import RunningSandbox
from bridge.smtp_auth import load_users, set_password
from tests.bridge_harness import ALICE, MALLORY, RunningBridge, eventually
from tests.conftest import SandboxControl
from tests.smtp_kit import FAX, bridge_with, mail, on_disk
from tests.smtp_probe import SmtpProbe

AUTH_REQUIRED = "530 5.7.0 Authentication required"
AUTH_OK = "235 2.7.0 Authentication successful"
AUTH_BAD = "535 5.7.8 Authentication credentials invalid"


@dataclass(frozen=True)
class Tls:
    """The listener's certificate and key, its users file, and a client trusting the CA."""

    cert: Path
    key: Path
    users: Path
    client: ssl.SSLContext


@pytest.fixture
def tls(tls_ca: trustme.CA, tmp_path: Path) -> Tls:
    """A server certificate for 127.0.0.1, a client context trusting it, a users file."""
    issued = tls_ca.issue_cert("127.0.0.1")
    cert, key, ca = tmp_path / "smtp.pem", tmp_path / "smtp.key", tmp_path / "ca.pem"
    issued.private_key_and_cert_chain_pem.write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    tls_ca.cert_pem.write_to_path(str(ca))
    users = tmp_path / "users"
    set_password(users, "alice", "s3cret")
    return Tls(cert, key, users, ssl.create_default_context(cafile=str(ca)))


def _smtp(tls: Tls, trusted: list[str]) -> dict[str, Any]:
    return {
        "tls_cert": str(tls.cert),
        "tls_key": str(tls.key),
        "auth_users_file": str(tls.users),
        "trusted_networks": trusted,
    }


@pytest.fixture
async def bridge(tmp_path: Path, tls: Tls) -> AsyncIterator[RunningBridge]:
    """Nobody is trusted: every client must STARTTLS and AUTH."""
    async with bridge_with(tmp_path, smtp=_smtp(tls, [])) as running:
        yield running


async def _secured(bridge: RunningBridge, tls: Tls) -> SmtpProbe:
    """Open a session, STARTTLS (verifying the certificate) and EHLO again."""
    probe = await SmtpProbe.open(bridge.smtp_port)
    await probe.ehlo()
    await probe.starttls(tls.client)
    ehlo = await probe.ehlo()
    assert "AUTH LOGIN PLAIN" in ehlo.lines
    return probe


@pytest.fixture
async def secured(bridge: RunningBridge, tls: Tls) -> AsyncIterator[SmtpProbe]:
    """A session after STARTTLS and the second EHLO, not yet authenticated."""
    async with await _secured(bridge, tls) as probe:
        yield probe


def _plain(user: str, password: str) -> str:
    return "AUTH PLAIN " + base64.b64encode(f"\0{user}\0{password}".encode()).decode()


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


async def _send_one(probe: SmtpProbe) -> str:
    assert (await probe.mail(ALICE)).code == 250
    assert (await probe.rcpt(FAX)).code == 250
    return str(await probe.data(mail()))


@pytest.mark.parametrize("trusted", [[], ["10.0.0.0/8", "::1/128"]])
async def test_untrusted_peer_gets_530_5_7_0_at_mail_without_auth(
    tmp_path: Path, trusted: list[str]
) -> None:
    async with (
        bridge_with(tmp_path, smtp={"trusted_networks": trusted}) as bridge,
        await SmtpProbe.open(bridge.smtp_port) as probe,
    ):
        await probe.ehlo()
        assert str(await probe.mail(ALICE)) == AUTH_REQUIRED
        assert (await probe.rcpt(FAX)).code == 503
    assert on_disk(tmp_path / "state").messages == []


async def test_auth_is_neither_offered_nor_accepted_before_starttls(bridge: RunningBridge) -> None:
    async with await SmtpProbe.open(bridge.smtp_port) as probe:
        ehlo = await probe.ehlo()
        assert "STARTTLS" in ehlo.lines
        assert not any(line.startswith("AUTH") for line in ehlo.lines)
        reply = await probe.command(_plain("alice", "s3cret"))
        assert reply.status == "538 5.7.11"
        assert str(await probe.mail(ALICE)) == AUTH_REQUIRED


async def test_auth_plain_after_starttls_lets_the_fax_be_queued(
    secured: SmtpProbe, tmp_path: Path
) -> None:
    assert str(await secured.mail(ALICE)) == AUTH_REQUIRED
    assert str(await secured.command(_plain("alice", "s3cret"))) == AUTH_OK
    assert (await _send_one(secured)).startswith("250 2.0.0 Queued for faxing as fb-")
    [job] = on_disk(tmp_path / "state").jobs
    assert job["destination"] == "+12025550100"


async def test_auth_does_not_bypass_the_sender_allowlist(secured: SmtpProbe) -> None:
    assert str(await secured.command(_plain("alice", "s3cret"))) == AUTH_OK
    reply = await secured.mail(MALLORY)
    assert str(reply) == "550 5.7.1 Sender is not authorised to send faxes"


@pytest.mark.parametrize(
    ("user", "password"), [("alice", "wrong"), ("alice", "S3CRET"), ("nobody", "s3cret")]
)
async def test_wrong_credentials_get_535_and_mail_still_needs_auth(
    secured: SmtpProbe, user: str, password: str
) -> None:
    assert str(await secured.command(_plain(user, password))) == AUTH_BAD
    assert str(await secured.mail(ALICE)) == AUTH_REQUIRED


async def test_auth_login_works_for_a_user_added_by_the_passwd_command(
    tmp_path: Path, tls: Tls
) -> None:
    script = Path(sys.executable).with_name("fax-bridge")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "bridge"]
    process = await asyncio.create_subprocess_exec(
        *command,
        "passwd",
        str(tls.users),
        "carol@clinic.example.org",
        "--password-stdin",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate(b"pass word with spaces\n")
    assert process.returncode == 0, err.decode()
    assert b"password set for carol@clinic.example.org" in out

    async with (
        bridge_with(tmp_path, smtp=_smtp(tls, [])) as bridge,
        await _secured(bridge, tls) as probe,
    ):
        assert str(await probe.command("AUTH LOGIN")) == "334 VXNlciBOYW1lAA=="
        assert str(await probe.command(_b64("carol@clinic.example.org"))) == "334 UGFzc3dvcmQA"
        assert str(await probe.command(_b64("pass word with spaces"))) == AUTH_OK
        assert (await _send_one(probe)).startswith("250 2.0.0")
    assert len(on_disk(tmp_path / "state").jobs) == 1
    assert set(load_users(tls.users)) == {"alice", "carol@clinic.example.org"}


async def test_password_is_checked_off_the_event_loop(
    secured: SmtpProbe, monkeypatch: pytest.MonkeyPatch
) -> None:
    on_loop_thread: list[bool] = []
    real: Callable[..., bool] = smtp_auth.check_login

    def spy(*args: Any) -> bool:
        on_loop_thread.append(threading.current_thread() is threading.main_thread())
        return real(*args)

    monkeypatch.setattr(smtp_server, "check_login", spy)
    assert str(await secured.command(_plain("alice", "wrong"))) == AUTH_BAD
    assert str(await secured.command(_plain("alice", "s3cret"))) == AUTH_OK
    assert on_loop_thread == [False, False]


async def test_successful_auth_logs_no_warning(
    secured: SmtpProbe, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        assert str(await secured.command(_plain("alice", "s3cret"))) == AUTH_OK
        assert (await secured.mail(ALICE)).code == 250
    # aiosmtpd logs as "mail.log"; other components may warn meanwhile (InterFAX is down).
    smtp_logs = [r for r in caplog.records if r.name in ("mail.log", smtp_server.__name__)]
    assert [r.getMessage() for r in smtp_logs if r.levelno >= logging.WARNING] == []


async def test_trusted_peer_needs_no_auth_after_starttls_either(tmp_path: Path, tls: Tls) -> None:
    async with (
        bridge_with(tmp_path, smtp=_smtp(tls, ["127.0.0.0/8"])) as bridge,
        await _secured(bridge, tls) as probe,
    ):
        assert (await _send_one(probe)).startswith("250 2.0.0")


async def test_real_client_with_starttls_and_auth_gets_its_fax_sent(
    tmp_path: Path, tls: Tls, sandbox: RunningSandbox, sandbox_control: SandboxControl
) -> None:
    smtp = _smtp(tls, [])
    async with bridge_with(tmp_path, interfax_url=sandbox.base_url, smtp=smtp) as bridge:
        refused, reply = await aiosmtplib.send(
            mail(message_id="<real-client@clinic.example.org>"),
            sender=ALICE,
            recipients=[FAX],
            hostname="127.0.0.1",
            port=bridge.smtp_port,
            username="alice",
            password="s3cret",
            start_tls=True,
            tls_context=tls.client,
            timeout=20,
        )
        assert refused == {}
        assert reply.startswith("2.0.0 Queued for faxing as fb-")

        async def faxed() -> list[dict[str, Any]]:
            return await sandbox_control.outbound()

        [fax] = await eventually(faxed, what="the fax at the sandbox")
        assert fax["faxNumber"].lstrip("+") == "12025550100"


async def test_password_guessing_costs_a_new_connection_every_three_tries(
    secured: SmtpProbe,
) -> None:
    for _ in range(3):
        assert (await secured.command(_plain("alice", "guess"))).code == 535
    reply = await secured.command(_plain("alice", "s3cret"))
    assert reply.status == "421 4.7.0"
    assert await secured.at_eof()


async def test_ehlo_advertises_enhanced_status_codes(bridge: RunningBridge) -> None:
    async with await SmtpProbe.open(bridge.smtp_port) as probe:
        ehlo = await probe.ehlo()
    assert "ENHANCEDSTATUSCODES" in ehlo.lines
    assert ehlo.lines[-1] == "HELP"
