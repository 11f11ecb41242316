"""Configuration values: durations, sizes, addresses, countries and number prefixes."""

from __future__ import annotations

import pytest

from tests.config_helpers import ROUTED, load, only

# ----------------------------------------------------------------------------- units


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("45", 45.0),
        ("2.5", 2.5),
        ("'45'", 45.0),
        ("30s", 30.0),
        ("5m", 300.0),
        ("2h", 7200.0),
        ("1d", 86400.0),
        ("250ms", 0.25),
        ("1h30m", 5400.0),
        ("'1h 30m'", 5400.0),
        ("1.5h", 5400.0),
    ],
)
def test_durations_accept_seconds_and_units(value: str, seconds: float) -> None:
    assert load(f"inbound:\n  poll_interval: {value}\n").inbound.poll_interval == seconds


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0", "must be a positive duration"),
        ("-5", "must be a positive duration"),
        ("0s", "must be a positive duration"),
        ("-5s", "'-5s' is not a duration; use seconds or 30s, 5m, 2h, 1d, 250ms, 1h30m"),
        (
            "5 minutes",
            "'5 minutes' is not a duration; use seconds or 30s, 5m, 2h, 1d, 250ms, 1h30m",
        ),
        ("true", "must be a duration such as 30s, 5m, 2h, 1d or 250ms"),
        ("[5]", "must be a duration such as 30s, 5m, 2h, 1d or 250ms"),
    ],
)
def test_bad_durations_are_refused_with_the_key_and_line(value: str, message: str) -> None:
    assert only(f"inbound:\n  poll_interval: {value}\n") == ("inbound.poll_interval", 6, message)


@pytest.mark.parametrize(
    ("value", "size"),
    [
        ("1000", 1000),
        ("25MB", 25_000_000),
        ("512KB", 512_000),
        ("1GB", 1_000_000_000),
        ("25MiB", 25 * 2**20),
        ("512 KiB", 512 * 1024),
        ("1.5MB", 1_500_000),
        ("25mb", 25_000_000),
        ("100B", 100),
    ],
)
def test_sizes_accept_bytes_and_decimal_or_binary_units(value: str, size: int) -> None:
    config = load(f"smtp_server:\n  max_message_size: {value}\n")
    assert config.smtp_server.max_message_size == size


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0", "must be a positive size"),
        ("-1", "must be a positive size"),
        ("0MB", "must be a positive size"),
        ("25XB", "'25XB' is not a size; use bytes or 25MB, 512KB, 1GB, 20MiB"),
        ("1.5", "must be a whole number of bytes"),
        ("true", "must be a size such as 25MB, 512KB, 1GB or 20MiB"),
    ],
)
def test_bad_sizes_are_refused_with_the_key_and_line(value: str, message: str) -> None:
    expected = ("smtp_server.max_message_size", 6, message)
    assert only(f"smtp_server:\n  max_message_size: {value}\n") == expected


# ----------------------------------------------------------------------------- addresses


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        ("alice@example.org", "alice@example.org"),
        ("Alice.B+fax@Clinic.Example.ORG", "Alice.B+fax@clinic.example.org"),
        ("o'brien@example.co.uk", "o'brien@example.co.uk"),
    ],
)
def test_email_addresses_are_kept_with_a_lower_case_domain(value: str, stored: str) -> None:
    assert load(f'mail:\n  admin: "{value}"\n').mail.admin == stored


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("Alice <alice@example.org>", "is not a bare email address"),
        ("a@example.org, b@example.org", "is not a bare email address"),
        ("alice", "is not an email address"),
        ("alice@localhost", "does not have a valid domain"),
        ("alice@example.123", "does not have a valid domain"),
        ("al..ice@example.org", "has an invalid part before the @"),
        ("@example.org", "is not an email address"),
    ],
)
def test_invalid_email_addresses_are_refused(value: str, message: str) -> None:
    key, line, text = only(f'mail:\n  admin: "{value}"\n')
    assert (key, line) == ("mail.admin", 6)
    assert message in text


def test_allowed_senders_take_addresses_and_whole_domains() -> None:
    config = load(
        'outbound:\n  default_country: US\n  allowed_senders: [a@x.org, "*@Clinic.Example.org"]\n',
        head=ROUTED,
    )
    assert config.outbound.allowed_senders == ("a@x.org", "*@clinic.example.org")


@pytest.mark.parametrize("pattern", ["*.example.org", "*@*.example.org", "a*@example.org"])
def test_other_wildcards_are_refused(pattern: str) -> None:
    extra = f'outbound:\n  default_country: US\n  allowed_senders: ["{pattern}"]\n'
    key, line, _ = only(extra, head=ROUTED)
    assert (key, line) == ("outbound.allowed_senders[0]", 9)


# ----------------------------------------------------------------------------- countries, numbers


def test_country_codes_are_upper_cased_and_default_the_allowed_countries() -> None:
    outbound = load("outbound:\n  default_country: de\n").outbound
    assert (outbound.default_country, outbound.allowed_countries) == ("DE", ("DE",))
    explicit = load("outbound:\n  default_country: DE\n  allowed_countries: [at, ch]\n")
    assert explicit.outbound.allowed_countries == ("AT", "CH")


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("UK", "'UK' is not an ISO 3166 alpha-2 country code like US or GB (did you mean GB?)"),
        ("XX", "'XX' is not an ISO 3166 alpha-2 country code like US or GB"),
        ("USA", "'USA' is not an ISO 3166 alpha-2 country code like US or GB"),
    ],
)
def test_unknown_country_codes_are_refused(code: str, message: str) -> None:
    assert only(f"outbound:\n  default_country: {code}\n") == (
        "outbound.default_country",
        6,
        message,
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("'1900'", "'1900' is not a number prefix in international form, like +1900 or +44 70"),
        ("'+1 9x'", "'+1 9x' is not a number prefix in international form"),
    ],
)
def test_prefixes_must_be_international(value: str, message: str) -> None:
    key, line, text = only(f"outbound:\n  blocked_prefixes: [{value}]\n")
    assert (key, line) == ("outbound.blocked_prefixes[0]", 6)
    assert message in text


def test_number_types_are_checked_against_the_phonenumbers_names() -> None:
    assert load("outbound:\n  blocked_number_types: [Premium_Rate, toll_free]\n").outbound == (
        load("outbound:\n  blocked_number_types: [premium_rate, toll_free]\n").outbound
    )
    key, line, text = only("outbound:\n  blocked_number_types: [premium]\n")
    assert (key, line) == ("outbound.blocked_number_types[0]", 6)
    assert text.startswith("must be 'fixed_line', 'mobile'")
    assert text.endswith("(got 'premium')")
