"""Inbound faxes: injection through the control API and the InterFAX inbound endpoints."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import httpx
import pytest

from bridge.sandbox.formats import blank_fax_tiff
from bridge.sandbox.server import RunningSandbox

if TYPE_CHECKING:
    from tests.conftest import SandboxControl

FALSE = {"true": "false", "True": "False", "TRUE": "FALSE"}
INBOUND_KEYS = [
    "userId",
    "messageId",
    "phoneNumber",
    "remoteCSID",
    "messageStatus",
    "pages",
    "messageSize",
    "messageType",
    "receiveTime",
    "callerId",
    "recordingDuration",
    "imageStatus",
    "numOfEmails",
    "numOfFailedEmails",
]


async def test_injected_pdf_becomes_an_unread_inbound_fax(
    sandbox_api: httpx.AsyncClient, sandbox_control: SandboxControl, make_pdf: Callable[..., bytes]
) -> None:
    pdf = make_pdf(pages=2)
    message_id = await sandbox_control.receive_fax(
        pdf, phone_number="+12125550100", caller_id="+13105551234", remote_csid="ACME"
    )
    record = (await sandbox_api.get(f"/inbound/faxes/{message_id}")).json()
    assert list(record) == INBOUND_KEYS
    assert record["messageId"] == message_id
    assert (record["phoneNumber"], record["callerId"], record["remoteCSID"]) == (
        "+12125550100",
        "+13105551234",
        "ACME",
    )
    assert (record["pages"], record["messageSize"], record["messageType"]) == (2, len(pdf), 1)
    assert (record["messageStatus"], record["imageStatus"], record["userId"]) == (
        0,
        "UNREAD",
        "user",
    )
    image = await sandbox_api.get(f"/inbound/faxes/{message_id}/image")
    assert image.headers["content-type"] == "application/pdf"
    assert image.content == pdf


async def test_injected_tiff_is_served_as_tiff_with_its_page_count(
    sandbox_api: httpx.AsyncClient, sandbox_control: SandboxControl
) -> None:
    tiff = blank_fax_tiff(3)
    message_id = await sandbox_control.receive_fax(tiff, filename="fax.tif", caller_id=None)
    record = (await sandbox_api.get(f"/inbound/faxes/{message_id}")).json()
    assert (record["pages"], record["callerId"]) == (3, None)
    image = await sandbox_api.get(f"/inbound/faxes/{message_id}/image")
    assert (image.headers["content-type"], image.content) == ("image/tiff", tiff)


async def test_injection_options_and_refusals(
    sandbox: RunningSandbox, sandbox_control: SandboxControl, make_pdf: Callable[..., bytes]
) -> None:
    message_id = await sandbox_control.receive_fax(make_pdf(), messageStatus="3931", pages="7")
    [entry] = await sandbox_control.inbound()
    assert (entry["messageId"], entry["messageStatus"], entry["pages"]) == (message_id, 3931, 7)
    http = sandbox_control.http
    for files, data in (
        ({"file": ("x.exe", b"MZ\x90\x00")}, {"phoneNumber": "+1"}),
        ({"file": ("x.pdf", make_pdf())}, {}),
        ({}, {"phoneNumber": "+12125550100"}),
        ({"file": ("x.pdf", make_pdf())}, {"phoneNumber": "+1", "pages": "many"}),
    ):
        response = await http.post("/_sandbox/inbound", files=files or None, data=data)
        assert response.status_code == 400
        assert response.json()["error"]
    assert len(await sandbox_control.inbound()) == 1


async def test_list_is_newest_first_with_exclusive_last_id_cursor(
    sandbox_api: httpx.AsyncClient, sandbox_control: SandboxControl, make_pdf: Callable[..., bytes]
) -> None:
    ids = [await sandbox_control.receive_fax(make_pdf()) for _ in range(30)]
    newest_first = sorted(ids, reverse=True)
    page = [fax["messageId"] for fax in (await sandbox_api.get("/inbound/faxes")).json()]
    assert page == newest_first[:25]
    rest = await sandbox_api.get("/inbound/faxes", params={"lastId": page[-1], "limit": 10})
    assert [fax["messageId"] for fax in rest.json()] == newest_first[25:]
    small = await sandbox_api.get("/inbound/faxes", params={"limit": 3, "allUsers": "true"})
    assert [fax["messageId"] for fax in small.json()] == newest_first[:3]


@pytest.mark.parametrize("spelling", ["true", "True", "TRUE"])
async def test_unread_only_and_mark_read_unread(
    sandbox_api: httpx.AsyncClient,
    sandbox_control: SandboxControl,
    make_pdf: Callable[..., bytes],
    spelling: str,
) -> None:
    first, second = [await sandbox_control.receive_fax(make_pdf()) for _ in range(2)]
    marked = await sandbox_api.post(f"/inbound/faxes/{first}/mark")  # default: read
    assert (marked.status_code, marked.text, marked.headers["content-type"]) == (
        200,
        "true",
        "text/json",
    )
    unread = await sandbox_api.get("/inbound/faxes", params={"unreadOnly": spelling})
    assert [fax["messageId"] for fax in unread.json()] == [second]
    states = {fax["messageId"]: fax["imageStatus"] for fax in await sandbox_control.inbound()}
    assert states == {first: "READ", second: "UNREAD"}
    await sandbox_api.post(f"/inbound/faxes/{first}/mark", params={"unread": spelling})
    assert (await sandbox_api.get(f"/inbound/faxes/{first}")).json()["imageStatus"] == "UNREAD"
    await sandbox_api.post(f"/inbound/faxes/{first}/mark", params={"unread": FALSE[spelling]})
    assert (await sandbox_api.get(f"/inbound/faxes/{first}")).json()["imageStatus"] == "READ"
    bad = await sandbox_api.post(f"/inbound/faxes/{first}/mark", params={"unread": "perhaps"})
    assert (bad.status_code, bad.json()["code"]) == (400, -1030)


async def test_forwarding_emails_and_resend(
    sandbox_api: httpx.AsyncClient, sandbox_control: SandboxControl, make_pdf: Callable[..., bytes]
) -> None:
    message_id = await sandbox_control.receive_fax(make_pdf(), emails="a@example.com")
    emails = (await sandbox_api.get(f"/inbound/faxes/{message_id}/emails")).json()
    assert [list(email) for email in emails] == [
        ["emailAddress", "messageStatus", "completionTime"]
    ]
    assert (emails[0]["emailAddress"], emails[0]["messageStatus"]) == ("a@example.com", 0)
    resent = await sandbox_api.post(
        f"/inbound/faxes/{message_id}/resend", params={"email": "b@example.com"}
    )
    assert (resent.status_code, resent.text) == (200, "true")
    dotnet = await sandbox_api.post(
        f"/inbound/faxes/{message_id}/resend", params={"emailAddress": "c@example.com"}
    )
    assert dotnet.status_code == 200
    assert (await sandbox_api.post(f"/inbound/faxes/{message_id}/resend")).status_code == 200
    addresses = [
        e["emailAddress"]
        for e in (await sandbox_api.get(f"/inbound/faxes/{message_id}/emails")).json()
    ]
    assert addresses == ["a@example.com", "b@example.com", "c@example.com"]
    assert (await sandbox_api.get(f"/inbound/faxes/{message_id}")).json()["numOfEmails"] == 3
    bad = await sandbox_api.post(f"/inbound/faxes/{message_id}/resend", params={"email": "x\r\ny"})
    assert bad.status_code == 400


async def test_a_fax_without_forwarding_has_an_empty_email_array(
    sandbox_api: httpx.AsyncClient, sandbox_control: SandboxControl, make_pdf: Callable[..., bytes]
) -> None:
    message_id = await sandbox_control.receive_fax(make_pdf())
    response = await sandbox_api.get(f"/inbound/faxes/{message_id}/emails")
    assert (response.status_code, response.json()) == (200, [])
