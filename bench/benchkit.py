"""What the benchmarks share: the sandbox account, a small PDF, ports and processes.

Importing it also puts the repository root on ``sys.path``, so ``python bench/x.py``
finds the ``bridge`` package without installing it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

USER, PASSWORD = "bench", "bench-secret"
NUMBER = "+12125550100"
PDF = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
    b"2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
    b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 612 792]>>endobj\n"
    b"trailer<</Root 1 0 R>>\n%%EOF\n"
)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_listening(
    port: int, proc: subprocess.Popen[bytes], what: str, log: Path | None = None
) -> None:
    """Return once ``proc`` accepts connections on ``port``; exit the benchmark if it dies."""
    detail = (lambda: ":\n" + log.read_text()) if log is not None else (lambda: "")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited early{detail()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{what} did not listen on {port} within 30 s{detail()}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (Linux), to show which side was busy; NaN if gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def sandbox_process(work: Path, *options: str) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """``python -m bridge sandbox`` for the bench account in its own process (so it does
    not share the benchmark's GIL), logging to ``work/sandbox.log``: its port and process.
    """
    port = free_port()
    log = work / "sandbox.log"
    command = [sys.executable, "-m", "bridge", "sandbox", "--listen", f"127.0.0.1:{port}"]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*command, "--username", USER, "--password", PASSWORD, *options],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_listening(port, proc, "the sandbox", log=log)
        yield port, proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)
