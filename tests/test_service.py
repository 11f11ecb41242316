"""The service lifecycle: systemd notifications, signals, reload, the status endpoint."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from bridge.interfax import InterfaxClient
from bridge.jobs import InboundRecord
from bridge.mailbuild import MailAddress
from bridge.mailer import Mailer, RelaySettings
from bridge.maintenance import Maintenance
from bridge.sandbox.server import RunningSandbox
from bridge.sdnotify import SystemdNotifier
from bridge.store import Store
from tests.bridge_harness import bridge_yaml, load, running_bridge, service_from_file
from tests.conftest import SandboxControl
from tests.smtp_sink import RunningSink, running_sink
from tests.test_outbound_e2e import mail_with_pdf


@pytest.fixture
async def sink() -> AsyncIterator[RunningSink]:
    async with running_sink() as s:
        yield s


async def test_status_endpoint_serves_health_readiness_metrics_and_an_escaped_page(
    tmp_path: Path,
    sandbox: RunningSandbox,
    sandbox_control: SandboxControl,
    sink: RunningSink,
    make_pdf: Callable[..., bytes],
) -> None:
    text = bridge_yaml(
        tmp_path / "state", interfax_url=sandbox.base_url, relay_port=sink.port, http=True
    )
    async with running_bridge(load(text, tmp_path)) as bridge:
        port = bridge.service.status_port
        assert port is not None
        await bridge.send(mail_with_pdf(make_pdf()))
        refused, _ = await bridge.send(
            mail_with_pdf(make_pdf(), message_id="<m2@clinic>"),
            recipients=["+12125550100@fax.local", "+19005550100@fax.local"],
        )
        assert "+19005550100@fax.local" in refused
        await bridge.service.store.inbound_seen_page(
            [
                InboundRecord(
                    message_id=42,
                    phone_number="+12125550100",
                    caller_id="<script>alert(1)</script>",
                    remote_csid="<b>csid</b>",
                    pages=1,
                    receive_time=1_700_000_000.0,
                    message_status=0,
                )
            ],
            now=1_700_000_000.0,
        )
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            assert (await http.get("/healthz")).text == "ok\n"
            assert (await http.get("/readyz")).status_code == 200
            metrics = (await http.get("/metrics")).text
            page = (await http.get("/")).text
    assert 'faxbridge_jobs{state="accepted"}' in metrics or 'state="submitted"' in metrics
    assert "# TYPE faxbridge_interfax_request_seconds histogram" in metrics
    assert 'faxbridge_messages_total{outcome="accepted",reason="ok"}' in metrics
    assert 'faxbridge_messages_total{outcome="refused",reason="blocked_number_type"}' in metrics
    assert 'faxbridge_inbound_faxes{state="seen"} 1' in metrics
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "+12125550100" in page


async def test_readiness_reports_why_it_is_not_ready(
    tmp_path: Path, sandbox: RunningSandbox, sink: RunningSink
) -> None:
    text = bridge_yaml(tmp_path / "state", interfax_url=sandbox.base_url, relay_port=sink.port)
    async with running_bridge(load(text, tmp_path)) as bridge:
        assert bridge.service.readiness() == (True, [])
        assert bridge.service._gate is not None
        bridge.service._gate.pause("401")
        ready, reasons = bridge.service.readiness()
    assert not ready
    assert any("credentials" in r for r in reasons)


async def test_low_balance_alerts_the_admin_once_a_day(
    tmp_path: Path,
    sandbox: RunningSandbox,
    sandbox_control: SandboxControl,
    sink: RunningSink,
) -> None:
    await sandbox_control.set_balance("1.5000")
    now = [1_800_000_000.0]
    async with (
        await Store.open(tmp_path / "state") as store,
        InterfaxClient(sandbox.base_url, "user", "secret") as client,
    ):
        work = Maintenance(
            store,
            client,
            Mailer(RelaySettings(host=sink.host, port=sink.port, timeout=5)),
            sender=MailAddress("fax@bridge.example.org"),
            admin="admin@clinic.example.org",
            low_balance=Decimal("5"),
            retention=30 * 86400.0,
            clock=lambda: now[0],
        )
        await work.run_once()
        await work.run_once()
        now[0] += 86400.0 + 60  # counted per minute: a day and a minute later
        await work.run_once()
    assert [m.rcpt_tos for m in sink.received] == [["admin@clinic.example.org"]] * 2
    assert "1.5000" in str(sink.received[0].parsed()["Subject"])


# -- the real process ----------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def _datagram(sock: socket.socket, within: float = 20.0) -> str:
    loop = asyncio.get_running_loop()
    data = await asyncio.wait_for(loop.sock_recv(sock, 4096), within)
    return data.decode()


async def _until(sock: socket.socket, field: str) -> list[str]:
    seen = []
    while True:
        message = await _datagram(sock)
        seen.append(message)
        if field in message.splitlines():
            return seen


async def _log_until(proc: asyncio.subprocess.Process, text: str) -> str:
    """Read the process's log until a line containing ``text``; return what was read."""
    assert proc.stderr is not None
    seen = ""
    while text not in seen:
        line = await asyncio.wait_for(proc.stderr.readline(), 20)
        if not line:
            raise AssertionError(f"process ended before logging {text!r}:\n{seen}")
        seen += line.decode()
    return seen


