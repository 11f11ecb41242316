"""Deciding on mail offered for faxing, shared by the SMTP listener and IMAP intake.

The decisions are made in the order an SMTP dialogue allows: the envelope sender at
``MAIL FROM``, each recipient at ``RCPT TO`` (number syntax and destination policy, so a
refused destination costs zero InterFAX calls), and the message itself at the end of
``DATA`` (well-formed, not automatic, From authorised, within rate limits). Only then is
it committed to the store, durably, and only then does the caller answer 250.

Nothing here talks to InterFAX: the SMTP transaction never waits on the network.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bridge import metrics
from bridge.config import Config
from bridge.jobs import MessageSource, NewJob, RateLimitCheck, RateLimited
from bridge.mailmodel import MailRefusal, ParseLimits
from bridge.mailparse import parse_headers
from bridge.mailtext import ascii_lower
from bridge.numbers import (
    DestinationPolicy,
    FaxNumber,
    Refusal,
    check_destination,
    parse_fax_recipient,
)
from bridge.senders import SenderPolicy, authorise, check_envelope_sender
from bridge.store import Store

log = logging.getLogger(__name__)

_HOUR = 3600.0
_DAY = 86400.0


@dataclass(frozen=True, slots=True)
class Reply:
    """An SMTP reply: code, enhanced status code and text."""

    code: int
    enhanced: str
    text: str

    @property
    def line(self) -> str:
        """The reply as sent on the wire."""
        return f"{self.code} {self.enhanced} {self.text}"

    @property
    def accepted(self) -> bool:
        """True for a 2xx reply."""
        return 200 <= self.code < 300

    @classmethod
    def from_refusal(cls, refusal: Refusal) -> Reply:
        """The reply for a recipient or policy refusal."""
        return cls(refusal.code, refusal.enhanced, refusal.reason)


TRY_LATER = Reply(451, "4.3.0", "Temporary local problem, please try again later")
NOT_AUTHORISED = Reply(550, "5.7.1", "Sender is not authorised to send faxes")
AUTOMATIC = Reply(550, "5.7.1", "Automatically generated mail is never faxed")
RATE_LIMITED = Reply(450, "4.7.1", "Fax rate limit reached, please try again later")
NO_OUTBOUND = Reply(550, "5.7.1", "Sending faxes is not enabled on this bridge")


@dataclass(frozen=True, slots=True)
class RateLimitSettings:
    """How many faxes a sender, and everybody together, may queue per hour and day."""

    sender_per_hour: int | None = None
    sender_per_day: int | None = None
    global_per_hour: int | None = None
    global_per_day: int | None = None

    def checks(self, sender: str) -> tuple[RateLimitCheck, ...]:
        """The store-level checks for one message from ``sender``."""
        key = f"sender:{ascii_lower(sender)}"  # as authorisation compares: Alice@ is alice@
        wanted = (
            (key, _HOUR, self.sender_per_hour),
            (key, _DAY, self.sender_per_day),
            ("global", _HOUR, self.global_per_hour),
            ("global", _DAY, self.global_per_day),
        )
        return tuple(RateLimitCheck(k, w, m) for k, w, m in wanted if m is not None)


@dataclass(frozen=True, slots=True)
class IntakePolicy:
    """Everything intake decides with; replaced as a whole on reload."""

    fax_domain: str
    default_country: str | None
    destinations: DestinationPolicy
    senders: SenderPolicy
    max_recipients: int
    parse_limits: ParseLimits
    rate_limits: RateLimitSettings

    @classmethod
    def from_config(cls, config: Config) -> IntakePolicy:
        """Build the policy from a validated configuration."""
        out = config.outbound
        limits = out.rate_limits
        return cls(
            fax_domain=config.smtp_server.fax_domain,
            default_country=out.default_country,
            destinations=DestinationPolicy(
                allowed_countries=frozenset(out.allowed_countries),
                blocked_number_types=frozenset(out.blocked_number_types),
                blocked_prefixes=frozenset(out.blocked_prefixes),
                allowed_prefixes=frozenset(out.allowed_prefixes),
            ),
            senders=SenderPolicy(tuple(out.allowed_senders)),
            max_recipients=config.smtp_server.max_recipients,
            parse_limits=ParseLimits(max_message_bytes=config.smtp_server.max_message_size),
            rate_limits=RateLimitSettings(
                sender_per_hour=limits.per_sender.per_hour,
                sender_per_day=limits.per_sender.per_day,
                global_per_hour=limits.global_.per_hour,
                global_per_day=limits.global_.per_day,
            ),
        )


def _refused(reason: str) -> None:
    metrics.MESSAGES.inc(outcome="refused", reason=reason)


class Intake:
    """Decides on each step of an offered message and commits accepted ones."""

    def __init__(
        self,
        store: Store,
        policy: IntakePolicy,
        *,
        on_accepted: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._policy = policy
        self._on_accepted = on_accepted
        self._clock = clock

    @property
    def policy(self) -> IntakePolicy:
        """The policy in force."""
        return self._policy

    def replace_policy(self, policy: IntakePolicy) -> None:
        """Use ``policy`` from the next decision on (configuration reload)."""
        self._policy = policy

    def check_sender(self, mail_from: str) -> Reply | None:
        """Decide at ``MAIL FROM``; ``None`` means go on."""
        if self._policy.default_country is None:
            return NO_OUTBOUND
        decision = check_envelope_sender(mail_from, self._policy.senders)
        if not decision.allowed:
            log.info("refused sender (%s)", decision.reason)
            _refused(decision.reason)
            return NOT_AUTHORISED
        return None

    def check_recipient(self, address: str, *, accepted_so_far: int) -> FaxNumber | Reply:
        """Decide at ``RCPT TO``: the number if acceptable, else the refusal."""
        policy = self._policy
        if policy.default_country is None:
            return NO_OUTBOUND
        if accepted_so_far >= policy.max_recipients:
            _refused("too_many_recipients")
            return Reply(452, "4.5.3", "Too many recipients")
        number = parse_fax_recipient(
            address, fax_domain=policy.fax_domain, default_country=policy.default_country
        )
        if isinstance(number, Refusal):
            log.info("refused recipient (%s)", number.metric)
            _refused(number.metric)
            return Reply.from_refusal(number)
        refusal = check_destination(number, policy.destinations)
        if refusal is not None:
            log.info("refused destination %s (%s)", number.e164, refusal.metric)
            _refused(refusal.metric)
            return Reply.from_refusal(refusal)
        return number

    async def accept(
        self,
        raw: bytes,
        *,
        mail_from: str,
        recipients: Sequence[FaxNumber],
        source: MessageSource,
    ) -> Reply:
        """Decide on the message and, if it is acceptable, commit it durably.

        Returns 250 only after the store committed the message and its jobs with fsync.
        Our own failures answer 451 (try later), never 5xx.
        """
        policy = self._policy
        try:
            # Only the header block decides here; the body is parsed by the submitter.
            # Hostile headers can still cost a second of CPU: keep it off the event loop.
            parsed = await asyncio.to_thread(parse_headers, raw, limits=policy.parse_limits)
            if isinstance(parsed, MailRefusal):
                log.info("refused malformed message: %s", parsed.reason)
                _refused("malformed")
                return Reply(parsed.smtp_code, parsed.enhanced_code, parsed.reason)
            if parsed.automatic is not None:
                log.info("refused automatic message (%s)", parsed.automatic)
                _refused("automatic")
                return AUTOMATIC
            decision = authorise(mail_from, parsed.from_values, policy.senders)
            if not decision.allowed or decision.sender is None:
                log.info("refused message (%s)", decision.reason)
                _refused(decision.reason)
                return NOT_AUTHORISED
            # Reports go to Reply-To only when that address is itself allowed: a report
            # must never reach anybody who could not have sent the fax themselves.
            reply_to = parsed.reply_to_address
            report_to = reply_to if reply_to and policy.senders.allows(reply_to) else None
            report_to = report_to or parsed.from_address or decision.sender
            result = await self._store.accept_message(
                raw,
                source=source,
                mail_from=decision.sender,
                from_header=parsed.from_address or decision.sender,
                message_id_header=parsed.message_id,
                recipients=[NewJob(destination=n.e164, sender=report_to) for n in recipients],
                now=self._clock(),
                rate_limits=policy.rate_limits.checks(decision.sender),
            )
        except RateLimited as exc:
            log.info("rate limit reached: %s", exc)
            _refused("rate_limited")
            return RATE_LIMITED
        except Exception:
            log.exception("could not accept a message; answering 451")
            _refused("internal_error")
            return TRY_LATER
        refs = ", ".join(job.reference for job in result.created)
        if not result.created:
            metrics.MESSAGES.inc(outcome="accepted", reason="duplicate")
            return Reply(250, "2.0.0", "Already queued (duplicate of an earlier message)")
        log.info("accepted message for %d fax(es): %s", len(result.created), refs)
        metrics.MESSAGES.inc(outcome="accepted", reason="ok")
        if self._on_accepted is not None:
            self._on_accepted()
        return Reply(250, "2.0.0", f"Queued for faxing as {refs}")
