"""Inbound benchmark (issue 4 §6): drain 500 received faxes into a local SMTP sink.

Starts the InterFAX sandbox (``python -m bridge sandbox``) and an aiosmtpd sink, each in
its own process so neither shares this interpreter's GIL, receives ``--count`` faxes
with a small PDF through the sandbox's control API and adds ``--latency-ms`` to every
API request. For each concurrency it then measures, against the same sandbox state:

1. the concurrency bound: a bare HTTP/1.1 client that lists the unread faxes page by
   page and, ``concurrency`` at a time, fetches each image and marks it read. Those
   requests are what no bridge can do without, so their drain time is the best any
   client of this API (the latency plus the sandbox's own handling) can reach;
2. the bridge: one :meth:`InboundWorker.poll_once` that lists, downloads, mails and
   marks every fax, with the durable store (WAL, ``synchronous=FULL``) in a temporary
   directory and ``inbound.concurrency`` set to the concurrency.

Goal: the bridge's drain time <= 1.25x the bound. The nominal bound,
``N x 2 requests x latency / concurrency``, is printed too: the bound measured in the
same run exceeds it by the sandbox's handling and timer slack. Not a test: it prints
numbers.

    .venv/bin/python bench/inbound.py [--count 500] [--latency-ms 20] [--concurrency 1,4,16]
                                      [--repeat 3]

Each concurrency is measured ``--repeat`` times, bound then bridge each time, and the
median is shown with the spread of the ratios: these machines are shared, and their
speed drifts from one minute to the next.

Bridge CPU is this process's (event loop and store thread); the sandbox and the sink
share the same two cores.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from benchkit import (  # also puts the repository on sys.path
    NUMBER,
    PASSWORD,
    PDF,
    USER,
    cpu_seconds,
    free_port,
    sandbox_process,
    wait_listening,
)

from bridge.config import parse_config
from bridge.inbound import InboundSettings, InboundWorker
from bridge.interfax import InterfaxClient
from bridge.mailbuild import MailAddress
from bridge.mailer import Mailer, RelaySettings
from bridge.render import TemplateRenderer
from bridge.store import Store
from bridge.workers import AuthGate

CALLS_PER_FAX = 2  # GET /inbound/faxes/{id}/image, POST /inbound/faxes/{id}/mark
PAGE_SIZE = 25


# -- the sink process -------------------------------------------------------------------


def serve_sink(port: int) -> None:
    """An aiosmtpd relay that accepts everything and prints how many mails it got on SIGTERM."""
    from aiosmtpd.smtp import SMTP

    received = 0

    class Handler:
        async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
            nonlocal received
            received += 1
            return "250 2.0.0 OK"

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        server = await loop.create_server(
            lambda: SMTP(Handler(), hostname="sink.bench"), host="127.0.0.1", port=port
        )
        await stop.wait()
        server.close()
        print(received, flush=True)

    asyncio.run(main())


# -- the baseline: only the API requests, with a bare HTTP/1.1 client ------------------


class _BareHttp:
    """One keep-alive HTTP/1.1 connection; just enough for the sandbox's answers.

    The baseline's client does nothing but write the request and read the answer, so
    the drain time it measures is what the API (latency plus the sandbox's handling)
    allows at a given concurrency: the bound no client of this sandbox can beat.
    """

    def __init__(self, host: str, port: int) -> None:
        self._host, self._port = host, port
        token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        self._auth = f"Authorization: Basic {token}\r\nHost: {host}:{port}\r\n"
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def request(self, method: str, target: str) -> bytes:
        if self._streams is None:
            self._streams = await asyncio.open_connection(self._host, self._port)
        reader, writer = self._streams
        writer.write(
            f"{method} {target} HTTP/1.1\r\n{self._auth}Content-Length: 0\r\n\r\n".encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        body = await reader.readexactly(length)
        if status not in (200, 204):
            raise SystemExit(f"baseline: {method} {target} answered {status}: {body[:200]!r}")
        return body

    def close(self) -> None:
        if self._streams is not None:
            self._streams[1].close()


async def _api_only(host: str, port: int, count: int, concurrency: int) -> float:
    """List every unread fax page by page and, ``concurrency`` at a time, fetch its
    image and mark it read: the requests the bridge cannot do without, nothing else."""
    lister = _BareHttp(host, port)
    idle = [_BareHttp(host, port) for _ in range(concurrency)]
    gate = asyncio.Semaphore(concurrency)
    done = 0

    async def one(message_id: int) -> None:
        nonlocal done
        async with gate:
            http = idle.pop()
            try:
                await http.request("GET", f"/inbound/faxes/{message_id}/image")
                await http.request("POST", f"/inbound/faxes/{message_id}/mark?unread=false")
            finally:
                idle.append(http)
            done += 1

    start = time.perf_counter()
    async with asyncio.TaskGroup() as tasks:
        last_id: int | None = None
        while True:
            cursor = f"&lastId={last_id}" if last_id is not None else ""
            page = json.loads(
                await lister.request(
                    "GET", f"/inbound/faxes?unreadOnly=true&limit={PAGE_SIZE}{cursor}"
                )
            )
            for fax in page:
                tasks.create_task(one(int(fax["messageId"])))
            if len(page) < PAGE_SIZE:
                break
            last_id = int(page[-1]["messageId"])
    elapsed = time.perf_counter() - start
    for http in (lister, *idle):
        http.close()
    if done != count:
        raise SystemExit(f"baseline drained {done} of {count} faxes")
    return elapsed


# -- the benchmark ----------------------------------------------------------------------


async def _receive(control: httpx.AsyncClient, count: int) -> None:
    gate = asyncio.Semaphore(16)

    async def one(index: int) -> None:
        async with gate:
            reply = await control.post(
                "/_sandbox/inbound",
                files={"file": ("fax.pdf", PDF, "application/pdf")},
                data={"phoneNumber": NUMBER, "callerId": "+12125550199", "remoteCSID": "BENCH"},
            )
            reply.raise_for_status()

    await asyncio.gather(*(one(i) for i in range(count)))


def _settings(state_dir: Path, concurrency: int) -> InboundSettings:
    config = parse_config(
        f"interfax:\n  username: {USER}\n  password: {PASSWORD}\n"
        f"state_dir: {state_dir}\n"
        "mail:\n  from: fax@bench.example.org\n"
        f"inbound:\n  concurrency: {concurrency}\n"
        f'  routes:\n    "{NUMBER}": [desk@bench.example.org]\n',
        source="bench",
        environ={},
    )
    return InboundSettings.from_config(config, sender=MailAddress("fax@bench.example.org"))


async def _prepare(control: httpx.AsyncClient, count: int, latency_ms: int) -> None:
    """A fresh sandbox holding ``count`` unread faxes, with the latency switched on."""
    (await control.delete("/_sandbox/faults")).raise_for_status()
    (await control.post("/_sandbox/reset")).raise_for_status()
    await _receive(control, count)
    faults = {"latency_ms": latency_ms, "paths": ["/inbound"]}
    (await control.post("/_sandbox/faults", json=faults)).raise_for_status()


async def _all_read(control: httpx.AsyncClient) -> bool:
    (await control.delete("/_sandbox/faults")).raise_for_status()
    listed = (await control.get("/_sandbox/inbound")).json()
    return all(fax["imageStatus"] == "READ" for fax in listed)


async def _run_one(
    base_url: str, sink_port: int, count: int, latency_ms: int, concurrency: int
) -> dict[str, float]:
    """The baseline's drain time, then the bridge's, against the same sandbox state."""
    host, port = base_url.removeprefix("http://").rsplit(":", 1)
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as control:
        await _prepare(control, count, latency_ms)
        baseline = await _api_only(host, int(port), count, concurrency)
        if not await _all_read(control):
            raise SystemExit("the baseline left faxes unread")
        await _prepare(control, count, latency_ms)
        with tempfile.TemporaryDirectory(prefix="fax-bridge-bench-") as tmp:
            store = await Store.open(Path(tmp))
            client = InterfaxClient(base_url, USER, PASSWORD, max_connections=concurrency + 2)
            try:
                worker = InboundWorker(
                    store,
                    client,
                    Mailer(RelaySettings("127.0.0.1", sink_port, timeout=30)),
                    TemplateRenderer(),
                    _settings(Path(tmp), concurrency),
                    gate=AuthGate("InterFAX"),
                )
                cpu = time.process_time()
                start = time.perf_counter()
                report = await worker.poll_once()
                elapsed = time.perf_counter() - start
                cpu = time.process_time() - cpu
            finally:
                await client.aclose()
                await store.close()
        if report.delivered != count or not await _all_read(control):
            raise SystemExit(f"incomplete drain: {report}")
    return {"elapsed": elapsed, "cpu": cpu, "baseline": baseline}


async def _bench(args: argparse.Namespace, base_url: str, sink_port: int) -> None:
    latency = args.latency_ms / 1000
    pages = -(-args.count // PAGE_SIZE)
    print(
        f"{args.count} inbound faxes, {args.latency_ms} ms added to each InterFAX request, "
        f"{CALLS_PER_FAX} requests of its own per fax, {pages} list pages of {PAGE_SIZE}; "
        f"each concurrency measured {args.repeat} times (bound, then bridge), median shown"
    )
    for concurrency in sorted(args.concurrency):
        runs = [
            await _run_one(base_url, sink_port, args.count, args.latency_ms, concurrency)
            for _ in range(args.repeat)
        ]
        ratios = sorted(run["elapsed"] / run["baseline"] for run in runs)
        elapsed = statistics.median(run["elapsed"] for run in runs)
        baseline = statistics.median(run["baseline"] for run in runs)
        cpu = statistics.median(run["cpu"] for run in runs)
        spread = f" (runs {ratios[0]:.2f}x to {ratios[-1]:.2f}x)" if len(runs) > 1 else ""
        print(
            f"concurrency {concurrency:3d}: bridge drained in {elapsed:.2f} s; "
            f"concurrency bound (API requests only, same run) {baseline:.2f} s; "
            f"ratio {statistics.median(ratios):.2f}x{spread} (goal <= 1.25x)"
        )
        nominal = args.count * CALLS_PER_FAX * latency / concurrency
        if nominal:
            print(
                f"{'':17s}nominal bound N x {CALLS_PER_FAX} x {args.latency_ms} ms / "
                f"{concurrency} = {nominal:.2f} s (bridge {elapsed / nominal:.2f}x, "
                f"API-only {baseline / nominal:.2f}x: the sandbox's own handling and timers)"
            )
        print(
            f"{'':17s}{args.count / elapsed:.0f} faxes/s, bridge CPU {cpu:.2f} s "
            f"({cpu / args.count * 1000:.1f} ms per fax)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--latency-ms", type=int, default=20)
    parser.add_argument(
        "--concurrency",
        type=lambda text: [int(x) for x in text.split(",")],
        default=[1, 4, 16],
        help="comma-separated values of inbound.concurrency to run (default 1,4,16)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="runs per concurrency; the median is shown (default 3: these machines are noisy)",
    )
    parser.add_argument("--serve-sink", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_sink:
        serve_sink(args.serve_sink)
        return
    sink_port = free_port()
    sink = subprocess.Popen(
        [sys.executable, __file__, "--serve-sink", str(sink_port)], stdout=subprocess.PIPE
    )
    with (
        tempfile.TemporaryDirectory(prefix="fax-bridge-bench-") as work,
        sandbox_process(Path(work)) as (sandbox_port, sandbox),
    ):
        try:
            wait_listening(sink_port, sink, "sink")
            asyncio.run(_bench(args, f"http://127.0.0.1:{sandbox_port}", sink_port))
        finally:
            sandbox_cpu, sink_cpu = cpu_seconds(sandbox.pid), cpu_seconds(sink.pid)
            sink.terminate()
            out, _ = sink.communicate(timeout=30)
    mails = int(out.strip() or 0)
    expected = args.count * len(args.concurrency) * args.repeat
    print(
        f"sink received {mails} mails (expected {expected}); "
        f"CPU: sandbox {sandbox_cpu:.2f} s, sink {sink_cpu:.2f} s"
    )
    if mails != expected:
        raise SystemExit("the sink did not receive exactly one mail per fax")


if __name__ == "__main__":
    main()
