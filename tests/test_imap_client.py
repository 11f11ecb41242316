"""The IMAP client wrapper against a real Dovecot: login, TLS, folders, messages, IDLE."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import trustme

from bridge.config import Secret, parse_config
from bridge.errors import AuthError, PermanentError, TransientError
from bridge.imap import (
    ImapAuthError,
    ImapClient,
    ImapConnectionError,
    ImapNoFolderError,
    ImapRefused,
    ImapSettings,
)
from bridge.imap_intake import ImapIntakeSettings
from bridge.imap_wire import encode_mailbox
from tests.dovecot import PASSWORD, Dovecot, free_port, running_dovecot

MAIL = b"From: a@b.example\r\nSubject: %d\r\nMessage-ID: <m%d@b.example>\r\n\r\nbody %d\r\n"


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Dovecot]:
    with running_dovecot() as server:
        yield server


@pytest.fixture(scope="module")
def dovecot_tls() -> Iterator[Dovecot]:
    with running_dovecot(tls=True) as server:
        yield server


def settings(
    server: Dovecot,
    user: str,
    *,
    tls: str = "none",
    password: str = PASSWORD,
    port: int | None = None,
    ca: Path | None = None,
) -> ImapSettings:
    return ImapSettings(
        host=server.host,
        port=port or server.port,
        tls=tls,  # type: ignore[arg-type]
        username=user,
        password=Secret(password),
        timeout=5.0,
        ca_bundle=ca,
    )


async def put(server: Dovecot, user: str, n: int, folder: str = "INBOX") -> int:
    return await asyncio.to_thread(server.append, user, folder, MAIL % (n, n, n))


async def test_login_reads_the_capabilities_offered_after_login(dovecot: Dovecot) -> None:
    user = dovecot.add_user()
    async with ImapClient(settings(dovecot, user)) as client:
        assert client.connected
        assert client.offers("IDLE")
        assert client.offers("move")  # only announced after login
        assert client.tls_version is None
    assert not client.connected


async def test_a_wrong_password_is_an_auth_error(dovecot: Dovecot) -> None:
    user = dovecot.add_user()
    with pytest.raises(ImapAuthError) as caught:
        await ImapClient(settings(dovecot, user, password="wrong")).connect()
    assert isinstance(caught.value, AuthError)
    assert "AUTHENTICATIONFAILED" in str(caught.value)
    assert "wrong" not in str(caught.value)


async def test_an_unreachable_server_is_a_transient_connection_error(dovecot: Dovecot) -> None:
    with pytest.raises(ImapConnectionError) as caught:
        await ImapClient(settings(dovecot, "x", port=free_port())).connect()
    assert isinstance(caught.value, TransientError)


async def test_implicit_tls_verifies_the_server_with_the_configured_ca(
    dovecot_tls: Dovecot,
) -> None:
    user = dovecot_tls.add_user()
    implicit = settings(
        dovecot_tls, user, tls="implicit", port=dovecot_tls.imaps_port, ca=dovecot_tls.ca_file
    )
    async with ImapClient(implicit) as client:
        assert client.tls_version is not None
        await client.select("INBOX")


async def test_starttls_secures_the_connection_before_the_login(dovecot_tls: Dovecot) -> None:
    user = dovecot_tls.add_user()
    upgraded = settings(dovecot_tls, user, tls="starttls", ca=dovecot_tls.ca_file)
    async with ImapClient(upgraded) as client:
        assert client.tls_version is not None
        assert client.offers("IDLE")
        await put(dovecot_tls, user, 1)
        await client.select("INBOX")
        assert await client.search_uids() == [1]
    assert f"user=<{user}>, method=PLAIN" in dovecot_tls.log
    assert "TLS" in dovecot_tls.log.split(f"user=<{user}>")[1].split("\n")[0]


@pytest.mark.parametrize("tls", ["implicit", "starttls"])
async def test_a_certificate_from_an_unknown_ca_is_refused(
    dovecot_tls: Dovecot, tmp_path: Path, tls: str
) -> None:
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    port = dovecot_tls.imaps_port if tls == "implicit" else dovecot_tls.port
    with pytest.raises(ImapConnectionError, match="certificate verify failed"):
        await ImapClient(settings(dovecot_tls, "x", tls=tls, port=port, ca=other)).connect()


async def test_starttls_is_never_silently_skipped(dovecot: Dovecot) -> None:
    user = dovecot.add_user()
    with pytest.raises(ImapRefused, match="does not offer STARTTLS") as caught:
        await ImapClient(settings(dovecot, user, tls="starttls")).connect()
    assert isinstance(caught.value, PermanentError)
    assert f"user=<{user}>" not in dovecot.log  # no login went out in clear text


async def test_folders_are_created_once_and_non_ascii_names_work(dovecot: Dovecot) -> None:
    user = dovecot.add_user()
    async with ImapClient(settings(dovecot, user)) as client:
        assert await client.ensure_folder("Reçu & Co") is True
        assert await client.ensure_folder("Reçu & Co") is False
        assert await client.ensure_folder("INBOX") is False
        await put(dovecot, user, 1)
        await client.select("INBOX")
        await client.move(1, "Reçu & Co")
        assert (await client.select("Reçu & Co")).exists == 1
    assert encode_mailbox("Reçu & Co").strip('"') in await asyncio.to_thread(dovecot.folders, user)


async def test_a_folder_name_with_a_line_break_is_refused_before_the_wire(
    dovecot: Dovecot,
) -> None:
    user = dovecot.add_user()
    async with ImapClient(settings(dovecot, user)) as client:
        with pytest.raises(ImapRefused, match="control characters"):
            await client.ensure_folder("Faxed\r\nA1 DELETE INBOX")
        assert client.connected


@pytest.mark.parametrize(
    "hidden", [set(), {"MOVE"}, {"MOVE", "UIDPLUS"}], ids=["move", "copy-uidplus", "copy-expunge"]
)
async def test_move_takes_exactly_one_message_out_of_the_folder(
    dovecot: Dovecot, hidden: set[str]
) -> None:
    user = dovecot.add_user()
    first, second = await put(dovecot, user, 1), await put(dovecot, user, 2)
    async with ImapClient(settings(dovecot, user), ignore_capabilities=hidden) as client:
        await client.ensure_folder("Faxed")
        await client.select("INBOX")
        await client.move(first, "Faxed")
        assert await client.search_uids() == [second]
        assert await client.search_uids("ALL") == [second]  # nothing left flagged deleted
    [moved] = await asyncio.to_thread(dovecot.messages, user, "Faxed")
    assert moved.body == MAIL % (1, 1, 1)


async def test_fetch_gives_size_flags_and_body_without_marking_seen(dovecot: Dovecot) -> None:
    user = dovecot.add_user()
    uid = await put(dovecot, user, 1)
    async with ImapClient(settings(dovecot, user)) as client:
        await client.select("INBOX")
        info = await client.fetch(uid, "(UID RFC822.SIZE FLAGS)")
        assert info is not None
        assert info.size == len(MAIL % (1, 1, 1))
        body = await client.fetch(uid, "(UID BODY.PEEK[])")
        assert body is not None
        assert body.body == MAIL % (1, 1, 1)
        header = await client.fetch(uid, "(UID BODY.PEEK[HEADER])")
        assert header is not None
        assert header.body == (MAIL % (1, 1, 1)).split(b"\r\n\r\n")[0] + b"\r\n\r\n"
        assert await client.fetch(uid + 10, "(UID RFC822.SIZE)") is None
        assert await client.search_message_id("<m1@b.example>") == [uid]
    [stored] = await asyncio.to_thread(dovecot.messages, user, "INBOX")
    assert "\\Seen" not in stored.flags


async def test_idle_returns_on_new_mail_on_timeout_and_on_stop(dovecot: Dovecot) -> None:
    user = dovecot.add_user()
    stop = asyncio.Event()
    ticks: list[None] = []
    async with ImapClient(settings(dovecot, user)) as client:
        await client.select("INBOX")
        assert (
            await client.idle(seconds=0.3, stop=stop, tick=0.1, on_tick=lambda: ticks.append(None))
            is False
        )
        assert len(ticks) >= 2

        started = asyncio.Event()
        idling = asyncio.create_task(
            client.idle(seconds=20, stop=stop, tick=0.05, on_tick=started.set)
        )
        await asyncio.wait_for(started.wait(), 10)  # the mail must arrive while idling
        await put(dovecot, user, 1)
        assert await asyncio.wait_for(idling, 10) is True

        stopping = asyncio.create_task(client.idle(seconds=20, stop=stop))
        stop.set()
        assert await asyncio.wait_for(stopping, 10) is False
        assert await client.search_uids() == [1]  # still usable after each IDLE


async def test_a_configured_imap_in_section_connects_with_starttls_and_its_ca(
    dovecot_tls: Dovecot,
) -> None:
    user = dovecot_tls.add_user()
    text = f"""\
