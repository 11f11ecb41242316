"""IMAP through the whole service: requests from a mailbox, received faxes into a folder."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from bridge.sandbox.server import RunningSandbox
from tests.bridge_harness import (
    ALICE,
    bridge_yaml,
    eventually,
    load,
    running_bridge,
    service_from_file,
)
from tests.conftest import SandboxControl
from tests.dovecot import PASSWORD, Dovecot, running_dovecot
from tests.imap_kit import fax_request
from tests.smtp_sink import RunningSink, running_sink


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Dovecot]:
    with running_dovecot() as server:
        yield server


@pytest.fixture
async def sink() -> AsyncIterator[RunningSink]:
    async with running_sink() as s:
        yield s


def _imap(section: str, server: Dovecot, user: str, extra: str = "") -> str:
    return (
        f"{section}:\n  host: {server.host}\n  port: {server.port}\n  tls: none\n"
        f"  username: {user}\n  password: {PASSWORD}\n  timeout: 5s\n{extra}"
    )


def _config_text(tmp_path: Path, sandbox: RunningSandbox, sink: RunningSink, extra: str) -> str:
    return bridge_yaml(
        tmp_path / "state", interfax_url=sandbox.base_url, relay_port=sink.port, extra=extra
    )


async def test_a_fax_request_in_the_mailbox_is_faxed_and_moved_to_done(
    tmp_path: Path,
    dovecot: Dovecot,
    sandbox: RunningSandbox,
    sandbox_control: SandboxControl,
    sink: RunningSink,
) -> None:
    user = dovecot.add_user()
    extra = _imap("imap_in", dovecot, user, "  poll_interval: 0.2s\n")
    config = load(_config_text(tmp_path, sandbox, sink, extra), tmp_path)
    await asyncio.to_thread(
        dovecot.append, user, "INBOX", fax_request(to=["+12125550100@fax.local"])
    )
    async with running_bridge(config):

        async def faxed() -> bool:
            return len(await sandbox_control.outbound()) == 1

        await eventually(faxed, what="the fax from the mailbox")

        async def moved() -> bool:
            done = await asyncio.to_thread(dovecot.messages, user, "Faxed")
            return len(done) == 1

        await eventually(moved, what="the request moved to Faxed")
    assert await asyncio.to_thread(dovecot.messages, user, "INBOX") == []
    [fax] = await sandbox_control.outbound()
    assert fax["faxNumber"] == "+12125550100"


async def test_after_a_reload_a_refused_request_is_reported_from_the_new_mail_from(
    tmp_path: Path, dovecot: Dovecot, sandbox: RunningSandbox, sink: RunningSink
) -> None:
    user = dovecot.add_user()
    text = _config_text(
        tmp_path, sandbox, sink, _imap("imap_in", dovecot, user, "  poll_interval: 0.2s\n")
    )
    path = tmp_path / "config.yaml"
    async with service_from_file(path, text) as service:
        path.write_text(text.replace("from: fax@bridge.example.org", "from: faxes@new.example.org"))
        assert await service.reload()
        request = fax_request(to="+1555@fax.local")  # not a valid number: refused
        await asyncio.to_thread(dovecot.append, user, "INBOX", request)
        [report] = await sink.handler.wait_for(1)
    assert (report.mail_from, report.rcpt_tos) == ("faxes@new.example.org", [ALICE])


async def test_a_received_fax_is_appended_unseen_with_its_receive_time_then_marked_read(
    tmp_path: Path,
    dovecot: Dovecot,
    sandbox: RunningSandbox,
    sandbox_control: SandboxControl,
    sink: RunningSink,
    make_pdf: Callable[..., bytes],
) -> None:
    user = dovecot.add_user()
    extra = _imap("imap_out", dovecot, user) + (
        "inbound:\n  poll_interval: 0.2s\n  default_route:\n    deliver: imap\n    folder: Faxes\n"
    )
    config = load(_config_text(tmp_path, sandbox, sink, extra), tmp_path)
    async with running_bridge(config):
        message_id = await sandbox_control.receive_fax(make_pdf(2))

        async def marked() -> bool:
            [fax] = await sandbox_control.inbound()
            return fax["imageStatus"] == "READ"

        await eventually(marked, what="the fax marked read after the APPEND")
    [stored] = await asyncio.to_thread(dovecot.messages, user, "Faxes")
    assert "\\Seen" not in stored.flags
    assert stored.internal_date is not None
    [listed] = await sandbox_control.inbound()
    assert listed["messageId"] == message_id
    assert b"Fax from" in stored.body
    assert sink.received == []


async def test_append_refused_by_quota_keeps_the_fax_unread(
    tmp_path: Path,
    dovecot: Dovecot,
    sandbox: RunningSandbox,
    sandbox_control: SandboxControl,
    sink: RunningSink,
    make_pdf: Callable[..., bytes],
) -> None:
    user = dovecot.add_user(quota=True)
    extra = _imap("imap_out", dovecot, user) + (
        "inbound:\n  poll_interval: 0.2s\n  default_route:\n    deliver: imap\n    folder: Faxes\n"
    )
    config = load(_config_text(tmp_path, sandbox, sink, extra), tmp_path)
    async with running_bridge(config) as bridge:
        await sandbox_control.receive_fax(make_pdf(3))

        async def refused() -> bool:
            faxes = await bridge.service.store.inbound_faxes()
            return bool(faxes) and faxes[0].last_error is not None

        await eventually(refused, what="the APPEND refusal recorded")
        # The admin hears about it once, through the relay.
        await sink.handler.wait_for(1)
    [fax] = await sandbox_control.inbound()
    assert fax["imageStatus"] == "UNREAD"
    assert sink.received[0].rcpt_tos == ["admin@clinic.example.org"]
    assert ALICE not in sink.received[0].rcpt_tos


async def test_probe_logs_in_to_both_mailboxes_and_names_the_one_that_fails(
    tmp_path: Path, dovecot: Dovecot, sandbox: RunningSandbox, sink: RunningSink
) -> None:
    from bridge.admin import probe

    good, bad = dovecot.add_user(), dovecot.add_user()
    extra = _imap("imap_in", dovecot, good) + _imap("imap_out", dovecot, bad).replace(
        f"password: {PASSWORD}", "password: wrong"
    )
    results = await probe(load(_config_text(tmp_path, sandbox, sink, extra), tmp_path))
    by_name = {what: (ok, detail) for what, ok, detail in results}
    assert by_name["InterFAX credentials"][0]
    assert by_name["mail relay"][0]
    assert by_name["IMAP intake"] == (True, f"{good} at {dovecot.host}: INBOX holds 0 message(s)")
    ok, detail = by_name["IMAP delivery"]
    assert not ok
    assert detail


async def test_a_mailbox_that_refuses_our_login_makes_the_service_not_ready(
    tmp_path: Path, dovecot: Dovecot, sandbox: RunningSandbox, sink: RunningSink
) -> None:
    user = dovecot.add_user()
    extra = _imap("imap_in", dovecot, user).replace(f"password: {PASSWORD}", "password: wrong")
    config = load(_config_text(tmp_path, sandbox, sink, extra), tmp_path)
    async with running_bridge(config) as bridge:

        async def refused() -> list[str]:
            ready, reasons = bridge.service.readiness()
            return [] if ready else reasons

        [reason] = await eventually(refused, what="readiness to name the IMAP failure")
        assert reason.startswith("IMAP intake fails: ImapAuthError")
