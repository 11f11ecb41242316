"""Sender authorisation and automatic-mail detection (bridge.senders): strings in, values out."""

from __future__ import annotations

import email.utils

import pytest

from bridge.senders import (
    SenderDecision,
    SenderPolicy,
    authorise,
    auto_submitted_marker,
    check_envelope_sender,
    parse_single_address,
)

POLICY = SenderPolicy(("alice@ex.org", "*@corp.example"))

# --------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("alice@ex.org", "alice@ex.org"),
        ("<alice@ex.org>", "alice@ex.org"),
        ("Alice <alice@ex.org>", "alice@ex.org"),
        ('"Alice Smith" <alice@ex.org>', "alice@ex.org"),
        ('"Smith, Alice" <alice@ex.org>', "alice@ex.org"),
        ('"A \\"quoted\\" name" <alice@ex.org>', "alice@ex.org"),
        ("J. R. Smith <alice@ex.org>", "alice@ex.org"),
        ("O'Brien <ob@ex.org>", "ob@ex.org"),
        ("=?utf-8?q?Al=C3=AFce?= <alice@ex.org>", "alice@ex.org"),
        ("Ålice <alice@ex.org>", "alice@ex.org"),
        ("alice@ex.org (Alice)", "alice@ex.org"),
        ("Alice <alice@ex.org> (work)", "alice@ex.org"),
        ("first.last+tag@sub.ex.co.uk", "first.last+tag@sub.ex.co.uk"),
        ("alice@EX.ORG", "alice@ex.org"),
        ("ALICE@Ex.Org", "ALICE@ex.org"),
        ("  alice@ex.org  ", "alice@ex.org"),
        ("root@localhost", "root@localhost"),
    ],
)
def test_single_clean_addresses_are_parsed(value: str, expected: str) -> None:
    assert parse_single_address(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        # CVE-2023-27043 shapes: which address is meant is ambiguous.
        "alice@ex.org <bob@ex.com>",
        "alice@ex.org bob@ex.com",
        "x <alice@ex.org> <bob@ex.com>",
        # Several addresses, lists and groups.
        "alice@ex.org, bob@ex.com",
        "alice@ex.org,",
        ",alice@ex.org",
        "alice@ex.org; bob@ex.com",
        "Smith, Alice <alice@ex.org>",
        "grp: alice@ex.org;",
        "Alice: <alice@ex.org>",
        "Alice <alice@ex.org>;",
        "undisclosed-recipients:;",
        # Comments or display names that carry an address.
        "alice@ex.org (bob@ex.com)",
        "(bob@ex.com) alice@ex.org",
        '"alice@ex.org" <bob@ex.com>',
        "=?utf-8?q?alice=40ex.org?= <bob@ex.com>",
        '"Alice\\" <x@y.z>" <alice@ex.org>',
        "Alice (work, home) <alice@ex.org>",
        # Pieces the parser would glue together.
        "alice(x)@ex.org",
        "alice @ ex.org",
        "alice@ex .org",
        # Line breaks, NUL and other controls.
        "alice@ex.org\r\nBcc: victim@ex.com",
        "alice@ex.org\nX: y",
        "alice@ex.org\r",
        "alice@ex.org\x00",
        "Alice\x00 <alice@ex.org>",
        "alice@ex.org\x7f",
        "alice@ex.org\x85",
        "alice@ex.org\u2028",
        "Alice\t<alice@ex.org>",
        # Unbalanced quotes and brackets.
        '"unbalanced <alice@ex.org>',
        "<alice@ex.org",
        "alice@ex.org>",
        "Alice <alice@ex.org",
        "alice@ex.org (",
        "alice@ex.org)",
        # Not one well-formed address.
        "",
        "<>",
        "alice",
        "@ex.org",
        "alice@",
        "a@b@c.d",
        "<@relay.example:alice@ex.org>",
        '"a b"@ex.org',
        "alice@[192.0.2.1]",
        "alice@192.0.2.1",
        "a..b@ex.org",
        ".a@ex.org",
        "a.@ex.org",
        "a@ex..org",
        "a@-ex.org",
        "a@ex-.org",
        "alice@ex.org.",
        "ålice@ex.org",
        "alice@exämple.org",
        "alice@ex.org\udcff",
        "=?utf-8?q?x?=@ex.org",
        "a" * 65 + "@ex.org",
        "alice@" + "a" * 250 + ".org",
        "x" * 990 + " <alice@ex.org>",
    ],
)
def test_ambiguous_or_malformed_values_are_refused(value: str) -> None:
    assert parse_single_address(value) is None


