"""Relay connections reused within a session, against a real aiosmtpd on loopback."""

from __future__ import annotations

import asyncio

import pytest

from bridge.errors import TransientError
from bridge.mailer import Mailer, MailRejected, MessageTooLarge, RelaySettings
from tests.bridge_harness import eventually
from tests.smtp_sink import RunningSink, running_sink


def _mail(n: int) -> bytes:
    return f"From: fax@example.org\r\nSubject: {n}\r\n\r\nbody {n}\r\n".encode()


def _mailer(sink: RunningSink) -> Mailer:
    return Mailer(RelaySettings(host=sink.host, port=sink.port, timeout=5))


async def _closed(sink: RunningSink) -> None:
    async def none_open() -> bool:
        return not sink.connections

    await eventually(none_open, within=5, what="the relay connections to close")


async def test_a_session_sends_several_messages_over_one_connection_and_quits() -> None:
    async with running_sink() as sink:
        async with _mailer(sink).session() as mail:
            for n in range(3):
                await mail.send(_mail(n), sender="fax@example.org", recipients=["a@ex.org"])
            assert len(sink.connections) == 1
        await _closed(sink)
    assert [m.parsed()["Subject"] for m in sink.received] == ["0", "1", "2"]
    assert len({m.peer for m in sink.received}) == 1


async def test_concurrent_sends_get_connections_of_their_own_then_reuse_them() -> None:
    async with running_sink() as sink, _mailer(sink).session(max_idle=3) as mail:

        async def send(n: int) -> None:
            await mail.send(_mail(n), sender="fax@example.org", recipients=["a@ex.org"])

        await asyncio.gather(*(send(n) for n in range(3)))
        first = {m.peer for m in sink.received}
        for n in range(3, 6):
            await send(n)
        later = {m.peer for m in sink.received[3:]}
    assert len(first) == 3
    assert later <= first


async def test_a_connection_the_relay_dropped_is_replaced_and_nothing_is_doubled() -> None:
    async with running_sink() as sink:
        async with _mailer(sink).session() as mail:
            await mail.send(_mail(1), sender="fax@example.org", recipients=["a@ex.org"])
            sink.drop_connections()
            await mail.send(_mail(2), sender="fax@example.org", recipients=["a@ex.org"])
        await _closed(sink)
    assert [m.parsed()["Subject"] for m in sink.received] == ["1", "2"]
    assert len({m.peer for m in sink.received}) == 2


async def test_a_refusal_closes_the_connection_it_happened_on() -> None:
    async with running_sink() as sink, _mailer(sink).session() as mail:
        await mail.send(_mail(1), sender="fax@example.org", recipients=["a@ex.org"])
        sink.handler.data_reply = "550 5.7.1 no thanks"
        with pytest.raises(MailRejected):
            await mail.send(_mail(2), sender="fax@example.org", recipients=["a@ex.org"])
        sink.handler.data_reply = None
        await mail.send(_mail(3), sender="fax@example.org", recipients=["a@ex.org"])
    first, third = sink.received
    assert first.peer != third.peer


async def test_idle_connections_beyond_max_idle_are_closed_at_once() -> None:
    async with running_sink() as sink, _mailer(sink).session(max_idle=1) as mail:

        async def send(n: int) -> None:
            await mail.send(_mail(n), sender="fax@example.org", recipients=["a@ex.org"])

        await asyncio.gather(*(send(n) for n in range(3)))

        async def one_left() -> bool:
            return len(sink.connections) == 1

        await eventually(one_left, within=5, what="surplus connections to close")


async def test_a_single_send_uses_and_closes_a_connection_of_its_own() -> None:
    async with running_sink() as sink:
        mailer = _mailer(sink)
        for n in range(2):
            await mailer.send(_mail(n), sender="fax@example.org", recipients=["a@ex.org"])
        await _closed(sink)
    assert len({m.peer for m in sink.received}) == 2


async def test_a_421_on_a_kept_connection_sends_once_more_on_a_new_one() -> None:
    async with running_sink() as sink, _mailer(sink).session() as mail:
        await mail.send(_mail(1), sender="fax@example.org", recipients=["a@ex.org"])
        sink.handler.mail_replies.append("421 4.7.0 Too many messages on this connection")
        await mail.send(_mail(2), sender="fax@example.org", recipients=["a@ex.org"])
    first, second = sink.received
    assert second.parsed()["Subject"] == "2"
    assert first.peer != second.peer


async def test_a_421_on_a_new_connection_is_a_transient_failure() -> None:
    async with running_sink() as sink, _mailer(sink).session() as mail:
        sink.handler.mail_replies.append("421 4.3.2 Not now")
        with pytest.raises(TransientError):
            await mail.send(_mail(1), sender="fax@example.org", recipients=["a@ex.org"])
    assert sink.received == []


