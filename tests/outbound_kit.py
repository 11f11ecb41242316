"""Component-level pieces for the outbound tests: a real store, a real client, a fake clock.

The workers are driven one step at a time (``Submitter.run_once``, ``StatusPoller.poll_once``,
``Reporter.run_once``) with a clock the test moves, so no test ever waits for a backoff
timer. Everything else is real: SQLite on ``tmp_path``, the InterFAX sandbox over HTTP,
and (for reports) an aiosmtpd sink.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP

from bridge import wiring
from bridge.config import Config
from bridge.interfax import InterfaxClient
from bridge.jobs import Job, MessageSource, NewJob
from bridge.mailer import Mailer, RelaySettings
from bridge.outbound import Builder, SubmitSettings, Submitter
from bridge.reports import Notify, Reporter, ReportSettings
from bridge.sandbox.server import RunningSandbox
from bridge.status_poller import StatusPoller
from bridge.store import Store
from bridge.workers import AuthGate, Backoff
from tests.bridge_harness import ALICE, bridge_yaml, load
from tests.conftest import minimal_pdf
from tests.smtp_sink import RunningSink, SinkHandler

DESTINATION = "+12125550100"
#: Backoff small enough that only an honoured Retry-After can explain a long delay.
FAST_BACKOFF = Backoff(base=1.0, cap=5.0)


class Clock:
    """A clock the test moves by hand (epoch seconds, starting at the real time)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        """Move forward; returns the new time."""
        self.now += seconds
        return self.now


def pdf_mail(
    *,
    subject: str = "Lab results",
    message_id: str = "<m1@clinic.example.org>",
    sender: str = ALICE,
    pdf: bytes | None = None,
    body: str = "Please see the attached results.\n",
    extra_headers: Sequence[tuple[str, str]] = (),
) -> bytes:
    """A plain mail with one PDF attachment."""
    msg = EmailMessage()
    msg["From"] = f"Alice <{sender}>"
    msg["To"] = f"{DESTINATION}@fax.local"
    msg["Subject"] = subject
    msg["Message-ID"] = message_id
    for name, value in extra_headers:
        msg[name] = value
    msg.set_content(body)
    msg.add_attachment(
        pdf if pdf is not None else minimal_pdf(pages=2),
        maintype="application",
        subtype="pdf",
        filename="results.pdf",
    )
    return msg.as_bytes()


def kit_config(
    tmp_path: Path, interfax_url: str, relay_port: int = 1, outbound: str = ""
) -> Config:
    """The harness configuration (only used here for the builder and report settings)."""
    text = bridge_yaml(
        tmp_path / "state", interfax_url=interfax_url, relay_port=relay_port, outbound=outbound
    )
    return load(text, tmp_path)


async def enqueue(
    store: Store,
    raw: bytes,
    *,
    now: float,
    destinations: Sequence[str] = (DESTINATION,),
    sender: str = ALICE,
) -> list[Job]:
    """Accept ``raw`` durably, as intake would (Message-ID from its header); the new jobs."""
    headers = BytesParser(policy=policy.default).parsebytes(raw, headersonly=True)
    message_id = headers["Message-ID"]
    result = await store.accept_message(
        raw,
        source=MessageSource.SMTP,
        mail_from=sender,
        from_header=sender,
        message_id_header=str(message_id) if message_id else None,
        recipients=[NewJob(destination=d, sender=sender) for d in destinations],
        now=now,
    )
    return list(result.created)


class CountingClient(InterfaxClient):
    """The real client, recording every request it makes as (method, path, query)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[tuple[str, str, str]] = []

    async def _request(
        self, method: str, path: str, query: str = "", *args: Any, **kwargs: Any
    ) -> Any:  # type: ignore[override]
        self.calls.append((method, path, query))
        return await super()._request(method, path, query, *args, **kwargs)

    def count(self, method: str, path: str) -> int:
        """How many requests were made to exactly ``method path``."""
        return sum(1 for m, p, _ in self.calls if m == method and p == path)

    def count_prefix(self, method: str, prefix: str) -> int:
        """How many requests were made to ``method`` paths starting with ``prefix``."""
        return sum(1 for m, p, _ in self.calls if m == method and p.startswith(prefix))


def client_for(base_url: str) -> CountingClient:
    """A real InterFAX client with the sandbox fixtures' credentials."""
    return CountingClient(base_url, "user", "secret", timeout=5.0)


