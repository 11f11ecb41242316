"""The InterFAX client against the sandbox over real HTTP(S) on 127.0.0.1.

The sandbox is an independent reading of shared/interfax-api.md; where these
tests fail, one of the two readings is wrong and the reference decides.
"""

from __future__ import annotations

import hashlib
import socket
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import trustme

from bridge.errors import AmbiguousError, AuthError, PermanentError, TransientError
from bridge.faxmodels import DocumentRef, FaxDocument, Resolution, SendOptions
from bridge.interfax import InterfaxClient, Timeouts
from bridge.interfax_errors import (
    InterfaxAmbiguousError,
    InterfaxAuthError,
    InterfaxNotFoundError,
    InterfaxPermanentError,
    InterfaxRateLimitError,
    InterfaxTLSError,
    InterfaxTransientError,
)
from bridge.interfax_models import Disposition
from tests.conftest import SandboxControl, TlsSandbox

NUMBER = "+12125550100"
BUSY, NO_ANSWER, RENDER_FAIL = "+12125550001", "+12125550002", "+12125550003"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
async def client(sandbox: Any) -> AsyncIterator[InterfaxClient]:
    async with InterfaxClient(sandbox.base_url, sandbox.username, sandbox.password) as c:
        yield c


@pytest.fixture
def pdf(make_pdf: Callable[..., bytes]) -> FaxDocument:
    return FaxDocument("letter.pdf", "application/pdf", make_pdf(pages=2, text="first"))


async def _documents_of(control: SandboxControl, fax_id: int) -> list[dict[str, Any]]:
    (fax,) = [f for f in await control.outbound() if f["id"] == fax_id]
    documents: list[dict[str, Any]] = fax["documents"]
    return documents


# -- sending -------------------------------------------------------------------------------


async def test_one_pdf_is_sent_and_recorded_with_its_options(
    client: InterfaxClient, sandbox_control: SandboxControl, pdf: FaxDocument
) -> None:
    options = SendOptions(
        reference="job-1+a", contact="Quarterly report", resolution=Resolution.FINE
    )
    fax_id = await client.send_fax(NUMBER, [pdf], options)
    (seen,) = await sandbox_control.outbound()
    assert (seen["id"], seen["faxNumber"], seen["reference"]) == (fax_id, NUMBER, "job-1+a")
    assert seen["contact"] == "Quarterly report"
    assert [(d["contentType"], d["sha256"]) for d in seen["documents"]] == [
        ("application/pdf", _sha(pdf.data))
    ]
    record = await client.get_outbound(fax_id)
    assert record.id == fax_id
    assert record.status < 0
    assert not record.is_final
    assert record.contact == "Quarterly report"
    assert record.page_resolution == "Fine"
    assert record.submit_time is not None
    assert record.submit_time.tzinfo is not None
    assert record.completion_time is None  # in progress: not completed yet


async def test_a_text_body_is_sent_inline_as_text_plain(
    client: InterfaxClient, sandbox_control: SandboxControl
) -> None:
    text = "Hello,\r\nplease find the order below.\r\nGrüße\r\n".encode()
    body = FaxDocument("body.txt", "text/plain; charset=utf-8", text)
    fax_id = await client.send_fax(NUMBER, [body])
    (document,) = await _documents_of(sandbox_control, fax_id)
    assert document["contentType"].startswith("text/plain")
    assert document["sha256"] == _sha(text)
    assert document["size"] == len(text)


async def test_several_documents_arrive_in_order_with_exact_bytes(
    client: InterfaxClient, sandbox_control: SandboxControl, make_pdf: Callable[..., bytes]
) -> None:
    docs = [
        FaxDocument("cover.html", "text/html", b"<p>Cover</p>"),
        FaxDocument("a.pdf", "application/pdf", make_pdf(pages=1, text="a")),
        FaxDocument("b.pdf", "application/pdf", make_pdf(pages=3, text="b")),
        FaxDocument("note.txt", "text/plain", b"last page"),
    ]
    fax_id = await client.send_fax(NUMBER, docs)
    documents = await _documents_of(sandbox_control, fax_id)
    assert [d["sha256"] for d in documents] == [_sha(d.data) for d in docs]
    assert [d["contentType"].split(";")[0] for d in documents] == [d.content_type for d in docs]


