"""Submitting queued faxes to InterFAX exactly once.

Each arrow below is one durable store transaction (shared/reliability-design.md)::

    ACCEPTED --claim--> SUBMITTING --201--> SUBMITTED(fax_id)
                            |  transient, before the request went out: ACCEPTED (backoff)
                            |  ambiguous (timeout, lost response, 5xx, a bug of ours
                            |    while sending): IN_DOUBT
                            |  permanent (bad document, InterFAX 4xx): FAILED (report)
                            |  older than max_submit_age when claimed: FAILED (report)
                            |  401: ACCEPTED, and every submission pauses
    IN_DOUBT --claim--> SUBMITTING: search /outbound/search?reference=...
                            found: SUBMITTED (never sent again)
                            not found within the grace window: IN_DOUBT, search again later
                            not found after it: post again with the SAME reference
                            search failing past the deadline: HELD for an operator

The reference is generated when the message is accepted and never changes, so the
search always finds the one fax a lost response may have created.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from bridge import metrics
from bridge.errors import AmbiguousError, AuthError, PermanentError, TransientError
from bridge.faxmodels import DocumentRef, FaxDocument, SendOptions
from bridge.interfax import InterfaxClient
from bridge.jobs import UNCHANGED, Job, JobState, MessageMissing
from bridge.store import Store
from bridge.workers import AuthGate, Backoff, Heartbeat, sleep_or_stop

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Submission:
    """What to send for one job: documents and options (the reference is added here).

    ``subject`` (the visible subject) and ``skipped`` (attachments left out, as
    "name: reason") are kept for the report.
    """

    documents: tuple[FaxDocument | DocumentRef, ...]
    options: SendOptions
    subject: str = ""
    skipped: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class BuildFailed:
    """The job's message cannot become a fax; the sender is told ``reason``."""

    kind: str
    reason: str
    subject: str = ""


#: Turns a job and its message bytes into what to send (pure; runs in a thread).
Builder = Callable[[Job, bytes], Submission | BuildFailed]


#: Seconds to wait before trying again after the store itself failed.
_STORE_RETRY = 1.0

#: Rate-event key under which paused seconds are counted (see ``Submitter._count_pause``).
PAUSE_KEY = "interfax:auth_paused_seconds"


@dataclass(frozen=True, slots=True)
class SubmitSettings:
    """Timing of submission, retries and reconciliation."""

    max_submit_age: float = 86400.0
    backoff: Backoff = field(default_factory=Backoff)
    in_doubt_grace: float = 120.0
    in_doubt_deadline: float = 6 * 3600.0
    quarantine_after: int = 25
    idle_poll: float = 30.0
    auth_probe_interval: float = 60.0


def _same_number(destination_fax: str | None, job: Job) -> bool:
    """Whether InterFAX's ``destinationFax`` (``00`` + digits, or as sent) is the job's number."""
    if destination_fax is None:
        return True  # a summary without the field: the reference filter must do
    digits = "".join(c for c in destination_fax if c.isdigit())
    wanted = job.destination.lstrip("+")
    return digits in (wanted, "00" + wanted)


def _failure(kind: str, reason: str, **extra: Any) -> Mapping[str, Any]:
    return {"kind": kind, "reason": reason, **extra}


