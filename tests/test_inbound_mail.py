"""The mail for a received fax: facts, subject, file names, images, headers (pure)."""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bridge.inbound_mail import (
    FaxFacts,
    FaxImages,
    InboundMailSettings,
    attachment_filename,
    build_admin_notice,
    facts_of,
    fax_mail_bytes,
    fax_message_id,
    prepare_images,
    subject_of,
)
from bridge.jobs import DeliveryChannel
from bridge.mailbuild import MailAddress
from bridge.render import TemplateRenderer
from bridge.routing import ImageFormat, Presentation
from tests.conftest import minimal_pdf
from tests.inbound_helpers import (
    HOSTILE_CALLER_IDS,
    HOSTILE_CSIDS,
    attachments_of,
    g4_tiff,
    html_body,
    ledger_fax,
    pdf_page_count,
    text_body,
)

NEW_YORK = ZoneInfo("America/New_York")
SETTINGS = InboundMailSettings(
    sender=MailAddress("fax@clinic.example.org", "Fax Bridge"),
    timezone=NEW_YORK,
    message_id_domain="clinic.example.org",
)
NOW = datetime(2024, 1, 2, 3, 5, tzinfo=UTC)
FAX_HEADERS = [
    "auto-submitted",
    "content-type",
    "date",
    "from",
    "message-id",
    "mime-version",
    "subject",
    "to",
]


def facts(**overrides: object) -> FaxFacts:
    return facts_of(ledger_fax(**overrides), timezone=NEW_YORK, default_country="US")


def mail(
    fax_facts: FaxFacts | None = None,
    *,
    recipient: str = "front@clinic.example.org",
    presentation: Presentation | None = None,
    images: FaxImages | None = None,
    renderer: TemplateRenderer | None = None,
) -> EmailMessage:
    """The mail as the relay receives it, parsed."""
    message_id, data = fax_mail_bytes(
        fax_facts or facts(),
        recipient=recipient,
        channel=DeliveryChannel.SMTP,
        presentation=presentation or Presentation(to=(recipient,)),
        images=images,
        settings=SETTINGS,
        renderer=renderer or TemplateRenderer(),
        now=NOW,
    )
    message = message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    assert message["Message-ID"] == message_id
    return message


