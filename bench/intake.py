"""Intake benchmark (issue 3 §8): SMTP messages accepted per second against a bare baseline.

Every run offers the same ``--count`` messages, each with a ``--attachment-kb`` KB PDF,
over ``--connections`` concurrent SMTP connections from a separate client process, to:

1. the baseline: a bare aiosmtpd (``loop.create_server`` with ``aiosmtpd.smtp.SMTP``)
   whose handler only writes each message to a file and fsyncs it (in a worker thread,
   as an asyncio server would, so the fsyncs of concurrent sessions overlap);
2. the bridge, intake only: :class:`bridge.service.Service` in this process, its
   InterFAX login refused by the sandbox, so the submitter pauses after its first
   attempt and nothing but intake runs;
3. the bridge as deployed: the same, with the workers submitting every accepted
   message to the sandbox while intake goes on.

The InterFAX sandbox runs in its own process (``python -m bridge sandbox``); all state
files go to one directory (``--dir``, default a temporary directory) on one filesystem.
Then a fresh child process runs the bridge alone and reports its peak RSS above idle
(``VmHWM`` after resetting it through ``/proc/self/clear_refs``) while one message
with a ``--big-mb`` MB attachment is accepted, and until that fax has been submitted.

Not a test: it prints the rates against the goals (bridge >= 0.7x the baseline; peak
RSS above idle <= 3x the message size).

    .venv/bin/python bench/intake.py [--count 2000] [--connections 20] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import json
import os
import pstats
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from benchkit import (  # also puts the repository on sys.path
    PASSWORD,
    USER,
    cpu_seconds,
    sandbox_process,
)

SENDER = "bench@clinic.example.org"
RECIPIENT = "+12125550100@fax.local"
MIB = 1024 * 1024


# -- messages and the client process ------------------------------------------------------


def make_message(
    index: int, attachment_bytes: int, tag: str, body: str = "Please fax the attached document.\n"
) -> bytes:
    """A mail with one PDF attachment of ``attachment_bytes`` (incompressible content)."""
    pdf = b"%PDF-1.4\n%" + os.urandom(max(0, attachment_bytes - 17)) + b"\n%%EOF\n"
    msg = EmailMessage()
    msg["From"] = SENDER
    msg["To"] = RECIPIENT
    msg["Subject"] = f"Bench {tag} {index}"
    msg["Message-ID"] = f"<bench-{tag}-{index}@clinic.example.org>"
    msg.set_content(body)
    msg.add_attachment(pdf, maintype="application", subtype="pdf", filename=f"doc{index}.pdf")
    return msg.as_bytes()


async def offer(port: int, messages: list[bytes], connections: int) -> dict[str, Any]:
    """Send ``messages`` over ``connections`` SMTP connections; time it."""
    import aiosmtplib

    errors: list[str] = []
    accepted = 0
    shares = [messages[i::connections] for i in range(connections)]

    async def connection(share: list[bytes]) -> None:
        nonlocal accepted
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=120)
        await client.connect()
        try:
            for raw in share:
                try:
                    refused, _ = await client.sendmail(SENDER, [RECIPIENT], raw)
                except aiosmtplib.SMTPException as exc:
                    errors.append(repr(exc))
                    continue
                if refused:
                    errors.append(repr(refused))
                else:
                    accepted += 1
        finally:
            with contextlib.suppress(aiosmtplib.SMTPException):
                await client.quit()

    start = time.perf_counter()
    await asyncio.gather(*(connection(share) for share in shares if share))
    seconds = time.perf_counter() - start
    return {"accepted": accepted, "seconds": seconds, "errors": errors[:5], "failed": len(errors)}


def load_child(port: int, count: int, connections: int, attachment_kb: int, tag: str) -> None:
    """The client process: build every message first, then offer them all, timed."""
    messages = [make_message(i, attachment_kb * 1000, tag) for i in range(count)]
    result = asyncio.run(offer(port, messages, connections))
    result["message_bytes"] = len(messages[0])
    print(json.dumps(result), flush=True)


async def run_load(port: int, args: argparse.Namespace, tag: str) -> dict[str, Any]:
    """Run the client process against ``port`` while this event loop serves it."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--load-child", str(port), "--count", str(args.count),
        "--connections", str(args.connections), "--attachment-kb", str(args.attachment_kb),
        "--tag", tag, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"the client process failed ({proc.returncode})")
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


