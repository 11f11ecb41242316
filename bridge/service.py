"""The one object that owns fax-bridge's lifecycle: start-up, workers, reload, drain.

Start-up: open and migrate the store, move jobs a crash left mid-flight to IN-DOUBT,
check templates and our own header hygiene, bind listeners, start workers, and only then
tell systemd ``READY=1``. ``WATCHDOG=1`` is sent from the event loop, and only while
every worker keeps beating. SIGTERM drains: new SMTP sessions get 421, workers finish the
item in hand (up to ``shutdown_timeout``), everything else stays safely queued.
SIGHUP reloads policies, allowlists and templates; an invalid file is refused and the
running configuration stays.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import signal
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from bridge import headersafe, wiring
from bridge.config import Config, load_config
from bridge.errors import BridgeError, ConfigError
from bridge.http_status import StatusServer, build_app
from bridge.imaging import as_pdf
from bridge.inbound import InboundWorker
from bridge.inbound_outlet import ImapAppend
from bridge.intake import Intake, IntakePolicy
from bridge.interfax import InterfaxClient
from bridge.jobs import Job
from bridge.mailer import Mailer
from bridge.maintenance import Maintenance
from bridge.outbound import Submitter
from bridge.render import TemplateRenderer
from bridge.reports import Reporter
from bridge.sdnotify import SystemdNotifier
from bridge.smtp_auth import load_users
from bridge.smtp_server import SmtpListener
from bridge.status_poller import StatusPoller
from bridge.store import Store
from bridge.workers import AuthGate, Worker

if TYPE_CHECKING:
    from bridge.imap_intake import ImapIntakeWorker  # needs the optional [imap] extra
    from bridge.imap_refusal import MailRefusalNotifier

log = logging.getLogger(__name__)


#: Settings that only a restart applies; a reload that changes them says so.
_RESTART_KEYS = (
    "state_dir",
    "interfax",
    "smtp_server.listen",
    "smtp_server.tls_cert",
    "smtp_server.tls_key",
    "mail.relay",
    "imap_in",
    "imap_out",
    "http",
    "retention",
    "outbound.status_poll_interval",
    "outbound.max_submit_age",
    "outbound.in_doubt_grace",
)


def _lock_state_dir(state_dir: Path) -> TextIO:
    """Hold an exclusive lock on ``state_dir`` for as long as the service runs.

    A second service on the same database would move the first one's in-flight jobs to
    IN-DOUBT at its start-up. The admin commands share the database without this lock.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    handle = (state_dir / "fax-bridge.lock").open("a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise ConfigError(
            f"another fax-bridge is already running with state_dir {state_dir}"
        ) from None
    return handle


