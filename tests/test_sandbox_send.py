"""Sending faxes to the sandbox: every body shape the official clients produce (§8, §12.10)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from bridge.sandbox.server import RunningSandbox

if TYPE_CHECKING:
    from conftest import SandboxControl

NUMBER = "%2B12125550100"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def upload(api: httpx.AsyncClient, data: bytes, name: str = "big.pdf", **params: str) -> str:
    """A Ready sandbox document; returns its absolute URI."""
    created = await api.post(
        "/outbound/documents", params={"size": len(data), "name": name, **params}
    )
    assert created.status_code == 201
    uri = created.headers["location"]
    done = await api.post(uri, content=data, headers={"Range": f"bytes=0-{len(data) - 1}"})
    assert done.status_code == 200
    return uri


async def sent_documents(control: SandboxControl) -> list[list[dict[str, Any]]]:
    return [fax["documents"] for fax in await control.outbound()]


async def test_raw_pdf_body_gives_201_with_absolute_location_and_empty_body(
    sandbox: RunningSandbox,
    sandbox_api: httpx.AsyncClient,
    sandbox_control: SandboxControl,
    make_pdf: Callable[..., bytes],
) -> None:
    pdf = make_pdf(pages=2)
    response = await sandbox_api.post(
        f"/outbound/faxes?faxNumber={NUMBER}",
        content=pdf,
        headers={"Content-Type": "application/pdf"},
    )
    assert response.status_code == 201
    location = response.headers["location"]
    assert location.startswith(sandbox.base_url + "/outbound/faxes/")
    fax_id = int(location.rsplit("/", 1)[1])
    assert response.headers["content-length"] == "0"
    [fax] = await sandbox_control.outbound()
    assert (fax["id"], fax["faxNumber"], fax["status"]) == (fax_id, "+12125550100", -1)
    [document] = fax["documents"]
    assert (document["contentType"], document["size"], document["sha256"]) == (
        "application/pdf",
        len(pdf),
        sha(pdf),
    )
    assert document["pages"] == 2
    served = await sandbox_api.get(document["url"])
    assert served.content == pdf
    assert served.headers["content-type"] == "application/pdf"
    record = (await sandbox_api.get(location)).json()
    assert record["pagesSubmitted"] == 2


async def test_location_follows_the_host_the_client_used(sandbox: RunningSandbox) -> None:
    url = sandbox.base_url.replace("127.0.0.1", "localhost")
    async with httpx.AsyncClient(base_url=url, auth=("user", "secret")) as api:
        response = await api.post(
            f"/outbound/faxes?faxNumber={NUMBER}",
            content=b"%PDF-1.4",
            headers={"Content-Type": "application/pdf"},
        )
    assert response.headers["location"].startswith(url + "/outbound/faxes/")


async def test_text_body_inline_with_charset(
    sandbox_api: httpx.AsyncClient, sandbox_control: SandboxControl
) -> None:
    response = await sandbox_api.post(
        f"/outbound/faxes?faxNumber={NUMBER}",
        content="Grüße".encode(),
        headers={"Content-Type": "text/plain; charset=UTF-8"},
    )
    assert response.status_code == 201
    [[document]] = await sent_documents(sandbox_control)
    assert document["contentType"] == "text/plain"


async def test_octet_stream_pdf_is_recognised_by_its_bytes(
    sandbox_api: httpx.AsyncClient, sandbox_control: SandboxControl, make_pdf: Callable[..., bytes]
) -> None:
    response = await sandbox_api.post(
        f"/outbound/faxes?faxNumber={NUMBER}",
        content=make_pdf(),
        headers={"Content-Type": "application/octet-stream"},
    )
    assert response.status_code == 201
    [[document]] = await sent_documents(sandbox_control)
    assert document["contentType"] == "application/pdf"


async def test_referenced_single_use_document_is_consumed(
    sandbox_api: httpx.AsyncClient, sandbox_control: SandboxControl, make_pdf: Callable[..., bytes]
) -> None:
    pdf = make_pdf(pages=3)
    uri = await upload(sandbox_api, pdf)
    response = await sandbox_api.post(
        f"/outbound/faxes?faxNumber={NUMBER}",
        headers={"Content-Location": uri, "Content-Length": "0"},
    )
    assert response.status_code == 201
    [[document]] = await sent_documents(sandbox_control)
    assert (document["kind"], document["sha256"], document["pages"]) == ("document", sha(pdf), 3)
    gone = await sandbox_api.get(uri)
    assert (gone.status_code, gone.json()["code"]) == (404, -1062)
    again = await sandbox_api.post(
        f"/outbound/faxes?faxNumber={NUMBER}", headers={"Content-Location": uri}
    )
    assert (again.status_code, again.json()["code"]) == (404, -1062)


async def test_multi_use_document_survives_and_records_its_use(
    sandbox_api: httpx.AsyncClient, make_pdf: Callable[..., bytes]
) -> None:
    uri = await upload(sandbox_api, make_pdf(), disposition="multiUse")
    body = (
        f"--B\r\nContent-Location: {uri}\r\n\r\n\r\n--B\r\nContent-Location: {uri}\r\n\r\n\r\n--B--"
    )
    for _ in range(2):
        response = await sandbox_api.post(
            f"/outbound/faxes?faxNumber={NUMBER}",
            content=body.encode(),
            headers={"Content-Type": "multipart/mixed; boundary=B"},
        )
        assert response.status_code == 201
    status = (await sandbox_api.get(uri)).json()
    assert (status["status"], status["disposition"]) == ("Ready", "MultiUse")


async def test_document_not_ready_is_refused_and_nothing_is_committed(
    sandbox_api: httpx.AsyncClient, sandbox_control: SandboxControl
) -> None:
    created = await sandbox_api.post("/outbound/documents?size=10&name=a.pdf")
    uri = created.headers["location"]
    await sandbox_api.post(uri, content=b"%PDF-", headers={"Range": "bytes=0-4"})
    response = await sandbox_api.post(
        f"/outbound/faxes?faxNumber={NUMBER}", headers={"Content-Location": uri}
    )
    assert response.status_code == 400
    assert response.json()["code"] == -123
    assert "PartiallyUploaded" in response.json()["moreInfo"]
    assert await sandbox_control.outbound() == []


async def test_refused_send_does_not_consume_a_good_document(
    sandbox_api: httpx.AsyncClient, sandbox_control: SandboxControl, make_pdf: Callable[..., bytes]
) -> None:
    uri = await upload(sandbox_api, make_pdf())
    body = (
        f"--B\r\nContent-Location: {uri}\r\n\r\n\r\n"
        "--B\r\nContent-Type: application/x-evil\r\n\r\nx\r\n--B--"
    )
    response = await sandbox_api.post(
        f"/outbound/faxes?faxNumber={NUMBER}",
        content=body.encode(),
        headers={"Content-Type": "multipart/mixed; boundary=B"},
    )
    assert response.status_code == 415
    assert (await sandbox_api.get(uri)).json()["status"] == "Ready"
    assert await sandbox_control.outbound() == []


async def test_external_url_is_accepted_without_fetching(
    sandbox_api: httpx.AsyncClient, sandbox_control: SandboxControl
) -> None:
    # Nothing listens on this address: the sandbox must not try.
    url = "http://192.0.2.1/never-fetched.pdf"
    response = await sandbox_api.post(
        f"/outbound/faxes?faxNumber={NUMBER}", headers={"Content-Location": url}
    )
    assert response.status_code == 201
    [[document]] = await sent_documents(sandbox_control)
    assert (document["kind"], document["location"], document["url"]) == ("external", url, None)


@pytest.mark.parametrize(
    ("headers", "content", "status", "code"),
    [
        ({}, b"", 400, -123),
        ({"Content-Location": "ftp://example.com/a.pdf"}, b"", 400, -123),
        ({"Content-Location": "not a url"}, b"", 400, -123),
        ({"Content-Type": "multipart/mixed; boundary=B"}, b"--B--\r\n", 400, -123),
        ({"Content-Type": "multipart/mixed; boundary=B"}, b"no delimiter", 400, -123),
        ({"Content-Type": "multipart/mixed"}, b"--B\r\n\r\nx\r\n--B--", 400, -123),
        # What interfax 1.0.0 sends for a URL today: an empty part, Content-Location lost.
        (
            {"Content-Type": "multipart/form-data; boundary=b"},
            b"--b\r\nContent-Disposition: form-data; \r\n\r\n\r\n--b--\r\n",
            400,
            -123,
        ),
        ({"Content-Type": "application/x-msdownload"}, b"MZ\x90\x00", 415, -1004),
        ({"Content-Type": "application/octet-stream"}, b"MZ\x90\x00", 415, -1004),
        ({"Content-Location": "https://h.test/outbound/documents/" + "ab" * 16}, b"", 404, -1062),
    ],
    ids=[
        "nothing",
        "ftp",
        "not-a-url",
        "no-parts",
        "no-delimiter",
        "no-boundary",
        "python-lost-url",
        "unsupported-type",
        "unknown-octets",
        "unknown-document",
    ],
)
async def test_bad_send_bodies_are_refused_and_change_nothing(
    sandbox_api: httpx.AsyncClient,
    sandbox_control: SandboxControl,
    headers: dict[str, str],
    content: bytes,
    status: int,
    code: int,
) -> None:
    response = await sandbox_api.post(
        f"/outbound/faxes?faxNumber={NUMBER}", content=content, headers=headers
    )
    assert response.status_code == status
    assert response.headers["content-type"] == "text/json"
    body = response.json()
    assert body["code"] == code
    assert set(body) == {"code", "message", "moreInfo"}
    assert await sandbox_control.outbound() == []


async def test_more_than_20_mb_is_413(
    sandbox_api: httpx.AsyncClient, sandbox_control: SandboxControl
) -> None:
    big = b"%PDF-1.4\n" + b"0" * (20 * 1024 * 1024)
    response = await sandbox_api.post(
        f"/outbound/faxes?faxNumber={NUMBER}",
        content=big,
        headers={"Content-Type": "application/pdf"},
    )
    assert (response.status_code, response.json()["code"]) == (413, -1063)
    assert await sandbox_control.outbound() == []


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("", -112),
        ("faxNumber=", -112),
        ("faxNumber=abc", -112),
        ("faxNumber=%2B1", -112),
        ("faxNumber=%2B1212555010012345678901", -112),
        (f"faxNumber={NUMBER}&reference=" + "r" * 61, -1030),
        (f"faxNumber={NUMBER}&csid=" + "c" * 21, -1030),
        (f"faxNumber={NUMBER}&pageSize=A5", -1030),
        (f"faxNumber={NUMBER}&resolution=ultra", -1030),
        (f"faxNumber={NUMBER}&retriesToPerform=many", -1030),
        (f"faxNumber={NUMBER}&replyAddress=nobody", -1030),
        (f"faxNumber={NUMBER}&postponeTime=soon", -1030),
        (f"faxNumber={NUMBER}&postponeTime=2999-01-01T00:00:00Z", -114),
    ],
)
async def test_bad_send_arguments_are_400_with_interfax_body(
    sandbox_api: httpx.AsyncClient, sandbox_control: SandboxControl, query: str, code: int
) -> None:
    response = await sandbox_api.post(
        f"/outbound/faxes?{query}", content=b"%PDF-1.4", headers={"Content-Type": "application/pdf"}
    )
    assert response.status_code == 400
    assert response.json()["code"] == code
    assert response.json()["moreInfo"]
    assert await sandbox_control.outbound() == []


@pytest.mark.parametrize(
    "number",
    ["%2B12125550100", "%2b12125550100", "+12125550100", "%2B1-212-555-0100", "0012125550100"],
)
async def test_fax_number_spellings_resolve_to_one_destination(
    sandbox_api: httpx.AsyncClient, number: str
) -> None:
    response = await sandbox_api.post(
        f"/outbound/faxes?faxNumber={number}",
        content=b"%PDF-1.4",
        headers={"Content-Type": "application/pdf"},
    )
    assert response.status_code == 201
    record = (await sandbox_api.get(response.headers["location"])).json()
    assert record["destinationFax"] == "0012125550100"


async def test_send_options_come_back_in_the_record(sandbox_api: httpx.AsyncClient) -> None:
    query = (
        f"faxNumber={NUMBER}&contact=Jane%20Doe&reference=job-42&csid=ACME%20Corp"
        "&pageHeader=To%3A%20%7BTo%7D&retriesToPerform=2&replyAddress=ops%40example.com"
        "&pageSize=letter&resolution=FINE&pageOrientation=landscape&rendering=greyscale"
        "&fitToPage=noscale"
    )
    response = await sandbox_api.post(
        f"/outbound/faxes?{query}", content=b"%PDF-1.4", headers={"Content-Type": "application/pdf"}
    )
    record = (await sandbox_api.get(response.headers["location"])).json()
    assert record["contact"] == "Jane Doe"
    assert record["subject"] == "job-42"
    assert record["senderCSID"] == "ACME Corp"
    assert record["pageHeader"] == "To: {To}"
    assert record["attemptsToPerform"] == 2
    assert record["replyEmail"] == "ops@example.com"
    assert (record["pageSize"], record["pageOrientation"]) == ("Letter", "Landscape")
    assert (record["resolution"], record["pageResolution"], record["rendering"]) == (
        "Fine",
        "Fine",
        "Fine",
    )


async def test_a_pdf_that_is_not_a_pdf_ends_in_rendering_failure(
    sandbox_api: httpx.AsyncClient, sandbox_control: SandboxControl
) -> None:
    response = await sandbox_api.post(
        f"/outbound/faxes?faxNumber={NUMBER}",
        content=b"JVBERi0xLjQK",  # base64 of a PDF, never decoded
        headers={"Content-Type": "application/pdf"},
    )
    assert response.status_code == 201
    await sandbox_control.advance()
    assert (await sandbox_api.get(response.headers["location"])).json()["status"] == 204000


@pytest.mark.parametrize(
    ("headers", "content"),
    [
        ({"Content-Location": "http://[::1"}, b""),
        (
            {"Content-Type": "multipart/mixed; boundary=B"},
            b"--B\r\nContent-Location: http://[bad\r\n\r\n\r\n--B--",
        ),
        (
            {"Content-Type": "multipart/mixed; boundary=B"},
            b"--B\r\n\xff\xfe: \xff\r\n\r\nx\r\n--B--",
        ),
        (
            {"Content-Type": b"multipart/mixed; boundary=\xc3\xa9"},
            b"--\xc3\xa9\r\n\r\nx\r\n--\xc3\xa9--",
        ),
        ({"Content-Type": 'multipart/mixed; boundary=""'}, b"--\r\n\r\nx\r\n"),
    ],
    ids=[
        "bad-ipv6-header",
        "bad-ipv6-part",
        "binary-header",
        "non-ascii-boundary",
        "empty-boundary",
    ],
)
async def test_hostile_bodies_get_4xx_never_5xx(
    sandbox_api: httpx.AsyncClient, headers: dict[str, Any], content: bytes
) -> None:
    response = await sandbox_api.post(
        f"/outbound/faxes?faxNumber={NUMBER}", content=content, headers=headers
    )
    assert 400 <= response.status_code < 500
    assert set(response.json()) == {"code", "message", "moreInfo"}