interfax: {{username: u, password: p}}
state_dir: /nonexistent
mail: {{from: fax@bridge.example.org}}
imap_in:
  host: {dovecot_tls.host}
  port: {dovecot_tls.port}
  tls: starttls
  username: {user}
  password: {PASSWORD}
  ca_bundle: {dovecot_tls.ca_file}
  timeout: 5s
"""
    config = parse_config(text, source="test.yaml", environ={})
    assert config.imap_in is not None
    settings = ImapIntakeSettings.from_config(config.imap_in)
    assert settings.connection.account == f"{user}@127.0.0.1"
    assert "secret" not in repr(settings)
    async with ImapClient(settings.connection) as client:
        assert client.tls_version is not None


async def test_append_sets_the_flags_and_internal_date_asked_for(dovecot: Dovecot) -> None:
    user = dovecot.add_user()
    moment = datetime(2024, 2, 29, 23, 59, 59, tzinfo=UTC)
    async with ImapClient(settings(dovecot, user)) as client:
        await client.ensure_folder("Faxes")
        await client.append(
            "Faxes", MAIL % (1, 1, 1), flags=("\\Seen", "\\Flagged"), internal_date=moment
        )
        with pytest.raises(ImapNoFolderError):
            await client.append("Nowhere", MAIL % (2, 2, 2))
    [message] = await asyncio.to_thread(dovecot.messages, user, "Faxes")
    assert {"\\Seen", "\\Flagged"} <= message.flags
    assert message.internal_date == moment