# -- the servers ------------------------------------------------------------------------------


def _write_and_fsync(path: Path, data: bytes) -> None:
    with path.open("wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


class FsyncHandler:
    """The baseline's whole job: each message to its own file, fsynced, then 250."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.count = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.count += 1
        path = self.directory / f"{self.count:07d}.eml"
        await asyncio.to_thread(_write_and_fsync, path, envelope.original_content)
        return "250 2.0.0 OK"


async def baseline(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Offer the load to the bare aiosmtpd baseline."""
    from aiosmtpd.smtp import SMTP

    spool = work / "baseline"
    spool.mkdir()
    handler = FsyncHandler(spool)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(
            handler,
            data_size_limit=64 * MIB,
            enable_SMTPUTF8=False,
            decode_data=False,
            hostname="baseline",
        ),
        host="127.0.0.1",
        port=0,
    )
    try:
        result = await measured(lambda: run_load(server.sockets[0].getsockname()[1], args, "b"))
    finally:
        server.close()
        await server.wait_closed()
    result["stored"] = handler.count
    return result


def bridge_config(
    work: Path,
    name: str,
    *,
    sandbox_port: int,
    password: str,
    max_size: str = "25MB",
    rate_limit: str = "10000000",
) -> Path:
    """A bridge configuration for one run, in its own state directory."""
    text = f"""\
interfax:
  base_url: http://127.0.0.1:{sandbox_port}
  username: {USER}
  password: {password}
state_dir: {work / name}
log_level: warning
smtp_server:
  listen: 127.0.0.1:0
  fax_domain: fax.local
  max_message_size: {max_size}
mail:
  from: fax@bridge.example.org
  relay:
    host: 127.0.0.1
    port: 9
http:
  listen: ""
outbound:
  allowed_senders: ["{SENDER}"]
  default_country: US
  status_poll_interval: 5s
  rate_limits:
    per_sender: {{per_hour: {rate_limit}, per_day: {rate_limit}}}
    global: {{per_hour: {rate_limit}, per_day: {rate_limit}}}
"""
    path = work / f"{name}.yaml"
    path.write_text(text)
    return path


@contextlib.asynccontextmanager
async def running_service(config_path: Path) -> AsyncIterator[Any]:
    """The bridge's Service in this event loop, started and shut down."""
    from bridge.config import load_config
    from bridge.sdnotify import SystemdNotifier
    from bridge.service import Service

    service = Service(load_config(config_path), notifier=SystemdNotifier({}))
    await service.start()
    try:
        yield service
    finally:
        await service.shutdown()


async def bridge(
    args: argparse.Namespace, work: Path, name: str, *, sandbox_port: int, password: str
) -> dict[str, Any]:
    """Offer the load to the bridge; count its jobs afterwards."""
    from bridge.jobs import JobState

    # Limits far above the load: the checks run (as for any busy installation) but never
    # refuse; --no-rate-limits turns them off to show what the checks cost.
    limit = "null" if args.no_rate_limits else "10000000"
    config = bridge_config(
        work, name, sandbox_port=sandbox_port, password=password, rate_limit=limit
    )
    async with running_service(config) as service:
        port = service.listener.port
        profile = cProfile.Profile() if args.profile else None
        result = await measured(lambda: run_load(port, args, name), profile)
        counts = await service.store.count_by_state()
    result["jobs"] = sum(counts.values())
    result["submitted"] = sum(
        n for state, n in counts.items() if state not in (JobState.ACCEPTED, JobState.SUBMITTING)
    )
    if profile is not None:
        result["profile"] = profile
    return result


def _thread_cpu() -> dict[str, float]:
    """CPU seconds of each thread of this process, by thread name (Linux)."""
    import threading

    names = {t.native_id: t.name for t in threading.enumerate()}
    result: dict[str, float] = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        seconds = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        name = names.get(int(task.name), "other")
        key = name.rstrip("0123456789_").rstrip("-_") or name
        result[key] = result.get(key, 0.0) + seconds
    return result


