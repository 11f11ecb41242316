"""The InterFAX client on the wire, against a scripted real HTTP server.

These cover what the sandbox will not do on purpose: exact request bytes,
malformed or surprising success answers, 403, cleanup after failed uploads.
"""

from __future__ import annotations

import base64
import socket
from decimal import Decimal

import pytest

from bridge.errors import AmbiguousError, AuthError, TransientError
from bridge.faxmodels import DocumentRef, FaxDocument, PageSize, SendOptions
from bridge.interfax import InterfaxClient, Timeouts
from bridge.interfax_errors import (
    InterfaxAmbiguousError,
    InterfaxAmbiguousProtocolError,
    InterfaxAuthError,
    InterfaxNotFoundError,
    InterfaxPermanentError,
    InterfaxProtocolError,
    InterfaxRateLimitError,
    InterfaxRequestError,
    InterfaxTransientError,
)
from tests.scripted_http import DROP, HANG, ScriptedServer, response

PASSWORD = "s3cret-pw"
PDF = FaxDocument("a.pdf", "application/pdf", b"%PDF-1.4\n%%EOF\n")
DOC_ID = "69d6415f2be541e88809322691373fce"


def _created(server: ScriptedServer, path: str) -> bytes:
    return response(201, headers=[("Location", f"{server.base_url}{path}")])


def _client(server: ScriptedServer, **kwargs: object) -> InterfaxClient:
    return InterfaxClient(server.base_url, "user", PASSWORD, **kwargs)  # type: ignore[arg-type]


async def test_send_puts_auth_up_front_and_encodes_the_number_and_options() -> None:
    server = ScriptedServer([])
    async with server.running():
        server.script.append(_created(server, "/outbound/faxes/750682415"))
        async with _client(server, user_agent="probe/1") as client:
            fax_id = await client.send_fax(
                "+1 212 555 0100", [PDF], SendOptions(reference="r+1", page_size=PageSize.A4)
            )
    assert fax_id == 750682415
    (seen,) = server.seen
    assert seen.method == "POST"
    assert (
        seen.target
        == "/outbound/faxes?faxNumber=%2B1%20212%20555%200100&reference=r%2B1&pageSize=a4"
    )
    token = base64.b64encode(f"user:{PASSWORD}".encode()).decode()
    assert seen.headers["authorization"] == f"Basic {token}"
    assert seen.headers["user-agent"] == "probe/1"
    assert seen.headers["content-type"] == "application/pdf"
    assert seen.body == PDF.data


async def test_a_reference_is_sent_as_an_empty_body_with_content_location() -> None:
    ref = DocumentRef(f"https://rest.interfax.net/outbound/documents/{DOC_ID}")
    server = ScriptedServer([])
    async with server.running():
        server.script.append(_created(server, "/outbound/faxes/7"))
        async with _client(server) as client:
            assert await client.send_fax("+1", [ref]) == 7
    (seen,) = server.seen
    assert seen.headers["content-location"] == ref.uri
    assert seen.headers["content-length"] == "0"
    assert seen.body == b""
    assert "content-type" not in seen.headers


@pytest.mark.parametrize(
    "answer",
    [
        response(201, headers=[("Location", "/outbound/faxes/7")]),
        response(201),
        response(200, b"7"),
        response(201, headers=[("Location", "https://h/outbound/faxes/seven")]),
    ],
    ids=["relative-location", "no-location", "200-instead-of-201", "non-numeric-id"],
)
async def test_an_unusable_answer_to_send_is_ambiguous_because_the_fax_may_exist(
    answer: bytes,
) -> None:
    async with ScriptedServer([answer]).running() as server, _client(server) as client:
        with pytest.raises(InterfaxAmbiguousProtocolError) as caught:
            await client.send_fax("+1", [PDF])
    assert isinstance(caught.value, AmbiguousError)


async def test_a_malformed_json_record_is_a_plain_protocol_error_for_a_read() -> None:
    script = [
        response(200, b"<html>proxy page</html>", headers=[("Content-Type", "text/html")]),
        response(200, b'{"status": 0}', headers=[("Content-Type", "text/json")]),
    ]
    async with ScriptedServer(script).running() as server, _client(server) as client:
        with pytest.raises(InterfaxProtocolError, match="not JSON") as first:
            await client.get_outbound(1)
        with pytest.raises(InterfaxProtocolError, match="'id'") as second:
            await client.get_outbound(1)
    for caught in (first, second):
        assert not isinstance(caught.value, AmbiguousError)
        assert isinstance(caught.value, TransientError)


