"""Email to fax survives SIGKILL and drains on SIGTERM: the bridge as a real process.

The sandbox (automatic status progression) and the relay (a recording aiosmtpd sink) run
in the test's event loop; the bridge runs as ``python -m bridge run -c cfg.yaml`` in a
child process on a fixed SMTP port, and is killed and restarted while mail flows.
Several SMTP clients offer the messages concurrently and, like a real MTA, offer again
every message whose transaction did not end in 250: Message-ID duplicate suppression is
what keeps those re-offers from becoming second faxes.

Every wait is bounded; the only sleeps are polling intervals inside bounded waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiosmtplib
import httpx
import pytest

from bridge.mailbuild import deterministic_message_id
from bridge.sandbox.server import running_sandbox
from bridge.store import DB_FILENAME
from tests.bridge_harness import ALICE, bridge_yaml, load
from tests.conftest import SandboxControl, minimal_pdf, sandbox_settings
from tests.smtp_sink import RunningSink, running_sink

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
#: The domain of ``mail.from`` in bridge_yaml: report Message-IDs are made under it.
REPORT_DOMAIN = "bridge.example.org"
SHUTDOWN_TIMEOUT = 10.0  # bridge_yaml's shutdown_timeout
#: A job whose POST never reached InterFAX before a kill is searched for, then waits the
#: in-doubt grace (``in_doubt_grace: 1s`` below; the sandbox's search has no lag) before it
#: is sent again; the submitter sleeps exactly until then. Generous for a loaded machine.
COMPLETION_BOUND = 90.0
NO_RATE_LIMITS = """\
in_doubt_grace: 1s
rate_limits:
  per_sender: {per_hour: 100000, per_day: 100000}
  global: {per_hour: 100000, per_day: 100000}