def test_stdlib_parseaddr_would_have_accepted_what_we_refuse() -> None:
    # Why we do not rely on email.utils: these read as one harmless address there.
    for value in ("alice@ex.org (bob@ex.com)", "alice(x)@ex.org", "alice@ex.org,"):
        assert email.utils.parseaddr(value)[1] == "alice@ex.org"
        assert parse_single_address(value) is None


# --------------------------------------------------------------------------- policy


def test_empty_policy_denies_everyone() -> None:
    assert not SenderPolicy(()).allows("alice@ex.org")
    decision = authorise("alice@ex.org", "alice@ex.org", SenderPolicy(()))
    assert decision == SenderDecision(False, "not_allowed", "alice@ex.org")


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("alice@ex.org", True),
        ("Alice@EX.org", True),
        ("bob@ex.org", False),
        ("alice@ex.org.evil.com", False),
        ("alice@sub.ex.org", False),
        ("anyone@corp.example", True),
        ("ANYONE@CORP.EXAMPLE", True),
        ("x@sub.corp.example", False),
        ("x@corp.example.evil.com", False),
        ("x@evilcorp.example", False),
        ("corp.example", False),
        ("*@ex.org", False),
    ],
)
def test_policy_matches_exact_addresses_and_whole_domains(address: str, allowed: bool) -> None:
    assert POLICY.allows(address) is allowed


def test_policy_entries_are_normalised() -> None:
    policy = SenderPolicy((" Alice@EX.org ", "*@Corp.Example"))
    assert policy.allowed == ("alice@ex.org", "*@corp.example")


@pytest.mark.parametrize(
    "entry",
    [
        "Alice <alice@ex.org>",
        "<alice@ex.org>",
        "alice@ex.org, bob@ex.org",
        "*",
        "*@*",
        "*@",
        "*@-bad.example",
        "*@192.0.2.1",
        "a*@ex.org",
        "alice",
        "",
    ],
)
def test_invalid_policy_entries_raise(entry: str) -> None:
    with pytest.raises(ValueError, match="invalid sender"):
        SenderPolicy((entry,))


# --------------------------------------------------------------------------- authorise


def test_allowed_envelope_and_from_are_authorised() -> None:
    decision = authorise("alice@ex.org", "Alice Smith <alice@ex.org>", POLICY)
    assert decision == SenderDecision(True, "ok", "alice@ex.org")


def test_from_may_differ_from_envelope_when_both_are_allowed() -> None:
    decision = authorise("bounce+123@corp.example", "Alice <alice@ex.org>", POLICY)
    assert decision.allowed
    assert decision.reason == "ok"
    assert decision.sender == "bounce+123@corp.example"