async def test_json_is_read_whatever_the_content_type_and_empty_successes_are_fine() -> None:
    script = [
        response(200, b"3.8500", headers=[("Content-Type", "text/json")]),
        response(200, b"3.8500", headers=[("Content-Type", "application/json; charset=utf-8")]),
        response(200, b"12.5", headers=[("Content-Type", "text/plain")]),
        response(200, b"true", headers=[("Content-Type", "text/json")]),
        response(200),
    ]
    async with ScriptedServer(script).running() as server, _client(server) as client:
        assert await client.balance() == Decimal("3.8500")
        assert await client.balance() == Decimal("3.8500")
        assert await client.balance() == Decimal("12.5")
        await client.mark_read(5)
        await client.mark_read(5, read=False)
    assert [s.target for s in server.seen[3:]] == [
        "/inbound/faxes/5/mark?unread=false",
        "/inbound/faxes/5/mark?unread=true",
    ]
    assert server.seen[0].headers["accept"] == "application/json"


async def test_403_pauses_like_401_and_never_leaks_the_password() -> None:
    body = b'{"code":-3007,"message":"No permission","moreInfo":null}'
    async with ScriptedServer([response(403, body)]).running() as server, _client(server) as client:
        with pytest.raises(InterfaxAuthError) as caught:
            await client.list_inbound(all_users=True)
        assert PASSWORD not in repr(client)
    assert isinstance(caught.value, AuthError)
    assert caught.value.code == -3007
    assert PASSWORD not in str(caught.value)
    assert server.seen[0].target == "/inbound/faxes?allUsers=true"


async def test_429_with_an_http_date_gives_a_positive_retry_after() -> None:
    answer = response(429, headers=[("Retry-After", "Fri, 01 Jan 2100 00:00:00 GMT")])
    async with ScriptedServer([answer]).running() as server, _client(server) as client:
        with pytest.raises(InterfaxRateLimitError) as caught:
            await client.completed([1, 2, 2, 3])
    assert caught.value.retry_after is not None
    assert caught.value.retry_after > 0
    assert server.seen[0].target == "/outbound/faxes/completed?ids=1%2C2%2C3"


async def test_a_dropped_connection_is_ambiguous_for_send_and_transient_for_a_read() -> None:
    async with ScriptedServer([DROP, DROP]).running() as server, _client(server) as client:
        with pytest.raises(InterfaxAmbiguousError, match="may have taken effect"):
            await client.send_fax("+1", [PDF])
        with pytest.raises(InterfaxTransientError) as read:
            await client.get_inbound(3)
    assert not isinstance(read.value, AmbiguousError)


async def test_a_silent_server_is_ambiguous_for_cancel_after_the_read_timeout() -> None:
    timeouts = Timeouts(connect=5, read=0.2, write=5, pool=5)
    async with ScriptedServer([HANG]).running() as server, _client(server, timeout=timeouts) as c:
        with pytest.raises(InterfaxAmbiguousError, match="ReadTimeout"):
            await c.cancel(9)


async def test_a_failed_chunk_deletes_the_document_and_reports_the_error() -> None:
    server = ScriptedServer([])
    async with server.running():
        server.script += [
            _created(server, f"/outbound/documents/{DOC_ID}"),
            response(202),
            response(400, b'{"code":-1061,"message":"Missing chunk","moreInfo":null}'),
            response(200),
        ]
        async with _client(server, chunk_size=4) as client:
            with pytest.raises(InterfaxPermanentError, match="Missing chunk"):
                await client.upload_document("x.pdf", b"0123456789")
    create, first, second, delete = server.seen
    assert create.target == "/outbound/documents?size=10&name=x.pdf&disposition=singleuse"
    assert create.body == b""
    assert create.headers["content-length"] == "0"
    assert (first.headers["range"], first.body) == ("bytes=0-3", b"0123")
    assert (second.headers["range"], second.body) == ("bytes=4-7", b"4567")
    assert (delete.method, delete.target) == ("DELETE", f"/outbound/documents/{DOC_ID}")


