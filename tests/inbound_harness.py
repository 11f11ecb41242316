"""Real servers for the inbound worker's tests: the sandbox, an aiosmtpd sink, a store.

``inbound_harness`` wires an :class:`~bridge.inbound.InboundWorker` to the InterFAX
sandbox over HTTP and to a recording SMTP sink, both on 127.0.0.1 port 0, with the
durable store in a temporary directory. Time is a :class:`FakeClock` so tests step over
backoff delays without waiting; nothing sleeps.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from textwrap import dedent, indent
from typing import Any

from bridge.config import Config, parse_config
from bridge.inbound import ImapAppend, InboundSettings, InboundWorker
from bridge.interfax import InterfaxClient
from bridge.interfax_models import InboundImage
from bridge.jobs import InboundFax
from bridge.mailbuild import MailAddress
from bridge.mailer import Mailer, RelaySettings
from bridge.render import TemplateRenderer
from bridge.sandbox.server import RunningSandbox
from bridge.store import Store
from bridge.workers import AuthGate
from tests.conftest import SandboxControl
from tests.smtp_sink import ReceivedMail, RunningSink, running_sink

FROM = "fax@clinic.example.org"
ADMIN = "admin@clinic.example.org"
HOUR = 3600.0


class FakeClock:
    """Epoch seconds that only move when a test says so."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_config(inbound: str, *, state_dir: Path, admin: bool = True, extra: str = "") -> Config:
    """A configuration with ``inbound`` (YAML, the body of the ``inbound:`` section)."""
    text = (
        "interfax:\n  username: user\n  password: secret\n"
        f"state_dir: {state_dir}\n"
        "timezone: America/New_York\n"
        f"mail:\n  from: {FROM}\n" + (f"  admin: {ADMIN}\n" if admin else "") + extra + "inbound:\n"
        f"{indent(dedent(inbound), '  ')}"
    )
    return parse_config(text, source="test.yaml", environ={})


@dataclass
class InboundHarness:
    """The servers, the store and a way to build workers on them."""

    sandbox: RunningSandbox
    control: SandboxControl
    sink: RunningSink
    tmp: Path
    clock: FakeClock = field(default_factory=FakeClock)
    gate: AuthGate = field(default_factory=lambda: AuthGate("InterFAX"))
    store: Store | None = None
    client: InterfaxClient | None = None

    @property
    def state_dir(self) -> Path:
        return self.tmp / "state"

    async def open(self) -> None:
        """Open (or, after :meth:`restart`, reopen) the store and the InterFAX client."""
        self.store = await Store.open(self.state_dir)
        self.client = InterfaxClient(self.sandbox.base_url, "user", "secret")

    async def close(self) -> None:
        if self.store is not None:
            await self.store.close()
        if self.client is not None:
            await self.client.aclose()
        self.store = self.client = None

    async def restart(self) -> None:
        """What a new process would see: a fresh store handle and client on the same state."""
        await self.close()
        await self.open()

    def settings(self, inbound: str, **kwargs: Any) -> InboundSettings:
        config = make_config(inbound, state_dir=self.state_dir, **kwargs)
        return InboundSettings.from_config(config, sender=MailAddress(FROM, "Fax Bridge"))

    def worker(
        self,
        inbound: str,
        *,
        client: InterfaxClient | None = None,
        relay_port: int | None = None,
        templates: Path | None = None,
        imap: ImapAppend | None = None,
        **kwargs: Any,
    ) -> InboundWorker:
        assert self.store is not None
        assert self.client is not None
        mailer = Mailer(RelaySettings("127.0.0.1", relay_port or self.sink.port, timeout=10))
        return InboundWorker(
            self.store,
            client or self.client,
            mailer,
            TemplateRenderer(templates),
            self.settings(inbound, **kwargs),
            gate=self.gate,
            imap=imap,
            clock=self.clock,
        )

    async def fax(self, message_id: int) -> InboundFax:
        """The ledger row of a fax."""
        assert self.store is not None
        fax = await self.store.inbound_get(message_id)
        assert fax is not None
        return fax

    def count_downloads(self) -> list[int]:
        """From now on, the message id of every image download the client makes, in order."""
        assert self.client is not None
        image = self.client.inbound_image
        downloads: list[int] = []

        async def counted(message_id: int) -> InboundImage:
            downloads.append(message_id)
            return await image(message_id)

        self.client.inbound_image = counted  # type: ignore[method-assign]
        return downloads

    async def image_status(self, message_id: int) -> str:
        [entry] = [f for f in await self.control.inbound() if f["messageId"] == message_id]
        return str(entry["imageStatus"])

    def mails_to(self, address: str) -> list[ReceivedMail]:
        return [m for m in self.sink.received if address in m.rcpt_tos]


@asynccontextmanager
async def inbound_harness(
    sandbox: RunningSandbox, control: SandboxControl, tmp: Path, **sink_options: Any
) -> AsyncIterator[InboundHarness]:
    """A harness with its sink running and its store open."""
    async with running_sink(**sink_options) as sink:
        harness = InboundHarness(sandbox, control, sink, tmp)
        await harness.open()
        try:
            yield harness
        finally:
            await harness.close()