async def measured(
    run: Callable[[], Any], profile: cProfile.Profile | None = None
) -> dict[str, Any]:
    """Run the load and add the server process's CPU use (total and by thread)."""
    before, threads_before = cpu_seconds(os.getpid()), _thread_cpu()
    if profile is not None:
        profile.enable()
    try:
        result: dict[str, Any] = await run()
    finally:
        if profile is not None:
            profile.disable()
    threads = {
        name: seconds - threads_before.get(name, 0.0) for name, seconds in _thread_cpu().items()
    }
    result["server_cpu"] = cpu_seconds(os.getpid()) - before
    result["threads_cpu"] = {k: round(v, 2) for k, v in threads.items() if v >= 0.05}
    return result


# -- peak memory with one large message -----------------------------------------------------


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise SystemExit(f"/proc/self/status has no {field}")


def _reset_peak() -> int:
    """Make VmHWM restart from the current RSS; returns the current RSS in bytes."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status_kib("VmRSS") * 1024


async def rss_child(config_path: Path) -> None:
    """The bridge alone; reports peak RSS over its idle level at each step the parent names.

    Protocol on stdin/stdout, one line each: we print {"port": P}; the parent sends a small
    warm-up message and then "idle" (we wait for every job to be submitted, reset the peak
    and print {"idle": RSS}); it sends the big message and then "accepted" (we print
    {"accepted": peak}); we then wait for its fax to be submitted and print
    {"submitted": peak, "faxes": jobs SUBMITTED (2 when the big fax went out)}.
    """
    from bridge.jobs import JobState

    loop = asyncio.get_running_loop()

    async def command() -> str:
        line: str = await loop.run_in_executor(None, sys.stdin.readline)
        return line.strip()

    async def all_submitted(service: Any) -> None:
        while True:
            counts = await service.store.count_by_state()
            if counts[JobState.ACCEPTED] == counts[JobState.SUBMITTING] == 0:
                return
            await asyncio.sleep(0.05)

    def report(**values: int) -> None:
        print(json.dumps(values), flush=True)

    async with running_service(config_path) as service:
        report(port=service.listener.port)
        assert await command() == "idle"
        await all_submitted(service)
        report(idle=_reset_peak())
        assert await command() == "accepted"
        report(accepted=_status_kib("VmHWM") * 1024)
        await all_submitted(service)
        peak = _status_kib("VmHWM") * 1024
        counts = await service.store.count_by_state()
        report(submitted=peak, faxes=counts[JobState.SUBMITTED])


async def peak_rss(args: argparse.Namespace, work: Path, sandbox_port: int) -> dict[str, int]:
    """Run :func:`rss_child` and feed it the warm-up and the big message."""
    import aiosmtplib

    config = bridge_config(
        work, "rss", sandbox_port=sandbox_port, password=PASSWORD, max_size="64MB"
    )
    # No body text, so no cover page: the attachment alone may use InterFAX's 20 MB.
    big = make_message(0, args.big_mb * 1_000_000, "big", body="")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--rss-child", str(config),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdin is not None
    assert proc.stdout is not None
    values: dict[str, int] = {"message_bytes": len(big)}

    async def expect(key: str) -> int:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 300)
        if not line:
            raise SystemExit(f"the RSS child ended before reporting {key}")
        values.update({k: int(v) for k, v in json.loads(line).items()})
        return values[key]

    async def tell(text: str) -> None:
        assert proc.stdin is not None
        proc.stdin.write(text.encode() + b"\n")
        await proc.stdin.drain()

    try:
        port = await expect("port")
        warm = make_message(1, 50_000, "warm")
        await aiosmtplib.send(warm, sender=SENDER, recipients=[RECIPIENT], port=port,
                              hostname="127.0.0.1", timeout=60)  # fmt: skip
        await tell("idle")
        await expect("idle")
        await aiosmtplib.send(big, sender=SENDER, recipients=[RECIPIENT], port=port,
                              hostname="127.0.0.1", timeout=300)  # fmt: skip
        await tell("accepted")
        await expect("accepted")
        await expect("submitted")
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
        await proc.wait()
    return values


# -- the run ---------------------------------------------------------------------------------


def _line(name: str, result: dict[str, Any], count: int) -> str:
    rate = result["accepted"] / result["seconds"]
    threads = ", ".join(f"{k} {v:.1f}" for k, v in sorted(result["threads_cpu"].items()))
    extra = f", {result['jobs']} jobs" if "jobs" in result else f", {result['stored']} files"
    if "submitted" in result:
        extra += f", {result['submitted']} submitted meanwhile"
    failed = f", {result['failed']} FAILED e.g. {result['errors'][:1]}" if result["failed"] else ""
    return (
        f"{name:<34} {result['accepted']:>5}/{count} in {result['seconds']:6.2f} s ="
        f" {rate:7.1f} msg/s{extra}{failed}\n"
        f"{'':<34} server CPU {result['server_cpu']:.1f} s ({threads})"
    )


async def main_async(args: argparse.Namespace, work: Path) -> None:
    with sandbox_process(work, "--step-seconds", "3600") as (sandbox_port, _):
        base = await baseline(args, work)
        intake_only = await bridge(
            args, work, "bridge-intake", sandbox_port=sandbox_port, password="wrong-password"
        )
        deployed = await bridge(args, work, "bridge-full", sandbox_port=sandbox_port,
                                password=PASSWORD)  # fmt: skip
        print(
            f"{args.count} messages of {base['message_bytes'] / 1000:.0f} kB"
            f" ({args.attachment_kb} KB PDF), {args.connections} connections,"
            f" {os.cpu_count()} CPUs, files in {work},"
            f" bridge rate limits {'off' if args.no_rate_limits else 'on (never reached)'}"
        )
        print(_line("baseline (aiosmtpd + write + fsync)", base, args.count))
        print(_line("bridge, intake only", intake_only, args.count))
        print(_line("bridge, workers submitting too", deployed, args.count))
        base_rate = base["accepted"] / base["seconds"]
        for name, result in (("intake only", intake_only), ("workers too", deployed)):
            ratio = result["accepted"] / result["seconds"] / base_rate
            print(f"ratio bridge ({name}) / baseline: {ratio:.2f}x   (goal >= 0.7x)")
        for name, result in (("intake only", intake_only), ("workers too", deployed)):
            if "profile" in result:
                print(
                    f"\n--- cProfile of the event loop thread, bridge {name} (top 20 by own time)"
                )
                pstats.Stats(result["profile"], stream=sys.stdout).sort_stats(
                    "tottime"
                ).print_stats(20)
        if args.big_mb:
            rss = await peak_rss(args, work, sandbox_port)
            size = rss["message_bytes"]
            if rss["faxes"] != 2:
                print(f"the {args.big_mb} MB fax was NOT submitted (see the log lines above)")
            for step in ("accepted", "submitted"):
                above = rss[step] - rss["idle"]
                print(
                    f"peak RSS above idle until the {args.big_mb} MB attachment was {step}:"
                    f" +{above / MIB:.1f} MiB = {above / size:.2f}x the message"
                    f" ({size / MIB:.1f} MiB as sent; idle {rss['idle'] / MIB:.1f} MiB)"
                    f"   (goal <= 3x)"
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=2000, help="messages per run")
    parser.add_argument("--connections", type=int, default=20, help="concurrent connections")
    parser.add_argument("--attachment-kb", type=int, default=100, help="PDF size per message")
    parser.add_argument("--big-mb", type=int, default=20, help="attachment for the RSS run")
    parser.add_argument("--dir", type=Path, help="where state and spool files go")
    parser.add_argument("--profile", action="store_true", help="cProfile the bridge runs")
    parser.add_argument(
        "--no-rate-limits", action="store_true", help="run the bridge without rate limits"
    )
    parser.add_argument("--load-child", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--rss-child", type=Path, metavar="CONFIG", help=argparse.SUPPRESS)
    parser.add_argument("--tag", default="m", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load_child:
        load_child(args.load_child, args.count, args.connections, args.attachment_kb, args.tag)
        return
    if args.rss_child:
        asyncio.run(rss_child(args.rss_child))
        return
    with tempfile.TemporaryDirectory(prefix="fax-intake-", dir=args.dir) as tmp:
        asyncio.run(main_async(args, Path(tmp)))


if __name__ == "__main__":
    main()
