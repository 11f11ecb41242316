"""The SMTP listener's recipient, size, drain and event-loop rules, over real SMTP.

Each test talks to the in-process service through :class:`tests.smtp_probe.SmtpProbe`
and reads every reply as it is on the wire. InterFAX is a port nobody listens on:
nothing in the SMTP dialogue may depend on it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.bridge_harness import ALICE, RunningBridge
from tests.smtp_kit import FAX, bridge_with, mail, mail_of_size, on_disk
from tests.smtp_probe import SmtpProbe

LIMIT = 50_000


@pytest.fixture
async def bridge(tmp_path: Path) -> AsyncIterator[RunningBridge]:
    """Default policy (US only, default blocked number types) plus a blocked prefix."""
    async with bridge_with(
        tmp_path,
        smtp={"max_recipients": 3, "max_message_size": LIMIT},
        outbound={"blocked_prefixes": ["+1303"]},
    ) as running:
        yield running


@pytest.fixture
async def session(bridge: RunningBridge) -> AsyncIterator[SmtpProbe]:
    """A session of an allowed sender, after EHLO and MAIL FROM."""
    async with await SmtpProbe.open(bridge.smtp_port) as probe:
        await probe.ehlo()
        reply = await probe.mail(ALICE)
        assert reply.code == 250, str(reply)
        yield probe


def _state(tmp_path: Path) -> Path:
    return tmp_path / "state"


# -- RCPT ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "user@gmail.com",
        "1555@fax.local.evil.com",
        "+12025550100@fax.local.evil.com",
        "+12025550100@sub.fax.local",
        "+12025550100@[127.0.0.1]",
    ],
)
async def test_rcpt_to_another_domain_is_550_5_7_1_and_never_relayed(
    session: SmtpProbe, tmp_path: Path, address: str
) -> None:
    reply = await session.rcpt(address)
    assert reply.status == "550 5.7.1"
    assert "relaying denied" in reply.text
    # Nothing was accepted, so there is no transaction to carry a message.
    assert (await session.command("DATA")).code == 503
    assert on_disk(_state(tmp_path)).messages == []


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("1555@fax.local", "not a valid phone number"),
        ("+1202555@fax.local", "not a valid phone number"),
        ("postmaster@fax.local", "the local part must be a fax number"),
        ("+1202+5550100@fax.local", "a + may only start the number"),
        ("1555%evil.com@fax.local", "% and ! routing is not accepted"),
        ("+12025550100%evil.com@fax.local", "% and ! routing is not accepted"),
        ("evil.com!+12025550100@fax.local", "% and ! routing is not accepted"),
        ('"1555"@fax.local', "quoted local parts are not accepted"),
        # aiosmtpd alone would unquote these two to a valid number and accept them.
        ('"+12025550100"@fax.local', "quoted local parts are not accepted"),
        ("@a,@b:1555@fax.local", "source routes are not accepted"),
        ("@a,@b:+12025550100@fax.local", "source routes are not accepted"),
    ],
)
async def test_malformed_recipient_is_553_5_1_3_with_its_reason(
    session: SmtpProbe, tmp_path: Path, address: str, reason: str
) -> None:
    reply = await session.rcpt(address)
    assert reply.status == "553 5.1.3"
    assert reason in reply.text
    assert (await session.command("DATA")).code == 503
    assert on_disk(_state(tmp_path)).messages == []


@pytest.mark.parametrize(
    "line",
    [
        "RCPT TO:<＋１２０２５５５０１００@fax.local>".encode(),
        "RCPT TO:<+1２０２5550100@fax.local>".encode(),
        b"RCPT TO:<+12025550100@fax.local> SMTPUTF8",
    ],
)
async def test_full_width_digits_are_refused_with_5xx(
    session: SmtpProbe, tmp_path: Path, line: bytes
) -> None:
    reply = await session.command(line)
    assert 500 <= reply.code < 600, str(reply)
    assert (await session.command("DATA")).code == 503
    assert on_disk(_state(tmp_path)).messages == []


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("+19002345678@fax.local", "premium-rate numbers are blocked"),
        ("+18765550100@fax.local", "destination country JM is not allowed"),
        ("+442071234567@fax.local", "destination country GB is not allowed"),
        ("+13035550100@fax.local", "destination prefix +1303 is blocked"),
    ],
)
async def test_destination_policy_refuses_at_rcpt_with_553_5_7_1(
    session: SmtpProbe, address: str, reason: str
) -> None:
    reply = await session.rcpt(address)
    assert reply.status == "553 5.7.1"
    assert reason in reply.text


async def test_accepted_recipient_is_250_2_1_5_in_any_written_form(session: SmtpProbe) -> None:
    for address in (
        "+12025550100@fax.local",
        "0012025550100@FAX.LOCAL",
        "2025550100@fax.local",
        "+1 (202) 555-0100@fax.local",
        "+1.202.555.0100@Fax.Local",
    ):
        reply = await session.rcpt(address)
        assert str(reply) == "250 2.1.5 Fax to +1 202-555-0100 OK", address
        assert (await session.command("RSET")).code == 250
        assert (await session.mail(ALICE)).code == 250


async def test_recipients_beyond_max_recipients_get_452_4_5_3(
    session: SmtpProbe, tmp_path: Path
) -> None:
    numbers = [f"+1202555010{i}" for i in range(5)]
    replies = [await session.rcpt(f"{n}@fax.local") for n in numbers]
    assert [r.status for r in replies] == ["250 2.1.5"] * 3 + ["452 4.5.3"] * 2
    assert (await session.data(mail())).code == 250
    jobs = on_disk(_state(tmp_path)).jobs
    assert sorted(job["destination"] for job in jobs) == numbers[:3]


async def test_one_job_per_accepted_recipient_and_none_for_refused_ones(
    session: SmtpProbe, tmp_path: Path
) -> None:
    assert (await session.rcpt("+12025550100@fax.local")).code == 250
    assert (await session.rcpt("+18765550100@fax.local")).code == 553
    assert (await session.rcpt("user@gmail.com")).code == 550
    assert (await session.rcpt("+12025550111@fax.local")).code == 250
    assert (await session.rcpt("+1-202-555-0100@fax.local")).code == 250  # the same number
    reply = await session.data(mail())
    assert reply.status == "250 2.0.0"
    disk = on_disk(_state(tmp_path))
    assert len(disk.messages) == 1
    assert sorted(job["destination"] for job in disk.jobs) == ["+12025550100", "+12025550111"]
    queued = reply.text.removeprefix("2.0.0 Queued for faxing as ").split(", ")
    assert {job["reference"] for job in disk.jobs} == set(queued)


async def test_resend_with_an_added_recipient_queues_only_the_new_one(
    bridge: RunningBridge, tmp_path: Path
) -> None:
    raw = mail(message_id="<resend@clinic.example.org>")
    for recipients in ([FAX], [FAX, "+12025550111@fax.local"], [FAX]):
        async with await SmtpProbe.open(bridge.smtp_port) as probe:
            await probe.ehlo()
            assert (await probe.mail(ALICE)).code == 250
            for rcpt in recipients:
                assert (await probe.rcpt(rcpt)).code == 250
            reply = await probe.data(raw)
            assert reply.code == 250, str(reply)
    assert str(reply) == "250 2.0.0 Already queued (duplicate of an earlier message)"
    jobs = on_disk(_state(tmp_path)).jobs
    assert sorted(job["destination"] for job in jobs) == ["+12025550100", "+12025550111"]


# -- size ------------------------------------------------------------------------------


async def test_size_is_advertised_and_an_announced_oversize_is_552_5_3_4_at_mail(
    bridge: RunningBridge,
) -> None:
    async with await SmtpProbe.open(bridge.smtp_port) as probe:
        ehlo = await probe.ehlo()
        assert f"SIZE {LIMIT}" in ehlo.lines
        reply = await probe.mail(ALICE, "SIZE=999999")
        assert reply.status == "552 5.3.4"
        assert (await probe.mail(ALICE, f"SIZE={LIMIT}")).code == 250


async def test_data_over_the_size_limit_is_552_5_3_4_and_stores_nothing(
    session: SmtpProbe, tmp_path: Path
) -> None:
    assert (await session.rcpt(FAX)).code == 250
    reply = await session.data(mail_of_size(LIMIT + 1))
    assert reply.status == "552 5.3.4"
    assert on_disk(_state(tmp_path)).messages == []
    # The transaction is over: the connection serves the next one.
    assert (await session.mail(ALICE)).code == 250


async def test_message_of_exactly_the_size_limit_is_accepted(
    session: SmtpProbe, tmp_path: Path
) -> None:
    raw = mail_of_size(LIMIT)
    assert (await session.rcpt(FAX)).code == 250
    reply = await session.data(raw)
    assert reply.status == "250 2.0.0"
    [message] = on_disk(_state(tmp_path)).messages
    assert message["raw"] == raw
    assert message["size"] == LIMIT


# -- durability ------------------------------------------------------------------------


async def test_250_comes_after_message_and_jobs_are_committed_to_the_database_file(
    session: SmtpProbe, tmp_path: Path
) -> None:
    raw = mail(message_id="<durable@clinic.example.org>")
    assert (await session.rcpt(FAX)).code == 250
    assert (await session.rcpt("+12025550111@fax.local")).code == 250
    reply = await session.data(raw)
    assert reply.status == "250 2.0.0"
    references = reply.text.removeprefix("2.0.0 Queued for faxing as ").split(", ")
    # Read through a second connection, before anything else happens in this session.
    disk = on_disk(_state(tmp_path))
    [message] = disk.messages
    assert message["raw"] == raw
    assert message["message_id_header"] == "<durable@clinic.example.org>"
    assert message["mail_from"] == ALICE
    assert sorted(job["reference"] for job in disk.jobs) == sorted(references)
    assert {job["message_id"] for job in disk.jobs} == {message["id"]}
    assert {job["sender"] for job in disk.jobs} == {ALICE}


# -- draining and the event loop -------------------------------------------------------


async def test_after_start_draining_new_sessions_get_421_4_3_2_and_old_ones_go_on(
    bridge: RunningBridge,
) -> None:
    async with await SmtpProbe.open(bridge.smtp_port) as before:
        await before.ehlo()
        assert bridge.service.listener is not None
        bridge.service.listener.start_draining()
        async with await SmtpProbe.open(bridge.smtp_port) as after:
            assert after.greeting is not None
            assert str(after.greeting) == "421 4.3.2 Service shutting down, please try again later"
            assert await after.at_eof()
        assert (await before.mail(ALICE)).code == 250


async def test_listener_serves_sessions_on_the_service_event_loop_without_threads(
    bridge: RunningBridge,
) -> None:
    def threads() -> set[threading.Thread]:
        # The loop's default executor may start workers at any time for the background
        # workers' name lookups; they are not ours to count. A Controller would add a
        # thread of its own, running its own event loop.
        return {t for t in threading.enumerate() if not t.name.startswith("asyncio_")}

    before = threads()
    async with await SmtpProbe.open(bridge.smtp_port) as probe:
        await probe.ehlo()
        assert (await probe.mail(ALICE)).code == 250
        assert (await probe.rcpt(FAX)).code == 250
        # The session's aiosmtpd task lives in this very event loop.
        handlers = [
            task
            for task in asyncio.all_tasks()
            if getattr(task.get_coro(), "__qualname__", "").endswith("_handle_client")
        ]
        assert len(handlers) == 1
        assert threads() == before
        assert (await probe.command("QUIT")).code == 221
    assert threads() == before
