"""The refusal report for a fax request from a mailbox, sent through a real SMTP sink."""

from __future__ import annotations

import pytest

from bridge.errors import PermanentError
from bridge.imap_refusal import MailRefusalNotifier, RefusalNotice
from bridge.mailbuild import MailAddress
from bridge.mailer import Mailer, MailRejected, RelaySettings
from tests.smtp_sink import running_sink

NOTICE = RefusalNotice(
    recipient="alice@clinic.example.org",
    subject="hello\r\nX-Injected: yes =?utf-8?q?a=0AX-Other=3A_no?=",
    message_id="<req-1@clinic.example.org>",
    reason="+1555@fax.local: not a valid phone number",
    reference="fax@example.org@imap.example.org/INBOX/17/4",
)


def notifier(port: int) -> MailRefusalNotifier:
    return MailRefusalNotifier(
        Mailer(RelaySettings(host="127.0.0.1", port=port, timeout=5)),
        MailAddress("fax@bridge.example.org", "Fax Bridge"),
        fax_domain="fax.local",
        clock=lambda: 1_700_000_000.0,
    )


async def test_the_report_goes_to_the_sender_threaded_under_the_refused_mail() -> None:
    async with running_sink() as sink:
        await notifier(sink.port)(NOTICE)
        await notifier(sink.port)(NOTICE)  # repeated after a crash: recognisably the same
    first, second = sink.received
    assert (first.mail_from, first.rcpt_tos) == ("fax@bridge.example.org", [NOTICE.recipient])
    mail = first.parsed()
    assert mail["In-Reply-To"] == mail["References"] == NOTICE.message_id
    assert mail["Auto-Submitted"] == "auto-replied"
    assert mail["Message-ID"] == second.parsed()["Message-ID"]
    assert str(mail["Subject"]).startswith("Fax not sent: ")
    assert "not a valid phone number" in mail.get_content()
    assert "+12125550100@fax.local" in mail.get_content()
    names = {name.lower() for name in mail}
    assert not {"x-injected", "x-other"} & names
    assert names == {
        "from", "to", "subject", "date", "message-id", "in-reply-to", "references",
        "auto-submitted", "content-type", "content-transfer-encoding", "mime-version",
    }  # fmt: skip


async def test_a_relay_refusal_is_a_permanent_error_for_the_worker_to_give_up() -> None:
    async with running_sink() as sink:
        sink.handler.data_reply = "554 5.7.1 no thanks"
        with pytest.raises(MailRejected) as caught:
            await notifier(sink.port)(NOTICE)
    assert isinstance(caught.value, PermanentError)


async def test_after_replace_sender_reports_come_from_the_new_address() -> None:
    async with running_sink() as sink:
        reports = notifier(sink.port)
        reports.replace_sender(MailAddress("faxes@new.example.org"), fax_domain="fax.local")
        await reports(NOTICE)
    [report] = sink.received
    assert report.mail_from == "faxes@new.example.org"
    mail = report.parsed()
    assert mail["From"] == "faxes@new.example.org"
    assert str(mail["Message-ID"]).endswith("@new.example.org>")
