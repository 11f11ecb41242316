"""Submission benchmark (issue 2 §7): our async client against the official one, same run.

Starts the InterFAX sandbox in a subprocess (``python -m bridge sandbox``, the
product's own CLI) over HTTPS with a trustme CA, adds latency through the
sandbox's fault API, then:

1. sends ``--count`` faxes with a small PDF through :class:`InterfaxClient`
   with at most ``--concurrency`` requests in flight;
2. sends the same number through the official ``interfax==1.0.0`` client the
   way its README shows, one after another, in a worker thread. It is pointed
   at the sandbox as shared/interfax-api.md §15 describes: ``REQUESTS_CA_BUNDLE``
   names the test CA and the instance's ``DOMAIN`` is set to ``host:port``;
   nothing else is patched;
3. uploads a 20 MB document with our client in a fresh child process and
   prints its peak RSS above the level before the document existed.

The sandbox runs in its own process so that it does not share the clients'
interpreter (and GIL). Not a test: it prints numbers against the goals
(>= 10x the official client, <= 1.3x the bound N x latency / concurrency,
at most two copies of the document in memory).

    .venv/bin/python bench/submit.py [--count 300] [--concurrency 16] [--latency-ms 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import trustme
from benchkit import (  # also puts the repository on sys.path
    NUMBER,
    PASSWORD,
    PDF,
    USER,
    cpu_seconds,
    sandbox_process,
)

from bridge.faxmodels import FaxDocument, SendOptions
from bridge.interfax import InterfaxClient

UPLOAD_SIZE = 20_000_000  # "20 MB"; InterFAX caps documents at 20 MB (§10)


def _control(base_url: str, ctx: ssl.SSLContext, path: str, payload: object) -> object:
    request = urllib.request.Request(
        base_url + path,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, context=ctx, timeout=10) as reply:
        body = reply.read()
    return json.loads(body) if body.strip() else None


async def _ours(base_url: str, ca: Path, count: int, concurrency: int) -> tuple[float, int]:
    document = FaxDocument("bench.pdf", "application/pdf", PDF)
    gate = asyncio.Semaphore(concurrency)
    async with InterfaxClient(
        base_url, USER, PASSWORD, ca_bundle=ca, max_connections=concurrency
    ) as client:

        async def one(index: int) -> int:
            async with gate:
                return await client.send_fax(
                    NUMBER, [document], SendOptions(reference=f"bench-ours-{index}")
                )

        start = time.perf_counter()
        ids = await asyncio.gather(*(one(i) for i in range(count)))
        elapsed = time.perf_counter() - start
    return elapsed, len(set(ids))


def _official(port: int, ca: Path, pdf_path: Path, count: int) -> tuple[float, int]:
    from interfax import InterFAX  # type: ignore[import-untyped]

    os.environ["REQUESTS_CA_BUNDLE"] = str(ca)
    client = InterFAX(username=USER, password=PASSWORD)
    client.DOMAIN = f"127.0.0.1:{port}"
    ids = set()
    start = time.perf_counter()
    for _ in range(count):
        fax = client.deliver(fax_number=NUMBER, files=[str(pdf_path)])
        ids.add(fax.id)
    return time.perf_counter() - start, len(ids)


def _in_thread(port: int, ca: Path, pdf_path: Path, count: int) -> tuple[float, int]:
    result: list[tuple[float, int]] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            result.append(_official(port, ca, pdf_path, count))
        except BaseException as exc:
            failure.append(exc)

    worker = threading.Thread(target=run, name="official-interfax")
    worker.start()
    worker.join()
    if failure:
        raise failure[0]
    return result[0]


def _status_kib(field: str) -> int | None:
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return None


def _reset_peak() -> int:
    """Reset the peak-RSS mark to the current RSS (Linux) and return the current RSS in bytes.

    An exec'd child inherits its parent's peak in ``getrusage``'s ``ru_maxrss``, so the
    child reads ``VmHWM`` of its own address space instead where Linux offers it.
    """
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return _peak()
    return (_status_kib("VmRSS") or 0) * 1024


def _peak() -> int:
    hwm = _status_kib("VmHWM")
    if hwm is not None:
        return hwm * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


async def _upload_child(base_url: str, ca: Path, size: int) -> None:
    async with InterfaxClient(base_url, USER, PASSWORD, ca_bundle=ca) as client:
        await client.balance()  # warm the pool, TLS and imports before measuring
        before = _reset_peak()
        # Building the document is the caller's business (it briefly needs two copies
        # here); the peak mark restarts once it exists, so only the upload is measured.
        document = b"%PDF-1.4\n" + os.urandom(size - 9)
        with_document = _reset_peak()
        start = time.perf_counter()
        ref = await client.upload_document("big.pdf", document)
        elapsed = time.perf_counter() - start
        peak = _peak()
        session = await client.get_document(ref)
    print(
        json.dumps(
            {
                "size": size,
                "before": before,
                "with_document": with_document,
                "peak": peak,
                "seconds": elapsed,
                "uploaded": session.uploaded,
                "status": session.status,
            }
        )
    )


def _upload(base_url: str, ca: Path, size: int) -> dict[str, float]:
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--upload-child",
            base_url,
            "--ca",
            str(ca),
            "--size",
            str(size),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--latency-ms", type=int, default=20)
    parser.add_argument("--size", type=int, default=UPLOAD_SIZE, help="upload size in bytes")
    parser.add_argument("--upload-child", metavar="BASE_URL", help=argparse.SUPPRESS)
    parser.add_argument("--ca", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.upload_child:
        asyncio.run(_upload_child(args.upload_child, args.ca, args.size))
        return

    with tempfile.TemporaryDirectory(prefix="fax-bench-") as tmp:
        tmpdir = Path(tmp)
        authority = trustme.CA()
        cert = authority.issue_cert("127.0.0.1", "localhost")
        ca, chain, key = tmpdir / "ca.pem", tmpdir / "chain.pem", tmpdir / "key.pem"
        authority.cert_pem.write_to_path(str(ca))
        cert.private_key_pem.write_to_path(str(key))
        for i, blob in enumerate(cert.cert_chain_pems):
            blob.write_to_path(str(chain), append=i > 0)
        pdf_path = tmpdir / "bench.pdf"
        pdf_path.write_bytes(PDF)
        tls = ("--tls-cert", str(chain), "--tls-key", str(key))
        with sandbox_process(tmpdir, *tls, "--step-seconds", "3600") as (port, proc):
            base_url = f"https://127.0.0.1:{port}"
            ctx = ssl.create_default_context(cafile=str(ca))
            _control(base_url, ctx, "/_sandbox/faults", {"latency_ms": args.latency_ms})
            n, c, latency = args.count, args.concurrency, args.latency_ms / 1000
            server0, client0 = cpu_seconds(proc.pid), time.process_time()
            ours, ours_ids = asyncio.run(_ours(base_url, ca, n, c))
            server1, client1 = cpu_seconds(proc.pid), time.process_time()
            theirs, their_ids = _in_thread(port, ca, pdf_path, n)
            bound = n * latency / c
            print(f"faxes: {n}, added latency: {args.latency_ms} ms, our concurrency: {c}")
            print(f"ours (async, {c} in flight):      {ours:8.3f} s  ({ours_ids} distinct fax ids)")
            print(f"  CPU during our run: client {client1 - client0:.3f} s,"
                  f" sandbox {server1 - server0:.3f} s, on {os.cpu_count()} CPUs")  # fmt: skip
            print(
                f"official interfax 1.0.0 (serial): {theirs:8.3f} s  ({their_ids} distinct fax ids)"
            )
            print(f"speed-up over official: {theirs / ours:6.1f}x   (goal >= 10x)")
            print(f"bound N*latency/concurrency: {bound:.3f} s; ours / bound: {ours / bound:.2f}x"
                  "   (goal <= 1.3x)")  # fmt: skip
            _control(base_url, ctx, "/_sandbox/faults", {"latency_ms": 0})
            up = _upload(base_url, ca, args.size)
            growth, mib = up["peak"] - up["before"], 1024 * 1024
            print(
                f"upload of {up['size'] / 1e6:.1f} MB ({up['status']}, {up['uploaded']:.0f} bytes"
                f" received) in {up['seconds']:.2f} s: RSS before the document"
                f" {up['before'] / mib:.1f} MiB, with it {up['with_document'] / mib:.1f} MiB,"
                f" peak during upload {up['peak'] / mib:.1f} MiB"
            )
            print(
                f"peak RSS above the level before the document existed: +{growth / mib:.1f} MiB"
                f" = {growth / up['size']:.2f} copies of the document (goal <= 2)"
            )


if __name__ == "__main__":
    main()