async def test_an_uploaded_document_is_sent_by_reference_and_consumed(
    client: InterfaxClient, sandbox_control: SandboxControl, sandbox: Any, pdf: FaxDocument
) -> None:
    ref = await client.upload_document("upload.pdf", pdf.data)
    assert ref.uri.startswith(sandbox.base_url + "/outbound/documents/")
    session = await client.get_document(ref)
    assert session.is_ready
    assert session.file_size == session.uploaded == len(pdf.data)
    assert session.file_name == "upload.pdf"
    assert (session.disposition, session.sharing) == ("SingleUse", "Private")
    assert session.creation_time is not None
    assert session.last_usage_time is not None
    fax_id = await client.send_fax(NUMBER, [ref])
    (document,) = await _documents_of(sandbox_control, fax_id)
    assert document["sha256"] == _sha(pdf.data)
    with pytest.raises(InterfaxNotFoundError) as gone:
        await client.get_document(ref)
    assert (gone.value.code, gone.value.message) == (-1062, "Wrong uploaded document resource")
    assert gone.value.more_info is None


async def test_a_reference_and_inline_documents_mix_in_one_multipart_fax(
    client: InterfaxClient, sandbox_control: SandboxControl, pdf: FaxDocument
) -> None:
    ref = await client.upload_document("kept.pdf", pdf.data, Disposition.MULTI_USE)
    note = FaxDocument("note.txt", "text/plain", b"see attached")
    end = FaxDocument("end.txt", "text/plain", b"the end")
    fax_id = await client.send_fax(NUMBER, [note, ref, end])
    documents = await _documents_of(sandbox_control, fax_id)
    assert [d["sha256"] for d in documents] == [_sha(note.data), _sha(pdf.data), _sha(end.data)]
    assert (await client.get_document(ref)).disposition == "MultiUse"
    await client.delete_document(ref)
    with pytest.raises(InterfaxNotFoundError):
        await client.get_document(ref)


async def test_a_large_document_is_uploaded_in_chunks_automatically(
    sandbox: Any, sandbox_control: SandboxControl, make_pdf: Callable[..., bytes]
) -> None:
    data = make_pdf(pages=1) + bytes(range(256)) * 800 + b"tail"  # ~200 KiB, not a chunk multiple
    big = FaxDocument("big.pdf", "application/pdf", data)
    small = FaxDocument("small.txt", "text/plain", b"small stays inline")
    async with InterfaxClient(
        sandbox.base_url,
        sandbox.username,
        sandbox.password,
        upload_threshold=64 * 1024,
        chunk_size=16 * 1024,
    ) as client:
        fax_id = await client.send_fax(NUMBER, [small, big])
    documents = await _documents_of(sandbox_control, fax_id)
    assert [(d["sha256"], d["size"]) for d in documents] == [
        (_sha(small.data), len(small.data)),
        (_sha(data), len(data)),
    ]
    fetched = await sandbox_control.http.get(documents[1]["url"])
    assert fetched.content == data


# -- status, search, cancel, image -------------------------------------------------------


async def test_completed_reports_only_finished_faxes_with_their_final_status(
    client: InterfaxClient, sandbox_control: SandboxControl, pdf: FaxDocument
) -> None:
    ids = {
        number: await client.send_fax(number, [pdf], SendOptions(reference=f"ref-{number}"))
        for number in (NUMBER, BUSY, NO_ANSWER, RENDER_FAIL)
    }
    assert await client.completed(ids.values()) == []
    await sandbox_control.advance(ids[NUMBER])
    await sandbox_control.advance(ids[BUSY])
    await sandbox_control.advance(ids[NO_ANSWER])
    done = {fax.id: fax for fax in await client.completed([*ids.values(), *ids.values()])}
    assert set(done) == {ids[NUMBER], ids[BUSY], ids[NO_ANSWER]}
    sent, busy, no_answer = done[ids[NUMBER]], done[ids[BUSY]], done[ids[NO_ANSWER]]
    assert (sent.status, busy.status, no_answer.status) == (0, 3931, 8021)
    assert sent.is_success
    assert busy.is_final
    assert not busy.is_success
    assert "busy" in busy.description.lower()
    assert sent.completion_time is not None
    assert sent.pages_sent == 2
    assert sent.attempts_made is not None
    assert sent.units is not None
    assert sent.cost_per_unit is not None
    assert sent.destination_fax is None  # summary level only
    assert sent.submit_time is None
    await sandbox_control.advance(ids[RENDER_FAIL])
    (failed,) = await client.completed([ids[RENDER_FAIL]])
    assert failed.status == 204000


async def test_completed_splits_many_ids_into_batches(
    client: InterfaxClient, sandbox_control: SandboxControl, pdf: FaxDocument
) -> None:
    ids = [await client.send_fax(NUMBER, [pdf]) for _ in range(5)]
    await sandbox_control.advance()
    found = await client.completed(ids, batch_size=2)
    assert sorted(fax.id for fax in found) == sorted(ids)


