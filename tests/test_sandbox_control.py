"""The control API, fault injection, the state file, the HTML page, TLS and the CLI."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import ssl
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from bridge.sandbox.persist import StateFileError
from bridge.sandbox.server import RunningSandbox, running_sandbox
from tests.conftest import sandbox_settings

if TYPE_CHECKING:
    from tests.conftest import SandboxControl, TlsSandbox

REPO = Path(__file__).resolve().parent.parent
PDF = {"Content-Type": "application/pdf"}
SEND = "/outbound/faxes?faxNumber=%2B12125550100"


# --- faults -------------------------------------------------------------------------


async def test_drop_after_commit_loses_the_response_but_keeps_the_fax(
    sandbox_api: httpx.AsyncClient, sandbox_control: SandboxControl
) -> None:
    shown = await sandbox_control.faults(drop_after_commit=1)
    assert shown["drop_after_commit"] == 1
    # A refused send commits nothing, so it does not use up the drop.
    assert (await sandbox_api.post(SEND, content=b"")).status_code == 400
    with pytest.raises(httpx.TransportError):
        await sandbox_api.post(SEND + "&reference=lost-1", content=b"%PDF-1.4", headers=PDF)
    [fax] = await sandbox_control.outbound()
    assert (fax["reference"], fax["status"]) == ("lost-1", -1)
    search = await sandbox_api.get("/outbound/search", params={"reference": "lost-1"})
    assert [f["id"] for f in search.json()] == [fax["id"]]
    # Only one drop was asked for: the next send is answered.
    assert (await sandbox_api.post(SEND, content=b"%PDF-1.4", headers=PDF)).status_code == 201
    shown = (await sandbox_control.http.get("/_sandbox/faults")).json()
    assert shown["drop_after_commit"] == 0


async def test_drop_after_commit_over_tls(sandbox_tls: TlsSandbox) -> None:
    context = ssl.create_default_context(cafile=str(sandbox_tls.ca_file))
    auth = (sandbox_tls.username, sandbox_tls.password)
    async with httpx.AsyncClient(base_url=sandbox_tls.base_url, auth=auth, verify=context) as api:
        await api.post("/_sandbox/faults", json={"drop_after_commit": 2})
        for _ in range(2):
            with pytest.raises(httpx.TransportError):
                await api.post(SEND, content=b"%PDF-1.4", headers=PDF)
        assert len((await api.get("/_sandbox/outbound")).json()) == 2
        assert (await api.get("/outbound/faxes")).status_code == 200


async def test_rate_limit_answers_429_with_retry_after(
    sandbox_api: httpx.AsyncClient, sandbox_control: SandboxControl
) -> None:
    await sandbox_control.faults(rate_limit_per_minute=2)
    for _ in range(2):
        assert (await sandbox_api.get("/outbound/faxes")).status_code == 200
    limited = await sandbox_api.get("/outbound/faxes")
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert limited.headers["content-type"] == "text/json"
    assert limited.json()["code"] == -1011
    assert set(limited.json()) == {"code", "message", "moreInfo"}
    # The control API is never limited.
    assert len(await sandbox_control.outbound()) == 0
    await sandbox_control.clear_faults()
    assert (await sandbox_api.get("/outbound/faxes")).status_code == 200


async def test_error_rate_with_chosen_status_and_path_prefixes(
    sandbox_api: httpx.AsyncClient, sandbox_control: SandboxControl
) -> None:
    await sandbox_control.faults(error_rate=1, error_status=502, paths=["/outbound/faxes"])
    failed = await sandbox_api.get("/outbound/faxes")
    assert failed.status_code == 502
    assert failed.json()["code"] == -150
    assert (await sandbox_api.get("/inbound/faxes")).status_code == 200
    await sandbox_control.faults(error_rate=1)
    assert (await sandbox_api.get("/inbound/faxes")).status_code == 503
    assert (await sandbox_api.post(SEND, content=b"%PDF-1.4", headers=PDF)).status_code == 503
    assert await sandbox_control.outbound() == []  # a failed request commits nothing


async def test_faults_apply_before_authentication(sandbox: RunningSandbox) -> None:
    async with httpx.AsyncClient(base_url=sandbox.base_url) as http:
        await http.post("/_sandbox/faults", json={"error_rate": 1})
        assert (await http.get("/outbound/faxes")).status_code == 503


async def test_fault_configuration_is_shown_validated_and_cleared(sandbox: RunningSandbox) -> None:
    async with httpx.AsyncClient(base_url=sandbox.base_url) as http:
        initial = (await http.get("/_sandbox/faults")).json()
        assert initial == {
            "latency_ms": 0,
            "error_rate": 0.0,
            "error_status": 503,
            "drop_after_commit": 0,
            "rate_limit_per_minute": 0,
            "paths": [],
        }
        set_ = await http.post("/_sandbox/faults", json={"latency_ms": 5, "paths": ["/inbound"]})
        assert set_.json()["latency_ms"] == 5
        for bad in ({"latency": 1}, {"error_rate": "high"}, [1]):
            response = await http.post("/_sandbox/faults", json=bad)
            assert response.status_code == 400
            assert response.json()["error"]
        not_json = await http.post("/_sandbox/faults", content=b"{nope")
        assert not_json.status_code == 400
        assert (await http.delete("/_sandbox/faults")).json() == initial


# --- control API ------------------------------------------------------------------


async def test_advance_errors_and_reset(
    sandbox_api: httpx.AsyncClient, sandbox_control: SandboxControl, make_pdf: Callable[..., bytes]
) -> None:
    http = sandbox_control.http
    assert (await http.post("/_sandbox/advance", json={"id": 12345})).status_code == 404
    assert (await http.post("/_sandbox/advance", json={"id": "x"})).status_code == 400
    assert (await http.post("/_sandbox/balance", json={"balance": "lots"})).status_code == 400
    await sandbox_api.post(SEND, content=make_pdf(), headers=PDF)
    await sandbox_control.receive_fax(make_pdf())
    await sandbox_api.post("/outbound/documents?size=5&name=a.pdf")
    await sandbox_control.faults(latency_ms=1)
    await sandbox_control.advance()
    await sandbox_control.reset()
    assert await sandbox_control.outbound() == []
    assert await sandbox_control.inbound() == []
    assert (await sandbox_api.get("/outbound/documents")).json() == []
    assert (await sandbox_api.get("/accounts/self/ppcards/balance")).text == "100.0000"
    assert (await http.get("/_sandbox/faults")).json()["latency_ms"] == 0


async def test_cross_site_posts_are_refused(sandbox: RunningSandbox) -> None:
    async with httpx.AsyncClient(base_url=sandbox.base_url) as http:
        hostile = await http.post("/_sandbox/reset", headers={"Origin": "https://evil.example"})
        assert hostile.status_code == 403
        same = await http.post("/_sandbox/reset", headers={"Origin": sandbox.base_url})
        assert same.status_code == 200


async def test_outbound_document_urls_serve_bytes_safely(
    sandbox_api: httpx.AsyncClient, sandbox_control: SandboxControl
) -> None:
    html = b"<html><script>alert(1)</script></html>"
    await sandbox_api.post(SEND, content=html, headers={"Content-Type": "text/html"})
    [fax] = await sandbox_control.outbound()
    served = await sandbox_control.http.get(fax["documents"][0]["url"])
    assert served.content == html
    assert served.headers["content-security-policy"] == "sandbox"
    assert served.headers["x-content-type-options"] == "nosniff"
    missing = await sandbox_control.http.get(f"/_sandbox/outbound/{fax['id']}/documents/5")
    assert missing.status_code == 404


# --- HTML page --------------------------------------------------------------------


async def test_page_lists_faxes_and_escapes_hostile_values(
    sandbox: RunningSandbox,
    sandbox_api: httpx.AsyncClient,
    sandbox_control: SandboxControl,
    make_pdf: Callable[..., bytes],
) -> None:
    evil = '"><script>alert(1)</script>'
    body = (
        (
            f'--B\r\nContent-Disposition: form-data; name="file0"; filename="{evil}.pdf"\r\n'
            "Content-Type: application/pdf\r\n\r\n"
        ).encode()
        + make_pdf()
        + b"\r\n--B--\r\n"
    )
    await sandbox_api.post(
        SEND + "&reference=%3Cb%3Eref",
        content=body,
        headers={"Content-Type": "multipart/form-data; boundary=B"},
    )
    await sandbox_control.receive_fax(make_pdf(), remote_csid=evil, filename=f"{evil}.pdf")
    page = await sandbox_control.http.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "<script>" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert "&lt;b&gt;ref" in page.text
    [fax] = await sandbox_control.outbound()
    assert f'href="/_sandbox/outbound/{fax["id"]}/documents/0"' in page.text
    assert 'enctype="multipart/form-data"' in page.text


async def test_page_form_receives_a_fax_and_returns_to_the_page(
    sandbox_control: SandboxControl, make_pdf: Callable[..., bytes]
) -> None:
    response = await sandbox_control.http.post(
        "/_sandbox/inbound",
        files={"file": ("scan.pdf", make_pdf())},
        data={"phoneNumber": "+12125550100", "callerId": "", "remoteCSID": "X", "next": "/"},
    )
    assert (response.status_code, response.headers["location"]) == (303, "/")
    [fax] = await sandbox_control.inbound()
    assert (fax["callerId"], fax["filename"]) == (None, "scan.pdf")


# --- state file -------------------------------------------------------------------


async def _snapshot(sandbox: RunningSandbox) -> dict[str, object]:
    auth = (sandbox.username, sandbox.password)
    async with httpx.AsyncClient(base_url=sandbox.base_url, auth=auth) as api:
        texts = {
            path: (await api.get(path)).text
            for path in (
                "/outbound/faxes?sortOrder=asc",
                "/inbound/faxes",
                "/outbound/documents",
                "/accounts/self/ppcards/balance",
                "/_sandbox/outbound",
                "/_sandbox/inbound",
            )
        }
    return {
        path: json.loads(text.replace(sandbox.base_url, "BASE")) for path, text in texts.items()
    }


async def test_state_file_round_trip(tmp_path: Path, make_pdf: Callable[..., bytes]) -> None:
    state_file = tmp_path / "state" / "sandbox.json"
    settings = sandbox_settings(state_file=state_file)
    async with running_sandbox(settings) as first:
        async with httpx.AsyncClient(base_url=first.base_url, auth=("user", "secret")) as api:
            body = b"--B\r\nContent-Type: application/pdf\r\n\r\n" + make_pdf(pages=2)
            body += b"\r\n--B\r\nContent-Type: text/plain\r\n\r\nhello\r\n--B--"
            headers = {"Content-Type": "multipart/mixed; boundary=B"}
            kept = await api.post(SEND + "&reference=r1", content=body, headers=headers)
            cancelled = await api.post(SEND, content=make_pdf(), headers=PDF)
            await api.post(cancelled.headers["location"] + "/cancel")
            hidden = await api.post(SEND, content=make_pdf(), headers=PDF)
            await api.post(hidden.headers["location"] + "/hide")
            await api.post(
                "/_sandbox/advance", json={"id": int(kept.headers["location"].rsplit("/", 1)[1])}
            )
            doc = await api.post("/outbound/documents?size=10&name=part.pdf&disposition=permanent")
            await api.post(
                doc.headers["location"], content=b"%PDF-", headers={"Range": "bytes=0-4"}
            )
            files = {"file": ("in.pdf", make_pdf())}
            injected = await api.post(
                "/_sandbox/inbound", files=files, data={"phoneNumber": "+1", "emails": "a@b.c"}
            )
            await api.post(f"/inbound/faxes/{injected.json()['messageId']}/mark")
            await api.post("/_sandbox/balance", json={"balance": "7.5"})
        before = await _snapshot(first)
    assert not [p for p in state_file.parent.iterdir() if p.name.startswith(".")]  # no temp files
    async with running_sandbox(settings) as second:
        assert await _snapshot(second) == before
        async with httpx.AsyncClient(base_url=second.base_url, auth=("user", "secret")) as api:
            doc_uri = (await api.get("/outbound/documents")).json()[0]["uri"]
            finish = await api.post(doc_uri, content=b"12345", headers={"Range": "bytes=5-9"})
            assert finish.status_code == 200
            newer = await api.post(SEND, content=make_pdf(), headers=PDF)
    old_ids = [fax["id"] for fax in before["/_sandbox/outbound"]]  # type: ignore[union-attr]
    assert int(newer.headers["location"].rsplit("/", 1)[1]) > max(old_ids)


async def test_unreadable_state_file_stops_start_up(tmp_path: Path) -> None:
    state_file = tmp_path / "sandbox.json"
    state_file.write_text('{"version": 1, "faxes": "nonsense"}')
    with pytest.raises(StateFileError, match=r"sandbox\.json"):
        async with running_sandbox(sandbox_settings(state_file=state_file)):
            pass


# --- serving ----------------------------------------------------------------------


async def test_tls_sandbox_serves_https_verified_by_the_test_ca(sandbox_tls: TlsSandbox) -> None:
    assert sandbox_tls.base_url.startswith("https://127.0.0.1:")
    context = ssl.create_default_context(cafile=str(sandbox_tls.ca_file))
    auth = (sandbox_tls.username, sandbox_tls.password)
    async with httpx.AsyncClient(base_url=sandbox_tls.base_url, auth=auth, verify=context) as api:
        response = await api.post(SEND, content=b"%PDF-1.4", headers=PDF)
        assert response.headers["location"].startswith(sandbox_tls.base_url + "/outbound/faxes/")
    async with httpx.AsyncClient(base_url=sandbox_tls.base_url) as untrusting:
        with pytest.raises(httpx.ConnectError):
            await untrusting.get("/")


async def test_tls_needs_both_certificate_and_key(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="certificate and a key"):
        async with running_sandbox(sandbox_settings(tls_cert=tmp_path / "c.pem")):
            pass


async def test_unusable_certificate_fails_start_up(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("not a certificate")
    key.write_text("not a key")
    with pytest.raises(ssl.SSLError):
        async with running_sandbox(sandbox_settings(tls_cert=cert, tls_key=key)):
            pass


async def test_port_in_use_is_an_error_not_a_hang(sandbox: RunningSandbox) -> None:
    with pytest.raises(OSError, match="in use"):
        async with running_sandbox(sandbox_settings(port=sandbox.port)):
            pass


async def test_cli_serves_until_sigterm() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bridge",
        "sandbox",
        "--listen",
        "127.0.0.1:0",
        "--step-seconds",
        "0",
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
        assert line.startswith("InterFAX sandbox: http://127.0.0.1:"), line
        base_url = line.split()[2].rstrip("/")
        async with httpx.AsyncClient(base_url=base_url, auth=("sandbox", "sandbox")) as api:
            assert (await api.get("/accounts/self/ppcards/balance")).text == "100.0000"
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_ipv6_loopback_with_brackets() -> None:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError as exc:  # pragma: no cover - hosts without IPv6
        pytest.skip(f"no IPv6 loopback here: {exc}")
    async with running_sandbox(sandbox_settings(host="[::1]")) as sandbox:
        assert sandbox.base_url.startswith("http://[::1]:")
        async with httpx.AsyncClient(base_url=sandbox.base_url, auth=("user", "secret")) as api:
            assert (await api.get("/accounts/self/ppcards/balance")).status_code == 200