class Service:
    """fax-bridge as a running service."""

    def __init__(
        self,
        config: Config,
        *,
        config_path: Path | None = None,
        notifier: SystemdNotifier | None = None,
    ) -> None:
        self.config = config
        self._config_path = config_path
        self._notifier = notifier or SystemdNotifier()
        self._stop = asyncio.Event()
        self._stopping = asyncio.Event()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._workers: list[Worker] = []
        self._store: Store | None = None
        self._client: InterfaxClient | None = None
        self.listener: SmtpListener | None = None
        self.intake: Intake | None = None
        self._reporter: Reporter | None = None
        self._submitter: Submitter | None = None
        self._imap_intake: ImapIntakeWorker | None = None
        self._refusals: MailRefusalNotifier | None = None
        self.maintenance: Maintenance | None = None
        self._reload_task: asyncio.Task[bool] | None = None
        self._status: StatusServer | None = None
        self._gate: AuthGate | None = None
        self._started = False
        self._lock: TextIO | None = None
        self._inbound: InboundWorker | None = None
        self._mailer: Mailer | None = None

    @property
    def store(self) -> Store:
        """The open store (after :meth:`start`)."""
        if self._store is None:
            raise RuntimeError("service not started")
        return self._store

    async def start(self) -> None:
        """Bring everything up; returns when the service is ready."""
        config = self.config
        headersafe.self_check()
        templates = wiring.renderer(config)
        self._lock = _lock_state_dir(config.state_dir)
        self._store = store = await Store.open(config.state_dir)
        self._client = client = wiring.interfax_client(config)
        mailer = Mailer(wiring.relay_settings(config))
        self._gate = gate = AuthGate("InterFAX")
        submit_wake, report_wake = asyncio.Event(), asyncio.Event()
        self.intake = Intake(store, IntakePolicy.from_config(config), on_accepted=submit_wake.set)
        self._reporter = Reporter(
            store,
            mailer,
            templates,
            wiring.report_settings(config),
            fetch_image=self._sent_image,
            wake=report_wake,
        )
        # A report the last process was sending when it died must not wait out its lease.
        await self._reporter.resume_interrupted(time.time())
        self._mailer = mailer
        self._submitter = Submitter(
            store,
            client,
            wiring.fax_builder(config, templates),
            wiring.submit_settings(config),
            gate=gate,
            wake=submit_wake,
            finished=report_wake,
        )
        self.maintenance = Maintenance(
            store,
            client,
            mailer,
            sender=wiring.mail_sender(config),
            admin=config.mail.admin,
            low_balance=config.interfax.low_balance_alert,
            retention=config.retention,
        )
        self._workers = [
            self._submitter,
            StatusPoller(
                store,
                client,
                interval=config.outbound.status_poll_interval,
                gate=gate,
                finished=report_wake,
            ),
            self._reporter,
            self.maintenance,
        ]
        inbound = wiring.inbound_settings(config)
        if inbound.routing.configured:
            self._inbound = InboundWorker(
                store, client, mailer, templates, inbound, gate=gate, imap=self._imap_append()
            )
            self._workers.append(self._inbound)
        if config.imap_in is not None:
            self._refusals = wiring.refusal_notifier(config, mailer)
            self._imap_intake = wiring.imap_intake(config, store, self.intake, self._refusals)
            self._workers.append(self._imap_intake)
        listen = wiring.listener_settings(config)
        if listen is not None:
            users = (
                load_users(config.smtp_server.auth_users_file)
                if (config.smtp_server.auth_users_file)
                else {}
            )
            self.listener = SmtpListener(self.intake, listen, users=users)
            await self.listener.start()
        for worker in self._workers:
            self._start_worker(worker)
        self._tasks["watchdog"] = asyncio.create_task(self._watchdog(), name="watchdog")
        if config.http.listen is not None:
            app = build_app(store, self.readiness, templates)
            self._status = StatusServer(app, config.http.listen.host, config.http.listen.port)
            await self._status.start()
        self._started = True
        self._notifier.ready("serving")
        log.info("fax-bridge started")

    @property
    def started(self) -> bool:
        """Whether :meth:`start` finished."""
        return self._started

    @property
    def status_port(self) -> int | None:
        """The bound port of the HTTP status endpoint, when it is on."""
        return self._status.port if self._status is not None else None

    def readiness(self) -> tuple[bool, list[str]]:
        """Whether the service does its job, and if not, why (for /readyz)."""
        reasons = []
        if not self.started:
            reasons.append("starting")
        if self._stopping.is_set():
            reasons.append("shutting down")
        if self._gate is not None and self._gate.paused:
            reasons.append(f"InterFAX refuses our credentials ({self._gate.reason})")
        trouble = self._imap_intake.last_error if self._imap_intake is not None else None
        if trouble is not None:
            reasons.append(f"IMAP intake fails: {trouble}")
        reasons += [
            f"{w.name} makes no progress" for w in self._workers if not w.heartbeat.healthy()
        ]
        return not reasons, reasons

    def _imap_append(self) -> ImapAppend | None:
        """APPEND for ``deliver: imap`` routes, when ``imap_out`` is configured."""
        if self.config.imap_out is None:
            return None
        return wiring.imap_delivery(self.config.imap_out).append_fax_mail

    def _start_worker(self, worker: Worker) -> None:
        self._tasks[worker.name] = asyncio.create_task(self._supervise(worker), name=worker.name)

    async def _sent_image(self, job: Job) -> bytes | None:
        """The transmitted image of a job's fax as PDF, for its report (None if unavailable)."""
        if self._client is None or job.fax_id is None:
            return None
        try:
            tiff = await self._client.outbound_image(job.fax_id)
            return await asyncio.to_thread(as_pdf, tiff)
        except BridgeError as exc:
            log.warning("%s: sent image unavailable for the report: %s", job.label, exc)
            return None

    async def _supervise(self, worker: Worker) -> None:
        """Run one worker; a crash is logged and the worker restarted after a pause."""
        while not self._stopping.is_set():
            try:
                await worker.run(self._stopping)
            except Exception:
                log.exception("worker %s crashed; restarting it in 5s", worker.name)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), 5.0)
            else:
                return

    async def _watchdog(self) -> None:
        interval = self._notifier.watchdog_interval
        if interval is None:
            return
        while not self._stopping.is_set():
            # Running here proves the loop is responsive; the beats prove progress.
            sick = [w.name for w in self._workers if not w.heartbeat.healthy()]
            if sick:
                log.error("not feeding the watchdog: no progress from %s", ", ".join(sick))
            else:
                self._notifier.watchdog()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), interval)

    def request_stop(self) -> None:
        """Begin a graceful shutdown (SIGTERM, SIGINT)."""
        self._stop.set()

    def request_reload(self) -> None:
        """Reload the configuration file (SIGHUP)."""
        if self._reload_task is None or self._reload_task.done():
            self._reload_task = asyncio.create_task(self.reload())

    async def reload(self) -> bool:
        """Re-read the configuration; apply what can change while running."""
        if self._config_path is None:
            log.warning("reload requested, but the service was not started from a file")
            return False
        try:
            new = await asyncio.to_thread(load_config, self._config_path)
            templates = wiring.renderer(new)
            users = (
                load_users(new.smtp_server.auth_users_file)
                if new.smtp_server.auth_users_file
                else {}
            )
        except ConfigError as exc:
            log.error("reload refused, the running configuration stays:\n%s", exc)
            return False
        old = self.config
        for key in _RESTART_KEYS:
            first, _, rest = key.partition(".")
            before, after = getattr(old, first), getattr(new, first)
            if rest:
                before, after = getattr(before, rest), getattr(after, rest)
            if before != after:
                log.warning("%s changed: it takes effect at the next restart", key)
        if self.intake is not None:
            self.intake.replace_policy(IntakePolicy.from_config(new))
        listen = wiring.listener_settings(new)
        if self.listener is not None and listen is not None:
            self.listener.replace_users(users)
            # Trusted networks and the size limit apply from the next command on; where
            # and how the listener binds needs a restart (warned about above).
            old_listen = self.listener.settings
            self.listener.settings = replace(
                listen,
                host=old_listen.host,
                port=old_listen.port,
                tls_cert=old_listen.tls_cert,
                tls_key=old_listen.tls_key,
            )
        if self._submitter is not None:
            self._submitter.replace_builder(wiring.fax_builder(new, templates))
        if self._reporter is not None:
            self._reporter.replace_settings(wiring.report_settings(new), templates)
        sender = wiring.mail_sender(new)
        if self.maintenance is not None:
            self.maintenance.replace_contacts(sender=sender, admin=new.mail.admin)
        if self._refusals is not None:
            self._refusals.replace_sender(sender, fax_domain=new.smtp_server.fax_domain)
        self._reload_inbound(new, templates)
        self.config = new
        log.info("configuration reloaded")
        return True

    def _reload_inbound(self, new: Config, templates: TemplateRenderer) -> None:
        settings = wiring.inbound_settings(new)
        if self._inbound is not None:
            if not settings.routing.configured:
                log.warning("inbound routes were removed: received faxes will stay unrouted")
            self._inbound.replace_settings(settings, templates)
        elif settings.routing.configured and self._store and self._client and self._gate:
            assert self._mailer is not None
            log.info("inbound routes configured: starting the fax-to-email side")
            self._inbound = InboundWorker(
                self._store,
                self._client,
                self._mailer,
                templates,
                settings,
                gate=self._gate,
                imap=self._imap_append(),
            )
            self._workers.append(self._inbound)
            self._start_worker(self._inbound)

    async def shutdown(self) -> None:
        """Drain and stop; everything not finished stays queued for the next start."""
        self._notifier.stopping()
        log.info("stopping: draining in-flight work")
        if self.listener is not None:
            self.listener.start_draining()
        self._stopping.set()
        tasks = list(self._tasks.values())
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self.config.shutdown_timeout)
            for task in pending:
                log.warning("task %s did not finish in time; its work stays queued", task)
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self.listener is not None:
            await self.listener.close()
        if self._status is not None:
            await self._status.close()
        if self._client is not None:
            await self._client.aclose()
        if self._store is not None:
            await self._store.close()
        if self._lock is not None:
            self._lock.close()  # closing the descriptor releases the lock
        log.info("stopped")

    async def serve(self) -> None:
        """Start, run until SIGTERM or SIGINT, then shut down gracefully."""
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.request_stop)
        loop.add_signal_handler(signal.SIGINT, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, self.request_reload)
        try:
            await self.start()
            await self._stop.wait()
        finally:
            await self.shutdown()
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
