"""Run the whole bridge in-process against real servers: the sandbox and an SMTP sink."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from textwrap import dedent, indent
from typing import Any

import aiosmtplib

from bridge.config import Config, load_config, parse_config
from bridge.sdnotify import SystemdNotifier
from bridge.service import Service

ALICE = "alice@clinic.example.org"
MALLORY = "mallory@evil.example"


def bridge_yaml(
    state_dir: Path,
    *,
    interfax_url: str,
    relay_port: int,
    extra: str = "",
    outbound: str = "",
    http: bool = False,
) -> str:
    """A complete configuration for tests: loopback everything, fast polling."""
    text = f"""\
    interfax:
      base_url: {interfax_url}
      username: user
      password: secret
      timeout: 5s
    state_dir: {state_dir}
    shutdown_timeout: 10s
    http:
      listen: "{"127.0.0.1:0" if http else ""}"
    smtp_server:
      listen: 127.0.0.1:0
      fax_domain: fax.local
    mail:
      from: fax@bridge.example.org
      admin: admin@clinic.example.org
      relay:
        host: 127.0.0.1
        port: {relay_port}
    outbound:
      allowed_senders: ["{ALICE}", "*@lawfirm.example"]
      default_country: US
      status_poll_interval: 0.1s
    """
    text = dedent(text)
    if outbound:
        text += indent(dedent(outbound), "  ")
    return text + dedent(extra)


@asynccontextmanager
async def service_from_file(path: Path, text: str) -> AsyncIterator[Service]:
    """A service started from ``text`` written to ``path``, so that it can reload it."""
    await asyncio.to_thread(path.write_text, text)
    service = Service(load_config(path), config_path=path, notifier=SystemdNotifier({}))
    await service.start()
    try:
        yield service
    finally:
        await service.shutdown()


def load(text: str, base_dir: Path) -> Config:
    """Parse a test configuration."""
    return parse_config(text, source="test.yaml", environ={}, base_dir=base_dir)


@dataclass
class RunningBridge:
    """A started service and where its SMTP listener is."""

    service: Service
    smtp_port: int

    async def send(
        self, raw: bytes, *, sender: str = ALICE, recipients: list[str] | None = None
    ) -> tuple[dict[str, Any], str]:
        """Offer ``raw`` over SMTP; returns aiosmtplib's (refusals, final reply)."""
        return await aiosmtplib.send(
            raw,
            sender=sender,
            recipients=recipients or ["+12125550100@fax.local"],
            hostname="127.0.0.1",
            port=self.smtp_port,
            timeout=20,
        )


@asynccontextmanager
async def running_bridge(
    config: Config, *, notifier: SystemdNotifier | None = None
) -> AsyncIterator[RunningBridge]:
    """Start the service in this event loop; shut it down gracefully afterwards."""
    service = Service(config, notifier=notifier or SystemdNotifier({}))
    await service.start()
    try:
        assert service.listener is not None
        yield RunningBridge(service, service.listener.port)
    finally:
        await service.shutdown()


async def eventually(
    check: Callable[[], Awaitable[Any]], *, within: float = 20.0, what: str = "condition"
) -> Any:
    """Re-check ``check`` until it returns something truthy (a bounded wait, not a timing test)."""
    deadline = time.monotonic() + within
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)