class Submitter:
    """Claims due jobs and drives each through submission or reconciliation."""

    name = "submitter"

    def __init__(
        self,
        store: Store,
        client: InterfaxClient,
        builder: Builder,
        settings: SubmitSettings,
        *,
        gate: AuthGate,
        wake: asyncio.Event,
        finished: asyncio.Event | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``wake`` is set by intake when mail arrives; ``finished`` is set here when a job
        fails before it reached InterFAX, so the reporter tells its sender at once."""
        self._store = store
        self._client = client
        self._builder = builder
        self._settings = settings
        self._gate = gate
        self._wake = wake
        self._finished = finished
        self._pause_mark: float | None = None
        self._clock = clock
        self.heartbeat = Heartbeat(max(settings.idle_poll, settings.auth_probe_interval))

    async def run(self, stopping: asyncio.Event) -> None:
        """Submit until ``stopping`` is set; a job in flight finishes first."""
        # This worker is the only one that claims jobs, one at a time: whenever it is not
        # inside run_once, a job left SUBMITTING was abandoned by an error (or by a crash
        # of this worker, which the service restarts) and may have reached InterFAX.
        abandoned = True
        while not stopping.is_set():
            self.heartbeat.beat()
            # Cleared before looking for work, never after: mail accepted while we look
            # sets it again, and the sleep below returns at once instead of idling.
            self._wake.clear()
            try:
                if abandoned:
                    recovered = await self._store.recover_interrupted(self._clock())
                    if recovered.in_doubt:
                        log.warning(
                            "%d job(s) were being submitted when we stopped: reconciling them",
                            recovered.in_doubt,
                        )
                    abandoned = False
                worked = await self.run_once()
            except TransientError as exc:  # the store itself is unwell: back off briefly
                log.warning("submitter: %s", exc)
                abandoned = True
                await sleep_or_stop(stopping, _STORE_RETRY, heartbeat=self.heartbeat)
                continue
            if worked:
                continue
            if self._gate.paused:
                # New mail must not trigger a probe each: try the credentials on a timer.
                await sleep_or_stop(
                    stopping, self._settings.auth_probe_interval, heartbeat=self.heartbeat
                )
            else:
                await sleep_or_stop(
                    stopping, await self._idle_for(), self._wake, heartbeat=self.heartbeat
                )

    async def _idle_for(self) -> float:
        """Sleep until the next job is due (a retry, an in-doubt search), at most idle_poll."""
        try:
            due = await self._store.next_due((JobState.ACCEPTED, JobState.IN_DOUBT))
        except TransientError:
            due = None
        if due is None:
            return self._settings.idle_poll
        return min(self._settings.idle_poll, max(0.0, due - self._clock()))

    def replace_builder(self, builder: Builder) -> None:
        """Build faxes with new templates and outbound settings from the next job on."""
        self._builder = builder

    def _pause(self, exc: AuthError) -> None:
        """InterFAX refused our credentials: pause everything, counting from now."""
        self._gate.pause(str(exc))
        self._pause_mark = self._pause_mark or self._clock()

    async def run_once(self) -> bool:
        """Handle at most one due job; True when there was one.

        While InterFAX refuses our credentials nothing is claimed: each call first
        probes the credentials (a balance query) and returns False if they still fail.
        """
        if self._gate.paused:
            await self._probe_credentials()
            if self._gate.paused:
                return False
        now = self._clock()
        job = await self._store.claim_next(JobState.IN_DOUBT, JobState.SUBMITTING, now=now)
        if job is not None:
            await self._reconcile(job)
            return True
        job = await self._store.claim_next(JobState.ACCEPTED, JobState.SUBMITTING, now=now)
        if job is None:
            return False
        await self._submit(job)
        return True

    async def _count_pause(self) -> None:
        """Remember, durably, how long submissions have been paused for refused credentials.

        Recorded in slices at every probe, so a restart during an outage loses at most
        one slice: jobs must not expire because InterFAX refused our login (issue 3 §5).
        """
        now = self._clock()
        if self._pause_mark is not None and now > self._pause_mark:
            await self._store.record_event(PAUSE_KEY, now, n=math.ceil(now - self._pause_mark))
        self._pause_mark = now if self._gate.paused else None

    async def _expired(self, job: Job, now: float) -> bool:
        """Older than ``max_submit_age``, not counting time paused for refused credentials."""
        age = now - job.created_at
        if age <= self._settings.max_submit_age:
            return False
        paused = await self._store.count_recent(PAUSE_KEY, job.created_at)
        return age - paused > self._settings.max_submit_age

    async def _probe_credentials(self) -> None:
        await self._count_pause()
        try:
            await self._client.balance()
        except AuthError:
            return
        except Exception as exc:  # not an auth verdict: keep paused, try again later
            log.info("credential probe inconclusive: %s", exc)
            return
        self._gate.resume()
        await self._count_pause()

    async def _submit(self, job: Job) -> None:
        now = self._clock()
        try:
            # No local name for the raw bytes: they are garbage once the documents exist.
            built = await asyncio.to_thread(
                self._builder, job, await self._store.message_raw(job.message_id)
            )
        except MessageMissing as exc:  # the message bytes are gone: nothing can be sent
            await self._fail(job, _failure("missing", str(exc)))
            return
        except Exception as exc:  # a bug in building must not strand the job in SUBMITTING
            await self._unexpected(job, exc)
            return
        if isinstance(built, BuildFailed):
            await self._fail(job, _failure(built.kind, built.reason, subject=built.subject))
            return
        notes = {"subject": built.subject, "skipped": list(built.skipped)}
        # Built first so the report keeps the user's subject. A job being reconciled is
        # never expired here: the search just said its fax does not exist, send it now.
        if job.in_doubt_since is None and await self._expired(job, now):
            reason = "InterFAX could not be reached in time"
            if job.last_error:
                reason += f" (last error: {job.last_error})"
            await self._fail(job, _failure("expired", reason, **notes))
            return
        options = replace(built.options, reference=job.reference)
        try:
            fax_id = await self._client.send_fax(job.destination, built.documents, options)
        except AuthError as exc:
            self._pause(exc)
            await self._back_to(job, JobState.ACCEPTED, self._clock(), str(exc))
        except AmbiguousError as exc:
            log.warning("%s: submission outcome unknown, reconciling: %s", job.label, exc)
            await self._in_doubt(job, str(exc), notes)
        except TransientError as exc:
            delay = self._settings.backoff.delay(job.attempts, retry_after=exc.retry_after)
            log.info("%s: retrying in %.0fs: %s", job.label, delay, exc)
            await self._back_to(job, JobState.ACCEPTED, self._clock() + delay, str(exc))
        except PermanentError as exc:
            await self._fail(job, _failure("interfax", str(exc), **notes))
        except Exception as exc:
            # A bug of ours, maybe after the POST went out: only a search can tell.
            await self._unexpected(job, exc, notes=notes)
        else:
            log.info("%s: submitted as fax %d", job.label, fax_id)
            metrics.FAXES.inc(event="submitted")
            await self._submitted(job, fax_id, notes)

    async def _reconcile(self, job: Job) -> None:
        now = self._clock()
        since = job.in_doubt_since if job.in_doubt_since is not None else now
        try:
            found = await self._client.search(reference=job.reference)
        except AuthError as exc:
            self._pause(exc)
            await self._back_to(job, JobState.IN_DOUBT, now, str(exc))
            return
        except Exception as exc:
            if now - since > self._settings.in_doubt_deadline:
                log.error("%s: still in doubt after the deadline: held for an operator", job.label)
                await self._back_to(job, JobState.HELD, now, f"reconciliation failed: {exc}")
                return
            delay = self._settings.backoff.delay(job.attempts)
            await self._back_to(job, JobState.IN_DOUBT, now + delay, f"search failed: {exc}")
            return
        # Trust the reference filter, but verify: a fax to another number is never adopted
        # (and never cancelled as a duplicate), whatever the search returned.
        matches = sorted(fax.id for fax in found if _same_number(fax.destination_fax, job))
        if len(matches) < len(found):
            log.error(
                "%s: search by reference %s returned faxes to other numbers; ignored",
                job.label,
                job.reference,
            )
        if matches:
            await self._adopt(job, matches)
        elif now - since < self._settings.in_doubt_grace:
            # InterFAX's search may lag behind a POST that did go through.
            await self._back_to(
                job, JobState.IN_DOUBT, since + self._settings.in_doubt_grace, job.last_error
            )
        else:
            log.info("%s: no fax with that reference at InterFAX: submitting again", job.label)
            await self._submit(job)

    async def _notes(self, job: Job) -> Mapping[str, Any]:
        """Subject and skipped attachments for the report, rebuilt when a crash lost them."""
        if job.result is not None:
            return job.result
        built = await asyncio.to_thread(
            self._builder, job, await self._store.message_raw(job.message_id)
        )
        if isinstance(built, BuildFailed):
            return {"subject": built.subject}
        return {"subject": built.subject, "skipped": list(built.skipped)}

    async def _adopt(self, job: Job, fax_ids: list[int]) -> None:
        keep, *extra = fax_ids
        log.info("%s: reconciled, fax %d exists", job.label, keep)
        await self._submitted(job, keep, await self._notes(job))
        for duplicate in extra:
            log.error(
                "%s: InterFAX holds %d faxes with reference %s; cancelling duplicate %d",
                job.label,
                len(fax_ids),
                job.reference,
                duplicate,
            )
            try:
                await self._client.cancel(duplicate)
            except Exception as exc:
                log.error("could not cancel duplicate fax %d: %s", duplicate, exc)

    async def _submitted(self, job: Job, fax_id: int, notes: Mapping[str, Any]) -> None:
        await self._store.transition(
            job.id,
            expect=JobState.SUBMITTING,
            to=JobState.SUBMITTED,
            now=self._clock(),
            fax_id=fax_id,
            last_error=None,
            result=notes,
        )

    async def _back_to(self, job: Job, state: JobState, at: float, error: str | None) -> None:
        # Back in the queue the job is no longer in doubt (a search found no fax, or no
        # request went out), so max_submit_age applies to it again.
        await self._store.transition(
            job.id,
            expect=JobState.SUBMITTING,
            to=state,
            now=self._clock(),
            next_attempt_at=at,
            last_error=error,
            in_doubt_since=None if state is JobState.ACCEPTED else UNCHANGED,
        )

    async def _fail(self, job: Job, result: Mapping[str, Any]) -> None:
        metrics.FAXES.inc(event="failed")
        log.warning("%s: failed: %s", job.label, result.get("reason"))
        await self._store.transition(
            job.id,
            expect=JobState.SUBMITTING,
            to=JobState.FAILED,
            now=self._clock(),
            result=result,
            last_error=str(result.get("reason")),
        )
        if self._finished is not None:
            self._finished.set()

    async def _in_doubt(self, job: Job, error: str, notes: Mapping[str, Any]) -> None:
        """The POST may have created the fax: reconcile after the grace window."""
        now = self._clock()
        await self._store.transition(
            job.id,
            expect=JobState.SUBMITTING,
            to=JobState.IN_DOUBT,
            now=now,
            in_doubt_since=now,
            next_attempt_at=now + self._settings.in_doubt_grace,
            last_error=error,
            result=notes,
        )

    async def _unexpected(
        self, job: Job, exc: Exception, *, notes: Mapping[str, Any] | None = None
    ) -> None:
        """A bug: retry later, quarantined after ``quarantine_after`` attempts.

        ``notes`` is given when the error came from sending: then the fax may exist,
        so the job goes IN_DOUBT (reconciled by search) instead of back to the queue.
        """
        log.exception("%s: unexpected error while submitting", job.label, exc_info=exc)
        if job.attempts >= self._settings.quarantine_after:
            await self._back_to(job, JobState.HELD, self._clock(), f"quarantined: {exc!r}")
            return
        if notes is not None:
            await self._in_doubt(job, repr(exc), notes)
            return
        delay = self._settings.backoff.delay(job.attempts)
        await self._back_to(job, JobState.ACCEPTED, self._clock() + delay, repr(exc))