async def test_search_by_reference_finds_exactly_that_fax_with_full_fields(
    client: InterfaxClient, pdf: FaxDocument
) -> None:
    await client.send_fax(NUMBER, [pdf], SendOptions(reference="other"))
    wanted = await client.send_fax(NUMBER, [pdf], SendOptions(reference="job 42/α"))
    (found,) = await client.search(reference="job 42/α")
    assert found.id == wanted
    assert found.destination_fax is not None
    assert found.submit_time is not None
    assert [f.id for f in await client.search(ids=[wanted])] == [wanted]
    assert await client.search(reference="nothing-like-this") == []
    assert len(await client.search(fax_number=NUMBER, limit=1)) == 1
    newest_first = await client.search(sort_order="desc")
    assert [f.id for f in newest_first] == sorted((f.id for f in newest_first), reverse=True)


async def test_cancel_stops_a_waiting_fax_and_is_refused_once_completed(
    client: InterfaxClient, sandbox_control: SandboxControl, pdf: FaxDocument
) -> None:
    waiting = await client.send_fax(NUMBER, [pdf])
    await client.cancel(waiting)
    cancelled = await client.get_outbound(waiting)
    assert cancelled.status == 403
    finished = await client.send_fax(NUMBER, [pdf])
    await sandbox_control.advance(finished)
    with pytest.raises(InterfaxPermanentError) as refused:
        await client.cancel(finished)
    assert refused.value.http_status == 409
    assert refused.value.code == -162


async def test_the_outbound_image_is_a_tiff(
    client: InterfaxClient, sandbox_control: SandboxControl, pdf: FaxDocument
) -> None:
    fax_id = await client.send_fax(NUMBER, [pdf])
    await sandbox_control.advance(fax_id)
    image = await client.outbound_image(fax_id)
    assert image[:4] in (b"II*\0", b"MM\0*")


async def test_unknown_ids_are_not_found_with_interfax_codes(client: InterfaxClient) -> None:
    with pytest.raises(InterfaxNotFoundError) as outbound:
        await client.get_outbound(123456789)
    assert outbound.value.code == -1005
    assert outbound.value.message == "Fax resource not found"
    assert "123456789" in (outbound.value.more_info or "")
    with pytest.raises(InterfaxNotFoundError) as image:
        await client.outbound_image(123456789)
    assert image.value.code == -1005
    with pytest.raises(InterfaxNotFoundError) as inbound:
        await client.get_inbound(987654321)
    assert inbound.value.code == -3001


# -- inbound -------------------------------------------------------------------------------


async def test_inbound_paging_walks_every_fax_newest_first_with_the_exclusive_cursor(
    client: InterfaxClient, sandbox_control: SandboxControl, make_pdf: Callable[..., bytes]
) -> None:
    ids = [await sandbox_control.receive_fax(make_pdf(text=f"in {i}")) for i in range(7)]
    walked = [f.message_id async for page in client.iter_inbound_pages(page_size=3) for f in page]
    assert walked == sorted(ids, reverse=True)
    page = await client.list_inbound(limit=2, last_id=walked[2])
    assert [fax.message_id for fax in page] == walked[3:5]
    assert len(await client.list_inbound()) == 7


async def test_an_inbound_fax_has_its_record_image_and_can_be_marked_read(
    client: InterfaxClient, sandbox_control: SandboxControl, make_pdf: Callable[..., bytes]
) -> None:
    data = make_pdf(pages=2, text="incoming")
    message_id = await sandbox_control.receive_fax(
        data, phone_number="+12125550100", caller_id="+12125550199", remote_csid="ACME"
    )
    other = await sandbox_control.receive_fax(make_pdf(text="other"))
    fax = await client.get_inbound(message_id)
    assert (fax.message_id, fax.remote_csid, fax.caller_id) == (message_id, "ACME", "+12125550199")
    assert fax.phone_number is not None
    assert fax.pages == 2
    assert fax.image_status == "UNREAD"
    assert fax.receive_time is not None
    assert fax.message_status == 0
    image = await client.inbound_image(message_id)
    assert image.data == data
    assert image.extension == "pdf"
    assert isinstance(await client.inbound_emails(message_id), list)
    await client.mark_read(message_id)
    assert (await client.get_inbound(message_id)).is_read
    unread = [
        f.message_id async for page in client.iter_inbound_pages(unread_only=True) for f in page
    ]
    assert unread == [other]
    await client.mark_read(message_id, read=False)
    assert (await client.get_inbound(message_id)).image_status == "UNREAD"


async def test_the_balance_is_a_decimal_that_goes_down_as_faxes_are_sent(
    client: InterfaxClient, sandbox_control: SandboxControl, pdf: FaxDocument
) -> None:
    await sandbox_control.set_balance("12.3400")
    assert await client.balance() == Decimal("12.34")
    fax_id = await client.send_fax(NUMBER, [pdf])
    await sandbox_control.advance(fax_id)
    assert await client.balance() < Decimal("12.34")