@pytest.mark.parametrize(
    ("envelope", "from_header", "reason"),
    [
        ("", "alice@ex.org", "null_sender"),
        ("<>", "alice@ex.org", "null_sender"),
        ("  ", "alice@ex.org", "null_sender"),
        ("alice@ex.org <bob@ex.com>", "alice@ex.org", "bad_sender"),
        ("alice@ex.org\r\n", "alice@ex.org", "bad_sender"),
        ("mallory@evil.example", "alice@ex.org", "not_allowed"),
        ("alice@ex.org", None, "missing_from"),
        ("alice@ex.org", [], "missing_from"),
        ("alice@ex.org", "mallory@evil.example", "from_not_allowed"),
        ("alice@ex.org", "Alice <mallory@evil.example>", "from_not_allowed"),
        ("alice@ex.org", "alice@ex.org <mallory@evil.example>", "ambiguous_from"),
        ("alice@ex.org", "mallory@evil.example <alice@ex.org>", "ambiguous_from"),
        ("alice@ex.org", "alice@ex.org, mallory@evil.example", "ambiguous_from"),
        ("alice@ex.org", '"alice@ex.org" <mallory@evil.example>', "ambiguous_from"),
        ("alice@ex.org", "", "ambiguous_from"),
        ("alice@ex.org", ["alice@ex.org", "mallory@evil.example"], "ambiguous_from"),
        ("alice@ex.org", ["alice@ex.org", "alice@ex.org"], "ambiguous_from"),
    ],
)
def test_unauthorised_messages_get_a_reason_code(
    envelope: str, from_header: str | list[str] | None, reason: str
) -> None:
    decision = authorise(envelope, from_header, POLICY)
    assert not decision.allowed
    assert decision.reason == reason


def test_a_single_from_value_in_a_list_is_accepted() -> None:
    assert authorise("alice@ex.org", ["Alice <alice@ex.org>"], POLICY).allowed


def test_null_sender_is_refused_even_when_from_is_allowed() -> None:
    everyone = SenderPolicy(("*@ex.org",))
    assert authorise("", "alice@ex.org", everyone).reason == "null_sender"


def test_envelope_check_alone_for_mail_from() -> None:
    assert check_envelope_sender("alice@ex.org", POLICY) == SenderDecision(
        True, "ok", "alice@ex.org"
    )
    assert check_envelope_sender("<alice@ex.org>", POLICY).allowed
    assert check_envelope_sender("mallory@evil.example", POLICY).reason == "not_allowed"
    assert check_envelope_sender("<>", POLICY).reason == "null_sender"


# --------------------------------------------------------------------------- automatic mail


@pytest.mark.parametrize(
    ("headers", "marker"),
    [
        ([("Auto-Submitted", "auto-replied")], "Auto-Submitted"),
        ([("auto-submitted", "auto-generated")], "auto-submitted"),
        ([("Auto-Submitted", "auto-notified; owner-email=x@ex.org")], "Auto-Submitted"),
        ([("Auto-Submitted", "")], "Auto-Submitted"),
        ([("Auto-Submitted", "No-Thanks")], "Auto-Submitted"),
        ([("X-Autoreply", "yes")], "X-Autoreply"),
        ([("X-Autorespond", "Vacation")], "X-Autorespond"),
        ([("Precedence", "bulk")], "Precedence"),
        ([("Precedence", "JUNK")], "Precedence"),
        ([("Precedence", "list")], "Precedence"),
        ([("Precedence", "auto_reply")], "Precedence"),
        (
            [("Content-Type", 'multipart/report; report-type="delivery-status"')],
            "Content-Type",
        ),
        ([("Subject", "hello"), ("Auto-Submitted", "auto-replied")], "Auto-Submitted"),
    ],
)
def test_automatic_mail_is_recognised(headers: list[tuple[str, str]], marker: str) -> None:
    assert auto_submitted_marker(headers) == marker


@pytest.mark.parametrize(
    "headers",
    [
        [],
        [("Subject", "Auto-Submitted: auto-replied")],
        [("Auto-Submitted", "no")],
        [("Auto-Submitted", " NO ")],
        [("Auto-Submitted", "no (a person wrote this)")],
        [("X-Autoreply", "no")],
        [("X-Autorespond", "false")],
        [("Precedence", "first-class")],
        [("Precedence", "urgent")],
        [("Content-Type", "multipart/mixed; boundary=x")],
        [("X-Auto-Response-Suppress", "All")],
    ],
)
def test_mail_from_people_is_not_automatic(headers: list[tuple[str, str]]) -> None:
    assert auto_submitted_marker(headers) is None
