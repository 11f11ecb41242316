"""Serving the sandbox with uvicorn: in a running event loop, or from the CLI.

:func:`running_sandbox` binds its own socket (so port 0 works and the real port is
known before serving), serves on the current event loop and yields a
:class:`RunningSandbox`. :func:`run_forever` is ``fax-bridge sandbox``: it serves
until SIGINT or SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable, Generator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import uvicorn
from starlette.types import Scope

from bridge.sandbox.app import create_app
from bridge.sandbox.faults import Faults
from bridge.sandbox.persist import StateFile
from bridge.sandbox.state import SandboxState
from bridge.sandbox.web import SandboxContext

_STOP_TIMEOUT = 5.0


@dataclass(frozen=True)
class SandboxSettings:
    """How to run the sandbox.

    ``step_seconds`` is the time between status steps (-1, -2, -3, final); with
    ``step_seconds <= 0`` faxes only move through ``POST /_sandbox/advance``.
    ``clock`` (epoch seconds) exists for tests of the timed progression.
    """

    host: str = "127.0.0.1"
    port: int = 8089
    username: str = "sandbox"
    password: str = "sandbox"  # noqa: S105 - the sandbox's documented demo login
    tls_cert: Path | None = None
    tls_key: Path | None = None
    state_file: Path | None = None
    step_seconds: float = 2.0
    mailbox: Path | None = None
    initial_balance: Decimal = Decimal("100.0000")
    cost_per_unit: Decimal = Decimal("0.1500")
    clock: Callable[[], float] = field(default=time.time, repr=False)


@dataclass(frozen=True)
class RunningSandbox:
    """A sandbox being served: where it is and how to log in."""

    base_url: str
    host: str
    port: int
    username: str
    password: str

    @property
    def control_url(self) -> str:
        """Base URL of the control API (``…/_sandbox``)."""
        return self.base_url + "/_sandbox"


class _SandboxServer(uvicorn.Server):
    """A uvicorn server that says when it is up, stops at once when asked, and leaves
    signals to its owner.

    uvicorn's own loop polls for shutdown every 0.1 s and then sleeps another 0.1 s;
    a test suite that starts a sandbox per test cannot afford that, so the main loop
    and the shutdown are event driven here.
    """

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = asyncio.Event()
        self._stop = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # running_sandbox() runs inside other programs (tests, the demo); they own
        # SIGINT/SIGTERM. run_forever() installs its own handlers.
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Start listening, then set :attr:`ready`."""
        await super().startup(sockets=sockets)
        self.ready.set()

    def request_stop(self) -> None:
        """Make :meth:`serve` return soon."""
        self.should_exit = True
        self._stop.set()

    async def main_loop(self) -> None:
        """Refresh the Date header every second until a stop is requested."""
        while not self.should_exit:
            await self.on_tick(0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), 1.0)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Stop listening, let requests in flight finish, then drop every connection.

        Idle keep-alive connections are aborted rather than waited for: a client
        that keeps a socket open (requests does, while a response object lives)
        must not hold up the stop.
        """
        for server in self.servers:
            server.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()
        await self._wait_until(lambda: not self.server_state.tasks)
        for task in list(self.server_state.tasks):
            task.cancel()
        for connection in list(self.server_state.connections):
            transport = getattr(connection, "transport", None)
            if transport is not None:
                transport.abort()
        await self._wait_until(lambda: not self.server_state.connections)
        for server in self.servers:
            await server.wait_closed()

    @staticmethod
    async def _wait_until(condition: Callable[[], bool]) -> None:
        deadline = time.monotonic() + _STOP_TIMEOUT
        # uvicorn offers no event for "no more connections/tasks": poll briefly.
        while not condition() and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.005)

    def drop_connection(self, scope: Scope) -> bool:
        """Abort the TCP connection of the request in ``scope`` (no response at all)."""
        client = scope.get("client")
        for connection in list(self.server_state.connections):
            if client is not None and getattr(connection, "client", None) == tuple(client):
                transport = getattr(connection, "transport", None)
                if transport is not None:
                    transport.abort()
                    return True
        return False


def _url_host(host: str) -> str:
    try:
        return f"[{host}]" if ipaddress.ip_address(host).version == 6 else host
    except ValueError:
        return host


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio only disables Nagle on accepted sockets whose
    # proto says TCP, and with Nagle every response with a body waits ~40 ms for an ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _load_state(settings: SandboxSettings) -> SandboxState:
    state = SandboxState(
        username=settings.username,
        step_seconds=settings.step_seconds,
        initial_balance=settings.initial_balance,
        cost_per_unit=settings.cost_per_unit,
        clock=settings.clock,
    )
    if settings.state_file is not None:
        state_file = StateFile(settings.state_file)
        state_file.load(state)
        state.on_change = lambda: state_file.save(state)
    return state


@contextlib.asynccontextmanager
async def running_sandbox(settings: SandboxSettings) -> AsyncIterator[RunningSandbox]:
    """Serve the sandbox on the current event loop for the duration of the block."""
    if (settings.tls_cert is None) != (settings.tls_key is None):
        raise ValueError("TLS needs both a certificate and a key")
    state = _load_state(settings)
    host = settings.host.strip("[]")  # "[::1]" as written in a --listen address
    sock = _bind(host, settings.port)
    port = sock.getsockname()[1]
    scheme = "https" if settings.tls_cert else "http"
    sandbox = SandboxContext(
        state=state,
        faults=Faults(),
        username=settings.username,
        password=settings.password,
        drop_connection=lambda scope: False,
        mailbox=settings.mailbox,
    )
    config = uvicorn.Config(
        app=create_app(sandbox),
        http="h11",
        lifespan="off",
        log_config=None,
        log_level="warning",
        access_log=False,
        server_header=False,
        ssl_certfile=str(settings.tls_cert) if settings.tls_cert else None,
        ssl_keyfile=str(settings.tls_key) if settings.tls_key else None,
    )
    server = _SandboxServer(config)
    sandbox.drop_connection = server.drop_connection
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        ready = asyncio.create_task(server.ready.wait())
        await asyncio.wait({ready, serving}, return_when=asyncio.FIRST_COMPLETED)
        if not server.ready.is_set():
            ready.cancel()
            serving.result()  # raises the start-up error (a bad certificate, ...)
            raise RuntimeError("the sandbox server stopped during start-up")
        yield RunningSandbox(
            base_url=f"{scheme}://{_url_host(host)}:{port}",
            host=host,
            port=port,
            username=settings.username,
            password=settings.password,
        )
    finally:
        server.request_stop()
        try:
            if not serving.done():
                await asyncio.wait_for(serving, _STOP_TIMEOUT * 2)
        finally:
            sock.close()


def _warn_if_exposed(host: str) -> None:
    with contextlib.suppress(ValueError):
        if ipaddress.ip_address(host).is_loopback:
            return
    print(
        f"WARNING: listening on {host}: the control API (/_sandbox/) and the page need no "
        "password. Use a loopback address unless this network is yours alone.",
        file=sys.stderr,
    )


def run_forever(settings: SandboxSettings) -> None:
    """Serve until SIGINT or SIGTERM (``fax-bridge sandbox``), printing the URL."""
    logging.basicConfig(level=logging.WARNING)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        async with running_sandbox(settings) as sandbox:
            _warn_if_exposed(settings.host)
            print(f"InterFAX sandbox: {sandbox.base_url}/ (user {sandbox.username!r})", flush=True)
            print(f"Control API: {sandbox.control_url}/  (Ctrl+C to stop)", flush=True)
            await stop.wait()

    asyncio.run(main())
