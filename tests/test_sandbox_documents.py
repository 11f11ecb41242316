"""Document uploads: create, chunks with inclusive Range, status, list, delete (§5.16-§5.20)."""

from __future__ import annotations

import hashlib
import re

import httpx
import pytest

from bridge.sandbox.server import RunningSandbox

SESSION_KEYS = [
    "userId",
    "fileName",
    "fileSize",
    "uploaded",
    "uri",
    "creationTime",
    "lastusageTime",
    "status",
    "disposition",
    "sharing",
]


async def create(api: httpx.AsyncClient, size: int, name: str = "doc.pdf", **params: str) -> str:
    response = await api.post(
        "/outbound/documents", params={"size": str(size), "name": name, **params}
    )
    assert response.status_code == 201, response.text
    assert response.headers["content-length"] == "0"
    location: str = response.headers["location"]
    return location


async def chunk(api: httpx.AsyncClient, uri: str, start: int, data: bytes) -> httpx.Response:
    return await api.post(
        uri, content=data, headers={"Range": f"bytes={start}-{start + len(data) - 1}"}
    )


async def test_create_gives_absolute_location_with_32_hex_id(
    sandbox: RunningSandbox, sandbox_api: httpx.AsyncClient
) -> None:
    uri = await create(sandbox_api, 10)
    assert re.fullmatch(re.escape(sandbox.base_url) + r"/outbound/documents/[0-9a-f]{32}", uri)
    session = (await sandbox_api.get(uri)).json()
    assert list(session) == SESSION_KEYS
    assert session["uri"] == uri
    assert (session["status"], session["uploaded"], session["fileSize"]) == ("Created", 0, 10)
    assert (session["disposition"], session["sharing"]) == ("SingleUse", "Private")
    assert session["lastusageTime"]
    assert session["creationTime"]


@pytest.mark.parametrize(
    ("params", "disposition", "sharing"),
    [
        ({"disposition": "singleuse", "sharing": "private"}, "SingleUse", "Private"),
        ({"disposition": "multiUse", "sharing": "SHARED"}, "MultiUse", "Shared"),
        ({"disposition": "Permanent", "shared": "True"}, "Permanent", "Shared"),
        ({"shared": "false"}, "SingleUse", "Private"),
    ],
)
async def test_enums_come_back_pascal_case(
    sandbox_api: httpx.AsyncClient, params: dict[str, str], disposition: str, sharing: str
) -> None:
    uri = await create(sandbox_api, 5, **params)
    session = (await sandbox_api.get(uri)).json()
    assert (session["disposition"], session["sharing"]) == (disposition, sharing)


async def test_chunks_in_order_202_then_200_and_ready(sandbox_api: httpx.AsyncClient) -> None:
    data = bytes(range(256)) * 40
    uri = await create(sandbox_api, len(data))
    first = await chunk(sandbox_api, uri, 0, data[:4000])
    assert (first.status_code, first.content) == (202, b"")
    partial = (await sandbox_api.get(uri)).json()
    assert (partial["status"], partial["uploaded"]) == ("PartiallyUploaded", 4000)
    last = await chunk(sandbox_api, uri, 4000, data[4000:])
    assert (last.status_code, last.headers["content-length"]) == (200, "0")
    ready = (await sandbox_api.get(uri)).json()
    assert (ready["status"], ready["uploaded"]) == ("Ready", len(data))


async def test_chunk_errors(sandbox_api: httpx.AsyncClient) -> None:
    uri = await create(sandbox_api, 10)
    gap = await chunk(sandbox_api, uri, 2, b"abc")
    assert (gap.status_code, gap.json()["code"]) == (400, -1061)
    no_range = await sandbox_api.post(uri, content=b"abc")
    assert (no_range.status_code, no_range.json()["code"]) == (400, -3005)
    wrong_length = await sandbox_api.post(uri, content=b"abc", headers={"Range": "bytes=0-9"})
    assert (wrong_length.status_code, wrong_length.json()["code"]) == (400, -3005)
    beyond = await chunk(sandbox_api, uri, 0, b"x" * 11)
    assert (beyond.status_code, beyond.json()["code"]) == (413, -1063)
    assert (await sandbox_api.get(uri)).json()["uploaded"] == 0  # nothing changed
    assert (await chunk(sandbox_api, uri, 0, b"x" * 10)).status_code == 200
    after = await chunk(sandbox_api, uri, 10, b"y")
    assert after.status_code == 413
    overlap = await chunk(sandbox_api, uri, 0, b"x")
    assert overlap.status_code == 413


