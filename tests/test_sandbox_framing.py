"""Each official client's multipart framing, byte for byte, is accepted (§8, §12.10)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import httpx
import pytest

if TYPE_CHECKING:
    from tests.conftest import SandboxControl

NUMBER = "%2B12125550100"
RB = "43e578690a6d14bf1d776cd55e7d7e29"
EXTERNAL = "https://files.example.com/cover.pdf"


def python_client_body(pdf: bytes) -> tuple[bytes, str]:
    """requests/urllib3 as driven by interfax 1.0.0: form-data with no name."""
    boundary = "390ee79a5fcea89b06b33ed2c36c70b3"
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; \r\n"
        "Content-Type: application/pdf\r\n\r\n".encode()
        + pdf
        + f"\r\n--{boundary}\r\nContent-Disposition: form-data; \r\n"
        "Content-Type: text/plain\r\n\r\n".encode()
        + b"second"
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def ruby_client_body(pdf: bytes) -> tuple[bytes, str]:
    body = (
        f"--{RB}\r\nContent-Type: application/pdf\r\n\r\n".encode()
        + pdf
        + f"\r\n--{RB}\r\nContent-Location: {EXTERNAL}\r\n\r\n\r\n".encode()
        + f"--{RB}--\r\n".encode()
    )
    return body, f"multipart/mixed; boundary={RB}"


def node_client_body(pdf: bytes) -> tuple[bytes, str]:
    """Node: no CRLF after an empty part, an extra CRLF after bodies, none at the end."""
    body = (
        f"--{RB}\r\nContent-Location: {EXTERNAL}\r\n\r\n".encode()
        + f"--{RB}\r\nContent-Type: application/pdf\r\n\r\n".encode()
        + pdf
        + b"\r\n\r\n"
        + f"--{RB}--".encode()
    )
    return body, f"multipart/mixed; boundary={RB}"


def dotnet_2017_body(pdf: bytes) -> tuple[bytes, str]:
    boundary = "8b3c5a7e-35d5-4d2f-9a4e-0c1f2e3d4b5a"
    body = (
        f"--{boundary}\r\nContent-Type: application/pdf\r\n\r\n".encode()
        + pdf
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f'multipart/mixed; boundary="{boundary}"'


def dotnet_2020_body(pdf: bytes) -> tuple[bytes, str]:
    boundary = "f0e1d2c3-b4a5-9687-7869-5a4b3c2d1e0f"
    body = (
        f"--{boundary}\r\nContent-Type: application/pdf\r\n"
        "Content-Disposition: form-data\r\n\r\n".encode()
        + pdf
        + f"\r\n--{boundary}\r\nContent-Location: {EXTERNAL}\r\nContent-Length: 0\r\n"
        "Content-Disposition: form-data\r\n\r\n\r\n".encode()
        + f"--{boundary}--\r\n".encode()
    )
    return body, f'multipart/form-data; boundary="{boundary}"'


def php_client_body(pdf: bytes) -> tuple[bytes, str]:
    boundary = "5f9a3c1e2b7d4a60"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file0"; filename="my%20fax.pdf"\r\n'
        f"Content-Length: {len(pdf)}\r\nContent-Type: application/pdf\r\n\r\n".encode()
        + pdf
        + f"\r\n--{boundary}\r\n"
        'Content-Disposition: form-data; name="file1"; filename="note.txt"\r\n'
        "Content-Length: 4\r\nContent-Type: text/plain\r\n\r\nnote\r\n".encode()
        + f"--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def java_client_body(pdf: bytes) -> tuple[bytes, str]:
    boundary = "Boundary_1_1433212384_1476000000000"
    body = (
        f"--{boundary}\r\nContent-Type: application/pdf\r\n"
        'Content-Disposition: form-data; filename="fax.pdf"; name="file1"\r\n\r\n'.encode()
        + pdf
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/mixed;boundary={boundary}"


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (python_client_body, [("application/pdf", None), ("text/plain", None)]),
        (ruby_client_body, [("application/pdf", None), (None, EXTERNAL)]),
        (node_client_body, [(None, EXTERNAL), ("application/pdf", None)]),
        (dotnet_2017_body, [("application/pdf", None)]),
        (dotnet_2020_body, [("application/pdf", None), (None, EXTERNAL)]),
        (php_client_body, [("application/pdf", None), ("text/plain", None)]),
        (java_client_body, [("application/pdf", None)]),
    ],
    ids=["python", "ruby", "node", "dotnet-2017", "dotnet-2020", "php", "java"],
)
async def test_each_official_clients_multipart_framing_is_accepted_in_order(
    sandbox_api: httpx.AsyncClient,
    sandbox_control: SandboxControl,
    make_pdf: Callable[..., bytes],
    build: Callable[[bytes], tuple[bytes, str]],
    expected: list[tuple[str | None, str | None]],
) -> None:
    pdf = make_pdf()
    body, content_type = build(pdf)
    response = await sandbox_api.post(
        f"/outbound/faxes?faxNumber={NUMBER}", content=body, headers={"Content-Type": content_type}
    )
    assert response.status_code == 201, response.text
    [documents] = [fax["documents"] for fax in await sandbox_control.outbound()]
    assert [(d["contentType"], d["location"]) for d in documents] == expected
    pdf_document = next(d for d in documents if d["contentType"] == "application/pdf")
    served = (await sandbox_api.get(pdf_document["url"])).content
    # Node's extra CRLF stays in the part body; every other client's body is exact.
    assert served in (pdf, pdf + b"\r\n")
