"""Fax to email survives SIGKILL of the real service process at each step.

The sandbox and the relay (a recording aiosmtpd sink) run in the test's event loop; the
bridge runs as ``python -m bridge run -c cfg.yaml`` and is killed:

1. while the relay holds the mail's DATA (before its 250): the mail is sent again later;
2. right after the relay's 250, before the ledger can record it: the mail may be sent a
   second time, with the SAME Message-ID (the documented second line of defence);
3. while the mark-read request is in flight: the fax is marked read after the restart,
   and nobody gets a second mail.

In the end every recipient holds exactly one distinct message per fax and every fax is
marked read at InterFAX. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from bridge.inbound_mail import fax_message_id
from bridge.sandbox.server import running_sandbox
from tests.bridge_harness import bridge_yaml, eventually
from tests.conftest import SandboxControl, minimal_pdf, sandbox_settings
from tests.smtp_sink import RunningSink, running_sink

pytestmark = pytest.mark.slow

RECIPIENTS = ["nurse@clinic.example.org", "doctor@clinic.example.org"]
DOMAIN = "bridge.example.org"  # of mail.from in bridge_yaml: Message-IDs are made under it


class Bridge:
    """The bridge as a child process that can be killed and started again."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config, self.log = config, log
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bridge", "run", "-c", str(self.config), stderr=log
            )

    async def kill(self) -> None:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
        await asyncio.wait_for(self.proc.wait(), 10)

    def kill_now(self) -> None:
        """SIGKILL at once, from inside a callback."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)

    async def stop(self) -> None:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(self.proc.wait(), 30)


@pytest.fixture
async def sink() -> AsyncIterator[RunningSink]:
    async with running_sink() as s:
        yield s


def _mails_for(sink: RunningSink, message_id: int) -> list[tuple[str, str]]:
    """(recipient, Message-ID) of every mail about fax ``message_id`` the relay accepted."""
    found = []
    for mail in sink.received:
        [rcpt] = mail.rcpt_tos
        mid = str(mail.parsed()["Message-ID"])
        if mid == fax_message_id(message_id, rcpt, DOMAIN):
            found.append((rcpt, mid))
    return found


async def test_sigkill_at_each_inbound_step_ends_with_one_mail_each_and_the_fax_read(
    tmp_path: Path, sink: RunningSink
) -> None:
    text = bridge_yaml(
        tmp_path / "state",
        interfax_url="http://127.0.0.1:1",  # replaced below
        relay_port=sink.port,
        extra=(
            "inbound:\n  poll_interval: 0.2s\n  default_route:\n"
            + "".join(f"    - {r}\n" for r in RECIPIENTS)
        ),
    )
    handler = sink.handler
    original_data = type(handler).handle_DATA
    async with running_sandbox(sandbox_settings(step_seconds=0)) as sandbox:
        import httpx

        async with httpx.AsyncClient(base_url=sandbox.base_url) as http:
            control = SandboxControl(http)
            config = tmp_path / "config.yaml"
            config.write_text(text.replace("http://127.0.0.1:1", sandbox.base_url))
            bridge = Bridge(config, tmp_path / "bridge.log")
            faxes: list[int] = []

            async def delivered_and_read(message_id: int) -> bool:
                rcpts = {r for r, _ in _mails_for(sink, message_id)}
                [fax] = [f for f in await control.inbound() if f["messageId"] == message_id]
                return rcpts == set(RECIPIENTS) and fax["imageStatus"] == "READ"

            # 1. Killed while the relay holds DATA: nothing recorded, delivered after restart.
            entered, release = asyncio.Event(), asyncio.Event()

            async def holding(
                self: object, server: SMTP, session: Session, envelope: Envelope
            ) -> str:
                entered.set()
                await release.wait()
                return "451 4.3.0 the test killed the client meanwhile"

            await bridge.start()
            handler.handle_DATA = holding.__get__(handler)  # type: ignore[method-assign]
            faxes.append(await control.receive_fax(minimal_pdf(1)))
            await asyncio.wait_for(entered.wait(), 30)
            await bridge.kill()
            release.set()
            handler.handle_DATA = original_data.__get__(handler)  # type: ignore[method-assign]
            await bridge.start()
            await eventually(lambda: delivered_and_read(faxes[0]), within=60, what="fax 1")

            # 2. Killed right after the relay's 250, before our ledger can record it.
            killed = asyncio.Event()

            async def kill_after_250(
                self: object, server: SMTP, session: Session, envelope: Envelope
            ) -> str:
                status = await original_data(handler, server, session, envelope)
                if not killed.is_set():
                    killed.set()
                    asyncio.get_running_loop().call_soon(bridge.kill_now)
                return status

            handler.handle_DATA = kill_after_250.__get__(handler)  # type: ignore[method-assign]
            faxes.append(await control.receive_fax(minimal_pdf(2)))
            await asyncio.wait_for(killed.wait(), 30)
            await bridge.kill()
            handler.handle_DATA = original_data.__get__(handler)  # type: ignore[method-assign]
            await bridge.start()
            await eventually(lambda: delivered_and_read(faxes[1]), within=60, what="fax 2")

            # 3. Killed while the mark-read request is in flight.
            faxes.append(await control.receive_fax(minimal_pdf(3)))
            await control.faults(latency_ms=5000, paths=[f"/inbound/faxes/{faxes[2]}/mark"])

            async def both_mailed() -> bool:
                return {r for r, _ in _mails_for(sink, faxes[2])} == set(RECIPIENTS)

            await eventually(both_mailed, within=60, what="fax 3 mailed")
            await bridge.kill()
            await control.clear_faults()
            [fax3] = [f for f in await control.inbound() if f["messageId"] == faxes[2]]
            assert fax3["imageStatus"] == "UNREAD"
            await bridge.start()
            await eventually(lambda: delivered_and_read(faxes[2]), within=60, what="fax 3 read")
            await bridge.stop()

    for message_id in faxes:
        per_recipient = Counter(rcpt for rcpt, _ in set(_mails_for(sink, message_id)))
        assert per_recipient == Counter(RECIPIENTS), (message_id, per_recipient)
    total = Counter(m for f in faxes for m in _mails_for(sink, f))
    # Only the kill right after a 250 may repeat a mail, and then with the same Message-ID.
    assert sum(total.values()) <= len(faxes) * len(RECIPIENTS) + 1
    # And nothing else reached the relay: no copy under another Message-ID.
    everything = Counter((m.rcpt_tos[0], str(m.parsed()["Message-ID"])) for m in sink.received)
    assert everything == total
