"""The relay edge against a real aiosmtpd server on loopback."""

from __future__ import annotations

import socket
import ssl
from email.message import EmailMessage
from pathlib import Path

import pytest
import trustme

from bridge.errors import AuthError, PermanentError, TransientError
from bridge.mailer import (
    Mailer,
    MailRejected,
    MessageTooLarge,
    RelaySecurity,
    RelaySettings,
    check_envelope_address,
)
from tests.smtp_sink import running_sink


def _message(to: str = "alice@example.org") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "fax@example.org"
    msg["To"] = to
    msg["Subject"] = "hello"
    msg.set_content("body")
    return msg


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


def _server_context(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(ctx)
    return ctx


async def test_plain_delivery_reaches_the_relay_with_envelope_and_bytes() -> None:
    async with running_sink() as sink:
        mailer = Mailer(RelaySettings(host=sink.host, port=sink.port, timeout=5))
        sent = await mailer.send(_message(), sender="fax@example.org", recipients=["a@ex.org"])
    assert sent.refused == {}
    assert "accepted" in sent.response
    [mail] = sink.received
    assert mail.mail_from == "fax@example.org"
    assert mail.rcpt_tos == ["a@ex.org"]
    assert mail.parsed()["Subject"] == "hello"


async def test_starttls_with_auth_delivers(tmp_path: Path, ca: trustme.CA) -> None:
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    async with running_sink(tls_context=_server_context(ca), users={"u": "pw"}) as sink:
        settings = RelaySettings(
            host=sink.host,
            port=sink.port,
            security=RelaySecurity.STARTTLS,
            username="u",
            password="pw",
            ca_file=ca_file,
            timeout=5,
        )
        await Mailer(settings).send(_message(), sender="fax@ex.org", recipients=["a@ex.org"])
    assert len(sink.received) == 1


async def test_implicit_tls_delivers(tmp_path: Path, ca: trustme.CA) -> None:
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    async with running_sink(tls_context=_server_context(ca), implicit_tls=True) as sink:
        settings = RelaySettings(
            host=sink.host, port=sink.port, security=RelaySecurity.TLS, ca_file=ca_file, timeout=5
        )
        await Mailer(settings).send(_message(), sender="fax@ex.org", recipients=["a@ex.org"])
    assert len(sink.received) == 1


async def test_untrusted_certificate_is_a_transient_failure_not_a_delivery(
    ca: trustme.CA,
) -> None:
    async with running_sink(tls_context=_server_context(ca), implicit_tls=True) as sink:
        # No CA file: the system store does not know the test CA.
        settings = RelaySettings(
            host=sink.host, port=sink.port, security=RelaySecurity.TLS, timeout=5
        )
        with pytest.raises(TransientError):
            await Mailer(settings).send(_message(), sender="fax@ex.org", recipients=["a@ex.org"])
    assert sink.received == []


async def test_wrong_password_is_an_auth_error(tmp_path: Path, ca: trustme.CA) -> None:
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    async with running_sink(tls_context=_server_context(ca), users={"u": "pw"}) as sink:
        settings = RelaySettings(
            host=sink.host,
            port=sink.port,
            security=RelaySecurity.STARTTLS,
            username="u",
            password="wrong",
            ca_file=ca_file,
            timeout=5,
        )
        with pytest.raises(AuthError):
            await Mailer(settings).send(_message(), sender="fax@ex.org", recipients=["a@ex.org"])


async def test_permanent_refusal_of_the_only_recipient_is_mail_rejected() -> None:
    async with running_sink() as sink:
        sink.handler.rcpt_replies["a@ex.org"] = "550 5.1.1 no such user"
        mailer = Mailer(RelaySettings(host=sink.host, port=sink.port, timeout=5))
        with pytest.raises(MailRejected) as info:
            await mailer.send(_message(), sender="fax@ex.org", recipients=["a@ex.org"])
    assert info.value.smtp_code == 550
    assert isinstance(info.value, PermanentError)


async def test_size_refusal_is_message_too_large() -> None:
    async with running_sink() as sink:
        sink.handler.data_reply = "552 5.3.4 Message too big"
        mailer = Mailer(RelaySettings(host=sink.host, port=sink.port, timeout=5))
        with pytest.raises(MessageTooLarge):
            await mailer.send(_message(), sender="fax@ex.org", recipients=["a@ex.org"])


async def test_temporary_refusal_is_transient() -> None:
    async with running_sink() as sink:
        sink.handler.data_reply = "451 4.3.0 try later"
        mailer = Mailer(RelaySettings(host=sink.host, port=sink.port, timeout=5))
        with pytest.raises(TransientError):
            await mailer.send(_message(), sender="fax@ex.org", recipients=["a@ex.org"])


async def test_partial_refusal_reports_the_refused_recipient_only() -> None:
    async with running_sink() as sink:
        sink.handler.rcpt_replies["b@ex.org"] = "550 5.1.1 no such user"
        mailer = Mailer(RelaySettings(host=sink.host, port=sink.port, timeout=5))
        sent = await mailer.send(
            _message(), sender="fax@ex.org", recipients=["a@ex.org", "b@ex.org"]
        )
    assert set(sent.refused) == {"b@ex.org"}
    assert sent.refused["b@ex.org"][0] == 550
    assert sink.received[0].rcpt_tos == ["a@ex.org"]


async def test_relay_down_is_transient() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mailer = Mailer(RelaySettings(host="127.0.0.1", port=port, timeout=5))
    with pytest.raises(TransientError):
        await mailer.send(_message(), sender="fax@ex.org", recipients=["a@ex.org"])


@pytest.mark.parametrize(
    "address",
    [
        "a@ex.org\r\nRCPT TO:<evil@x.org>",
        "a@ex.org\n",
        "<a@ex.org>",
        "a b@ex.org",
        "a@ex.org SIZE=1",
        "",
        "noat",
        "a@",
    ],
)
def test_unsafe_envelope_addresses_never_reach_the_wire(address: str) -> None:
    with pytest.raises(PermanentError):
        check_envelope_address(address)


async def test_unsafe_recipient_is_refused_before_connecting() -> None:
    async with running_sink() as sink:
        mailer = Mailer(RelaySettings(host=sink.host, port=sink.port, timeout=5))
        with pytest.raises(PermanentError):
            await mailer.send(_message(), sender="fax@ex.org", recipients=["a@ex.org\r\nDATA"])
    assert sink.received == []
