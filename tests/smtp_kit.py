"""Helpers for the SMTP dialogue tests: configurations, messages, and a look at the database.

The database is read with a separate sqlite3 connection, as another process would: what
it shows after a 250 is what a crash at that moment would have left on disk.
"""

from __future__ import annotations

import socket
import sqlite3
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager, closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bridge.store import DB_FILENAME
from tests.bridge_harness import ALICE, RunningBridge, bridge_yaml, load, running_bridge
from tests.smtp_probe import SmtpProbe

#: A valid US number that the default policy (allowed_countries [US]) accepts.
FAX = "+12025550100@fax.local"


def unused_port() -> int:
    """A loopback TCP port nobody listens on: connections to it are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def config_text(
    state_dir: Path,
    *,
    interfax_url: str | None = None,
    relay_port: int | None = None,
    smtp: Mapping[str, Any] | None = None,
    outbound: Mapping[str, Any] | None = None,
) -> str:
    """The harness configuration with ``smtp_server`` and ``outbound`` keys overridden.

    Without ``interfax_url`` InterFAX is a port nobody listens on: the SMTP dialogue
    must not depend on it (nothing is ever sent to InterFAX inside a transaction).
    """
    text = bridge_yaml(
        state_dir,
        interfax_url=interfax_url or f"http://127.0.0.1:{unused_port()}",
        relay_port=relay_port or unused_port(),
    )
    data = yaml.safe_load(text)
    data = _merge(data, {"smtp_server": dict(smtp or {}), "outbound": dict(outbound or {})})
    return str(yaml.safe_dump(data, sort_keys=False))


@asynccontextmanager
async def bridge_with(
    tmp_path: Path,
    *,
    interfax_url: str | None = None,
    relay_port: int | None = None,
    smtp: Mapping[str, Any] | None = None,
    outbound: Mapping[str, Any] | None = None,
    state_dir: Path | None = None,
) -> AsyncIterator[RunningBridge]:
    """A running service configured by :func:`config_text` (state in ``tmp_path/state``)."""
    text = config_text(
        state_dir or tmp_path / "state",
        interfax_url=interfax_url,
        relay_port=relay_port,
        smtp=smtp,
        outbound=outbound,
    )
    async with running_bridge(load(text, tmp_path)) as bridge:
        yield bridge


def mail(
    *,
    from_: str | None = f"Alice <{ALICE}>",
    message_id: str = "<probe-1@clinic.example.org>",
    headers: tuple[str, ...] = (),
    body: str = "Please fax this page.\r\n",
) -> bytes:
    """A small plain-text message with CRLF line ends (as it travels in DATA)."""
    lines = [f"From: {from_}"] if from_ is not None else []
    lines += [
        f"To: {FAX}",
        "Subject: Lab results",
        f"Message-ID: {message_id}",
        "Date: Mon, 01 Jan 2024 10:00:00 +0000",
        *headers,
        "",
    ]
    return ("\r\n".join(lines) + "\r\n" + body).encode("ascii")


def mail_of_size(size: int, **kwargs: Any) -> bytes:
    """A :func:`mail` padded to exactly ``size`` bytes, every line under 80 octets."""
    raw = mail(body="", **kwargs)
    room = size - len(raw)
    assert room >= 3, "size too small for the headers"
    while room > 0:
        take = min(room, 78)
        if room - take in (1, 2):  # leave at least one character and CRLF for the last line
            take -= 3
        raw += b"x" * (take - 2) + b"\r\n"
        room -= take
    assert len(raw) == size
    return raw


@dataclass(frozen=True)
class OnDisk:
    """What the database file holds, read through a separate connection."""

    messages: list[dict[str, Any]]
    jobs: list[dict[str, Any]]


def on_disk(state_dir: Path) -> OnDisk:
    """Read the messages and jobs tables of the store in ``state_dir``."""
    path = state_dir / DB_FILENAME
    if not path.exists():
        return OnDisk([], [])
    with closing(sqlite3.connect(path)) as conn:
        conn.row_factory = sqlite3.Row
        messages = [
            {**dict(row), "raw": row["body"]}
            for row in conn.execute(
                "SELECT m.*, b.raw AS body FROM messages m"
                " LEFT JOIN message_bodies b ON b.id = m.id ORDER BY m.id"
            )
        ]
        jobs = [dict(row) for row in conn.execute("SELECT * FROM jobs ORDER BY id")]
    return OnDisk(messages, jobs)


def assert_clean_refusal(text: str) -> None:
    """Our own failures never show internals on the wire."""
    for leak in ("Errno", "Traceback", "Error:", "sqlite", "/", "Exception", "No space"):
        assert leak not in text, f"{leak!r} leaked into the reply {text!r}"


@asynccontextmanager
async def ready_for_data(bridge: RunningBridge) -> AsyncIterator[SmtpProbe]:
    """A session of an allowed sender with one accepted recipient, ready for DATA."""
    async with await SmtpProbe.open(bridge.smtp_port) as probe:
        await probe.ehlo()
        assert (await probe.mail(ALICE)).code == 250
        assert (await probe.rcpt(FAX)).code == 250
        yield probe