"""


# -- the bridge process -------------------------------------------------------------------


def free_port() -> int:
    """A loopback port nobody listens on (bound once and released, so restarts reuse it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def greeting(port: int) -> bytes | None:
    """The first line an SMTP server on ``port`` sends, or None when nobody answers."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 2.0)
    except (OSError, TimeoutError):
        return None
    try:
        line = await asyncio.wait_for(reader.readline(), 5.0)
        if line.startswith(b"220"):
            writer.write(b"QUIT\r\n")
            await writer.drain()
        return line
    except (OSError, TimeoutError):
        return None
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def until(
    check: Callable[[], Awaitable[Any]], *, within: float, what: str, interval: float = 0.01
) -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:g}s waiting for {what}")
        await asyncio.sleep(interval)


class BridgeProcess:
    """``python -m bridge run -c CONFIG`` in a child process, restartable on one port."""

    def __init__(self, config: Path, port: int, log: Path) -> None:
        self.config = config
        self.port = port
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.kills = 0

    def start(self) -> None:
        """Start the bridge (it is ready once :meth:`ready` returns)."""
        # The child must not talk to a systemd that may be supervising the test run.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFY_", "WATCHDOG_"))}
        with self.log.open("ab") as out:
            out.write(f"===== start {self.starts + 1} =====\n".encode())
            out.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bridge", "run", "-c", str(self.config)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=REPO,
                env=env,
            )
        self.starts += 1

    @property
    def running(self) -> bool:
        """True while the child lives."""
        return self.proc is not None and self.proc.poll() is None

    async def ready(self, within: float = 30.0) -> None:
        """Wait until the SMTP listener greets with 220; fail if the process dies first."""

        async def serving() -> bool:
            if not self.running:
                raise AssertionError(f"the bridge exited before it was ready:\n{self.tail()}")
            line = await greeting(self.port)
            return line is not None and line.startswith(b"220")

        await until(serving, within=within, what="the bridge's SMTP listener", interval=0.02)

    async def restart(self) -> None:
        """Start again and wait until ready."""
        self.start()
        await self.ready()

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind runs in the child."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)  # a killed process is reaped at once
        self.kills += 1

    def terminate(self) -> None:
        """SIGTERM: the bridge drains and exits on its own."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)

    async def exit_code(self, within: float) -> int:
        """Wait for the process to end (bounded) and return its exit code."""

        async def ended() -> bool:
            return not self.running

        try:
            await until(ended, within=within, what="the bridge to exit", interval=0.02)
        except AssertionError as exc:
            self.kill()
            raise AssertionError(f"{exc}:\n{self.tail()}") from None
        assert self.proc is not None
        return int(self.proc.returncode)

    def tail(self, lines: int = 40) -> str:
        """The end of the bridge's log, for failure messages."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def log_count(self, needle: str) -> int:
        """How many log lines contain ``needle``."""
        return self.log.read_text(errors="replace").count(needle)


def write_config(tmp_path: Path, *, interfax_url: str, relay_port: int, smtp_port: int) -> Path:
    """bridge_yaml with a fixed SMTP port (restarts keep it) and no rate limits."""
    text = bridge_yaml(
        tmp_path / "state",
        interfax_url=interfax_url,
        relay_port=relay_port,
        outbound=NO_RATE_LIMITS,
    )
    fixed = text.replace("listen: 127.0.0.1:0", f"listen: 127.0.0.1:{smtp_port}", 1)
    assert fixed != text, "bridge_yaml no longer listens on 127.0.0.1:0"
    load(fixed, tmp_path)  # a config error shows here, not as a child that will not start
    path = tmp_path / "cfg.yaml"
    path.write_text(fixed)
    return path


# -- the mail offered ---------------------------------------------------------------------


@dataclass
class Offer:
    """One message to offer, and whether it got its 250."""

    subject: str
    message_id: str
    numbers: list[str]
    raw: bytes
    accepted: bool = False

    @property
    def recipients(self) -> list[str]:
        """Envelope recipients."""
        return [f"{number}@fax.local" for number in self.numbers]


def make_offers(count: int, tag: str) -> list[Offer]:
    """``count`` messages with a one-page PDF; every third has two recipients, every tenth
    goes to a number the sandbox ends busy (so failure reports are exercised too)."""
    pdf = minimal_pdf(1, text="crash test")
    offers = []
    for i in range(count):
        numbers = ["+12125550001" if i % 10 == 9 else f"+1212555{100 + i:04d}"]
        if i % 3 == 0:
            numbers.append(f"+1646555{100 + i:04d}")
        msg = EmailMessage()
        msg["From"] = f"Alice <{ALICE}>"
        msg["To"] = ", ".join(f"{n}@fax.local" for n in numbers)
        msg["Subject"] = f"{tag} {i:02d}"
        msg["Message-ID"] = f"<{tag.lower().replace(' ', '-')}-{i:02d}@clinic.example.org>"
        msg.set_content(f"Attached: document {i}.\n")
        msg.add_attachment(pdf, maintype="application", subtype="pdf", filename=f"doc{i}.pdf")
        offers.append(Offer(msg["Subject"], msg["Message-ID"], numbers, msg.as_bytes()))
    return offers


@dataclass
class Traffic:
    """Concurrent SMTP clients that re-offer every message until it gets a 250.

    For every ``lose_every``-th message the client behaves as if its first 250 never
    arrived (an MTA that timed out after the final dot) and offers it again.
    """

    port: int
    offers: list[Offer]
    clients: int = 5
    lose_every: int = 0
    lost_replies: int = 0
    accepted: int = 0
    reoffers: int = 0
    already_queued: int = 0
    refused: list[str] = field(default_factory=list)

    async def run(self) -> None:
        """Offer everything; returns when every message got a final answer."""
        queue: asyncio.Queue[Offer] = asyncio.Queue()
        for offer in self.offers:
            queue.put_nowait(offer)
        await asyncio.gather(*(self._client(queue) for _ in range(self.clients)))

    async def _client(self, queue: asyncio.Queue[Offer]) -> None:
        while not queue.empty():
            offer = queue.get_nowait()
            await self._deliver(offer, lose_first=self._loses(offer))

    def _loses(self, offer: Offer) -> bool:
        return self.lose_every > 0 and self.offers.index(offer) % self.lose_every == 1

    async def _deliver(self, offer: Offer, *, lose_first: bool) -> None:
        while True:
            try:
                refused, reply = await aiosmtplib.send(
                    offer.raw,
                    sender=ALICE,
                    recipients=offer.recipients,
                    hostname="127.0.0.1",
                    port=self.port,
                    timeout=10,
                )
            except aiosmtplib.SMTPRecipientsRefused as exc:
                if any(r.code >= 500 for r in exc.recipients):
                    self.refused.append(f"{offer.subject}: {exc.recipients}")
                    return
            except aiosmtplib.SMTPResponseException as exc:
                if exc.code >= 500:
                    self.refused.append(f"{offer.subject}: {exc.code} {exc.message}")
                    return
            except (aiosmtplib.SMTPException, OSError):
                pass  # connection refused, reset or timed out: the bridge is down
            else:
                if refused:
                    self.refused.append(f"{offer.subject}: {refused}")
                    return
                if not lose_first:
                    offer.accepted = True
                    self.accepted += 1
                    self.already_queued += reply.startswith("2.0.0 Already queued")
                    return
                lose_first = False
                self.lost_replies += 1
            self.reoffers += 1
            await asyncio.sleep(0.05)


# -- what the bridge, the sandbox and the relay ended with -----------------------------------


def read_jobs(db: Path) -> list[dict[str, Any]]:
    """Every job with its message's Message-ID header, read with our own connection."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5.0)
    try:
        conn.row_factory = sqlite3.Row
        rows = conn.execute(
            "SELECT j.*, m.message_id_header FROM jobs j JOIN messages m ON m.id = j.message_id"
            " ORDER BY j.id"
        ).fetchall()
        return [dict(row) for row in rows]
    finally:
        conn.close()


def jobs_if_readable(db: Path) -> list[dict[str, Any]] | None:
    """Like :func:`read_jobs` while the bridge writes: None when the file is not ready."""
    if not db.exists():
        return None
    try:
        return read_jobs(db)
    except sqlite3.Error:
        return None


def kill_on_report(sink: RunningSink, bridge: BridgeProcess, *, at: int) -> asyncio.Event:
    """Arm the relay to SIGKILL the bridge inside its DATA of report number ``at``.

    The relay has recorded the report, but the bridge dies before it reads the 250: the
    same window as a kill between the relay's 250 and the bridge's commit. The hook is set
    on the handler instance because aiosmtpd reads the hooks when each connection starts,
    and the bridge opens a new relay connection for every report.
    """
    handler = sink.handler
    original = handler.handle_DATA
    killed = asyncio.Event()

    async def handle_DATA(server: Any, session: Any, envelope: Any) -> str:
        reply = await original(server, session, envelope)
        if not killed.is_set() and len(handler.received) >= at:
            bridge.kill()
            killed.set()
        return reply

    handler.handle_DATA = handle_DATA  # type: ignore[method-assign]
    return killed


async def finished_jobs(
    db: Path, expected: int, bridge: BridgeProcess, *, within: float = COMPLETION_BOUND
) -> list[dict[str, Any]]:
    """Wait until ``expected`` jobs exist and every one is REPORTED."""

    async def done() -> list[dict[str, Any]] | None:
        if not bridge.running:
            raise AssertionError(f"the bridge died:\n{bridge.tail()}")
        jobs = jobs_if_readable(db)
        if jobs is None or len(jobs) < expected:
            return None
        return jobs if all(job["state"] == "reported" for job in jobs) else None

    try:
        result: list[dict[str, Any]] = await until(
            done, within=within, what="every job REPORTED", interval=0.1
        )
    except AssertionError:
        states = Counter(job["state"] for job in jobs_if_readable(db) or [])
        raise AssertionError(f"jobs by state: {dict(states)}\n{bridge.tail()}") from None
    return result


def check_exactly_once(
    offers: list[Offer],
    jobs: list[dict[str, Any]],
    faxes: list[dict[str, Any]],
    sink: RunningSink,
    *,
    max_duplicate_reports: int,
) -> dict[str, int]:
    """One job, one fax and one report per (message, recipient); returns the counts."""
    pairs = {(o.subject, n.lstrip("+")) for o in offers for n in o.numbers}
    assert all(o.accepted for o in offers)
    assert len(jobs) == len(pairs), "a re-offered message created a second job"
    assert {(j["message_id_header"], j["destination"]) for j in jobs} == {
        (o.message_id, n) for o in offers for n in o.numbers
    }

    by_reference = Counter(fax["reference"] for fax in faxes)
    by_content = Counter((fax["contact"], str(fax["faxNumber"]).lstrip("+")) for fax in faxes)
    assert [ref for ref, n in by_reference.items() if n > 1] == [], "a reference sent twice"
    assert [key for key, n in by_content.items() if n > 1] == [], "resubmitted under a new ref"
    assert set(by_content) == pairs
    assert set(by_reference) == {job["reference"] for job in jobs}
    assert {job["fax_id"] for job in jobs} == {fax["id"] for fax in faxes}

    report_ids = [str(mail.parsed()["Message-ID"]) for mail in sink.received]
    expected_ids = {
        deterministic_message_id("report", job["reference"], domain=REPORT_DOMAIN) for job in jobs
    }
    assert set(report_ids) == expected_ids, "a job without a report, or a stray report"
    duplicates = len(report_ids) - len(expected_ids)
    assert duplicates <= max_duplicate_reports, f"{duplicates} repeated reports"
    assert all(mail.rcpt_tos == [ALICE] for mail in sink.received)
    return {
        "jobs": len(jobs),
        "faxes": len(faxes),
        "reports": len(report_ids),
        "repeated reports": duplicates,
    }


# -- the tests ------------------------------------------------------------------------------


async def test_sigkill_at_three_points_while_50_messages_flow_loses_and_repeats_nothing(
    tmp_path: Path,
) -> None:
    started = time.monotonic()
    offers = make_offers(50, "Crash test")
    async with (
        running_sandbox(sandbox_settings(step_seconds=0.05)) as sandbox,
        running_sink() as sink,
        httpx.AsyncClient(base_url=sandbox.base_url) as http,
    ):
        control = SandboxControl(http)
        port = free_port()
        config = write_config(
            tmp_path, interfax_url=sandbox.base_url, relay_port=sink.port, smtp_port=port
        )
        db = tmp_path / "state" / DB_FILENAME
        bridge = BridgeProcess(config, port, tmp_path / "bridge.log")
        bridge.start()
        try:
            await bridge.ready()
            traffic = Traffic(port, offers, clients=5, lose_every=7)
            flow = asyncio.create_task(traffic.run())

            # 1. Ten messages in: kill while intake and submission are both busy.
            async def ten_accepted() -> bool:
                return traffic.accepted >= 10

            await until(ten_accepted, within=30, what="10 accepted messages")
            bridge.kill()
            await bridge.restart()

            # 2. While faxes are being submitted: a job is SUBMITTING right now.
            before = len(await control.outbound())

            async def submitting() -> bool:
                jobs = jobs_if_readable(db) or []
                busy = any(job["state"] == "submitting" for job in jobs)
                return busy and len(await control.outbound()) >= before + 3

            await until(submitting, within=30, what="a job being submitted")
            bridge.kill()
            await bridge.restart()

            # 3. While reports are being sent: inside the relay's DATA of the next report
            # (there is one: the job cut short by kill 2 is not reported yet, though it may
            # wait out the in-doubt grace first).
            killed = kill_on_report(sink, bridge, at=len(sink.received) + 1)
            await asyncio.wait_for(killed.wait(), COMPLETION_BOUND)
            await bridge.restart()

            await asyncio.wait_for(flow, 60)
            assert traffic.refused == []
            assert traffic.lost_replies == 7
            # Each one re-offered after its lost 250 is recognised by its Message-ID.
            assert traffic.already_queued >= traffic.lost_replies
            await finished_jobs(db, sum(len(o.numbers) for o in offers), bridge)
            bridge.terminate()
            assert await bridge.exit_code(SHUTDOWN_TIMEOUT + 5) == 0, bridge.tail()
        finally:
            if bridge.running:
                bridge.kill()
        faxes = await control.outbound()

    # Each kill can repeat at most one report, always under the same Message-ID: the one
    # the relay accepted just before the bridge could record it.
    counts = check_exactly_once(
        offers, read_jobs(db), faxes, sink, max_duplicate_reports=bridge.kills
    )
    print(
        f"\ncrash test: {len(offers)} messages, {bridge.kills} kills, {bridge.starts} starts,"
        f" {traffic.reoffers} re-offers ({traffic.lost_replies} after a lost 250,"
        f" {traffic.already_queued} answered 'already queued'),"
        f" {bridge.log_count('were being submitted when we stopped')} start(s) with in-doubt"
        f" jobs, {bridge.log_count('reconciled, fax')} fax(es) adopted by search,"
        f" {counts}, {time.monotonic() - started:.1f}s"
    )


async def test_sigterm_while_messages_flow_drains_exits_0_and_completes_after_restart(
    tmp_path: Path,
) -> None:
    started = time.monotonic()
    offers = make_offers(30, "Drain test")
    async with (
        running_sandbox(sandbox_settings(step_seconds=0.05)) as sandbox,
        running_sink() as sink,
        httpx.AsyncClient(base_url=sandbox.base_url) as http,
    ):
        control = SandboxControl(http)
        port = free_port()
        config = write_config(
            tmp_path, interfax_url=sandbox.base_url, relay_port=sink.port, smtp_port=port
        )
        db = tmp_path / "state" / DB_FILENAME
        bridge = BridgeProcess(config, port, tmp_path / "bridge.log")
        # Slow InterFAX answers keep the workers busy with a request when SIGTERM comes,
        # so the drain lasts long enough for a new SMTP session to see its 421.
        await control.faults(latency_ms=1500, paths=["/outbound"])
        bridge.start()
        try:
            await bridge.ready()
            traffic = Traffic(port, offers, clients=4)
            flow = asyncio.create_task(traffic.run())

            async def flowing() -> bool:
                jobs = jobs_if_readable(db) or []
                return traffic.accepted >= 10 and any(j["state"] == "submitting" for j in jobs)

            await until(flowing, within=30, what="10 accepted messages and a submission")
            still_flowing = not flow.done()
            bridge.terminate()
            greetings: list[bytes] = []

            async def refused_or_gone() -> bool:
                if not bridge.running:
                    return True
                line = await greeting(port)
                greetings.append(line or b"")
                return line is not None and line.startswith(b"421")

            await until(refused_or_gone, within=SHUTDOWN_TIMEOUT, what="the drain", interval=0.005)
            assert await bridge.exit_code(SHUTDOWN_TIMEOUT + 5) == 0, bridge.tail()
            assert still_flowing, "the messages had stopped flowing before SIGTERM"
            assert greetings, "no SMTP session could be opened while draining"
            assert greetings[-1].startswith(b"421 4.3.2"), greetings[-3:]
            accepted_at_stop = traffic.accepted

            await control.clear_faults()
            await bridge.restart()
            await asyncio.wait_for(flow, 60)
            assert traffic.refused == []
            await finished_jobs(db, sum(len(o.numbers) for o in offers), bridge)
            bridge.terminate()
            assert await bridge.exit_code(SHUTDOWN_TIMEOUT + 5) == 0, bridge.tail()
        finally:
            if bridge.running:
                bridge.kill()
        faxes = await control.outbound()

    # No kill here: a drain that finished its work in time repeats no report.
    counts = check_exactly_once(offers, read_jobs(db), faxes, sink, max_duplicate_reports=0)
    print(
        f"\ndrain test: {len(offers)} messages, 421 seen during the drain, {accepted_at_stop}"
        f" accepted before SIGTERM, {traffic.reoffers} re-offers, {counts},"
        f" {time.monotonic() - started:.1f}s"
    )


async def test_report_cut_short_by_sigkill_is_sent_again_at_restart_with_the_same_message_id(
    tmp_path: Path,
) -> None:
    offer = make_offers(2, "Cut short")[1]  # one recipient
    async with (
        running_sandbox(sandbox_settings(step_seconds=0.05)) as sandbox,
        running_sink() as sink,
    ):
        port = free_port()
        config = write_config(
            tmp_path, interfax_url=sandbox.base_url, relay_port=sink.port, smtp_port=port
        )
        db = tmp_path / "state" / DB_FILENAME
        bridge = BridgeProcess(config, port, tmp_path / "bridge.log")
        killed = kill_on_report(sink, bridge, at=1)
        bridge.start()
        try:
            await bridge.ready()
            traffic = Traffic(port, [offer], clients=1)
            await asyncio.wait_for(traffic.run(), 30)
            await asyncio.wait_for(killed.wait(), 30)
            await bridge.restart()
            # The dead process left its claim on the report; a restart must not wait it out.
            [job] = await finished_jobs(db, 1, bridge, within=30)
            bridge.terminate()
            assert await bridge.exit_code(SHUTDOWN_TIMEOUT + 5) == 0, bridge.tail()
        finally:
            if bridge.running:
                bridge.kill()
    first, second = (mail.parsed() for mail in sink.received)
    assert first["Message-ID"] == second["Message-ID"]
    assert first["Message-ID"] == deterministic_message_id(
        "report", job["reference"], domain=REPORT_DOMAIN
    )
    assert len(sink.received) == 2
