"""parse_message: bytes in, plain values or a refusal out; never an exception."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bridge.mailparse import MailRefusal, ParsedMail, ParseLimits, parse_message
from tests import mail_samples as s

LIMITS = ParseLimits()
pytestmark = pytest.mark.usefixtures("hollow_modes")


def parsed(raw: bytes, limits: ParseLimits = LIMITS) -> ParsedMail:
    result = parse_message(raw, limits=limits)
    assert isinstance(result, ParsedMail), result
    return result


def refused(raw: bytes, limits: ParseLimits = LIMITS) -> MailRefusal:
    result = parse_message(raw, limits=limits)
    assert isinstance(result, MailRefusal), result
    return result


def with_header(line: str, body: str = "Hello\n") -> bytes:
    return s.crlf(f"{line}\nSubject: probe\nFrom: {s.FROM}\n\n{body}")


# ---------------------------------------------------------------- hostile headers


@pytest.mark.parametrize(
    "line",
    [
        "To: (c):",
        "Content-Type: text/plain; name*",
        'To: "',
        "Cc: a@b,",
        "Message-ID: <[4F1A2B3C-1D2E-4F5A-8B9C-0D1E2F3A4B5C@microsoft.com]>",
        "From: (c):",
        'From: "',
        "Reply-To: (c):",
        "Subject: =?utf-8?q?hello=0AX-Injected=3A_yes?=",
        "From: =?utf-8?q?a=0D=0Ab?= <h@example.com>",
        "Date: (c):",
        "Content-Type: (c):",
        "Content-Disposition: attachment; filename*",
        "Content-Transfer-Encoding: (c):",
        "X-Fax-CSID: =?utf-8?q?A=0AB?=",
        "From: " + "(" * 10_000,  # RecursionError inside the address parser
    ],
)
def test_hostile_header_gives_a_refusal_or_a_parse_never_an_exception(line: str) -> None:
    result = parse_message(with_header(line), limits=LIMITS)
    assert isinstance(result, ParsedMail | MailRefusal)


def test_unparsable_to_header_is_never_read() -> None:
    mail = parsed(with_header("To: (c):"))
    assert mail.body_text == "Hello"


def test_malformed_content_type_is_refused_with_554_and_the_header_named() -> None:
    refusal = refused(with_header("Content-Type: text/plain; name*"))
    assert (refusal.smtp_code, refusal.enhanced_code, refusal.reason) == (
        554,
        "5.6.0",
        "malformed Content-Type header",
    )
    assert refusal.detail == "IndexError"


def test_malformed_disposition_in_a_nested_part_names_the_part() -> None:
    part = "Content-Type: application/pdf\nContent-Disposition: attachment; filename*\n\nx\n"
    refusal = refused(s.mixed("hi\n", part))
    assert refusal.reason == "malformed Content-Disposition header in MIME part 2"
    assert (refusal.smtp_code, refusal.enhanced_code) == (554, "5.6.0")


def test_exchange_message_id_is_kept_raw() -> None:
    mail = parsed(with_header("Message-ID: <[4F1A2B3C@microsoft.com]>"))
    assert mail.message_id == "<[4F1A2B3C@microsoft.com]>"


@pytest.mark.parametrize("value", ["no-brackets@example.com", "<a\x00b@example.com>", ""])
def test_unusable_message_id_becomes_none(value: str) -> None:
    assert parsed(with_header(f"Message-ID: {value}")).message_id is None


def test_unparsable_from_degrades_to_its_raw_text() -> None:
    mail = s.crlf("From: (c):\nSubject: x\n\nbody\n")
    result = parsed(mail)
    assert (result.from_address, result.sender_display) == (None, "(c):")


def test_encoded_word_newline_never_survives_in_the_subject() -> None:
    mail = parsed(s.text_only(subject="=?utf-8?q?hello=0AX-Injected=3A_yes?="))
    assert mail.subject == "hello X-Injected: yes"


def test_ambiguous_from_of_cve_2023_27043_yields_no_address() -> None:
    mail = parsed(s.text_only(sender="alice@example.org <bob@example.com>"))
    assert mail.from_address is None


def test_reply_to_with_one_address_is_read() -> None:
    raw = s.text_only(sender="Alice <alice@example.com>\nReply-To: Office <office@example.com>")
    mail = parsed(raw)
    assert mail.reply_to_address == "office@example.com"


def test_reply_to_with_two_addresses_gives_no_reply_to_address() -> None:
    raw = s.text_only(sender="Alice <alice@example.com>\nReply-To: a@example.com, b@example.com")
    mail = parsed(raw)
    assert (mail.reply_to_address, mail.from_address) == (None, "alice@example.com")


def test_encoded_display_name_is_decoded_for_showing() -> None:
    mail = parsed(s.text_only(sender="=?utf-8?q?M=C3=BCller=2C_Hans?= <hans@example.de>"))
    assert mail.sender_display == "Müller, Hans <hans@example.de>"
    assert mail.from_address == "hans@example.de"


def test_raw_utf8_subject_is_decoded() -> None:
    raw = with_header("X-Dummy: 1").replace(b"Subject: probe", "Subject: café".encode())
    assert parsed(raw).subject == "café"


def test_date_is_timezone_aware_and_garbage_is_none() -> None:
    assert parsed(s.text_only()).date == datetime(2024, 6, 3, 8, 15, tzinfo=UTC)
    assert parsed(s.text_only()).date.utcoffset() == timedelta(hours=2)  # type: ignore[union-attr]
    assert parsed(with_header("Date: the day after tomorrow")).date is None
    minus_zero = parsed(with_header("Date: Mon, 03 Jun 2024 10:15:00 -0000")).date
    assert minus_zero == datetime(2024, 6, 3, 10, 15, tzinfo=UTC)


# ---------------------------------------------------------------- bounds


def test_oversized_message_is_refused_with_552_before_parsing() -> None:
    refusal = refused(s.text_only(), ParseLimits(max_message_bytes=100))
    assert (refusal.smtp_code, refusal.enhanced_code) == (552, "5.3.4")


def test_oversized_header_block_is_refused() -> None:
    raw = s.text_only(sender=s.FROM + "\nX-Padding: " + "a" * 5000)
    refusal = refused(raw, ParseLimits(max_header_block_bytes=4096))
    assert refusal.reason == "message header larger than 4096 bytes"
    assert parsed(raw, ParseLimits(max_header_block_bytes=8192)).subject == "Invoice 42"


def test_message_without_blank_line_counts_as_all_header() -> None:
    refused(b"X-A: " + b"a" * 5000, ParseLimits(max_header_block_bytes=4096))


def test_200_nested_multiparts_are_refused_as_too_deep() -> None:
    refusal = refused(s.nested_multiparts(200))
    assert refusal.reason == "MIME parts nested more than 32 levels deep"


def test_nesting_up_to_the_limit_is_parsed() -> None:
    assert parsed(s.nested_multiparts(31)).body_text == "bottom"


def test_10000_parts_are_refused_when_the_501st_part_appears() -> None:
    assert refused(s.many_parts(10_000)).reason == "more than 500 MIME parts"


def test_parts_up_to_the_limit_are_parsed() -> None:
    assert len(parsed(s.many_parts(400)).attachments) == 400


def test_overlong_structural_header_is_refused_before_the_header_parser_sees_it() -> None:
    params = "".join(f";\n name*{i}*=utf-8''a" for i in range(2000))
    refusal = refused(s.mixed("hi\n", f"Content-Type: application/pdf{params}\n\nx\n"))
    assert refusal.reason == "Content-Type header longer than 8192 characters"


def test_total_header_text_is_bounded() -> None:
    parts = [
        f'Content-Type: application/pdf; name="{i:04d}{"a" * 4000}.pdf"\n\nx\n' for i in range(200)
    ]
    assert refused(s.mixed(None, *parts)).reason == "too much MIME header text to parse"


def test_overlong_subject_degrades_to_raw_text() -> None:
    assert parsed(s.text_only(subject="x" * 20_000)).subject == "x" * 20_000


def test_multipart_without_its_boundary_is_refused() -> None:
    raw = s.crlf(s.headers() + 'Content-Type: multipart/mixed; boundary="nowhere"\n\nplain text\n')
    assert refused(raw).reason == "the message is multipart without a usable boundary"


@pytest.mark.parametrize(
    "limits",
    [{"max_parts": 0}, {"max_depth": 101}, {"max_header_chars": -1}],
)
def test_parse_limits_reject_nonsense(limits: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="ParseLimits"):
        ParseLimits(**limits)


# ---------------------------------------------------------------- client shapes


def test_thunderbird_rfc2231_file_name_is_decoded() -> None:
    mail = parsed(s.thunderbird())
    assert [a.filename for a in mail.attachments] == ["Rechnung März….pdf"]
    assert mail.attachments[0].data == s.PDF
    assert mail.body_text == "Hallo,\n\nanbei die Rechnung.\n\nGrüße\nAlice"


def test_gmail_encoded_word_name_is_decoded_and_cid_logo_dropped() -> None:
    mail = parsed(s.gmail())
    assert [(a.filename, a.content_type) for a in mail.attachments] == [
        ("Vertrag Müller.pdf", "application/pdf")
    ]
    assert mail.body_text.startswith("Hi Bob,\n\nthe signed contract is attached.")
    assert mail.body_html is None  # a text/plain alternative exists


def test_outlook_octet_stream_pdf_kept_and_signature_logo_dropped() -> None:
    mail = parsed(s.outlook())
    assert [(a.filename, a.content_type) for a in mail.attachments] == [
        ("Scan 2024-06-03.pdf", "application/octet-stream")
    ]
    assert mail.body_text.startswith("Please fax the attached scan.")


def test_apple_mail_attachment_inside_the_html_alternative_is_found() -> None:
    mail = parsed(s.apple_mail())
    assert [a.filename for a in mail.attachments] == ["plan.pdf"]
    assert mail.body_text.startswith("Here is the floor plan.")


def test_forwarded_message_text_and_attachments_are_collected() -> None:
    mail = parsed(s.forwarded())
    assert [(a.filename, a.forwarded) for a in mail.attachments] == [("quote.pdf", True)]
    own, fwd = mail.body
    assert own.text.startswith("FYI")
    assert not own.forwarded
    assert fwd.forwarded
    assert fwd.text.splitlines()[:4] == [
        "---------- Forwarded message ----------",
        "From: Bob Builder <bob@example.org>",
        "Date: 2024-05-31 16:02 +0200",
        "Subject: Quote for the roof",
    ]
    assert fwd.text.endswith("Dear Alice, the quote is attached.")


def test_quoted_printable_html_only_body_keeps_its_markup() -> None:
    mail = parsed(s.html_only_qp())
    assert mail.body_text == "Hello Bob,\n\ncafé at 10?"
    assert mail.body_html is not None
    assert "<b>Bob</b>" in mail.body_html


def test_inline_image_not_referenced_by_cid_is_an_attachment() -> None:
    part = s.attachment_part(
        s.PNG, content_type="image/png", filename="photo.png", disposition="inline"
    )
    mail = parsed(s.mixed("see photo\n", part + "Content-ID: <unused@x>\n"))
    assert [a.filename for a in mail.attachments] == ["photo.png"]


def test_identical_attachment_in_two_alternatives_counts_once_but_mixed_keeps_both() -> None:
    part = s.attachment_part(s.PDF)
    boundary = "alt"
    alternative = (
        f'Content-Type: multipart/alternative; boundary="{boundary}"\n\n'
        f"--{boundary}\nContent-Type: text/plain\n\ntext\n"
        f'--{boundary}\nContent-Type: multipart/mixed; boundary="m1"\n\n--m1\n{part}--m1--\n'
        f'--{boundary}\nContent-Type: multipart/mixed; boundary="m2"\n\n--m2\n{part}--m2--\n'
        f"--{boundary}--\n"
    )
    assert len(parsed(s.mixed(None, alternative)).attachments) == 1
    assert len(parsed(s.mixed("hi\n", part, part)).attachments) == 2


def test_text_attachment_is_not_body_text() -> None:
    part = s.attachment_part(b"notes", content_type="text/plain", filename="notes.txt")
    mail = parsed(s.mixed("body\n", part))
    assert mail.body_text == "body"
    assert [a.filename for a in mail.attachments] == ["notes.txt"]


def test_text_parts_around_an_attachment_are_all_body() -> None:
    mail = parsed(
        s.mixed("before\n", s.attachment_part(s.PDF), "Content-Type: text/plain\n\nafter\n")
    )
    assert mail.body_text == "before\n\nafter"


def test_signed_message_ignores_the_signature_part() -> None:
    signed = (
        'Content-Type: multipart/signed; protocol="application/pkcs7-signature";'
        ' micalg=sha-256; boundary="sig"\n\n'
        "--sig\nContent-Type: text/plain\n\nsigned text\n"
        '--sig\nContent-Type: application/pkcs7-signature; name="smime.p7s"\n'
        'Content-Disposition: attachment; filename="smime.p7s"\n'
        "Content-Transfer-Encoding: base64\n\nMIAGCSqGSIb3DQEHAqCAMIACAQEx\n--sig--\n"
    )
    mail = parsed(s.crlf(s.headers() + signed))
    assert (mail.body_text, mail.attachments, mail.encrypted) == ("signed text", (), False)


@pytest.mark.parametrize(
    "content_type",
    [
        'multipart/encrypted; protocol="application/pgp-encrypted"; boundary="enc"',
        'application/pkcs7-mime; smime-type=enveloped-data; name="smime.p7m"',
    ],
)
def test_encrypted_content_is_flagged(content_type: str) -> None:
    body = "--enc\nContent-Type: application/pgp-encrypted\n\nVersion: 1\n--enc--\n"
    mail = parsed(s.crlf(s.headers() + f"Content-Type: {content_type}\n\n{body}"))
    assert mail.encrypted


def test_delivery_report_part_is_an_attachment_of_its_type() -> None:
    report = (
        "Content-Type: message/delivery-status\n\n"
        "Reporting-MTA: dns; mx.example.com\n\nAction: failed\n"
    )
    mail = parsed(s.mixed("bounce\n", report))
    assert [a.content_type for a in mail.attachments] == ["message/delivery-status"]


@pytest.mark.parametrize(
    ("charset", "data", "text"),
    [
        ("iso-8859-1", b"\x93quoted\x94 \x80", "\u201cquoted\u201d \u20ac"),  # read as cp1252
        ("us-ascii", "café".encode(), "café"),  # undeclared UTF-8 is common
        ("x-no-such-charset", "café".encode(), "café"),
        ("base64", b"plain", "plain"),  # a bytes codec is not a charset
        ("utf-16", "hé".encode("utf-16"), "hé"),
    ],
)
def test_text_charsets_are_decoded_leniently(charset: str, data: bytes, text: str) -> None:
    head = s.headers().encode() + f"Content-Type: text/plain; charset={charset}\n".encode()
    raw = head.replace(b"\n", b"\r\n") + b"Content-Transfer-Encoding: 8bit\r\n\r\n" + data
    assert parsed(raw).body_text == text


def test_fax_headers_are_collected_decoded_but_unvalidated() -> None:
    extra = "X-Fax-Resolution:  fine\nX-FAX-CSID: =?utf-8?q?A=0AB?=\nX-Other: ignored"
    mail = parsed(s.text_only(sender=s.FROM + "\n" + extra))
    assert mail.fax_headers == (("x-fax-resolution", "fine"), ("x-fax-csid", "A\nB"))


def test_format_flowed_body_is_unflowed_with_delsp() -> None:
    raw = s.crlf(
        s.headers()
        + "Content-Type: text/plain; charset=utf-8; format=flowed; delsp=yes\n\n"
        + "A long para \ngraph.\n> quo \n> ted.\n"
    )
    assert parsed(raw).body_text == "A long paragraph.\n> quoted."


def test_hostile_header_inside_a_forwarded_message_is_refused_not_raised() -> None:
    inner = "From: bob@example.org\nContent-Type: text/plain; name*\n\nhi\n"
    raw = s.mixed("fwd\n", "Content-Type: message/rfc822\n\n" + inner)
    assert refused(raw).reason == "malformed Content-Type header"


def test_every_raw_from_value_is_kept_for_authorisation() -> None:
    raw = s.text_only(sender="Alice\n <alice@example.com>\nFrom: mallory@example.net")
    assert parsed(raw).from_values == ("Alice <alice@example.com>", "mallory@example.net")


@pytest.mark.parametrize(
    ("header", "marker"),
    [
        ("Auto-Submitted: auto-replied (vacation)", "Auto-Submitted"),
        ("Precedence: bulk", "Precedence"),
        ("Auto-Submitted: no", None),
    ],
)
def test_automatic_mail_marker_is_reported(header: str, marker: str | None) -> None:
    assert parsed(s.text_only(sender=f"{s.FROM}\n{header}")).automatic == marker


def test_bounce_report_is_automatic() -> None:
    raw = s.crlf(
        s.headers()
        + 'Content-Type: multipart/report; report-type=delivery-status; boundary="r"\n\n'
        + "--r\nContent-Type: text/plain\n\nUndeliverable\n--r--\n"
    )
    assert parsed(raw).automatic == "Content-Type"


def test_parse_headers_reads_only_the_header_block() -> None:
    from bridge.mailparse import MailHeaders, parse_headers

    raw = (
        b"From: Alice <alice@clinic.example.org>\r\n"
        b"Reply-To: desk@clinic.example.org\r\n"
        b"Message-ID: <h1@clinic>\r\n"
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
        b"--b\r\nContent-Type: text/plain; name*\r\n\r\nbody\r\n--b--\r\n"
    )
    headers = parse_headers(raw, limits=ParseLimits())
    assert headers == MailHeaders(
        message_id="<h1@clinic>",
        from_address="alice@clinic.example.org",
        reply_to_address="desk@clinic.example.org",
        from_values=("Alice <alice@clinic.example.org>",),
        automatic=None,
    )
    # The broken body part is the submitter's business (a report), not the dialogue's.
    assert isinstance(parse_message(raw, limits=ParseLimits()), MailRefusal)


def test_parse_headers_sees_automatic_mail_and_refuses_oversized_headers() -> None:
    from bridge.mailparse import MailHeaders, parse_headers

    auto = parse_headers(
        b"From: a@ex.org\nAuto-Submitted: auto-replied\n\nhi\n", limits=ParseLimits()
    )
    assert isinstance(auto, MailHeaders)
    assert auto.automatic is not None
    huge = b"X-Big: " + b"a" * 300_000 + b"\r\n\r\nbody"
    refused = parse_headers(huge, limits=ParseLimits())
    assert isinstance(refused, MailRefusal)
    assert refused.smtp_code == 552
    no_body = parse_headers(b"From: a@ex.org\r\nMessage-ID: <x@y>", limits=ParseLimits())
    assert isinstance(no_body, MailHeaders)
    assert no_body.message_id == "<x@y>"
