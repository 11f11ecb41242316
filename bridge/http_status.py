"""The operator's HTTP endpoint (``http.listen``): health, readiness, metrics, a status page.

Served by uvicorn on the service's own event loop; read-only. It binds its own socket
so port 0 works in tests, and leaves signal handling to the service.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Generator
from dataclasses import asdict
from datetime import UTC, datetime

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

from bridge import metrics
from bridge.jobs import InboundState, JobState
from bridge.render import TemplateRenderer
from bridge.store import Store

log = logging.getLogger(__name__)

#: ``(ready, reasons)``: what /readyz reports.
Readiness = Callable[[], tuple[bool, list[str]]]


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")


async def refresh_gauges(store: Store) -> dict[str, int]:
    """Update the queue-depth gauges from the store; returns the counts by state."""
    counts = {str(k): v for k, v in (await store.count_by_state()).items()}
    metrics.set_job_counts(counts, [str(s) for s in JobState])
    inbound = await store.inbound_count_by_state()
    for state in InboundState:
        metrics.INBOUND_STATE.set(inbound.get(state, 0), state=str(state))
    return counts


def build_app(store: Store, readiness: Readiness, renderer: TemplateRenderer) -> Starlette:
    """The ASGI app."""

    async def healthz(_: Request) -> Response:
        # Answering at all proves the event loop runs.
        return PlainTextResponse("ok\n")

    async def readyz(_: Request) -> Response:
        ready, reasons = readiness()
        if ready:
            return PlainTextResponse("ready\n")
        return PlainTextResponse("not ready: " + "; ".join(reasons) + "\n", status_code=503)

    async def metrics_page(_: Request) -> Response:
        await refresh_gauges(store)
        return PlainTextResponse(
            metrics.REGISTRY.render(), media_type="text/plain; version=0.0.4; charset=utf-8"
        )

    async def index(_: Request) -> Response:
        counts = await refresh_gauges(store)
        jobs = []
        for job in await store.jobs(limit=50):
            row = asdict(job)
            row["updated"] = _when(job.updated_at)
            jobs.append(row)
        inbound = []
        for fax in await store.inbound_faxes(limit=50):
            row = asdict(fax)
            row["received"] = _when(fax.receive_time)
            inbound.append(row)
        ready, reasons = readiness()
        page = renderer.render(
            "status.html.j2",
            jobs=jobs,
            inbound=inbound,
            counts={k: v for k, v in counts.items() if v},
            ready=ready,
            reasons=reasons,
        )
        return HTMLResponse(page)

    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics_page),
            Route("/", index),
        ]
    )


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # The service owns SIGTERM/SIGINT/SIGHUP.
        yield


class StatusServer:
    """Serves :func:`build_app` on ``host:port`` until :meth:`close`."""

    def __init__(self, app: Starlette, host: str, port: int) -> None:
        self._config = uvicorn.Config(
            app, log_level="warning", access_log=False, timeout_graceful_shutdown=2
        )
        self._server = _Server(self._config)
        # IPPROTO_TCP explicitly: asyncio disables Nagle only on accepted sockets whose
        # proto says TCP (without it every response with a body waits for an ACK).
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self._task: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        """The bound port."""
        port: int = self._sock.getsockname()[1]
        return port

    async def start(self) -> None:
        """Start serving in the running loop."""
        self._task = asyncio.create_task(self._server.serve(sockets=[self._sock]))
        while not self._server.started:
            if self._task.done():
                await self._task  # raises the start-up error
                return
            await asyncio.sleep(0.01)
        log.info("status endpoint on http://%s:%d/", *self._sock.getsockname()[:2])

    async def close(self) -> None:
        """Stop serving."""
        self._server.should_exit = True
        if self._task is not None:
            await self._task
        self._sock.close()
