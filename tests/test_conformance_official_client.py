"""Conformance: the official InterFAX Python client (``interfax==1.0.0``) against the sandbox.

The client is used the way its README shows, over HTTPS verified by the test CA
(``REQUESTS_CA_BUNDLE``), with the instance's ``DOMAIN`` pointed at the sandbox
(shared/interfax-api.md §15). It is synchronous (requests), so each call runs in a
thread while the sandbox serves on the test's event loop. If this client cannot
use the sandbox, the sandbox is wrong.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import requests
from interfax import InterFAX

if TYPE_CHECKING:
    from tests.conftest import TlsSandbox


@pytest.fixture
def official(sandbox_tls: TlsSandbox, monkeypatch: pytest.MonkeyPatch) -> InterFAX:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(sandbox_tls.ca_file))
    client = InterFAX(username=sandbox_tls.username, password=sandbox_tls.password)
    client.DOMAIN = f"{sandbox_tls.host}:{sandbox_tls.port}"
    return client


@pytest.fixture
async def control(sandbox_tls: TlsSandbox) -> AsyncIterator[httpx.AsyncClient]:
    context = ssl.create_default_context(cafile=str(sandbox_tls.ca_file))
    async with httpx.AsyncClient(base_url=sandbox_tls.base_url, verify=context) as http:
        yield http


async def call(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return await asyncio.to_thread(function, *args, **kwargs)


async def test_send_a_pdf_poll_to_completion_search_and_check_balance(
    official: InterFAX,
    control: httpx.AsyncClient,
    tmp_path: Path,
    make_pdf: Callable[..., bytes],
) -> None:
    pdf = make_pdf(pages=2)
    path = tmp_path / "fax.pdf"
    path.write_bytes(pdf)
    before = await call(official.account.balance)
    assert before == Decimal("100")

    fax = await call(
        official.deliver, fax_number="+12125550100", files=[str(path)], reference="conf-1"
    )
    fax_id = int(fax.id)
    [seen] = (await control.get("/_sandbox/outbound")).json()
    assert seen["id"] == fax_id
    assert seen["reference"] == "conf-1"
    [document] = seen["documents"]
    assert document["contentType"] == "application/pdf"
    assert (await control.get(document["url"])).content == pdf

    statuses = [(await call(official.outbound.find, fax_id)).status]
    for step in (-2, -3, None):
        body = {"id": fax_id} if step is None else {"id": fax_id, "status": step}
        assert (await control.post("/_sandbox/advance", json=body)).status_code == 200
        statuses.append((await call(official.outbound.find, fax_id)).status)
    assert statuses == [-1, -2, -3, 0]
    done = await call(official.outbound.find, fax_id)
    assert (done.pages_sent, done.pages_submitted, done.destination_fax) == (2, 2, "0012125550100")
    assert done.sender_csid
    assert done.remote_csid

    by_id = await call(official.outbound.search, ids=fax_id)
    assert [f.id for f in by_id] == [fax_id]
    by_reference = await call(official.outbound.search, reference="conf-1", limit=5)
    assert [f.id for f in by_reference] == [fax_id]
    listed = await call(official.outbound.all, limit=5, sort_order="asc")
    assert [f.id for f in listed] == [fax_id]

    image = await call(official.outbound.image, fax_id)
    assert image.data.startswith(b"II*\x00")
    image_path = tmp_path / "sent.tiff"
    image.save(str(image_path))
    assert image_path.read_bytes() == image.data

    after = await call(official.account.balance)
    assert after.quantize(Decimal("0.0001")) == Decimal("99.7000")


async def test_list_inbound_download_the_image_and_mark_it_read(
    official: InterFAX,
    control: httpx.AsyncClient,
    tmp_path: Path,
    make_pdf: Callable[..., bytes],
) -> None:
    pdf = make_pdf(pages=1, text="received")
    injected = await control.post(
        "/_sandbox/inbound",
        files={"file": ("in.pdf", pdf)},
        data={"phoneNumber": "+12125550100", "callerId": "+13105550000", "remoteCSID": "ACME"},
    )
    message_id = injected.json()["messageId"]

    unread = await call(official.inbound.all, unread_only=True, limit=10)
    assert [fax.id for fax in unread] == [message_id]
    fax = unread[0]
    assert (fax.phone_number, fax.caller_id, fax.remote_csid) == (
        "+12125550100",
        "+13105550000",
        "ACME",
    )
    assert fax.image_status == "UNREAD"

    image = await call(official.inbound.image, message_id)
    assert image.data == pdf
    image.save(str(tmp_path / "in.pdf"))
    assert (tmp_path / "in.pdf").read_bytes() == pdf

    await call(official.inbound.mark, message_id, read=True)
    [entry] = (await control.get("/_sandbox/inbound")).json()
    assert entry["imageStatus"] == "READ"
    assert await call(official.inbound.all, unread_only=True) == []
    assert (await call(official.inbound.find, message_id)).image_status == "READ"

    await call(official.inbound.mark, message_id, read=False)
    [entry] = (await control.get("/_sandbox/inbound")).json()
    assert entry["imageStatus"] == "UNREAD"

    await call(official.inbound.resend, message_id, email="ops@example.com")
    emails = await call(official.inbound.emails, message_id)
    assert [e.email_address for e in emails] == ["ops@example.com"]


async def test_document_upload_find_list_and_cancel(official: InterFAX) -> None:
    data = b"%PDF-1.4\n" + b"x" * 3000
    document = await call(official.documents.create, "upload.pdf", len(data))
    await call(document.upload, 0, 1999, data[:2000])
    partial = await call(official.documents.find, document.id)
    assert (partial.status, partial.uploaded) == ("PartiallyUploaded", 2000)
    await call(document.upload, 2000, len(data) - 1, data[2000:])
    ready = await call(document.reload)
    assert (ready.status, ready.file_size, ready.lastusage_time is not None) == (
        "Ready",
        len(data),
        True,
    )
    assert [d.uri for d in await call(official.documents.all, limit=5)] == [document.uri]
    await call(document.cancel)
    with pytest.raises(requests.HTTPError) as caught:
        await call(official.documents.find, document.id)
    assert caught.value.response.status_code == 404


async def test_cancel_and_errors_surface_as_http_errors(
    official: InterFAX, tmp_path: Path, make_pdf: Callable[..., bytes]
) -> None:
    path = tmp_path / "fax.pdf"
    path.write_bytes(make_pdf())
    fax = await call(official.deliver, fax_number="+12125550100", files=[str(path)])
    await call(official.outbound.cancel, fax.id)
    assert (await call(official.outbound.find, fax.id)).status == 403
    with pytest.raises(requests.HTTPError) as caught:
        await call(official.outbound.cancel, fax.id)
    assert caught.value.response.status_code == 409
    with pytest.raises(requests.HTTPError) as caught:
        await call(official.outbound.find, 1)
    assert caught.value.response.status_code == 404


async def test_known_client_limits_are_refused_not_misread(
    official: InterFAX, control: httpx.AsyncClient, tmp_path: Path
) -> None:
    """§15: 1.0.0 sends ``completed`` ids as a tuple, and today's requests drops the
    Content-Location of a URL part (used for files over 1 MiB). The sandbox refuses
    both with 400 instead of guessing or sending a fax without its document."""
    with pytest.raises(requests.HTTPError) as caught:
        await call(official.outbound.completed, 700000001, 700000002)
    assert caught.value.response.status_code == 400

    big = tmp_path / "big.pdf"
    big.write_bytes(b"%PDF-1.4\n" + b"0" * (1024 * 1024 + 10))
    with pytest.raises(requests.HTTPError) as caught:
        await call(official.deliver, fax_number="+12125550100", files=[str(big)])
    assert caught.value.response.status_code == 400
    assert (await control.get("/_sandbox/outbound")).json() == []
