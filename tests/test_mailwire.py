"""The fast mail writer builds what build_mail builds: same headers, bodies and files."""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest

from bridge.errors import PermanentError
from bridge.mailbuild import Attachment, MailAddress, build_mail
from bridge.mailwire import mail_bytes_fast
from tests.inbound_helpers import HOSTILE_CSIDS
from tests.test_inbound_mail import FAX_HEADERS

BASE: dict[str, Any] = {
    "sender": MailAddress("fax@clinic.example.org", "Fax Bridge"),
    "to": [MailAddress("front@clinic.example.org")],
    "subject": "Fax from +1 212-555-0199 to +1 212-555-0100 (2 pages)",
    "text": "A fax arrived.\n\nPages: 2\n",
    "html": "<p>A fax arrived.</p>",
    "date": datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
    "message_id": "<0123abcd@clinic.example.org>",
    "attachments": [Attachment("fax.pdf", "application/pdf", b"%PDF-1.4\n" + bytes(range(256)))],
}
VARIANTS: dict[str, dict[str, Any]] = {
    "fax mail": {},
    "notify only": {"attachments": []},
    "text only": {"html": None, "attachments": []},
    "no html": {"html": None},
    "non-ascii everywhere": {
        "sender": MailAddress("fax@clinic.example.org", "Fax Brücke"),
        "cc": [MailAddress("records@clinic.example.org", "Archiv, Zürich")],
        "subject": "Fax von Café Müller " + "lang " * 40,
        "text": "Grüße\n",
        "html": "<p>Grüße</p>",
        "attachments": [Attachment("fax-größe.pdf", "application/pdf", b"%PDF-1.4 x")],
    },
    "tiff and pdf": {
        "attachments": [
            Attachment("fax.pdf", "application/pdf", b"%PDF-1.4 x"),
            Attachment("fax.tif", "image/tiff", b"II*\x00rest"),
        ]
    },
    "no auto-submitted": {"auto_submitted": None},
    "long lines and a long non-ascii file name": {
        "text": "x" * 2000 + "\n",
        "html": "<p>" + "y " * 1500 + "</p>",
        "attachments": [Attachment("\U0001f4e0" * 99 + ".pdf", "application/pdf", b"%PDF x")],
    },
}


def parsed(data: bytes) -> EmailMessage:
    message = message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def summary(message: EmailMessage) -> dict[str, Any]:
    """Everything a reader sees, except header order and MIME boundaries."""
    headers = sorted((k, str(v)) for k, v in message.items() if k.lower() != "content-type")
    bodies = {}
    for kind in ("plain", "html"):
        body = message.get_body((kind,))
        if body is not None:
            bodies[kind] = body.get_content().replace("\r\n", "\n")
    files = [
        (part.get_filename(), part.get_content_type(), part.get_content())
        for part in message.iter_attachments()
    ]
    kind = message.get_content_type()
    return {"headers": headers, "type": kind, "bodies": bodies, "files": files}


@pytest.mark.parametrize("name", sorted(VARIANTS))
@pytest.mark.parametrize("linesep", ["\r\n", "\n"])
def test_the_fast_writer_gives_what_build_mail_gives(name: str, linesep: str) -> None:
    kwargs = {**BASE, **VARIANTS[name]}
    data = mail_bytes_fast(**kwargs, linesep=linesep)
    assert data.count(linesep.encode()) == data.count(b"\n")
    assert data.isascii()
    assert max(map(len, data.splitlines())) <= 998
    expected = build_mail(**kwargs).as_bytes(policy=policy.SMTP.clone(linesep=linesep))
    assert summary(parsed(data)) == summary(parsed(expected))


@pytest.mark.parametrize("hostile", HOSTILE_CSIDS)
def test_hostile_subject_and_names_never_add_a_header(hostile: str) -> None:
    data = mail_bytes_fast(
        **{
            **BASE,
            "subject": f"Fax from {hostile}",
            "sender": MailAddress("fax@clinic.example.org", hostile),
        }
    )
    assert sorted(k.lower() for k in parsed(data)) == FAX_HEADERS


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"to": []}, "at least one recipient"),
        ({"message_id": "<a@b>\r\nBcc: x@y"}, "malformed Message-ID"),
        ({"to": [MailAddress("not an address")]}, "unusable mail address"),
    ],
)
def test_unusable_input_is_refused_like_build_mail(change: dict[str, Any], error: str) -> None:
    with pytest.raises(PermanentError, match=error):
        mail_bytes_fast(**{**BASE, **change})
    with pytest.raises(PermanentError, match=error):
        build_mail(**{**BASE, **change})


@pytest.mark.parametrize("brk", ["\r\n", "\n", "\r", "\x0b", "\x0c", "\x1c", "\x85", "\u2028"])
def test_a_line_break_in_any_header_value_is_refused_before_it_is_written(brk: str) -> None:
    # auto_submitted is ours, never cleaned: the writer itself must stop the break,
    # including those the folding would break at (str.splitlines), long value or not.
    for value in (f"auto-generated{brk}Bcc: victim@x.org", "x" * 90 + f"{brk}Bcc: v@x.org"):
        with pytest.raises(PermanentError, match="line break or control character"):
            mail_bytes_fast(**{**BASE, "auto_submitted": value})


def test_a_lone_cr_or_a_form_feed_in_text_never_reaches_the_wire_raw() -> None:
    text = "line one\rline two\n" + ("a" * 70 + "\x0c") * 20 + "\n"
    data = mail_bytes_fast(**{**BASE, "text": text, "html": None, "attachments": []})
    assert b"\r" not in data.replace(b"\r\n", b"")
    assert b"\x0c" not in data
    assert max(map(len, data.split(b"\r\n"))) <= 78
    body = parsed(data).get_body(("plain",))
    assert body is not None
    assert body.get_content().replace("\r\n", "\n") == text.replace("\r", "\n")


@pytest.mark.parametrize("declared", ["multipart/mixed", "message/rfc822", "nonsense", ""])
def test_a_file_declared_as_a_structure_or_nonsense_goes_as_octet_stream(declared: str) -> None:
    files = [Attachment("fax.bin", declared, b"%PDF-1.4 x")]
    message = parsed(mail_bytes_fast(**{**BASE, "attachments": files}))
    [part] = list(message.iter_attachments())
    assert part.get_content_type() == "application/octet-stream"
    assert part.get_content() == b"%PDF-1.4 x"
    assert not message.defects
    assert not part.defects


def test_every_mail_gets_its_own_boundaries() -> None:
    first, second = (parsed(mail_bytes_fast(**BASE)) for _ in range(2))
    assert first.get_boundary() != second.get_boundary()
    inner = [part.get_boundary() for part in first.walk() if part.is_multipart()]
    assert len(set(inner)) == len(inner) == 2