@pytest.mark.slow
async def test_process_notifies_systemd_reloads_on_sighup_and_drains_on_sigterm(
    tmp_path: Path, sandbox: RunningSandbox, sink: RunningSink
) -> None:
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    notify.setblocking(False)
    config = tmp_path / "config.yaml"
    text = bridge_yaml(tmp_path / "state", interfax_url=sandbox.base_url, relay_port=sink.port)
    smtp_port = _free_port()
    config.write_text(text.replace("127.0.0.1:0", f"127.0.0.1:{smtp_port}"))
    env = {
        **os.environ,
        "NOTIFY_SOCKET": str(tmp_path / "notify.sock"),
        "WATCHDOG_USEC": "400000",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge", "run", "-c", str(config),
        env=env, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert "READY=1" in (await _datagram(notify)).splitlines()
        # The watchdog is fed from the running loop while the workers beat.
        await _until(notify, "WATCHDOG=1")

        good = config.read_text()
        config.write_text(good + "unknown_key: 1\n")
        proc.send_signal(signal.SIGHUP)
        # The refusal names the offending key on the record's continuation lines.
        refused = await _log_until(proc, "unknown_key")
        config.write_text(good + "log_level: info\n")
        proc.send_signal(signal.SIGHUP)
        reloaded = await _log_until(proc, "configuration reloaded")

        proc.send_signal(signal.SIGTERM)
        await _until(notify, "STOPPING=1")
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        notify.close()
    assert "reload refused" in refused
    assert "Traceback" not in refused + reloaded


async def test_reload_applies_trusted_networks_to_the_running_listener(
    tmp_path: Path, sandbox: RunningSandbox, sink: RunningSink
) -> None:
    from tests.smtp_probe import SmtpProbe

    path = tmp_path / "config.yaml"
    text = bridge_yaml(tmp_path / "state", interfax_url=sandbox.base_url, relay_port=sink.port)
    async with service_from_file(path, text) as service:
        assert service.listener is not None
        port = service.listener.port
        async with await SmtpProbe.open(port) as probe:
            await probe.ehlo()
            assert (await probe.mail("alice@clinic.example.org")).code == 250
        path.write_text(
            text.replace(
                "  fax_domain: fax.local\n", "  fax_domain: fax.local\n  trusted_networks: []\n"
            )
        )
        assert await service.reload()
        async with await SmtpProbe.open(port) as probe:
            await probe.ehlo()
            assert (await probe.mail("alice@clinic.example.org")).status == "530 5.7.0"


async def test_reload_gives_the_submitter_the_new_outbound_settings(
    tmp_path: Path, sandbox: RunningSandbox, sink: RunningSink
) -> None:
    from bridge.jobs import JobState
    from tests.bridge_harness import ALICE, RunningBridge, eventually

    path = tmp_path / "config.yaml"
    state = tmp_path / "state"
    text = bridge_yaml(
        state, interfax_url=sandbox.base_url, relay_port=sink.port, outbound="body: auto\n"
    )
    async with service_from_file(path, text) as service:
        # With the body ignored, a mail of text only leaves nothing to fax.
        path.write_text(text.replace("body: auto", "body: ignore"))
        assert await service.reload()
        assert service.listener is not None
        text_only = (
            f"From: {ALICE}\r\nTo: +12125550100@fax.local\r\nSubject: hello\r\n"
            "Message-ID: <reload-body@clinic.example.org>\r\n\r\nJust some text.\r\n"
        ).encode()
        await RunningBridge(service, service.listener.port).send(text_only)

        async def settled() -> list[object]:
            return await service.store.jobs([JobState.FAILED, JobState.REPORTED])

        [job] = await eventually(settled, what="the job to fail and be reported")
        assert "nothing to fax" in (job.last_error or "")


async def test_reload_sends_later_balance_alerts_from_the_new_mail_from_to_the_new_admin(
    tmp_path: Path, sandbox: RunningSandbox, sandbox_control: SandboxControl, sink: RunningSink
) -> None:
    path = tmp_path / "config.yaml"
    text = bridge_yaml(tmp_path / "state", interfax_url=sandbox.base_url, relay_port=sink.port)
    text = text.replace("  timeout: 5s\n", "  timeout: 5s\n  low_balance_alert: '5'\n", 1)
    async with service_from_file(path, text) as service:
        path.write_text(
            text.replace("from: fax@bridge.example.org", "from: faxes@new.example.org").replace(
                "admin: admin@clinic.example.org", "admin: boss@clinic.example.org"
            )
        )
        assert await service.reload()
        await sandbox_control.set_balance("1.5000")
        assert service.maintenance is not None
        await service.maintenance.run_once()
    [alert] = sink.received
    assert (alert.mail_from, alert.rcpt_tos) == (
        "faxes@new.example.org",
        ["boss@clinic.example.org"],
    )
    assert str(alert.parsed()["Message-ID"]).endswith("@new.example.org>")


async def test_a_second_service_on_the_same_state_dir_refuses_to_start(
    tmp_path: Path, sandbox: RunningSandbox, sink: RunningSink
) -> None:
    from bridge.errors import ConfigError
    from bridge.service import Service

    text = bridge_yaml(tmp_path / "state", interfax_url=sandbox.base_url, relay_port=sink.port)
    async with running_bridge(load(text, tmp_path)) as first:
        second = Service(load(text, tmp_path), notifier=SystemdNotifier({}))
        with pytest.raises(ConfigError, match="already running"):
            await second.start()
        await second.shutdown()
        # The first one is untouched and still accepts mail.
        assert first.service.readiness() == (True, [])