def reparsed(message: EmailMessage) -> EmailMessage:
    parsed = message_from_bytes(message.as_bytes(), policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def test_facts_are_cleaned_and_in_the_configured_time_zone() -> None:
    f = facts(phone_number="2125550100", caller_id="2125550199", meta={"recording_duration": 75})
    assert (f.number, f.number_e164) == ("+1 212-555-0100", "+12125550100")
    assert (f.caller_id, f.caller_e164, f.csid) == ("+1 212-555-0199", "+12125550199", "ACME LAB")
    assert f.received == datetime(2024, 1, 1, 22, 4, 5, tzinfo=NEW_YORK)
    assert f.recording_duration == 75


def test_subject_names_caller_id_or_csid_number_and_pages() -> None:
    assert subject_of(facts()) == "Fax from +1 212-555-0199 to +1 212-555-0100 (2 pages)"
    assert subject_of(facts(caller_id=None, pages=1)) == (
        "Fax from ACME LAB to +1 212-555-0100 (1 page)"
    )
    assert subject_of(facts(caller_id=None, remote_csid="")).startswith(
        "Fax from an unknown sender to"
    )


@pytest.mark.parametrize(("status", "flag"), [(3, "[incomplete] "), (-1, "[in progress] ")])
def test_an_unclean_reception_is_flagged_in_the_subject_and_explained(
    status: int, flag: str
) -> None:
    f = facts(message_status=status)
    assert subject_of(f).startswith(flag + "Fax from")
    message = mail(f)
    assert str(message["Subject"]).startswith(flag)
    assert "not received cleanly" in text_body(message)
    assert f.status_text is not None
    assert f.status_text in text_body(message)
    assert "not received cleanly" not in text_body(mail(facts()))


def test_body_lists_every_fact() -> None:
    body = text_body(mail())
    for expected in (
        "+1 212-555-0100",
        "+1 212-555-0199",
        "ACME LAB",
        "Pages:            2",
        "2024-01-01 22:04:05 EST",
        "50 seconds",
        "292626603",
    ):
        assert expected in body
    assert "2024-01-01 22:04:05 EST" in html_body(mail())


def test_filename_template_fields_and_unsafe_characters() -> None:
    f = facts()
    default = "fax-{received:%Y%m%d-%H%M%S}-{from}.pdf"
    assert attachment_filename(default, f, "pdf") == "fax-20240101-220405-+12125550199.pdf"
    assert attachment_filename(default, f, "tif") == "fax-20240101-220405-+12125550199.tif"
    assert attachment_filename("{id}-{pages}-{to}-{csid}", f, "pdf") == (
        "292626603-2-+12125550100-ACME LAB.pdf"
    )
    hostile = facts(caller_id=None, remote_csid='a/../b:c*?"<>|\r\n')
    name = attachment_filename("fax-{from}.pdf", hostile, "pdf")
    assert name.endswith(".pdf")
    assert not any(ch in name for ch in '/\\:*?"<>|\r\n')


def test_a_pdf_is_attached_as_it_came() -> None:
    pdf = minimal_pdf(pages=2)
    images = prepare_images(pdf, "application/pdf", ImageFormat.PDF, facts(), "fax-{id}.pdf")
    assert [(a.filename, a.content_type, a.data) for a in images.attachments] == [
        ("fax-292626603.pdf", "application/pdf", pdf)
    ]
    assert images.notes == ()


def test_a_tiff_becomes_a_pdf_with_every_page() -> None:
    tiff = g4_tiff(3)
    images = prepare_images(tiff, "image/tiff", ImageFormat.PDF, facts(pages=3), "f-{id}.pdf")
    [attachment] = images.attachments
    assert (attachment.filename, attachment.content_type) == ("f-292626603.pdf", "application/pdf")
    assert pdf_page_count(attachment.data) == 3
    assert images.notes == ()


def test_format_tiff_keeps_the_tiff_and_a_pdf_stays_a_pdf() -> None:
    tiff = g4_tiff(2)
    [only] = prepare_images(tiff, "image/tiff", ImageFormat.TIFF, facts(), "f.pdf").attachments
    assert (only.filename, only.content_type, only.data) == ("f.tif", "image/tiff", tiff)
    pdf = minimal_pdf(pages=2)
    [kept] = prepare_images(pdf, "application/pdf", ImageFormat.TIFF, facts(), "f.pdf").attachments
    assert (kept.filename, kept.data) == ("f.pdf", pdf)


def test_format_both_attaches_pdf_and_original_tiff() -> None:
    tiff = g4_tiff(2)
    images = prepare_images(tiff, "image/tiff", ImageFormat.BOTH, facts(), "f.pdf")
    assert [(a.filename, a.content_type) for a in images.attachments] == [
        ("f.pdf", "application/pdf"),
        ("f.tif", "image/tiff"),
    ]
    assert images.attachments[1].data == tiff
    assert pdf_page_count(images.attachments[0].data) == 2


def test_a_tiff_that_cannot_be_converted_is_attached_as_it_came_with_a_note() -> None:
    broken = b"II*\x00" + b"\x00" * 64
    images = prepare_images(broken, "image/tiff", ImageFormat.PDF, facts(), "f.pdf")
    assert [(a.filename, a.data) for a in images.attachments] == [("f.tif", broken)]
    assert "could not be converted" in images.notes[0]
    body = text_body(mail(images=images))
    assert "could not be converted" in body


def test_an_unknown_image_is_attached_as_it_came_with_a_note() -> None:
    images = prepare_images(b"GIF89a...", "image/gif", ImageFormat.PDF, facts(), "f.pdf")
    assert [(a.content_type, a.data) for a in images.attachments] == [("image/gif", b"GIF89a...")]
    assert images.notes


def test_a_page_count_different_from_interfax_is_noted() -> None:
    images = prepare_images(minimal_pdf(pages=1), "application/pdf", ImageFormat.PDF, facts(), "f")
    assert images.notes == ("InterFAX reported 2 pages, but the attached PDF has 1.",)


def test_fax_mail_attaches_the_image_and_has_exactly_the_expected_headers() -> None:
    pdf = minimal_pdf(pages=2)
    images = prepare_images(pdf, "application/pdf", ImageFormat.PDF, facts(), "fax.pdf")
    parsed = reparsed(mail(images=images))
    assert sorted(name.lower() for name in parsed) == FAX_HEADERS
    assert attachments_of(parsed) == [("fax.pdf", "application/pdf", pdf)]
    assert str(parsed["To"]) == "front@clinic.example.org"


def test_notify_only_mail_has_no_attachment_and_says_so() -> None:
    message = reparsed(mail(images=None))
    assert attachments_of(message) == []
    assert "not attached" in text_body(message)


def test_to_and_cc_show_the_route_and_the_message_id_is_per_recipient() -> None:
    route = Presentation(to=("a@clinic.example.org",), cc=("b@clinic.example.org",))
    for_a = mail(recipient="a@clinic.example.org", presentation=route)
    for_b = mail(recipient="b@clinic.example.org", presentation=route)
    assert (str(for_b["To"]), str(for_b["Cc"])) == ("a@clinic.example.org", "b@clinic.example.org")
    assert for_a["Message-ID"] == fax_message_id(
        292626603, "a@clinic.example.org", "clinic.example.org"
    )
    assert for_a["Message-ID"] != for_b["Message-ID"]
    assert (
        mail(recipient="a@clinic.example.org", presentation=route)["Message-ID"]
        == (for_a["Message-ID"])
    )


@pytest.mark.parametrize("csid", HOSTILE_CSIDS)
@pytest.mark.parametrize("caller_id", [*HOSTILE_CALLER_IDS, None])
def test_hostile_csid_and_caller_id_cannot_create_or_change_a_header(
    csid: str, caller_id: str | None
) -> None:
    f = facts(remote_csid=csid, caller_id=caller_id)
    images = prepare_images(
        minimal_pdf(2), "application/pdf", ImageFormat.BOTH, f, "fax-{csid}-{from}.pdf"
    )
    raw = mail(f, images=images).as_bytes()
    parsed = message_from_bytes(raw, policy=policy.default)
    assert sorted(name.lower() for name in parsed) == FAX_HEADERS
    assert b"\nX-Injected" not in raw
    assert b"\nBcc:" not in raw
    assert "\n" not in str(parsed["Subject"])
    assert "=?" not in f.csid
    assert str(parsed["Subject"]).startswith("Fax from ")
    assert all("\n" not in name and "\r" not in name for name, _, _ in attachments_of(parsed))


def test_the_html_body_escapes_the_csid() -> None:
    f = facts(caller_id=None, remote_csid="<script>x</script>")
    html = html_body(mail(f))
    assert "<script>" not in html
    assert "&lt;script&gt;" in html


def test_a_route_template_from_templates_dir_replaces_the_default(tmp_path: Path) -> None:
    (tmp_path / "lab.txt.j2").write_text("LAB {{ number }} {{ sender }}\n")
    (tmp_path / "lab.html.j2").write_text("<p>LAB {{ number }}</p>\n")
    message = mail(
        presentation=Presentation(to=("a@clinic.example.org",), template="lab"),
        renderer=TemplateRenderer(tmp_path),
    )
    assert text_body(message).splitlines() == ["LAB +1 212-555-0100 +1 212-555-0199"]


def test_admin_notice_for_an_unrouted_fax() -> None:
    notice = build_admin_notice(
        facts(remote_csid=HOSTILE_CSIDS[0]),
        admin="admin@clinic.example.org",
        problem="unrouted",
        details={},
        settings=SETTINGS,
        renderer=TemplateRenderer(),
        now=NOW,
    )
    parsed = reparsed(notice)
    assert str(parsed["To"]) == "admin@clinic.example.org"
    assert "No route" in str(parsed["Subject"])
    assert "stays unread at InterFAX" in text_body(parsed)
    assert sorted(name.lower() for name in parsed) == sorted(
        [*FAX_HEADERS, "content-transfer-encoding"]
    )


@pytest.mark.parametrize(
    ("channel", "linesep"),
    [
        (DeliveryChannel.SMTP, b"\r\n"),
        (DeliveryChannel.MAILDIR, b"\n"),
        (DeliveryChannel.IMAP, b"\r\n"),
    ],
)
def test_each_channel_gets_the_same_mail_with_its_own_line_ends(
    channel: DeliveryChannel, linesep: bytes
) -> None:
    images = prepare_images(minimal_pdf(), "application/pdf", ImageFormat.PDF, facts(), "f.pdf")
    kwargs: dict[str, Any] = {
        "recipient": "front@clinic.example.org",
        "presentation": Presentation(to=("front@clinic.example.org",)),
        "images": images,
        "settings": SETTINGS,
        "renderer": TemplateRenderer(),
        "now": NOW,
    }
    message_id, data = fax_mail_bytes(facts(), channel=channel, **kwargs)
    _, smtp = fax_mail_bytes(facts(), channel=DeliveryChannel.SMTP, **kwargs)
    assert data.count(linesep) == data.count(b"\n")
    sent, relayed = (message_from_bytes(d, policy=policy.default) for d in (data, smtp))
    assert sent["Message-ID"] == message_id
    # Two writes differ only in their MIME boundaries.
    assert [(k, v) for k, v in sent.items() if k != "Content-Type"] == [
        (k, v) for k, v in relayed.items() if k != "Content-Type"
    ]
    for body in (text_body, html_body):
        assert body(sent).replace("\r\n", "\n") == body(relayed).replace("\r\n", "\n")
    assert attachments_of(sent) == attachments_of(relayed)


@pytest.mark.parametrize("csid", HOSTILE_CSIDS)
def test_hostile_csid_never_adds_a_header_to_the_bytes_sent(csid: str) -> None:
    _, data = fax_mail_bytes(
        facts(caller_id=None, remote_csid=csid),
        recipient="front@clinic.example.org",
        channel=DeliveryChannel.SMTP,
        presentation=Presentation(to=("front@clinic.example.org",)),
        images=None,
        settings=SETTINGS,
        renderer=TemplateRenderer(),
        now=NOW,
    )
    sent = message_from_bytes(data, policy=policy.default)
    assert sorted(k.lower() for k in sent) == FAX_HEADERS
