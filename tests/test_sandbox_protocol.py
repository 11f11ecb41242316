"""The sandbox speaks InterFAX's HTTP dialect: auth, content types, errors, parameters."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING

import httpx
import pytest

from bridge.sandbox.server import RunningSandbox

if TYPE_CHECKING:
    from conftest import SandboxControl

PDF_HEADERS = {"Content-Type": "application/pdf"}

API_PATHS = [
    ("GET", "/outbound/faxes"),
    ("POST", "/outbound/faxes?faxNumber=%2B12125550100"),
    ("GET", "/outbound/faxes/completed?ids=1"),
    ("GET", "/outbound/faxes/1"),
    ("GET", "/outbound/faxes/1/image"),
    ("POST", "/outbound/faxes/1/cancel"),
    ("POST", "/outbound/faxes/1/resend"),
    ("POST", "/outbound/faxes/1/hide"),
    ("GET", "/outbound/search"),
    ("GET", "/inbound/faxes"),
    ("GET", "/inbound/faxes/1"),
    ("GET", "/inbound/faxes/1/image"),
    ("GET", "/inbound/faxes/1/emails"),
    ("POST", "/inbound/faxes/1/mark"),
    ("POST", "/inbound/faxes/1/resend"),
    ("POST", "/outbound/documents?size=1&name=a.pdf"),
    ("POST", "/outbound/documents/0123456789abcdef0123456789abcdef"),
    ("GET", "/outbound/documents"),
    ("GET", "/outbound/documents/0123456789abcdef0123456789abcdef"),
    ("DELETE", "/outbound/documents/0123456789abcdef0123456789abcdef"),
    ("GET", "/accounts/self/ppcards/balance"),
    ("GET", "/outbound/help/mediatype"),
    ("GET", "/no/such/path"),
]


def basic(user: str, password: str, scheme: str = "Basic") -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"{scheme} {token}"}


@pytest.mark.parametrize(("method", "path"), API_PATHS)
@pytest.mark.parametrize(
    "headers",
    [
        {},
        basic("user", "wrong"),
        basic("nobody", "secret"),
        basic("user", "secretX"),
        {"Authorization": "Bearer abc"},
        {"Authorization": "Basic !!!notbase64"},
        {"Authorization": "Basic " + base64.b64encode(b"usersecret").decode()},
    ],
    ids=["none", "bad-password", "bad-user", "longer", "bearer", "garbage", "no-colon"],
)
async def test_every_api_path_needs_basic_auth(
    sandbox: RunningSandbox, method: str, path: str, headers: dict[str, str]
) -> None:
    async with httpx.AsyncClient(base_url=sandbox.base_url) as http:
        response = await http.request(method, path, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Basic realm="InterFAX"'
    assert response.headers["content-type"] == "text/json"
    assert response.json() == {"code": -1003, "message": "Authentication error", "moreInfo": None}


async def test_basic_scheme_is_case_insensitive(sandbox: RunningSandbox) -> None:
    async with httpx.AsyncClient(base_url=sandbox.base_url) as http:
        response = await http.get("/outbound/faxes", headers=basic("user", "secret", "basic"))
    assert response.status_code == 200


async def test_control_api_and_page_need_no_auth(sandbox: RunningSandbox) -> None:
    async with httpx.AsyncClient(base_url=sandbox.base_url) as http:
        assert (await http.get("/")).status_code == 200
        assert (await http.get("/_sandbox/outbound")).status_code == 200
        assert (await http.get("/favicon.ico")).status_code == 404


async def test_json_is_text_json_by_default(sandbox_api: httpx.AsyncClient) -> None:
    response = await sandbox_api.get("/outbound/faxes")
    assert response.headers["content-type"] == "text/json"
    assert response.headers["cache-control"] == "private"
    assert response.json() == []


@pytest.mark.parametrize("accept", ["application/json", "application/json, text/plain, */*"])
async def test_json_is_application_json_when_asked(
    sandbox_api: httpx.AsyncClient, accept: str
) -> None:
    response = await sandbox_api.get("/accounts/self/ppcards/balance", headers={"Accept": accept})
    assert response.headers["content-type"] == "application/json; charset=utf-8"


async def test_errors_are_text_json_even_when_application_json_is_asked(
    sandbox_api: httpx.AsyncClient,
) -> None:
    response = await sandbox_api.get(
        "/outbound/documents/0123456789abcdef0123456789abcdef",
        headers={"Accept": "application/json"},
    )
    assert response.status_code == 404
    assert response.headers["content-type"] == "text/json"
    assert response.json() == {
        "code": -1062,
        "message": "Wrong uploaded document resource",
        "moreInfo": None,
    }


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/outbound/faxes/42"),
        ("GET", "/outbound/faxes/42/image"),
        ("POST", "/outbound/faxes/42/cancel"),
        ("POST", "/outbound/faxes/42/resend"),
        ("POST", "/outbound/faxes/42/hide"),
    ],
)
async def test_unknown_outbound_fax_is_404_minus_1005(
    sandbox_api: httpx.AsyncClient, method: str, path: str
) -> None:
    response = await sandbox_api.request(method, path)
    assert response.status_code == 404
    assert response.json() == {
        "code": -1005,
        "message": "Fax resource not found",
        "moreInfo": "Fax resource 42 not found or not accessible by user user",
    }


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/inbound/faxes/7"),
        ("GET", "/inbound/faxes/7/image"),
        ("GET", "/inbound/faxes/7/emails"),
        ("POST", "/inbound/faxes/7/mark"),
        ("POST", "/inbound/faxes/7/resend"),
    ],
)
async def test_unknown_inbound_fax_is_404_minus_3001(
    sandbox_api: httpx.AsyncClient, method: str, path: str
) -> None:
    response = await sandbox_api.request(method, path)
    assert response.status_code == 404
    assert response.json() == {
        "code": -3001,
        "message": "Invalid MessageID or User is not authorized to access message",
        "moreInfo": "Invalid ID [7]",
    }


async def test_non_numeric_ids_are_not_found_not_crashes(sandbox_api: httpx.AsyncClient) -> None:
    response = await sandbox_api.get("/outbound/faxes/abc")
    assert (response.status_code, response.json()["code"]) == (404, -1005)
    response = await sandbox_api.get("/inbound/faxes/abc")
    assert (response.status_code, response.json()["moreInfo"]) == (404, "Invalid ID [abc]")


async def test_unknown_paths_and_methods_answer_interfax_shaped_errors(
    sandbox_api: httpx.AsyncClient,
) -> None:
    response = await sandbox_api.get("/outbound/nothing")
    assert response.status_code == 404
    assert response.headers["content-type"] == "text/json"
    assert set(response.json()) == {"code", "message", "moreInfo"}
    response = await sandbox_api.put("/outbound/faxes")
    assert response.status_code == 405
    assert set(response.json()) == {"code", "message", "moreInfo"}


@pytest.mark.parametrize(
    "query",
    ["limit=abc", "limit=0", "lastId=x", "sortOrder=sideways"],
)
async def test_malformed_list_parameters_are_400_with_interfax_body(
    sandbox_api: httpx.AsyncClient, query: str
) -> None:
    response = await sandbox_api.get(f"/outbound/faxes?{query}")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == -1030
    assert query.split("=")[0] in body["moreInfo"]


async def test_unknown_parameters_are_ignored(sandbox_api: httpx.AsyncClient) -> None:
    response = await sandbox_api.post(
        "/outbound/faxes?faxNumber=%2B12125550100&shared=True&emailAddress=a%40b.c",
        content=b"%PDF-1.4 x",
        headers=PDF_HEADERS,
    )
    assert response.status_code == 201


async def test_balance_is_a_bare_decimal_with_four_places(
    sandbox_api: httpx.AsyncClient, sandbox_control: SandboxControl
) -> None:
    response = await sandbox_api.get("/accounts/self/ppcards/balance")
    assert response.text == "100.0000"
    assert response.headers["content-type"] == "text/json"
    await sandbox_control.set_balance("12.34")
    assert (await sandbox_api.get("/accounts/self/ppcards/balance")).text == "12.3400"


async def test_balance_goes_down_by_units_times_cost_as_faxes_complete(
    sandbox_api: httpx.AsyncClient, sandbox_control: SandboxControl, make_pdf: Callable[..., bytes]
) -> None:
    await sandbox_control.set_balance("12.34")
    for number in ("+12125550100", "+12125550001"):  # the second ends busy: no charge
        response = await sandbox_api.post(
            f"/outbound/faxes?faxNumber={number.replace('+', '%2B')}",
            content=make_pdf(pages=3),
            headers=PDF_HEADERS,
        )
        assert response.status_code == 201
    assert (await sandbox_api.get("/accounts/self/ppcards/balance")).text == "12.3400"
    await sandbox_control.advance()
    balance = Decimal((await sandbox_api.get("/accounts/self/ppcards/balance")).text)
    assert balance == Decimal("12.34") - 3 * Decimal("0.15")


async def test_media_type_helper_has_pascal_case_keys(sandbox_api: httpx.AsyncClient) -> None:
    response = await sandbox_api.get("/outbound/help/mediatype")
    assert response.status_code == 200
    types = response.json()
    assert {"MediaType": "application/pdf", "FileType": "pdf"} in types
    assert all(set(entry) == {"MediaType", "FileType"} for entry in types)


async def test_empty_successes_have_content_length_zero(sandbox_api: httpx.AsyncClient) -> None:
    created = await sandbox_api.post(
        "/outbound/faxes?faxNumber=%2B12125550100", content=b"%PDF-1.4", headers=PDF_HEADERS
    )
    assert created.headers["content-length"] == "0"
    assert created.content == b""
    fax_id = created.headers["location"].rsplit("/", 1)[1]
    hidden = await sandbox_api.post(f"/outbound/faxes/{fax_id}/hide")
    assert (hidden.status_code, hidden.headers["content-length"], hidden.content) == (200, "0", b"")


async def test_error_body_keys_are_exact(sandbox_api: httpx.AsyncClient) -> None:
    response = await sandbox_api.post("/outbound/faxes", content=b"%PDF-1.4", headers=PDF_HEADERS)
    assert response.status_code == 400
    assert list(json.loads(response.text)) == ["code", "message", "moreInfo"]
