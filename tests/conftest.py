"""Shared fixtures: the InterFAX sandbox over real HTTP(S) on 127.0.0.1, port 0.

Fixtures other tests use (names are public):

* ``sandbox`` (async, per test): a :class:`bridge.sandbox.server.RunningSandbox`
  over plain HTTP, user ``"user"``, password ``"secret"``, ``step_seconds=0``: faxes
  stay in progress (-1) until the test moves them through the control API.
* ``sandbox_tls`` (async, per test): the same over HTTPS; yields a :class:`TlsSandbox`
  with ``base_url``, ``host``, ``port``, ``username``, ``password`` and ``ca_file``
  (the PEM of the test CA that signed the server's certificate for 127.0.0.1 and
  localhost).
* ``sandbox_control`` (async, per test): a :class:`SandboxControl` bound to
  ``sandbox``, sugar over the control API.
* ``sandbox_api`` (async, per test): an ``httpx.AsyncClient`` for ``sandbox`` with
  its Basic credentials (for tests of the sandbox itself).
* ``make_pdf``: a function ``make_pdf(pages=1, text="...") -> bytes`` returning a
  small valid PDF (pypdf can read it and count its pages).

The control API needs no credentials. With plain httpx::

    async with httpx.AsyncClient(base_url=sandbox.base_url) as http:
        # receive a fax (an UNREAD inbound fax); answers {"messageId": N}
        r = await http.post("/_sandbox/inbound",
                            files={"file": ("fax.pdf", pdf_bytes, "application/pdf")},
                            data={"phoneNumber": "+12125550100", "callerId": "+12125550199",
                                  "remoteCSID": "ACME"})
        r.json()["messageId"]
        await http.get("/_sandbox/inbound")    # [{messageId, imageStatus, ...}]
        await http.get("/_sandbox/outbound")   # [{id, faxNumber, status, reference,
                                               #   contact, documents: [{contentType,
                                               #   size, sha256, url}], ...}]
        await http.post("/_sandbox/advance", json={"id": fax_id})   # to its final status
        await http.post("/_sandbox/advance", json={})               # every fax in progress
        await http.post("/_sandbox/advance", json={"id": fax_id, "status": -2})
        await http.post("/_sandbox/faults", json={"drop_after_commit": 1})
        await http.post("/_sandbox/faults", json={"latency_ms": 20, "paths": ["/outbound"]})
        await http.post("/_sandbox/faults", json={"rate_limit_per_minute": 6})
        await http.post("/_sandbox/faults", json={"error_rate": 1, "error_status": 503})
        await http.delete("/_sandbox/faults")
        await http.post("/_sandbox/balance", json={"balance": "1.50"})
        await http.post("/_sandbox/reset")

Destination numbers ending in 0001 end busy (3931), 0002 no answer (8021), 0003
rendering failure (204000); any other number ends 0.
"""

from __future__ import annotations

import sqlite3
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme

from bridge import store_schema
from bridge.sandbox.server import RunningSandbox, SandboxSettings, running_sandbox
from bridge.store import DB_FILENAME

SANDBOX_USER = "user"
SANDBOX_PASSWORD = "secret"


@dataclass(frozen=True)
class TlsSandbox:
    """A sandbox served over HTTPS, and the CA file that verifies it."""

    base_url: str
    host: str
    port: int
    username: str
    password: str
    ca_file: Path