async def test_chunk_over_one_mebibyte_is_refused(sandbox_api: httpx.AsyncClient) -> None:
    uri = await create(sandbox_api, 2 * 1024 * 1024)
    response = await chunk(sandbox_api, uri, 0, b"x" * (1024 * 1024 + 1))
    assert (response.status_code, response.json()["code"]) == (400, -3005)
    assert (await chunk(sandbox_api, uri, 0, b"x" * 1024 * 1024)).status_code == 202


async def test_twenty_megabytes_is_allowed_one_more_byte_is_413(
    sandbox_api: httpx.AsyncClient,
) -> None:
    await create(sandbox_api, 20 * 1024 * 1024)
    response = await sandbox_api.post(
        "/outbound/documents", params={"size": str(20 * 1024 * 1024 + 1), "name": "big.pdf"}
    )
    assert (response.status_code, response.json()["code"]) == (413, -1063)


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({"size": "10", "name": "virus.exe"}, 415, -1004),
        ({"size": "10", "name": "noextension"}, 415, -1004),
        ({"size": "10"}, 400, -1030),
        ({"name": "a.pdf"}, 400, -1030),
        ({"size": "0", "name": "a.pdf"}, 400, -1007),
        ({"size": "-5", "name": "a.pdf"}, 400, -1007),
        ({"size": "ten", "name": "a.pdf"}, 400, -1007),
        ({"size": "10", "name": "a.pdf", "disposition": "forever"}, 400, -1030),
    ],
)
async def test_create_errors(
    sandbox_api: httpx.AsyncClient, params: dict[str, str], status: int, code: int
) -> None:
    response = await sandbox_api.post("/outbound/documents", params=params)
    assert (response.status_code, response.json()["code"]) == (status, code)
    assert (await sandbox_api.get("/outbound/documents")).json() == []


@pytest.mark.parametrize("name", ["A.PDF", "scan.TiFF", "letter.docx", "page.html", "x.y.txt"])
async def test_extensions_match_case_insensitively(
    sandbox_api: httpx.AsyncClient, name: str
) -> None:
    await create(sandbox_api, 1, name)


async def test_delete_then_every_access_is_404_minus_1062(sandbox_api: httpx.AsyncClient) -> None:
    uri = await create(sandbox_api, 3)
    deleted = await sandbox_api.delete(uri)
    assert (deleted.status_code, deleted.headers["content-length"]) == (200, "0")
    for response in (
        await sandbox_api.get(uri),
        await sandbox_api.delete(uri),
        await chunk(sandbox_api, uri, 0, b"abc"),
    ):
        assert response.status_code == 404
        assert response.json() == {
            "code": -1062,
            "message": "Wrong uploaded document resource",
            "moreInfo": None,
        }


async def test_list_with_limit_and_offset(sandbox_api: httpx.AsyncClient) -> None:
    uris = [await create(sandbox_api, 1, f"d{i}.pdf") for i in range(4)]
    listed = (await sandbox_api.get("/outbound/documents")).json()
    assert [d["uri"] for d in listed] == uris
    assert all(list(d) == SESSION_KEYS for d in listed)
    page = (await sandbox_api.get("/outbound/documents", params={"limit": 2, "offset": 1})).json()
    assert [d["fileName"] for d in page] == ["d1.pdf", "d2.pdf"]
    await sandbox_api.delete(uris[0])
    assert len((await sandbox_api.get("/outbound/documents")).json()) == 3


@pytest.mark.parametrize(
    "content_type", [None, "application/octet-stream", "application/x-www-form-urlencoded"]
)
async def test_chunk_content_type_is_ignored(
    sandbox_api: httpx.AsyncClient, content_type: str | None
) -> None:
    data = b"a=1&b=2%PDF"  # would be mangled if parsed as a form
    uri = await create(sandbox_api, len(data))
    headers = {"Range": f"bytes=0-{len(data) - 1}"}
    if content_type:
        headers["Content-Type"] = content_type
    assert (await sandbox_api.post(uri, content=data, headers=headers)).status_code == 200
    sent = await sandbox_api.post(
        "/outbound/faxes?faxNumber=%2B12125550100", headers={"Content-Location": uri}
    )
    assert sent.status_code == 201
    [fax] = (await sandbox_api.get("/_sandbox/outbound")).json()
    assert fax["documents"][0]["sha256"] == hashlib.sha256(data).hexdigest()