async def test_an_upload_failure_inside_send_is_not_ambiguous_because_no_fax_was_posted() -> None:
    big = FaxDocument("big.pdf", "application/pdf", b"%PDF" + b"x" * 20)
    server = ScriptedServer([])
    async with server.running():
        server.script += [_created(server, f"/outbound/documents/{DOC_ID}"), DROP, response(200)]
        async with _client(server, chunk_size=8, upload_threshold=10) as client:
            with pytest.raises(InterfaxTransientError, match="no fax was submitted") as caught:
                await client.send_fax("+1", [PDF, big])
    assert not isinstance(caught.value, AmbiguousError)
    assert [s.method for s in server.seen] == ["POST", "POST", "DELETE"]
    assert not any(s.target.startswith("/outbound/faxes") for s in server.seen)


async def test_uploaded_documents_are_deleted_when_interfax_refuses_the_fax() -> None:
    big = FaxDocument("big.pdf", "application/pdf", b"%PDF" + b"x" * 20)
    server = ScriptedServer([])
    async with server.running():
        server.script += [
            _created(server, f"/outbound/documents/{DOC_ID}"),
            response(200),
            response(400, b'{"code":-111,"message":"not the designated number","moreInfo":null}'),
            response(200),
        ]
        async with _client(server, upload_threshold=10) as client:
            with pytest.raises(InterfaxPermanentError) as caught:
                await client.send_fax("+1", [big])
    assert caught.value.code == -111
    _upload, chunk, send, delete = server.seen
    assert chunk.headers["range"] == "bytes=0-23"
    assert chunk.body == big.data
    assert send.headers["content-location"] == f"{server.base_url}/outbound/documents/{DOC_ID}"
    assert delete.method == "DELETE"


async def test_iterating_inbound_stops_when_the_server_ignores_the_cursor() -> None:
    page = b'[{"messageId": 9}, {"messageId": 8}]'
    async with ScriptedServer([response(200, page)] * 3).running() as server, _client(server) as c:
        seen: list[int] = []

        async def drain() -> None:
            async for page in c.iter_inbound_pages(page_size=2):
                seen.extend(fax.message_id for fax in page)

        with pytest.raises(InterfaxProtocolError, match="ignored lastId=8"):
            await drain()
    assert seen == [9, 8, 9, 8]
    assert [s.target for s in server.seen] == [
        "/inbound/faxes?limit=2",
        "/inbound/faxes?limit=2&lastId=8",
    ]


async def test_bad_input_is_a_clear_permanent_error_and_nothing_is_sent() -> None:
    from datetime import datetime

    async with ScriptedServer([]).running() as server, _client(server) as client:
        with pytest.raises(InterfaxRequestError, match="at least one document"):
            await client.send_fax("+1", [])
        with pytest.raises(InterfaxRequestError, match="naive"):
            await client.send_fax("+1", [PDF], SendOptions(postpone_time=datetime(2030, 1, 1)))
        bad = FaxDocument("a.pdf", "application/pdf\r\nX: y", b"x")
        with pytest.raises(InterfaxRequestError, match="single line"):
            await client.send_fax("+1", [bad])
        with pytest.raises(InterfaxRequestError, match="empty"):
            await client.upload_document("a.pdf", b"")
    assert server.seen == []


async def test_a_404_on_the_image_keeps_interfax_code() -> None:
    body = b'{"code":-1005,"message":"Fax resource not found","moreInfo":"Fax resource 4 ..."}'
    async with ScriptedServer([response(404, body)]).running() as server, _client(server) as c:
        with pytest.raises(InterfaxNotFoundError) as caught:
            await c.outbound_image(4)
    assert (caught.value.http_status, caught.value.code) == (404, -1005)
    assert caught.value.endpoint == "GET /outbound/faxes/4/image"


async def test_a_closed_port_is_transient_and_never_ambiguous() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with InterfaxClient(f"http://127.0.0.1:{port}", "u", PASSWORD) as client:
        with pytest.raises(InterfaxTransientError, match="nothing was sent") as caught:
            await client.send_fax("+1", [PDF])
    assert not isinstance(caught.value, AmbiguousError)


def test_constructor_refuses_chunks_above_one_mebibyte() -> None:
    with pytest.raises(ValueError, match="chunk_size"):
        InterfaxClient("http://127.0.0.1:1", "u", "p", chunk_size=1024 * 1024 + 1)