class SandboxControl:
    """Thin async wrapper over the sandbox's control API (``/_sandbox/``)."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self.http.request(method, "/_sandbox" + path, **kwargs)
        response.raise_for_status()
        return response.json()

    async def receive_fax(
        self,
        data: bytes,
        *,
        phone_number: str = "+12125550100",
        caller_id: str | None = "+12125550199",
        remote_csid: str = "Sandbox sender",
        filename: str = "fax.pdf",
        **fields: str,
    ) -> int:
        """Inject an unread inbound fax; returns its messageId."""
        form = {"phoneNumber": phone_number, "remoteCSID": remote_csid, **fields}
        if caller_id is not None:
            form["callerId"] = caller_id
        result = await self._json("POST", "/inbound", files={"file": (filename, data)}, data=form)
        return int(result["messageId"])

    async def inbound(self) -> list[dict[str, Any]]:
        """Every inbound fax with its imageStatus."""
        result: list[dict[str, Any]] = await self._json("GET", "/inbound")
        return result

    async def outbound(self) -> list[dict[str, Any]]:
        """Every fax the sandbox received."""
        result: list[dict[str, Any]] = await self._json("GET", "/outbound")
        return result

    async def advance(self, fax_id: int | None = None, status: int | None = None) -> list[int]:
        """Move one fax (or all in progress) to its final status or ``status``."""
        body = {
            key: value for key, value in (("id", fax_id), ("status", status)) if value is not None
        }
        result = await self._json("POST", "/advance", json=body)
        return list(result["advanced"])

    async def faults(self, **settings: Any) -> dict[str, Any]:
        """Replace the fault configuration."""
        result: dict[str, Any] = await self._json("POST", "/faults", json=settings)
        return result

    async def clear_faults(self) -> None:
        """Inject nothing any more."""
        await self._json("DELETE", "/faults")

    async def set_balance(self, balance: str) -> None:
        """Make the account balance read ``balance``."""
        await self._json("POST", "/balance", json={"balance": balance})

    async def reset(self) -> None:
        """Forget everything."""
        await self._json("POST", "/reset")


def minimal_pdf(pages: int = 1, text: str = "fax-bridge test page") -> bytes:
    """A small valid PDF with ``pages`` pages of Helvetica text."""
    safe = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    page_ids = [4 + 2 * i for i in range(pages)]
    objects: list[bytes] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids ["
        + b" ".join(f"{pid} 0 R".encode() for pid in page_ids)
        + f"] /Count {pages} >>".encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    for index in range(pages):
        stream = zlib.compress(f"BT /F1 18 Tf 72 720 Td ({safe} {index + 1}) Tj ET".encode())
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents {page_ids[index] + 1}"
            f" 0 R /Resources << /Font << /F1 3 0 R >> >> >>".encode()
        )
        objects.append(
            f"<< /Length {len(stream)} /Filter /FlateDecode >>\nstream\n".encode()
            + stream
            + b"\nendstream"
        )
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    out += (
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    )
    return bytes(out)


@pytest.fixture
def make_pdf() -> Callable[..., bytes]:
    """``make_pdf(pages=1, text=...)``: a small valid PDF."""
    return minimal_pdf


def sandbox_settings(**overrides: Any) -> SandboxSettings:
    """The settings the fixtures use, with ``overrides``."""
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 0,
        "username": SANDBOX_USER,
        "password": SANDBOX_PASSWORD,
        "step_seconds": 0,
        **overrides,
    }
    return SandboxSettings(**values)


@pytest.fixture
async def sandbox() -> AsyncIterator[RunningSandbox]:
    """A running HTTP sandbox with manual status progression."""
    async with running_sandbox(sandbox_settings()) as running:
        yield running


@pytest.fixture(scope="session")
def tls_ca() -> trustme.CA:
    """One test CA for the session."""
    return trustme.CA()


@pytest.fixture
async def sandbox_tls(tls_ca: trustme.CA, tmp_path: Path) -> AsyncIterator[TlsSandbox]:
    """A running HTTPS sandbox (manual progression) and the CA that verifies it."""
    server_cert = tls_ca.issue_cert("127.0.0.1", "localhost")
    cert_file, key_file, ca_file = (tmp_path / n for n in ("server.pem", "key.pem", "ca.pem"))
    server_cert.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    server_cert.private_key_pem.write_to_path(str(key_file))
    tls_ca.cert_pem.write_to_path(str(ca_file))
    settings = sandbox_settings(tls_cert=cert_file, tls_key=key_file)
    async with running_sandbox(settings) as running:
        yield TlsSandbox(
            base_url=running.base_url,
            host=running.host,
            port=running.port,
            username=running.username,
            password=running.password,
            ca_file=ca_file,
        )


@pytest.fixture
async def sandbox_control(sandbox: RunningSandbox) -> AsyncIterator[SandboxControl]:
    """Sugar over the control API of ``sandbox``."""
    async with httpx.AsyncClient(base_url=sandbox.base_url) as http:
        yield SandboxControl(http)


@pytest.fixture
async def sandbox_api(sandbox: RunningSandbox) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for ``sandbox``'s API, logged in."""
    auth = (sandbox.username, sandbox.password)
    async with httpx.AsyncClient(base_url=sandbox.base_url, auth=auth) as http:
        yield http


@pytest.fixture(params=["runs-of-64-KiB", "every-run"])
def hollow_modes(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a parsing test twice: as configured, and hollowing every base64-looking run.

    The second mode sends every line run of base64 characters (short words in text
    bodies, quoted-printable lines, small attachments) through bridge.mailhollow, so
    each assertion also proves the skeleton parses exactly like the whole message.
    """
    if request.param == "every-run":
        from bridge import mailhollow, mailparse

        def everything(raw: bytes, *, min_bytes: int) -> Any:
            return mailhollow.hollow(raw, min_bytes=1)

        monkeypatch.setattr(mailparse, "hollow", everything)
    return str(request.param)


@pytest.fixture
async def h(
    sandbox: RunningSandbox, sandbox_control: SandboxControl, tmp_path: Path
) -> AsyncIterator[Any]:
    """An inbound harness (:mod:`tests.inbound_harness`) on the sandbox, for fax-to-email tests."""
    from tests.inbound_harness import inbound_harness

    async with inbound_harness(sandbox, sandbox_control, tmp_path) as harness:
        yield harness


def database_at(state_dir: Path, version: int) -> sqlite3.Connection:
    """A database as schema ``version`` left it (the caller commits and closes it)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(state_dir / DB_FILENAME)
    for step in store_schema.MIGRATIONS[:version]:
        for statement in step:
            conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {version}")
    return conn
