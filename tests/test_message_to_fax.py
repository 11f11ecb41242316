"""build_fax_request: raw messages in, fax documents and options out."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bridge.faxmodels import PageSize, Resolution, SendOptions
from bridge.faxoptions import BodyMode, FaxDefaults
from bridge.mailparse import ParsedMail, ParseLimits, parse_message
from bridge.message_to_fax import (
    FailureKind,
    FaxBuildFailure,
    FaxBuildSettings,
    FaxRequest,
    SkippedAttachment,
    UnsupportedAttachments,
    build_fax_request,
)
from bridge.render import TemplateRenderer
from tests import mail_samples as s

pytestmark = pytest.mark.usefixtures("hollow_modes")

NOW = datetime(2024, 6, 3, 8, 30, tzinfo=UTC)
SETTINGS = FaxBuildSettings(renderer=TemplateRenderer(), timezone=ZoneInfo("Europe/Berlin"))
BOM = "\ufeff".encode()


def parse(raw: bytes) -> ParsedMail:
    mail = parse_message(raw, limits=ParseLimits())
    assert isinstance(mail, ParsedMail), mail
    return mail


def build(raw: bytes, settings: FaxBuildSettings = SETTINGS) -> FaxRequest | FaxBuildFailure:
    return build_fax_request(
        parse(raw), destination_display="+1 212-555-0100", settings=settings, now=NOW
    )


def request(raw: bytes, settings: FaxBuildSettings = SETTINGS) -> FaxRequest:
    result = build(raw, settings)
    assert isinstance(result, FaxRequest), result
    return result


def failure(raw: bytes, settings: FaxBuildSettings = SETTINGS) -> FaxBuildFailure:
    result = build(raw, settings)
    assert isinstance(result, FaxBuildFailure), result
    return result


def names(req: FaxRequest) -> list[tuple[str, str]]:
    return [(doc.filename, doc.content_type) for doc in req.documents]


def cover_text(req: FaxRequest) -> str:
    assert req.documents[0].filename == "cover.html"
    return req.documents[0].data.decode("utf-8-sig")


def with_body(mode: BodyMode) -> FaxBuildSettings:
    return replace(SETTINGS, defaults=FaxDefaults(body=mode))


# ---------------------------------------------------------------- real client shapes


@pytest.mark.parametrize(
    ("sample", "expected"),
    [
        (s.thunderbird, [("cover.html", "text/html"), ("Rechnung März….pdf", "application/pdf")]),
        (s.gmail, [("cover.html", "text/html"), ("Vertrag Müller.pdf", "application/pdf")]),
        (s.outlook, [("cover.html", "text/html"), ("Scan 2024-06-03.pdf", "application/pdf")]),
        (s.apple_mail, [("cover.html", "text/html"), ("plan.pdf", "application/pdf")]),
        (s.forwarded, [("cover.html", "text/html"), ("quote.pdf", "application/pdf")]),
        (s.quoted_reply, [("form.pdf", "application/pdf")]),
        (s.text_only, [("message.txt", "text/plain")]),
        (s.html_only_qp, [("message.html", "text/html")]),
    ],
)
def test_real_client_messages_become_these_documents(
    sample: object, expected: list[tuple[str, str]]
) -> None:
    assert callable(sample)
    assert names(request(sample())) == expected


def test_attachment_bytes_reach_the_fax_unchanged() -> None:
    req = request(s.outlook())
    assert req.documents[1].data == s.PDF


def test_cid_signature_logo_is_not_a_page() -> None:
    assert all(doc.content_type != "image/png" for doc in request(s.gmail()).documents)
    assert all(doc.content_type != "image/png" for doc in request(s.outlook()).documents)


def test_forwarded_text_is_on_the_cover_page() -> None:
    html = cover_text(request(s.forwarded()))
    assert "FYI, see the forwarded mail." in html
    assert "From: Bob Builder &lt;bob@example.org&gt;" in html
    assert "Dear Alice, the quote is attached." in html


def test_forward_without_own_words_still_gets_a_cover_for_the_forwarded_text() -> None:
    req = request(s.forwarded(comment=""))
    assert req.cover_page
    assert "Dear Alice" in cover_text(req)


# ---------------------------------------------------------------- body modes


def test_auto_mode_quoted_reply_with_signature_gets_no_cover() -> None:
    req = request(s.quoted_reply())
    assert (req.cover_page, req.body_document) == (False, False)


def test_auto_mode_without_attachments_faxes_the_body_as_a_document() -> None:
    req = request(s.quoted_reply(with_pdf=False))
    assert names(req) == [("message.txt", "text/plain")]
    assert req.body_document
    assert not req.cover_page


def test_auto_mode_html_only_body_is_sent_as_html_with_a_bom() -> None:
    doc = request(s.html_only_qp()).documents[0]
    assert doc.data.startswith(BOM)
    assert "<b>Bob</b>" in doc.data.decode("utf-8-sig")


def test_text_body_document_is_utf8_with_a_bom() -> None:
    doc = request(s.text_only(body="Grüße\n")).documents[0]
    assert doc.data == BOM + "Grüße".encode()


def test_cover_mode_always_adds_a_cover_even_for_an_empty_body() -> None:
    req = request(s.mixed(None, s.attachment_part(s.PDF)), with_body(BodyMode.COVER))
    assert names(req) == [("cover.html", "text/html"), ("invoice.pdf", "application/pdf")]


def test_document_mode_puts_the_body_document_before_the_attachments() -> None:
    req = request(s.thunderbird(), with_body(BodyMode.DOCUMENT))
    assert names(req) == [("message.txt", "text/plain"), ("Rechnung März….pdf", "application/pdf")]
    assert req.documents[0].data.decode("utf-8-sig").startswith("Hallo,")


def test_ignore_mode_sends_only_the_attachments() -> None:
    req = request(s.thunderbird(), with_body(BodyMode.IGNORE))
    assert names(req) == [("Rechnung März….pdf", "application/pdf")]


def test_ignore_mode_without_attachments_has_nothing_to_fax() -> None:
    result = failure(s.text_only(), with_body(BodyMode.IGNORE))
    assert result.kind is FailureKind.NOTHING_TO_FAX


def test_empty_message_has_nothing_to_fax() -> None:
    result = failure(s.text_only(body="\n  \n"))
    assert result.kind is FailureKind.NOTHING_TO_FAX
    assert result.reason.startswith("There is nothing to fax")


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        ("/b", ["cover.html", "Rechnung März….pdf"]),
        ("/bn", ["Rechnung März….pdf"]),
        ("/bb", ["message.txt", "Rechnung März….pdf"]),
    ],
)
def test_body_subject_tags_override_the_configured_mode(tag: str, expected: list[str]) -> None:
    req = request(s.thunderbird(subject=f"Rechnung {tag}"), with_body(BodyMode.COVER))
    assert [doc.filename for doc in req.documents] == expected
    assert req.visible_subject == "Rechnung"


# ---------------------------------------------------------------- attachments


def test_unsupported_attachment_fails_naming_the_file_and_the_supported_types() -> None:
    raw = s.mixed(
        "hi\n",
        s.attachment_part(s.PDF),
        s.attachment_part(s.EXE, content_type="application/x-msdownload", filename="setup.exe"),
    )
    result = failure(raw)
    assert result.kind is FailureKind.UNSUPPORTED_ATTACHMENT
    assert (
        'This attachment cannot be faxed: "setup.exe" (application/x-msdownload).' in result.reason
    )
    assert "Supported file types: bmp, doc, docx," in result.reason
    assert result.subject == "Invoice 42"


def test_skip_mode_leaves_out_unsupported_files_and_reports_them() -> None:
    raw = s.mixed(
        "hi\n",
        s.attachment_part(s.EXE, content_type="application/x-msdownload", filename="setup.exe"),
        s.attachment_part(s.PDF),
    )
    settings = replace(SETTINGS, unsupported_attachments=UnsupportedAttachments.SKIP)
    req = request(raw, settings)
    assert [doc.filename for doc in req.documents] == ["cover.html", "invoice.pdf"]
    assert req.skipped_attachments == (SkippedAttachment("setup.exe", "unsupported file type"),)


def test_skip_mode_still_fails_when_no_supported_attachment_remains() -> None:
    raw = s.mixed(
        "Please fax this.\n",
        s.attachment_part(b"a,b", content_type="text/csv", filename="data.csv"),
        s.attachment_part(b"x", content_type="application/x-foo", filename=None),
    )
    settings = replace(SETTINGS, unsupported_attachments="skip")  # type: ignore[arg-type]
    result = failure(raw, settings)
    assert result.kind is FailureKind.UNSUPPORTED_ATTACHMENT
    assert (
        'These attachments cannot be faxed: "data.csv" (text/csv), part 3 (application/x-foo).'
        in (result.reason)
    )


def test_zero_byte_attachment_is_skipped_and_reported() -> None:
    raw = s.mixed("hi\n", s.attachment_part(b"", filename="empty.pdf"), s.attachment_part(s.PDF))
    req = request(raw)
    assert [doc.filename for doc in req.documents] == ["cover.html", "invoice.pdf"]
    assert req.skipped_attachments == (SkippedAttachment("empty.pdf", "empty file"),)


def test_only_a_zero_byte_attachment_means_nothing_to_fax() -> None:
    result = failure(s.mixed(None, s.attachment_part(b"", filename="empty.pdf")))
    assert result.kind is FailureKind.NOTHING_TO_FAX
    assert '"empty.pdf" (empty file)' in result.reason


def test_duplicate_file_names_are_kept_and_made_unique() -> None:
    raw = s.mixed(
        None,
        s.attachment_part(b"%PDF-1 a", filename="scan.pdf"),
        s.attachment_part(b"%PDF-1 b", filename="SCAN.PDF"),
        s.attachment_part(b"%PDF-1 c", filename="scan.pdf"),
    )
    req = request(raw)
    assert [(doc.filename, doc.data) for doc in req.documents] == [
        ("scan.pdf", b"%PDF-1 a"),
        ("SCAN-2.PDF", b"%PDF-1 b"),
        ("scan-3.pdf", b"%PDF-1 c"),
    ]


def test_an_attachment_named_like_the_cover_does_not_collide_with_it() -> None:
    part = s.attachment_part(b"<p>x</p>", content_type="text/html", filename="cover.html")
    req = request(s.mixed("Real words here.\n", part))
    assert [doc.filename for doc in req.documents] == ["cover.html", "cover-2.html"]


@pytest.mark.parametrize(
    ("content_type", "filename", "expected"),
    [
        ("application/octet-stream", "scan.PDF", "scan.PDF"),
        ("application/pdf", None, "attachment-1.pdf"),
        ("application/pdf", "scan", "scan.pdf"),
        ("application/pdf", "photo.jpg", "photo.jpg.pdf"),  # the declared type wins
        ("image/jpeg", "photo.jpeg", "photo.jpeg"),
        ("application/vnd.ms-excel", "sheet.xlsx", "sheet.xlsx"),  # same InterFAX type
        ("application/pdf", "../../etc/passwd.pdf", "passwd.pdf"),
        ("application/pdf", "C:\\Users\\alice\\scan.pdf", "scan.pdf"),
        ("application/pdf", "..", "attachment-1.pdf"),
        ("application/pdf", "a\x00b\u202efdp.exe", "a bfdp.exe.pdf"),
        ("application/pdf", 'what?*<>|".pdf', "what______.pdf"),
    ],
)
def test_attachment_names_are_made_safe_and_typed(
    content_type: str, filename: str | None, expected: str
) -> None:
    raw = s.mixed(None, s.attachment_part(s.PDF, content_type=content_type, filename=filename))
    assert request(raw).documents[0].filename == expected


def test_long_names_are_shortened_keeping_the_extension() -> None:
    raw = s.mixed(None, s.attachment_part(s.PDF, filename="x" * 300 + ".pdf"))
    name = request(raw).documents[0].filename
    assert len(name) == 100
    assert name.endswith("x.pdf")


def test_attachment_content_type_is_interfaxs_type_for_the_extension() -> None:
    raw = s.mixed(
        None,
        s.attachment_part(s.DOCX, content_type="application/octet-stream", filename="cv.docx"),
        s.attachment_part(s.PNG, content_type="image/x-png", filename="p.png"),
    )
    assert names(request(raw)) == [
        ("cv.docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
        ("p.png", "image/png"),
    ]


def test_encrypted_message_fails_with_a_clear_reason() -> None:
    raw = s.crlf(
        s.headers()
        + 'Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name="smime.p7m"\n'
        + "Content-Transfer-Encoding: base64\n\nMIAGCSqGSIb3DQEHA6CAMIACAQAx\n"
    )
    result = failure(raw)
    assert result.kind is FailureKind.ENCRYPTED


def test_documents_over_the_size_limit_fail() -> None:
    settings = replace(SETTINGS, max_total_bytes=100)
    result = failure(s.mixed(None, s.attachment_part(b"%PDF" + b"x" * 200)), settings)
    assert result.kind is FailureKind.TOO_LARGE


# ---------------------------------------------------------------- options


def test_options_come_from_subject_tags_headers_and_defaults() -> None:
    raw = s.text_only(
        subject="Quote /rf /d 2024-06-04 09:00 /h ACME",
        sender=s.FROM + "\nX-Fax-CSID: +1 212 555 0199\nX-Fax-Page-Size: letter",
    )
    settings = replace(SETTINGS, defaults=FaxDefaults(resolution=Resolution.STANDARD, retries=2))
    req = request(raw, settings)
    assert req.options == SendOptions(
        contact="Quote",
        postpone_time=datetime(2024, 6, 4, 7, 0, tzinfo=UTC),
        retries_to_perform=2,
        csid="+1 212 555 0199",
        page_header="ACME",
        page_size=PageSize.LETTER,
        resolution=Resolution.FINE,
    )
    assert req.options.reference is None
    assert req.visible_subject == "Quote"


def test_page_header_none_tag_sends_n() -> None:
    assert request(s.text_only(subject="x /hn")).options.page_header == "N"


def test_invalid_option_fails_with_the_reason_and_the_original_subject() -> None:
    result = failure(s.text_only(subject="Quote /d 2024-09-01 10:00"))
    assert result.kind is FailureKind.INVALID_OPTION
    assert "more than 30 days ahead" in result.reason
    assert result.subject == "Quote /d 2024-09-01 10:00"


def test_invalid_header_option_fails() -> None:
    raw = s.text_only(sender=s.FROM + "\nX-Fax-CSID: =?utf-8?q?A=0AX-Injected=3A_1?=")
    assert failure(raw).kind is FailureKind.INVALID_OPTION


def test_contact_is_the_visible_subject_truncated() -> None:
    req = request(s.text_only(subject="word " * 40 + "/rf"))
    assert req.options.contact is not None
    assert len(req.options.contact) == 100
    assert req.options.contact.endswith("…")


def test_empty_subject_gives_no_contact() -> None:
    assert request(s.text_only(subject="/rf")).options.contact is None


# ---------------------------------------------------------------- cover page


def test_cover_page_escapes_html_in_body_and_subject() -> None:
    raw = s.mixed(
        "<script>alert(1)</script> & <b>bold</b>\n",
        s.attachment_part(s.PDF),
        subject="<img src=x onerror=alert(1)>",
    )
    html = cover_text(request(raw))
    assert "<script>" not in html
    assert "<img" not in html
    assert "<b>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html


def test_cover_page_shows_the_fields_in_the_configured_time_zone() -> None:
    html = cover_text(request(s.thunderbird()))
    for text in ("+1 212-555-0100", "Alice Example &lt;alice@example.com&gt;", "Rechnung"):
        assert text in html
    assert "2024-06-03 10:15 CEST" in html
    assert "<li>Rechnung März….pdf</li>" in html
    assert request(s.thunderbird()).documents[0].data.startswith(BOM)


def test_cover_page_without_a_date_header_uses_now() -> None:
    raw = s.mixed("Real words.\n", s.attachment_part(s.PDF)).replace(
        b"Date: Mon, 03 Jun 2024 10:15:00 +0200\r\n", b""
    )
    assert "2024-06-03 10:30 CEST" in cover_text(request(raw))


def test_cover_template_can_be_overridden(tmp_path: Path) -> None:
    (tmp_path / "cover.html.j2").write_text("<p>{{ recipient }}|{{ documents|join(',') }}</p>")
    settings = replace(SETTINGS, renderer=TemplateRenderer(tmp_path))
    assert cover_text(request(s.thunderbird(), settings)) == (
        "<p>+1 212-555-0100|Rechnung März….pdf</p>"
    )


def test_naive_now_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        build_fax_request(
            parse(s.text_only()),
            destination_display="x",
            settings=SETTINGS,
            now=datetime(2024, 6, 3),
        )
