"""Reading a mailbox message's header for intake: sender, fax recipients, subject (pure)."""

from __future__ import annotations

import pytest

from bridge.imap_message import MailboxMail, message_id_of, read_mailbox_mail, split_mailboxes

DOMAIN = "fax.local"


def read(headers: str, body: str = "body\n") -> MailboxMail:
    raw = (headers.strip("\n") + "\n\n" + body).replace("\n", "\r\n").encode()
    mail = read_mailbox_mail(raw, fax_domain=DOMAIN, max_header_bytes=64 * 1024)
    assert mail is not None
    return mail


def test_fax_addresses_come_from_to_and_cc_in_order_once_each() -> None:
    mail = read(
        "From: Alice <alice@clinic.example.org>\n"
        "To: Bob <bob@example.org>, +12125550100@fax.local,\n"
        ' "Front desk, 2nd floor" <+1-212-555-0101@FAX.LOCAL>\n'
        "Cc: +12125550100@Fax.Local, 0044 20 7946 0000@elsewhere.example\n"
        "Subject: Contract\n"
    )
    assert mail.recipients == ("+12125550100@fax.local", "+1-212-555-0101@fax.local")
    assert mail.problems == ()
    assert mail.from_address == "alice@clinic.example.org"
    assert mail.subject == "Contract"


@pytest.mark.parametrize(
    "entry",
    [
        "(212)5550100@fax.local",  # a comment would silently shorten the number
        '"1555"@fax.local',
        '"+12125550100@fax.local" <mallory@evil.example>',
        "Faxes: +12125550100@fax.local;",
        "<@relay.example:+12125550100@fax.local>",
        "+1 212 555 0100@fax.local",
        "+12125550100@fax.local (front desk)",
    ],
)
def test_anything_at_the_fax_domain_that_is_not_one_clear_address_is_a_problem(
    entry: str,
) -> None:
    mail = read(f"From: alice@clinic.example.org\nTo: {entry}\n")
    assert mail.recipients == ()
    assert len(mail.problems) == 1
    assert mail.problems[0].startswith("To: ")


@pytest.mark.parametrize(
    "entry",
    [
        "+12125550100@fax.local.evil.example",
        "+12125550100@fax.localhost",
        "+12125550100@sub.fax.local.example",
        "=?utf-8?q?1555=40fax.local?= <bob@example.org>",
    ],
)
def test_addresses_of_other_domains_are_not_ours_and_are_ignored(entry: str) -> None:
    mail = read(f"From: alice@clinic.example.org\nTo: {entry}\n")
    assert (mail.recipients, mail.problems) == ((), ())


@pytest.mark.parametrize(
    "froms",
    [
        ["alice@clinic.example.org <mallory@evil.example>"],  # CVE-2023-27043
        ["alice@clinic.example.org, bob@clinic.example.org"],
        ["alice@clinic.example.org", "bob@clinic.example.org"],
        [],
    ],
)
def test_the_sender_is_one_clear_from_address_or_none(froms: list[str]) -> None:
    headers = "".join(f"From: {value}\n" for value in froms) + "To: +12125550100@fax.local\n"
    assert read(headers).from_address is None


def test_automatic_mail_is_recognised_from_the_header() -> None:
    mail = read("From: alice@clinic.example.org\nAuto-Submitted: auto-replied\nTo: x@fax.local\n")
    assert mail.automatic == "Auto-Submitted"
    assert read("From: a@b.example\nAuto-Submitted: no\n").automatic is None


def test_an_encoded_newline_in_the_subject_does_not_survive() -> None:
    mail = read("From: a@b.example\nSubject: =?utf-8?q?hello=0AX-Injected=3A_yes?=\n")
    assert "\n" not in mail.subject
    assert mail.subject == "hello X-Injected: yes"


def test_message_id_is_read_raw_and_only_when_well_formed() -> None:
    assert read("From: a@b.example\nMessage-ID: <abc@host>\n").message_id == "<abc@host>"
    assert read("From: a@b.example\nMessage-ID: not an id\n").message_id is None
    raw = b"Message-ID: <[1.2@microsoft.com]>\r\n\r\nx"
    assert message_id_of(raw) == "<[1.2@microsoft.com]>"


def test_an_oversized_header_block_is_unreadable() -> None:
    raw = b"X-Filler: " + b"a" * 5000 + b"\r\n\r\nbody"
    assert read_mailbox_mail(raw, fax_domain=DOMAIN, max_header_bytes=1000) is None
    assert message_id_of(raw, max_header_bytes=1000) is None


def test_a_header_only_fetch_without_a_body_is_read() -> None:
    raw = b"From: a@b.example\r\nTo: +12125550100@fax.local\r\n"
    mail = read_mailbox_mail(raw, fax_domain=DOMAIN, max_header_bytes=1000)
    assert mail is not None
    assert mail.recipients == ("+12125550100@fax.local",)


def test_address_lists_split_only_at_top_level_commas() -> None:
    value = '"Doe, Jane" <j@x.org>, (a, b) k@x.org, <weird,@x.org>, "q\\", r" <q@x.org>'
    assert split_mailboxes(value) == [
        '"Doe, Jane" <j@x.org>',
        "(a, b) k@x.org",
        "<weird,@x.org>",
        '"q\\", r" <q@x.org>',
    ]