async def test_a_send_cancelled_before_the_greeting_leaves_no_connection_open() -> None:
    connected, closed = asyncio.Event(), asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connected.set()
        await reader.read()  # the relay never greets; EOF when the client lets go
        closed.set()
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        mailer = Mailer(RelaySettings(host="127.0.0.1", port=port, timeout=30))
        sending = asyncio.create_task(
            mailer.send(_mail(1), sender="fax@example.org", recipients=["a@ex.org"])
        )
        await asyncio.wait_for(connected.wait(), 5)
        sending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await sending
        await asyncio.wait_for(closed.wait(), 5)


async def test_an_envelope_opened_ahead_takes_its_message_later_on_the_same_connection() -> None:
    async with running_sink() as sink, _mailer(sink).session() as mail:
        opened = await mail.begin(sender="fax@example.org", recipients=["a@ex.org"])
        assert sink.handler.commands == ["MAIL fax@example.org", "RCPT a@ex.org"]
        assert sink.received == []
        sent = await opened.send(_mail(1))
        await mail.send(_mail(2), sender="fax@example.org", recipients=["b@ex.org"])
    assert sent.refused == {}
    first, second = sink.received
    assert (first.mail_from, first.rcpt_tos) == ("fax@example.org", ["a@ex.org"])
    assert first.parsed()["Subject"] == "1"
    assert first.peer == second.peer
    with pytest.raises(RuntimeError):
        await opened.send(_mail(3))


async def test_an_aborted_envelope_sends_nothing_and_its_connection_is_used_again() -> None:
    async with running_sink() as sink, _mailer(sink).session() as mail:
        opened = await mail.begin(sender="fax@example.org", recipients=["a@ex.org"])
        await opened.abort()
        assert sink.handler.commands[-1] == "RSET"
        await mail.send(_mail(2), sender="fax@example.org", recipients=["b@ex.org"])
        assert len(sink.connections) == 1
    [only] = sink.received
    assert (only.rcpt_tos, only.parsed()["Subject"]) == (["b@ex.org"], "2")


async def test_an_envelope_refused_at_rcpt_fails_like_a_send_and_sends_nothing() -> None:
    async with running_sink() as sink, _mailer(sink).session() as mail:
        sink.handler.rcpt_replies["a@ex.org"] = "550 5.1.1 No such user"
        with pytest.raises(MailRejected) as info:
            await mail.begin(sender="fax@example.org", recipients=["a@ex.org"])
        assert info.value.smtp_code == 550
        await mail.send(_mail(2), sender="fax@example.org", recipients=["b@ex.org"])
    assert [m.rcpt_tos for m in sink.received] == [["b@ex.org"]]


async def test_an_envelope_on_a_kept_connection_the_relay_dropped_opens_on_a_new_one() -> None:
    async with running_sink() as sink, _mailer(sink).session() as mail:
        await mail.send(_mail(1), sender="fax@example.org", recipients=["a@ex.org"])
        sink.drop_connections()
        opened = await mail.begin(sender="fax@example.org", recipients=["a@ex.org"])
        await opened.send(_mail(2))
    first, second = sink.received
    assert second.parsed()["Subject"] == "2"
    assert first.peer != second.peer


async def test_a_message_refused_at_the_end_of_an_opened_envelope_closes_its_connection() -> None:
    async with running_sink() as sink, _mailer(sink).session() as mail:
        opened = await mail.begin(sender="fax@example.org", recipients=["a@ex.org"])
        sink.handler.data_reply = "552 5.3.4 Message too big"
        with pytest.raises(MessageTooLarge):
            await opened.send(_mail(1))
        sink.handler.data_reply = None

        async def none_open() -> bool:
            return not sink.connections

        await eventually(none_open, within=5, what="the refused connection to close")
    assert sink.received == []


async def test_an_envelope_the_relay_dropped_while_it_waited_is_sent_on_a_new_connection() -> None:
    async with running_sink() as sink, _mailer(sink).session() as mail:
        opened = await mail.begin(sender="fax@example.org", recipients=["a@ex.org"])
        sink.drop_connections()
        await opened.send(_mail(1))
    [only] = sink.received
    assert (only.rcpt_tos, only.parsed()["Subject"]) == (["a@ex.org"], "1")


async def test_a_message_over_the_relays_size_is_refused_without_sending_it() -> None:
    async with running_sink(data_size_limit=200) as sink, _mailer(sink).session() as mail:
        opened = await mail.begin(sender="fax@example.org", recipients=["a@ex.org"])
        big = _mail(1) + b"x" * 300 + b"\r\n"
        with pytest.raises(MessageTooLarge) as info:
            await opened.send(big)
        assert info.value.smtp_code == 552
        assert sink.handler.commands[-1] == "RSET"
        await mail.send(_mail(2), sender="fax@example.org", recipients=["b@ex.org"])
        assert len(sink.connections) == 1
    assert [m.rcpt_tos for m in sink.received] == [["b@ex.org"]]
