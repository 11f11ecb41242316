"""Reports to the sender of an outbound fax, threaded under their original mail.

A report is part of the job's state machine: a job reaches REPORTED only after the
relay accepted its report (or the notify policy says no report is wanted), so a crash
after the fax went out still ends in exactly one report. A crash between the relay's
250 and our commit can send it twice; the report's Message-ID is derived from the job,
so a mail system can recognise the repeat.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from decimal import Decimal, InvalidOperation
from email.message import EmailMessage
from typing import Any

from bridge.errors import AuthError, PermanentError, TransientError
from bridge.headersafe import clean_csid, clean_subject
from bridge.jobs import Job, JobState
from bridge.mailbuild import Attachment, MailAddress, build_mail, deterministic_message_id
from bridge.mailer import Mailer
from bridge.numbers import display_number
from bridge.render import TemplateRenderer
from bridge.store import Store
from bridge.workers import Backoff, Heartbeat, sleep_or_stop

log = logging.getLogger(__name__)


class Notify(enum.StrEnum):
    """Which outcomes are reported (``outbound.notify``)."""

    ALWAYS = "always"
    FAILURE = "failure"
    SUCCESS = "success"
    NEVER = "never"


@dataclass(frozen=True, slots=True)
class ReportSettings:
    """Who reports come from and what they contain."""

    sender: MailAddress
    notify: Notify = Notify.ALWAYS
    timezone: tzinfo = UTC
    message_id_domain: str = "fax-bridge.invalid"
    attach_sent_image: bool = False


@dataclass(frozen=True, slots=True)
class Original:
    """What a report needs from the mail that asked for the fax."""

    subject: str
    message_id: str | None


def wants_report(notify: Notify, job: Job) -> bool:
    """Whether ``notify`` asks for a report on this finished job."""
    if notify is Notify.ALWAYS:
        return True
    if notify is Notify.NEVER:
        return False
    return (job.state is JobState.SENT) == (notify is Notify.SUCCESS)


def _local(value: Any, zone: tzinfo) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S %Z")


def _fax_details(result: Mapping[str, Any], zone: tzinfo) -> dict[str, Any] | None:
    if result.get("kind") != "status":
        return None
    cost = None
    units, per_unit = result.get("units"), result.get("cost_per_unit")
    if units is not None and per_unit is not None:
        try:
            cost = f"{(Decimal(units) * Decimal(per_unit)).quantize(Decimal('0.0001'))}"
        except (ArithmeticError, InvalidOperation):
            cost = None
    return {
        "status": result.get("status"),
        "pages_sent": result.get("pages_sent"),
        "pages_submitted": result.get("pages_submitted"),
        "duration": result.get("duration"),
        "attempts": result.get("attempts"),
        "remote_csid": clean_csid(result.get("remote_csid")),
        "submit_time": _local(result.get("submit_time"), zone),
        "completion_time": _local(result.get("completion_time"), zone),
        "cost": cost,
    }


def build_report(
    job: Job,
    original: Original,
    *,
    settings: ReportSettings,
    renderer: TemplateRenderer,
    now: datetime,
    image_pdf: bytes | None = None,
) -> EmailMessage:
    """The report mail for a finished job."""
    result: Mapping[str, Any] = job.result or {}
    delivered = job.state is JobState.SENT
    outcome = "delivered" if delivered else ("failed" if job.fax_id else "not sent")
    destination = display_number(job.destination)
    subject = clean_subject(original.subject)
    reason = str(result.get("reason") or job.last_error or "No details were given.")
    context = {
        "outcome": outcome,
        "destination": destination,
        "subject": subject,
        "reason": reason,
        "fax": _fax_details(result, settings.timezone),
        "fax_id": job.fax_id,
        "reference": job.reference,
        "skipped": [str(item) for item in result.get("skipped", ())],
    }
    title = f"Fax to {destination} {outcome}" + (f": {subject}" if subject else "")
    attachments = []
    if image_pdf is not None:
        attachments.append(Attachment(f"fax-{job.fax_id}.pdf", "application/pdf", image_pdf))
    return build_mail(
        sender=settings.sender,
        to=[MailAddress(job.sender)],
        subject=title,
        text=renderer.render("report.txt.j2", **context),
        html=renderer.render("report.html.j2", **context),
        date=now,
        message_id=deterministic_message_id(
            "report", job.reference, domain=settings.message_id_domain
        ),
        in_reply_to=original.message_id,
        attachments=attachments,
        auto_submitted="auto-replied",
    )


class Reporter:
    """Sends the report of every finished job, then marks it REPORTED."""

    name = "reporter"

    def __init__(
        self,
        store: Store,
        mailer: Mailer,
        renderer: TemplateRenderer,
        settings: ReportSettings,
        *,
        fetch_image: Callable[[Job], Awaitable[bytes | None]] | None = None,
        wake: asyncio.Event,
        backoff: Backoff | None = None,
        idle_poll: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._mailer = mailer
        self._renderer = renderer
        self._settings = settings
        self._fetch_image = fetch_image
        self._paused_until = 0.0
        self._wake = wake
        self._backoff = backoff or Backoff(base=30.0, cap=3600.0)
        self._idle_poll = idle_poll
        self._clock = clock
        self.heartbeat = Heartbeat(idle_poll)

    def replace_settings(self, settings: ReportSettings, renderer: TemplateRenderer) -> None:
        """Use new settings and templates from the next report on (reload)."""
        self._settings = settings
        self._renderer = renderer

    async def run(self, stopping: asyncio.Event) -> None:
        """Report until ``stopping`` is set."""
        while not stopping.is_set():
            self.heartbeat.beat()
            worked = False
            pause = self._paused_until - self._clock()
            if pause > 0:
                # The relay refused our login: try again a minute later, not every job now.
                await sleep_or_stop(stopping, pause, heartbeat=self.heartbeat)
                continue
            # Cleared before looking for work, never after: a fax that finishes while we
            # look sets it again, and the sleep below returns at once instead of idling.
            self._wake.clear()
            try:
                worked = await self.run_once()
            except AuthError as exc:
                log.critical("the mail relay refused our credentials; reports wait: %s", exc)
                self._paused_until = self._clock() + 60.0
            except TransientError as exc:
                log.warning("reporter: %s", exc)
            if not worked:
                await sleep_or_stop(
                    stopping, await self._idle_for(), self._wake, heartbeat=self.heartbeat
                )

    async def resume_interrupted(self, now: float) -> int:
        """At start-up, make every waiting report due now; returns how many were waiting.

        A claim leases its job for ten minutes, so that a report which crashes the worker
        is not retried in a tight loop. A process killed mid-report leaves that lease
        behind, and the report would wait it out after the restart. Before the reporter
        runs no report can be in progress, so every lease is stale; a report waiting out
        a relay backoff is simply tried once early. Only the service calls this, before
        its workers start.
        """
        resumed = await self._store.make_due((JobState.SENT, JobState.FAILED), now=now)
        if resumed:
            log.info("%d report(s) claimed or deferred before the restart are due now", resumed)
        return resumed

    async def _idle_for(self) -> float:
        """Sleep until the next report is due (a retry after a relay failure), at most idle_poll."""
        try:
            due = await self._store.next_due((JobState.SENT, JobState.FAILED))
        except TransientError:
            due = None
        if due is None:
            return self._idle_poll
        return min(self._idle_poll, max(0.0, due - self._clock()))

    async def run_once(self) -> bool:
        """Report at most one finished job; True when there was one."""
        now = self._clock()
        lease = now + 600.0  # a crash mid-report frees the job again after this
        for state in (JobState.FAILED, JobState.SENT):
            job = await self._store.claim_next(state, state, now=now, next_attempt_at=lease)
            if job is not None:
                await self._report(job)
                return True
        return False

    async def _report(self, job: Job) -> None:
        if wants_report(self._settings.notify, job):
            try:
                message = await self._build(job)
                await self._mailer.send(
                    message, sender=self._settings.sender.addr_spec, recipients=[job.sender]
                )
            except AuthError:
                await self._retry(job, 60.0, "relay refused our credentials")
                raise
            except TransientError as exc:
                await self._retry(job, self._backoff.delay(job.attempts), str(exc))
                return
            except PermanentError as exc:
                # Retrying cannot help: record it loudly and end the job.
                log.error("%s: report to %s refused: %s", job.label, job.sender, exc)
                await self._done(job, f"report refused: {exc}")
                return
            log.info("%s: reported to %s", job.label, job.sender)
        await self._done(job, job.last_error)

    async def _build(self, job: Job) -> EmailMessage:
        message = await self._store.get_message(job.message_id)
        original = Original(
            subject=str((job.result or {}).get("subject") or ""),
            message_id=message.message_id_header if message is not None else None,
        )
        image = None
        if self._settings.attach_sent_image and job.fax_id and self._fetch_image is not None:
            image = await self._fetch_image(job)
        return build_report(
            job,
            original,
            settings=self._settings,
            renderer=self._renderer,
            now=datetime.fromtimestamp(self._clock(), UTC),
            image_pdf=image,
        )

    async def _retry(self, job: Job, delay: float, error: str) -> None:
        await self._store.transition(
            job.id,
            expect=job.state,
            to=job.state,
            now=self._clock(),
            next_attempt_at=self._clock() + delay,
            last_error=error,
        )

    async def _done(self, job: Job, error: str | None) -> None:
        await self._store.transition(
            job.id, expect=job.state, to=JobState.REPORTED, now=self._clock(), last_error=error
        )
