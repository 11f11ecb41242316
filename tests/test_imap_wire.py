"""IMAP answers to our values and typed errors, and our arguments on the wire (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from bridge.errors import AuthError, PermanentError, TransientError
from bridge.imap_wire import (
    ImapAuthError,
    ImapBusyError,
    ImapNoFolderError,
    ImapQuotaError,
    ImapRefused,
    encode_mailbox,
    format_internal_date,
    parse_fetch,
    parse_internal_date,
    parse_search,
    parse_select,
    reply_error,
)


@pytest.mark.parametrize(
    ("result", "text", "kind", "family"),
    [
        (
            "NO",
            b"[OVERQUOTA] Quota exceeded (mailbox for user is full)",
            ImapQuotaError,
            PermanentError,
        ),
        ("NO", b"[LIMIT] Too many messages", ImapQuotaError, PermanentError),
        ("NO", b"[TRYCREATE] Mailbox doesn't exist: Faxed", ImapNoFolderError, PermanentError),
        ("NO", b"[NONEXISTENT] Unknown mailbox", ImapNoFolderError, PermanentError),
        ("NO", b"[UNAVAILABLE] Internal error occurred", ImapBusyError, TransientError),
        ("NO", b"[INUSE] Mailbox is locked", ImapBusyError, TransientError),
        ("NO", b"[SERVERBUG] oops", ImapBusyError, TransientError),
        ("BAD", b"Error in IMAP command APPEND: Invalid arguments", ImapRefused, PermanentError),
        ("NO", b"Mailbox doesn't exist: Nope", ImapRefused, PermanentError),
    ],
)
def test_every_refusal_becomes_one_typed_error(
    result: str, text: bytes, kind: type[Exception], family: type[Exception]
) -> None:
    error = reply_error("APPEND", result, [b"untagged", text])
    assert type(error) is kind
    assert isinstance(error, family)
    assert text.decode() in str(error)


def test_a_refused_login_is_an_auth_error_unless_the_server_asks_to_come_back() -> None:
    refused = reply_error(
        "LOGIN", "NO", [b"[AUTHENTICATIONFAILED] Authentication failed."], login=True
    )
    assert isinstance(refused, ImapAuthError)
    assert isinstance(refused, AuthError)
    assert refused.reply is not None
    assert refused.reply.code == "AUTHENTICATIONFAILED"
    later = reply_error(
        "LOGIN", "NO", [b"[UNAVAILABLE] Temporary authentication failure."], login=True
    )
    assert isinstance(later, ImapBusyError)


def test_server_text_in_an_error_is_one_bounded_printable_line() -> None:
    error = reply_error("SELECT", "NO", [b"bad\r\nX-Injected: yes\x00" + b"x" * 1000])
    assert not {"\n", "\r", "\x00"} & set(str(error))
    assert len(str(error)) < 400


def test_select_answer_gives_uidvalidity_uidnext_and_count() -> None:
    lines = [
        b"FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)",
        b"2 EXISTS",
        b"0 RECENT",
        b"OK [UIDVALIDITY 1795742580] UIDs valid",
        b"OK [UIDNEXT 3] Predicted next UID",
        b"[READ-WRITE] Select completed (0.001 + 0.000 secs).",
    ]
    selection = parse_select("INBOX", lines)
    assert (selection.uidvalidity, selection.uidnext, selection.exists) == (1795742580, 3, 2)


def test_a_select_answer_without_uidvalidity_is_refused() -> None:
    with pytest.raises(ImapRefused, match="UIDVALIDITY"):
        parse_select("INBOX", [b"1 EXISTS", b"Select completed"])


def test_search_answer_reads_uids_and_ignores_the_tagged_text() -> None:
    assert parse_search([b"3 1 20", b"Search completed (0.001 + 0.000 secs)."]) == [1, 3, 20]
    assert parse_search([b"SEARCH 7", b"done 5"]) == [7]
    assert parse_search([b"", b"Search completed (0 + 1 secs)."]) == []


def test_fetch_answer_pairs_each_literal_with_its_uid_and_attributes() -> None:
    lines = [
        b'1 FETCH (UID 5 RFC822.SIZE 40 INTERNALDATE "02-Jan-2024 03:04:05 +0100"'
        b" FLAGS (\\Seen \\Recent) BODY[] {11}",
        bytearray(b"Subject: a\n"),
        b")",
        b"2 FETCH (FLAGS (\\Seen))",  # an unsolicited update without UID: not ours
        b"3 FETCH (BODY[HEADER] {3}",
        bytearray(b"X\r\n"),
        b" UID 9)",
        b"Fetch completed.",
    ]
    first, second = parse_fetch(lines)
    assert (first.uid, first.size, first.body) == (5, 40, b"Subject: a\n")
    assert first.flags == frozenset({"\\Seen", "\\Recent"})
    assert first.internal_date == datetime(2024, 1, 2, 2, 4, 5, tzinfo=UTC)
    assert (second.uid, second.size, second.body) == (9, None, b"X\r\n")


def test_mailbox_names_are_quoted_and_non_ascii_uses_modified_utf7() -> None:
    assert encode_mailbox("INBOX") == '"INBOX"'
    assert encode_mailbox('Fax "in"\\out') == '"Fax \\"in\\"\\\\out"'
    # RFC 3501 5.1.3's own example, and "&" escaped as "&-".
    assert encode_mailbox("~peter/mail/台北/日本語") == '"~peter/mail/&U,BTFw-/&ZeVnLIqe-"'
    assert encode_mailbox("Reçu & Co") == '"Re&AOc-u &- Co"'
    with pytest.raises(ValueError, match="control"):
        encode_mailbox("Faxed\r\nA1 DELETE INBOX")


def test_internal_dates_are_written_and_read_back_with_their_offset() -> None:
    moment = datetime(2024, 3, 7, 9, 5, 1, tzinfo=timezone(timedelta(hours=-5, minutes=-30)))
    text = format_internal_date(moment)
    assert text == '"07-Mar-2024 09:05:01 -0530"'
    assert parse_internal_date(text.strip('"')) == moment
    assert parse_internal_date(" 7-Mar-2024 09:05:01 +0000") == datetime(
        2024, 3, 7, 9, 5, 1, tzinfo=UTC
    )
    assert parse_internal_date("31-Feb-2024 00:00:00 +0000") is None
    with pytest.raises(ValueError, match="time zone"):
        format_internal_date(datetime(2024, 1, 1))
