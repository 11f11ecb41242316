"""Outbound faxes after sending: objects, lists, progression, cancel, resend, hide, search."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

import httpx
import pytest
from PIL import Image

from bridge.sandbox.server import RunningSandbox, running_sandbox
from tests.conftest import sandbox_settings

if TYPE_CHECKING:
    from tests.conftest import SandboxControl

PDF = {"Content-Type": "application/pdf"}
FULL_KEYS = [
    "submitTime",
    "contact",
    "destinationFax",
    "replyEmail",
    "subject",
    "pagesSubmitted",
    "senderCSID",
    "attemptsToPerform",
    "pageSize",
    "resolution",
    "pageResolution",
    "pageOrientation",
    "rendering",
    "pageHeader",
    "userId",
    "pagesSent",
    "completionTime",
    "remoteCSID",
    "duration",
    "priority",
    "units",
    "costPerUnit",
    "attemptsMade",
    "id",
    "uri",
    "status",
]
SUMMARY_KEYS = {
    "userId",
    "pagesSent",
    "completionTime",
    "remoteCSID",
    "duration",
    "priority",
    "units",
    "costPerUnit",
    "attemptsMade",
    "id",
    "uri",
    "status",
}
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$")


async def send(
    api: httpx.AsyncClient, number: str = "+12125550100", body: bytes = b"%PDF-1.4", **params: str
) -> int:
    response = await api.post(
        "/outbound/faxes", params={"faxNumber": number, **params}, content=body, headers=PDF
    )
    assert response.status_code == 201, response.text
    return int(response.headers["location"].rsplit("/", 1)[1])


async def status_of(api: httpx.AsyncClient, fax_id: int) -> int:
    status: int = (await api.get(f"/outbound/faxes/{fax_id}")).json()["status"]
    return status


async def test_full_record_has_the_live_keys_in_order_and_never_null_times(
    sandbox: RunningSandbox, sandbox_api: httpx.AsyncClient
) -> None:
    fax_id = await send(sandbox_api)
    record = (await sandbox_api.get(f"/outbound/faxes/{fax_id}")).json()
    assert list(record) == FULL_KEYS
    assert record["uri"] == f"{sandbox.base_url}/outbound/faxes/{fax_id}"
    assert record["status"] == -1
    assert TIMESTAMP.match(record["submitTime"])
    assert TIMESTAMP.match(record["completionTime"])  # never null, even in progress
    assert (record["pagesSent"], record["attemptsMade"], record["userId"]) == (0, 0, "user")
    assert record["subject"] is None
    assert record["contact"] is None
    assert isinstance(record["pageHeader"], str)


async def test_completion_fills_in_the_summary_with_exact_decimals(
    sandbox_api: httpx.AsyncClient, sandbox_control: SandboxControl, make_pdf: Callable[..., bytes]
) -> None:
    fax_id = await send(sandbox_api, body=make_pdf(pages=2))
    await sandbox_control.advance(fax_id)
    response = await sandbox_api.get(f"/outbound/faxes/{fax_id}")
    record = response.json()
    assert record["status"] == 0
    assert (record["pagesSent"], record["attemptsMade"]) == (2, 1)
    assert record["duration"] > 0
    assert record["remoteCSID"]
    assert '"units":2.00' in response.text
    assert '"costPerUnit":0.1500' in response.text
    assert record["completionTime"] >= record["submitTime"]


async def test_completed_returns_summaries_of_finished_faxes_only(
    sandbox_api: httpx.AsyncClient, sandbox_control: SandboxControl
) -> None:
    done, waiting = await send(sandbox_api), await send(sandbox_api)
    await sandbox_control.advance(done)
    for ids in (f"{done},{waiting}", f"{done}, {waiting}", f"{waiting},{done},999"):
        response = await sandbox_api.get("/outbound/faxes/completed", params={"ids": ids})
        [summary] = response.json()
        assert set(summary) == SUMMARY_KEYS
        assert (summary["id"], summary["status"]) == (done, 0)
    nothing = await sandbox_api.get("/outbound/faxes/completed", params={"ids": str(waiting)})
    assert nothing.json() == []
    missing = await sandbox_api.get("/outbound/faxes/completed")
    assert (missing.status_code, missing.json()["code"]) == (400, -1030)


@pytest.mark.parametrize(
    ("number", "final", "attempts"),
    [
        ("+12125550001", 3931, 4),
        ("+12125550002", 8021, 4),
        ("+12125550003", 204000, 0),
        ("+12125559999", 0, 1),
    ],
)
async def test_special_numbers_end_in_their_status_through_all_steps(
    sandbox_api: httpx.AsyncClient,
    sandbox_control: SandboxControl,
    number: str,
    final: int,
    attempts: int,
) -> None:
    fax_id = await send(sandbox_api, number)
    seen = [await status_of(sandbox_api, fax_id)]
    for step in (-2, -3):
        await sandbox_control.advance(fax_id, step)
        seen.append(await status_of(sandbox_api, fax_id))
    await sandbox_control.advance(fax_id)
    record = (await sandbox_api.get(f"/outbound/faxes/{fax_id}")).json()
    assert [*seen, record["status"]] == [-1, -2, -3, final]
    assert record["attemptsMade"] == attempts


async def test_manual_mode_never_moves_on_its_own(
    sandbox_api: httpx.AsyncClient, sandbox_control: SandboxControl
) -> None:
    fax_id = await send(sandbox_api)
    for _ in range(3):
        assert await status_of(sandbox_api, fax_id) == -1
    assert await sandbox_control.advance() == [fax_id]
    assert await sandbox_control.advance() == []  # nothing left in progress


async def test_timed_progression_follows_the_clock() -> None:
    now = [1_800_000_000.0]
    settings = sandbox_settings(step_seconds=5, clock=lambda: now[0])
    async with (
        running_sandbox(settings) as sandbox,
        httpx.AsyncClient(base_url=sandbox.base_url, auth=("user", "secret")) as api,
    ):
        fax_id = await send(api)
        seen = []
        for _ in range(4):
            seen.append(await status_of(api, fax_id))
            now[0] += 5
        record = (await api.get(f"/outbound/faxes/{fax_id}")).json()
    assert seen == [-1, -2, -3, 0]
    assert record["completionTime"] == "2027-01-15T08:00:15"
    assert record["submitTime"] == "2027-01-15T08:00:00"


async def test_image_is_a_multi_page_tiff(
    sandbox_api: httpx.AsyncClient, make_pdf: Callable[..., bytes]
) -> None:
    fax_id = await send(sandbox_api, body=make_pdf(pages=3))
    response = await sandbox_api.get(f"/outbound/faxes/{fax_id}/image")
    assert response.headers["content-type"] == "image/tiff"
    assert response.content.startswith(b"II*\x00")
    assert Image.open(io.BytesIO(response.content)).n_frames == 3


async def test_cancel_while_in_progress_then_409_once_final(
    sandbox_api: httpx.AsyncClient, sandbox_control: SandboxControl
) -> None:
    fax_id = await send(sandbox_api)
    cancelled = await sandbox_api.post(f"/outbound/faxes/{fax_id}/cancel")
    assert (cancelled.status_code, cancelled.content) == (200, b"")
    assert await status_of(sandbox_api, fax_id) == 403
    again = await sandbox_api.post(f"/outbound/faxes/{fax_id}/cancel")
    assert again.status_code == 409
    assert again.json() == {
        "code": -162,
        "message": "Transaction is in a wrong status for this operation",
        "moreInfo": f"Transaction ID {fax_id} has already completed",
    }
    finished = await send(sandbox_api)
    await sandbox_control.advance(finished)
    assert (await sandbox_api.post(f"/outbound/faxes/{finished}/cancel")).status_code == 409


async def test_resend_creates_a_new_fax_with_the_same_documents(
    sandbox: RunningSandbox, sandbox_api: httpx.AsyncClient, sandbox_control: SandboxControl
) -> None:
    original = await send(sandbox_api, reference="ref-1")
    response = await sandbox_api.post(f"/outbound/faxes/{original}/resend")
    assert response.status_code == 201
    assert response.content == b""
    location = response.headers["location"]
    assert location.startswith(sandbox.base_url + "/outbound/faxes/")
    copy = int(location.rsplit("/", 1)[1])
    assert copy != original
    elsewhere = await sandbox_api.post(
        f"/outbound/faxes/{original}/resend", params={"faxNumber": "+442084978672"}
    )
    other = int(elsewhere.headers["location"].rsplit("/", 1)[1])
    faxes = {fax["id"]: fax for fax in await sandbox_control.outbound()}
    assert faxes[copy]["documents"][0]["sha256"] == faxes[original]["documents"][0]["sha256"]
    assert faxes[copy]["faxNumber"] == "+12125550100"
    assert faxes[other]["faxNumber"] == "+442084978672"
    assert await status_of(sandbox_api, copy) == -1
    bad = await sandbox_api.post(f"/outbound/faxes/{original}/resend", params={"faxNumber": "x"})
    assert (bad.status_code, bad.json()["code"]) == (400, -112)


async def test_hidden_fax_vanishes_from_list_and_search(sandbox_api: httpx.AsyncClient) -> None:
    kept, hidden = await send(sandbox_api), await send(sandbox_api)
    assert (await sandbox_api.post(f"/outbound/faxes/{hidden}/hide")).status_code == 200
    listed = [fax["id"] for fax in (await sandbox_api.get("/outbound/faxes")).json()]
    assert listed == [kept]
    searched = await sandbox_api.get("/outbound/search", params={"ids": str(hidden)})
    assert searched.json() == []


async def test_list_defaults_to_25_newest_first_with_exclusive_cursor(
    sandbox_api: httpx.AsyncClient,
) -> None:
    ids = [await send(sandbox_api) for _ in range(30)]
    first = [fax["id"] for fax in (await sandbox_api.get("/outbound/faxes")).json()]
    assert first == sorted(ids, reverse=True)[:25]
    rest = await sandbox_api.get("/outbound/faxes", params={"lastId": first[-1]})
    assert [fax["id"] for fax in rest.json()] == sorted(ids, reverse=True)[25:]
    ascending = await sandbox_api.get(
        "/outbound/faxes", params={"sortOrder": "asc", "lastId": ids[4], "limit": 3}
    )
    assert [fax["id"] for fax in ascending.json()] == ids[5:8]
    upper = await sandbox_api.get("/outbound/faxes", params={"sortOrder": "ASC", "limit": 2})
    assert [fax["id"] for fax in upper.json()] == ids[:2]
    assert list(upper.json()[0]) == FULL_KEYS


async def test_search_filters(
    sandbox_api: httpx.AsyncClient, sandbox_control: SandboxControl
) -> None:
    ok = await send(sandbox_api, "+12125550100", reference="job-1")
    busy = await send(sandbox_api, "+12125550001", reference="job-2")
    waiting = await send(sandbox_api, "+442084978672", reference="job-3")
    await sandbox_control.advance(ok)
    await sandbox_control.advance(busy)

    async def found(**params: str) -> list[int]:
        response = await sandbox_api.get("/outbound/search", params=params)
        assert response.status_code == 200, response.text
        return [fax["id"] for fax in response.json()]

    assert await found() == [waiting, busy, ok]
    assert await found(reference="job-2") == [busy]
    assert await found(reference="job-") == []
    assert await found(ids=f"{ok}, {waiting}") == [waiting, ok]
    assert await found(status="Completed") == [busy, ok]
    assert await found(status="success") == [ok]
    assert await found(status="FAILED") == [busy]
    assert await found(status="Inprocess") == [waiting]
    assert await found(status="All") == [waiting, busy, ok]
    assert await found(status="3931") == [busy]
    assert await found(faxNumber="+442084978672") == [waiting]
    assert await found(faxNumber="00442084978672") == [waiting]
    assert await found(sortOrder="asc") == [ok, busy, waiting]
    assert await found(limit="1", offset="1") == [busy]
    assert await found(dateFrom="2000-01-01T00:00:00Z", dateTo="2999-01-01T00:00:00Z") == [
        waiting,
        busy,
        ok,
    ]
    assert await found(dateFrom="2999-01-01") == []
    assert await found(dateTo="2000-01-01T00:00:00") == []
    bad = await sandbox_api.get("/outbound/search", params={"status": "Sometimes"})
    assert (bad.status_code, bad.json()["code"]) == (400, -1030)


async def test_search_faxnumber_with_lowercase_percent_encoding(
    sandbox_api: httpx.AsyncClient,
) -> None:
    fax_id = await send(sandbox_api, "+442084978672")
    response = await sandbox_api.get("/outbound/search?faxNumber=%2b442084978672&limit=3")
    assert [fax["id"] for fax in response.json()] == [fax_id]