@dataclass
class Outbound:
    """A store, a client and the three outbound workers sharing one fake clock."""

    store: Store
    client: CountingClient
    clock: Clock
    config: Config
    gate: AuthGate
    submitter: Submitter
    poller: StatusPoller
    settings: SubmitSettings
    finished: asyncio.Event = field(default_factory=asyncio.Event)

    async def enqueue(self, raw: bytes, **kwargs: Any) -> Job:
        """One job for ``raw`` (created now)."""
        jobs = await enqueue(self.store, raw, now=self.clock(), **kwargs)
        assert len(jobs) == 1
        return jobs[0]

    async def job(self, job_id: int) -> Job:
        """The job as stored now."""
        job = await self.store.get_job(job_id)
        assert job is not None
        return job

    def reporter(
        self,
        relay: RelaySettings,
        *,
        notify: Notify = Notify.ALWAYS,
        settings: ReportSettings | None = None,
    ) -> Reporter:
        """A reporter on the same store and clock, sending through ``relay``."""
        base = wiring.report_settings(self.config)
        chosen = settings or ReportSettings(
            sender=base.sender,
            notify=notify,
            timezone=base.timezone,
            message_id_domain=base.message_id_domain,
        )
        return Reporter(
            self.store,
            Mailer(relay),
            wiring.renderer(self.config),
            chosen,
            wake=asyncio.Event(),
            backoff=Backoff(base=30.0, cap=300.0),
            clock=self.clock,
        )


@asynccontextmanager
async def outbound(
    tmp_path: Path,
    sandbox: RunningSandbox,
    *,
    base_url: str | None = None,
    settings: SubmitSettings | None = None,
    builder: Builder | None = None,
    outbound_yaml: str = "",
    batch_size: int = 100,
    store_class: type[Store] = Store,
) -> AsyncIterator[Outbound]:
    """Open everything on ``tmp_path``; the client talks to ``base_url`` (default: sandbox)."""
    config = kit_config(tmp_path, sandbox.base_url, outbound=outbound_yaml)
    clock = Clock()
    gate = AuthGate("InterFAX")
    chosen = settings or SubmitSettings(backoff=FAST_BACKOFF)
    store = await store_class.open(tmp_path / "state")
    client = client_for(base_url or sandbox.base_url)
    try:
        finished = asyncio.Event()
        yield Outbound(
            store=store,
            client=client,
            clock=clock,
            config=config,
            gate=gate,
            submitter=Submitter(
                store,
                client,
                builder or wiring.fax_builder(config, wiring.renderer(config)),
                chosen,
                gate=gate,
                wake=asyncio.Event(),
                finished=finished,
                clock=clock,
            ),
            poller=StatusPoller(
                store,
                client,
                interval=30.0,
                gate=gate,
                finished=finished,
                batch_size=batch_size,
                clock=clock,
            ),
            settings=chosen,
            finished=finished,
        )
    finally:
        await client.aclose()
        await store.close()


def relay(port: int) -> RelaySettings:
    """A plain relay on loopback with a short timeout."""
    return RelaySettings(host="127.0.0.1", port=port, timeout=5.0)


@asynccontextmanager
async def sink_on_port(port: int) -> AsyncIterator[RunningSink]:
    """A recording SMTP sink on a chosen port (a relay that comes back where it was)."""
    handler = SinkHandler()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, decode_data=False, hostname="sink.test"),
        host="127.0.0.1",
        port=port,
        reuse_address=True,
    )
    try:
        yield RunningSink("127.0.0.1", port, handler)
    finally:
        server.close()
        await server.wait_closed()
