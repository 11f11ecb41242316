"""Outgoing mail construction: untrusted text never changes the header set."""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes, policy

import pytest

from bridge.errors import PermanentError
from bridge.headersafe import CVE_2024_6923_PAYLOAD
from bridge.mailbuild import (
    Attachment,
    MailAddress,
    build_mail,
    deterministic_message_id,
    safe_message_id,
)

WHEN = datetime(2026, 11, 27, 9, 30, tzinfo=UTC)
BASE_HEADERS = {"from", "to", "subject", "date", "message-id", "auto-submitted"}


def _header_names(raw: bytes) -> set[str]:
    return {name.lower() for name in message_from_bytes(raw, policy=policy.default)}


def _build(**overrides: object) -> bytes:
    kwargs: dict[str, object] = {
        "sender": MailAddress("fax@example.org", "Fax Bridge"),
        "to": [MailAddress("alice@example.org")],
        "subject": "Fax from +1 212-555-0100",
        "text": "hello",
        "date": WHEN,
        "message_id": "<abc@fax.example.org>",
    }
    kwargs.update(overrides)
    return build_mail(**kwargs).as_bytes()  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "hostile",
    [
        CVE_2024_6923_PAYLOAD,
        "hello\r\nX-Injected: yes",
        "hello\nBcc: victim@example.com",
        "hello\rX-Injected: yes",
        "hello\u2028X-Injected: yes",
        "=?utf-8?b?aGVsbG8NClgtSW5qZWN0ZWQ6IHllcw==?=",
    ],
)
def test_hostile_subject_display_name_and_filename_add_no_header(hostile: str) -> None:
    raw = _build(
        subject=hostile,
        sender=MailAddress("fax@example.org", hostile),
        to=[MailAddress("alice@example.org", hostile)],
        attachments=[Attachment(hostile + ".pdf", "application/pdf", b"%PDF-1.4")],
    )
    assert _header_names(raw) == BASE_HEADERS | {"mime-version", "content-type"}
    for line in raw.split(b"\r\n"):
        assert not line.lower().startswith((b"x-injected", b"bcc"))


def test_reply_threads_under_a_wellformed_original() -> None:
    msg = message_from_bytes(
        _build(in_reply_to=" <orig.123@client.example> "), policy=policy.default
    )
    assert msg["In-Reply-To"] == "<orig.123@client.example>"
    assert msg["References"] == "<orig.123@client.example>"


@pytest.mark.parametrize(
    "bad",
    [
        "<a@b>\r\nBcc: x@y",
        "no-brackets@example",
        "<a@b> <c@d>",
        "<[...@microsoft.com]>x",
        "<>",
        "",
    ],
)
def test_malformed_original_message_id_is_dropped_not_repaired(bad: str) -> None:
    names = _header_names(_build(in_reply_to=bad))
    assert "in-reply-to" not in names
    assert "references" not in names
    assert safe_message_id(bad) is None


def test_our_own_message_id_must_be_wellformed() -> None:
    with pytest.raises(PermanentError):
        _build(message_id="not an id")


def test_address_with_line_break_is_refused() -> None:
    with pytest.raises(PermanentError):
        _build(to=[MailAddress("alice@example.org\r\nBcc: x@y.org")])


def test_deterministic_message_id_is_stable_and_distinct_per_recipient() -> None:
    a1 = deterministic_message_id("inbound", "292626603", "a@ex.org", domain="fax.example.org")
    a2 = deterministic_message_id("inbound", "292626603", "a@ex.org", domain="fax.example.org")
    b = deterministic_message_id("inbound", "292626603", "b@ex.org", domain="fax.example.org")
    assert a1 == a2 != b
    assert safe_message_id(a1) == a1
    assert a1.endswith("@fax.example.org>")


def test_html_alternative_and_attachment_survive_the_round_trip() -> None:
    raw = _build(
        html="<p>hello</p>",
        attachments=[Attachment("fax.pdf", "application/pdf", b"%PDF-1.4 data")],
        cc=[MailAddress("bob@example.org")],
        auto_submitted="auto-replied",
    )
    msg = message_from_bytes(raw, policy=policy.default)
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["Cc"] == "bob@example.org"
    [part] = list(msg.iter_attachments())
    assert part.get_filename() == "fax.pdf"
    assert part.get_content() == b"%PDF-1.4 data"
    body = msg.get_body(preferencelist=("html",))
    assert body is not None
    assert "<p>hello</p>" in body.get_content()
