"""Helpers for the inbound (fax to email) tests: fax images, ledger rows, mail parts."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from PIL import Image
from pypdf import PdfReader

from bridge.jobs import InboundFax, InboundState

#: 2024-01-02 03:04:05 UTC
RECEIVED = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp()
CVE_PAYLOAD = "=?utf-8?q?hello=0AX-Injected=3A_yes?="
HOSTILE_CSIDS = [
    "ACME\r\nBcc: victim@evil.example",
    "ACME\nX-Injected: yes",
    CVE_PAYLOAD,
    "=?utf-8?b?QUNNRQpYLUluamVjdGVkOiB5ZXM=?=",
    "\u202eFDP.exe",
]
HOSTILE_CALLER_IDS = [
    "+1 212\r\nBcc: victim@evil.example",
    "+12125550199\nX-Injected: 1",
    CVE_PAYLOAD,
]


def g4_tiff(pages: int) -> bytes:
    """A real multi-page CCITT Group 4 TIFF, as fax machines produce."""
    frames = [Image.new("1", (1728, 200 + 10 * i), color=1) for i in range(pages)]
    out = io.BytesIO()
    frames[0].save(
        out,
        format="TIFF",
        compression="group4",
        save_all=True,
        append_images=frames[1:],
        dpi=(204, 196),
    )
    return out.getvalue()


def pdf_page_count(data: bytes) -> int:
    """Pages of a PDF, read with pypdf (not the code under test)."""
    return len(PdfReader(io.BytesIO(data)).pages)


def ledger_fax(**overrides: Any) -> InboundFax:
    """A ledger row as the store returns it."""
    values: dict[str, Any] = {
        "message_id": 292626603,
        "state": InboundState.SEEN,
        "phone_number": "+12125550100",
        "caller_id": "+12125550199",
        "remote_csid": "ACME LAB",
        "pages": 2,
        "receive_time": RECEIVED,
        "message_status": 0,
        "meta": {"recording_duration": 50},
        "image_type": None,
        "image_size": None,
        "created_at": RECEIVED,
        "updated_at": RECEIVED,
        "attempts": 0,
        "next_attempt_at": RECEIVED,
        "last_error": None,
        **overrides,
    }
    return InboundFax(**values)


def attachments_of(message: EmailMessage) -> list[tuple[str, str, bytes]]:
    """``(filename, content type, bytes)`` of each attachment."""
    found = []
    for part in message.iter_attachments():
        assert isinstance(part, EmailMessage)
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        found.append((str(part.get_filename()), part.get_content_type(), payload))
    return found


def text_body(message: EmailMessage) -> str:
    """The plain-text body."""
    body = message.get_body(("plain",))
    assert isinstance(body, EmailMessage)
    return str(body.get_content())


def html_body(message: EmailMessage) -> str:
    """The HTML body."""
    body = message.get_body(("html",))
    assert isinstance(body, EmailMessage)
    return str(body.get_content())


def broken_templates(tmp_path: Path) -> Path:
    """A templates directory whose fax mail template fails to render (our own bug)."""
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "inbound.txt.j2").write_text("{{ pages / 0 }}\n")
    return templates
