"""Deciding on one message from a mailbox with the intake SMTP uses, step by step.

A mailbox has no SMTP dialogue, so this walks the dialogue's decisions in its order:
the sender (``MAIL FROM``; the From address stands in for the missing envelope), each
recipient (``RCPT TO``; the fax addresses of To and Cc), then the message itself and the
durable enqueue (end of ``DATA``), all through the same :class:`~bridge.intake.Intake`
with its sender authorisation, destination policy, limits and queue.

Where SMTP would refuse one recipient and take the others, this refuses the whole
request ("bad input gets a clear error and changes nothing"): a sender told that one
number of three was wrong can fix and resend it, whereas two faxes sent and one not is
a muddle to untangle. The outcome says whether to report the refusal: only to a sender
on the allowlist, and never to automatic mail.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Literal

from bridge.imap_message import MailboxMail, read_mailbox_mail
from bridge.intake import Intake, IntakePolicy, Reply
from bridge.jobs import MessageSource
from bridge.numbers import FaxNumber

__all__ = ["Decision", "decide", "read_mail"]


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with a message.

    ``accepted``: queued (or already queued earlier); ``refused``: file it as rejected,
    reporting ``reason`` to ``report_to`` when set; ``deferred``: our own temporary
    trouble (the store, a rate limit), so leave it where it is and try again later.
    """

    outcome: Literal["accepted", "refused", "deferred"]
    reason: str
    report_to: str | None = None
    subject: str = ""


async def read_mail(policy: IntakePolicy, raw: bytes) -> MailboxMail | None:
    """The header facts of ``raw`` (parsed in a thread: it is CPU work)."""
    return await asyncio.to_thread(
        read_mailbox_mail,
        raw,
        fax_domain=policy.fax_domain,
        max_header_bytes=policy.parse_limits.max_header_block_bytes,
    )


async def decide(intake: Intake, raw: bytes, complete: bool) -> Decision:
    """Decide on ``raw`` and, when it is acceptable, queue it durably (source IMAP).

    ``complete`` is False when only the header was fetched because the message is over
    the size limit: such a message is refused.
    """
    policy = intake.policy
    mail = await read_mail(policy, raw)
    if mail is None:
        return Decision("refused", "the message header could not be read")
    sender = mail.from_address
    wanted = sender is not None and mail.automatic is None and policy.senders.allows(sender)
    report_to = sender if wanted else None

    def refused(reason: str) -> Decision:
        return Decision("refused", reason, report_to, mail.subject)

    if mail.automatic is not None:
        return refused(f"automatically generated mail ({mail.automatic}) is never faxed")
    if sender is None:
        return refused("the From header is not exactly one clear address")
    if (reply := intake.check_sender(sender)) is not None:
        return refused(reply.text)
    if not complete:
        return refused(f"the message is larger than {policy.parse_limits.max_message_bytes} bytes")
    if mail.problems:
        return refused("; ".join(mail.problems))
    if not mail.recipients:
        return refused(
            f"no fax number in To or Cc (write them as +12125550100@{policy.fax_domain})"
        )
    numbers: list[FaxNumber] = []
    problems: list[str] = []
    for address in mail.recipients:
        number = intake.check_recipient(address, accepted_so_far=len(numbers))
        if isinstance(number, Reply):
            problems.append(f"{address}: {number.text}")
        elif all(number.e164 != n.e164 for n in numbers):
            numbers.append(number)
    if problems:
        return refused("; ".join(problems))
    reply = await intake.accept(
        raw, mail_from=sender, recipients=numbers, source=MessageSource.IMAP
    )
    if reply.accepted:
        return Decision("accepted", reply.text)
    if reply.code < 500:
        return Decision("deferred", reply.text)
    return refused(reply.text)
