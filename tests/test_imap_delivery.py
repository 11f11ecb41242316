"""Received faxes appended to a mailbox folder over IMAP, against a real Dovecot."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from email.message import EmailMessage
from email.policy import SMTP

import pytest

from bridge.config import Secret
from bridge.errors import AuthError, PermanentError
from bridge.imap import ImapAuthError, ImapQuotaError, ImapSettings
from bridge.imap_delivery import ImapDelivery
from tests.dovecot import PASSWORD, Dovecot, StoredMessage, running_dovecot

RECEIVED = datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=1)))


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Dovecot]:
    with running_dovecot() as server:
        yield server


def delivery_to(server: Dovecot, user: str) -> ImapDelivery:
    return ImapDelivery(
        ImapSettings(server.host, server.port, "none", user, Secret(PASSWORD), timeout=5.0)
    )


def fax_mail(*, message_id: str = "<fax-77-lab@bridge.example.org>", size: int = 100) -> bytes:
    msg = EmailMessage(policy=SMTP)
    msg["From"] = "fax@bridge.example.org"
    msg["To"] = "lab@clinic.example.org"
    msg["Subject"] = "Fax from +1 202-555-0199 to +1 202-555-0100 (1 pages)"
    msg["Message-ID"] = message_id
    msg.set_content("A fax arrived.\n" + "x" * size + "\n")
    msg.add_attachment(b"%PDF-1.4 tiny", maintype="application", subtype="pdf", filename="fax.pdf")
    return msg.as_bytes()


async def stored(server: Dovecot, user: str, folder: str) -> list[StoredMessage]:
    return await asyncio.to_thread(server.messages, user, folder)


async def test_a_fax_mail_arrives_unread_dated_when_the_fax_was_received(
    dovecot: Dovecot,
) -> None:
    user = dovecot.add_user()
    data = fax_mail()
    await delivery_to(dovecot, user).append_fax_mail(data, "Faxes", RECEIVED)
    [message] = await stored(dovecot, user, "Faxes")
    assert message.internal_date == RECEIVED
    assert "\\Seen" not in message.flags
    assert message.body == data


async def test_lf_line_ends_become_crlf(dovecot: Dovecot) -> None:
    user = dovecot.add_user()
    data = fax_mail().replace(b"\r\n", b"\n")
    moment = datetime(2023, 12, 31, 23, 59, 58, tzinfo=UTC)
    await delivery_to(dovecot, user).append_fax_mail(data, "INBOX", moment)
    [message] = await stored(dovecot, user, "INBOX")
    assert message.internal_date == moment
    assert message.body == data.replace(b"\n", b"\r\n")


async def test_delivering_the_same_fax_mail_again_appends_nothing(dovecot: Dovecot) -> None:
    user = dovecot.add_user()
    delivery = delivery_to(dovecot, user)
    await delivery.append_fax_mail(fax_mail(), "Faxes", RECEIVED)
    await delivery.append_fax_mail(fax_mail(), "Faxes", RECEIVED)  # e.g. the OK was lost
    await delivery.append_fax_mail(fax_mail(message_id="<fax-78-lab@x>"), "Faxes", RECEIVED)
    assert len(await stored(dovecot, user, "Faxes")) == 2


async def test_a_full_mailbox_refuses_the_fax_with_a_quota_error(dovecot: Dovecot) -> None:
    user = dovecot.add_user(quota=True)
    with pytest.raises(ImapQuotaError) as caught:
        await delivery_to(dovecot, user).append_fax_mail(fax_mail(size=5000), "Faxes", RECEIVED)
    assert isinstance(caught.value, PermanentError)
    assert caught.value.reply.code == "OVERQUOTA"
    assert await stored(dovecot, user, "Faxes") == []


async def test_refused_credentials_are_an_auth_error(dovecot: Dovecot) -> None:
    user = dovecot.add_user()
    delivery = delivery_to(dovecot, user)
    wrong = ImapDelivery(replace(delivery.settings, password=Secret("wrong")))
    with pytest.raises(ImapAuthError) as caught:
        await wrong.append_fax_mail(fax_mail(), "Faxes", RECEIVED)
    assert isinstance(caught.value, AuthError)


async def test_a_receive_time_without_a_zone_is_refused_before_connecting() -> None:
    delivery = ImapDelivery(ImapSettings("127.0.0.1", 1, "none", "u", Secret("p")))
    with pytest.raises(ValueError, match="time zone"):
        await delivery.append_fax_mail(fax_mail(), "Faxes", datetime(2024, 1, 2, 3, 4, 5))