# -- TLS -----------------------------------------------------------------------------------


async def test_https_with_the_test_ca_works(sandbox_tls: TlsSandbox, pdf: FaxDocument) -> None:
    async with InterfaxClient(
        sandbox_tls.base_url,
        sandbox_tls.username,
        sandbox_tls.password,
        ca_bundle=sandbox_tls.ca_file,
    ) as client:
        fax_id = await client.send_fax(NUMBER, [pdf])
        assert (await client.get_outbound(fax_id)).id == fax_id


async def test_https_with_the_wrong_ca_is_a_transient_tls_error_and_nothing_is_sent(
    sandbox_tls: TlsSandbox, pdf: FaxDocument, tmp_path: Path
) -> None:
    stranger = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(stranger))
    async with InterfaxClient(
        sandbox_tls.base_url, sandbox_tls.username, sandbox_tls.password, ca_bundle=stranger
    ) as client:
        with pytest.raises(InterfaxTLSError, match="certificate") as caught:
            await client.send_fax(NUMBER, [pdf])
    assert isinstance(caught.value, TransientError)
    assert not isinstance(caught.value, AmbiguousError)


# -- failures ------------------------------------------------------------------------------


async def test_a_wrong_password_is_an_auth_error(sandbox: Any) -> None:
    async with InterfaxClient(sandbox.base_url, sandbox.username, "wrong") as client:
        with pytest.raises(InterfaxAuthError) as caught:
            await client.balance()
    assert isinstance(caught.value, AuthError)
    assert caught.value.http_status == 401
    assert "wrong" not in str(caught.value)


async def test_rate_limiting_is_transient_and_says_when_to_retry(
    client: InterfaxClient, sandbox_control: SandboxControl
) -> None:
    await sandbox_control.faults(rate_limit_per_minute=1)
    await client.completed([1])
    with pytest.raises(InterfaxRateLimitError) as caught:
        await client.completed([1])
    assert caught.value.http_status == 429
    assert caught.value.retry_after is not None
    assert caught.value.retry_after > 0


async def test_a_503_is_transient_for_a_read_and_ambiguous_for_a_send(
    client: InterfaxClient, sandbox_control: SandboxControl, pdf: FaxDocument
) -> None:
    await sandbox_control.faults(error_rate=1, error_status=503)
    with pytest.raises(InterfaxTransientError) as read:
        await client.balance()
    assert read.value.http_status == 503
    assert not isinstance(read.value, AmbiguousError)
    with pytest.raises(InterfaxAmbiguousError) as send:
        await client.send_fax(NUMBER, [pdf])
    assert send.value.http_status == 503


async def test_a_connection_lost_after_commit_is_ambiguous_and_reconciled_by_reference(
    client: InterfaxClient, sandbox_control: SandboxControl, pdf: FaxDocument
) -> None:
    await sandbox_control.faults(drop_after_commit=1)
    with pytest.raises(AmbiguousError):
        await client.send_fax(NUMBER, [pdf], SendOptions(reference="in-doubt-7"))
    (committed,) = await sandbox_control.outbound()
    assert committed["reference"] == "in-doubt-7"
    (found,) = await client.search(reference="in-doubt-7")
    assert found.id == committed["id"]


async def test_a_slow_server_is_ambiguous_for_send_and_transient_for_a_read(
    sandbox: Any, sandbox_control: SandboxControl, pdf: FaxDocument
) -> None:
    await sandbox_control.faults(latency_ms=1000)
    quick = Timeouts(connect=5, read=0.2, write=5, pool=5)
    async with InterfaxClient(
        sandbox.base_url, sandbox.username, sandbox.password, timeout=quick
    ) as client:
        with pytest.raises(InterfaxAmbiguousError, match="ReadTimeout"):
            await client.send_fax(NUMBER, [pdf])
        with pytest.raises(InterfaxTransientError, match="ReadTimeout") as read:
            await client.get_outbound(1)
    assert not isinstance(read.value, AmbiguousError)


async def test_a_refused_connection_is_transient_never_ambiguous(pdf: FaxDocument) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with InterfaxClient(f"http://127.0.0.1:{port}", "user", "secret") as client:
        with pytest.raises(InterfaxTransientError) as caught:
            await client.send_fax(NUMBER, [pdf])
    assert not isinstance(caught.value, AmbiguousError)


async def test_a_document_ref_pointing_nowhere_is_refused_permanently(
    client: InterfaxClient, sandbox: Any
) -> None:
    ref = DocumentRef(f"{sandbox.base_url}/outbound/documents/{'0' * 32}")
    with pytest.raises(PermanentError):
        await client.send_fax(NUMBER, [ref])
