"""Recipient parsing and destination policy (bridge.numbers): strings in, values out."""

from __future__ import annotations

import dataclasses

import phonenumbers
import pytest

from bridge.numbers import (
    DEFAULT_BLOCKED_NUMBER_TYPES,
    NUMBER_TYPES,
    DestinationPolicy,
    FaxNumber,
    PolicyRefusal,
    RecipientRefusal,
    check_destination,
    parse_fax_recipient,
)

DOMAIN = "fax.local"


def parse(address: str, *, default_country: str = "US") -> FaxNumber | RecipientRefusal:
    return parse_fax_recipient(address, fax_domain=DOMAIN, default_country=default_country)


def number(address: str, *, default_country: str = "US") -> FaxNumber:
    result = parse(address, default_country=default_country)
    assert isinstance(result, FaxNumber), result
    return result


def us_only(**overrides: frozenset[str]) -> DestinationPolicy:
    return DestinationPolicy(allowed_countries=frozenset({"US"}), **overrides)


# --------------------------------------------------------------------------- accepted forms


@pytest.mark.parametrize(
    "address",
    [
        "+12125550100@fax.local",
        "+12125550100@FAX.LOCAL",
        "+12125550100@Fax.Local",
        "+1 (212) 555-0100@fax.local",
        "+1.212.555.0100@fax.local",
        "0012125550100@fax.local",
        "00 1 212 555 0100@fax.local",
        "2125550100@fax.local",
        "(212) 555-0100@fax.local",
        "12125550100@fax.local",
        "1-212-555-0100@fax.local",
    ],
)
def test_accepted_forms_of_one_us_number_all_give_the_same_fax_number(address: str) -> None:
    assert number(address) == FaxNumber(
        e164="+12125550100",
        region="US",
        number_type="fixed_line_or_mobile",
        international="+1 212-555-0100",
    )


def test_national_number_is_read_in_the_default_country() -> None:
    result = number("020 7946 0958@fax.local", default_country="GB")
    assert (result.e164, result.region, result.number_type) == ("+442079460958", "GB", "fixed_line")
    assert result.international == "+44 20 7946 0958"


def test_same_digits_read_nationally_depend_on_default_country() -> None:
    assert number("030 12345678@fax.local", default_country="DE").e164 == "+493012345678"
    assert isinstance(parse("030 12345678@fax.local", default_country="US"), RecipientRefusal)


def test_fax_number_is_frozen() -> None:
    result = number("+12125550100@fax.local")
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.e164 = "+19002345678"  # type: ignore[misc]


# --------------------------------------------------------------------------- refused at RCPT

RELAY = (550, "5.7.1")
BAD = (553, "5.1.3")


@pytest.mark.parametrize(
    ("address", "expected", "metric"),
    [
        # Another domain: we are never a relay.
        ("user@gmail.com", RELAY, "relay_denied"),
        ("12125550100@gmail.com", RELAY, "relay_denied"),
        ("1555@fax.local.evil.com", RELAY, "relay_denied"),
        ("1555@evil.fax.local", RELAY, "relay_denied"),
        ("12125550100@fax.local.", RELAY, "relay_denied"),
        ("12125550100@fax.localhost", RELAY, "relay_denied"),
        ("12125550100@ｆａｘ.local", RELAY, "relay_denied"),
        # Routing tricks.
        ("1555%evil.com@fax.local", BAD, "routing_hack"),
        ("evil.com!1555@fax.local", BAD, "routing_hack"),
        ("@a,@b:1555@fax.local", BAD, "source_route"),
        ("@fax.local:12125550100@fax.local", BAD, "source_route"),
        ('"1555"@fax.local', BAD, "quoted_local_part"),
        ('"+12125550100"@fax.local', BAD, "quoted_local_part"),
        ("12125550100@fax.local@evil.com", BAD, "bad_syntax"),
        ("1212@5550100@fax.local", BAD, "bad_syntax"),
        ("12125550100", BAD, "bad_syntax"),
        ("@fax.local", BAD, "source_route"),
        ("12125550100@", BAD, "bad_syntax"),
        ("", BAD, "empty_address"),
        # Not ASCII digits: \d would match all of these.
        ("＋１２１２５５５０１００@fax.local", BAD, "non_ascii"),
        ("١٢١٢٥٥٥٠١٠٠@fax.local", BAD, "non_ascii"),
        ("+1212555٠١٠٠@fax.local", BAD, "non_ascii"),
        ("+1²¹²5550100@fax.local", BAD, "non_ascii"),
        # Control characters anywhere.
        ("12125550100@fax.local\r\nRCPT TO:<x@y>", BAD, "control_chars"),
        ("1212555\x000100@fax.local", BAD, "control_chars"),
        ("12125550100\t@fax.local", BAD, "control_chars"),
        ("12125550100@fax.local\x85", BAD, "control_chars"),
        ("1212555\u20280100@fax.local", BAD, "control_chars"),
        # Not a number.
        ("fax@fax.local", BAD, "not_a_number"),
        ("1-800-FLOWERS@fax.local", BAD, "not_a_number"),
        ("+1_212_555_0100@fax.local", BAD, "not_a_number"),
        ("12125550100+tag@fax.local", BAD, "not_a_number"),
        ("1212+5550100@fax.local", BAD, "bad_syntax"),
        ("++12125550100@fax.local", BAD, "bad_syntax"),
        ("--()@fax.local", BAD, "bad_syntax"),
        ("+@fax.local", BAD, "bad_syntax"),
        # Invalid numbers.
        ("1555@fax.local", BAD, "invalid_number"),
        ("+15551234567@fax.local", BAD, "invalid_number"),
        ("+999123456789@fax.local", BAD, "invalid_number"),
        ("0000000@fax.local", BAD, "invalid_number"),
        ("+1212@fax.local", BAD, "invalid_number"),
        # Absurd lengths.
        ("+1212555010012345@fax.local", BAD, "too_long"),
        ("00" + "1" * 16 + "@fax.local", BAD, "too_long"),
        ("1" * 19 + "@fax.local", BAD, "too_long"),
        ("1" * 65 + "@fax.local", BAD, "too_long"),
        ("1 " * 40 + "@fax.local", BAD, "too_long"),
        ("1@" + "a" * 300, BAD, "too_long"),
    ],
)
def test_refused_recipients_carry_the_reply_the_listener_sends(
    address: str, expected: tuple[int, str], metric: str
) -> None:
    result = parse(address)
    assert isinstance(result, RecipientRefusal)
    assert (result.code, result.enhanced, result.metric) == (*expected, metric)
    assert result.reply == f"{result.code} {result.enhanced} {result.reason}"


def test_relay_refusal_names_the_accepted_form() -> None:
    result = parse("user@gmail.com")
    assert isinstance(result, RecipientRefusal)
    assert result.reply == "550 5.7.1 relaying denied: only <number>@fax.local is accepted"


def test_invalid_number_refusal_has_a_human_reason() -> None:
    result = parse("1555@fax.local")
    assert isinstance(result, RecipientRefusal)
    assert result.reply == "553 5.1.3 not a valid phone number"


def test_full_width_digits_refusal_explains_ascii_only() -> None:
    result = parse("＋１２１２５５５０１００@fax.local")
    assert isinstance(result, RecipientRefusal)
    assert result.reason == "only ASCII digits 0-9 are accepted"


def test_unicode_case_folding_cannot_reach_the_fax_domain() -> None:
    # "\u212a" (KELVIN SIGN) lower-cases to ASCII "k" with str.lower().
    assert "\u212afax.example".lower() == "kfax.example"
    result = parse_fax_recipient(
        "12125550100@\u212aFAX.example", fax_domain="kfax.example", default_country="US"
    )
    assert isinstance(result, RecipientRefusal)
    assert result.metric == "relay_denied"
    ok = parse_fax_recipient(
        "12125550100@KFAX.example", fax_domain="kfax.example", default_country="US"
    )
    assert isinstance(ok, FaxNumber)


@pytest.mark.parametrize(
    "address",
    [
        "12125550100@gmail.com\r\n",
        '"12125550100\r\nX"@fax.local',
        "1555%evil.com\r\n@fax.local",
        "<script>@fax.local",
    ],
)
def test_refusal_replies_never_echo_the_address(address: str) -> None:
    result = parse(address)
    assert isinstance(result, RecipientRefusal)
    assert "\r" not in result.reply
    assert "\n" not in result.reply
    assert "evil" not in result.reply
    assert "script" not in result.reply


# --------------------------------------------------------------------------- destination policy


def test_ordinary_domestic_number_passes_the_default_policy() -> None:
    assert check_destination(number("+12125550100@fax.local"), us_only()) is None


def test_toll_free_is_allowed_by_default() -> None:
    toll_free = number("+18002345678@fax.local")
    assert toll_free.number_type == "toll_free"
    assert check_destination(toll_free, us_only()) is None


@pytest.mark.parametrize(
    ("address", "region", "number_type", "reason"),
    [
        ("+19002345678@fax.local", "US", "premium_rate", "premium-rate numbers are blocked"),
        ("+44 909 879 0000@fax.local", "GB", "premium_rate", "premium-rate numbers are blocked"),
        ("+33884012345@fax.local", "FR", "shared_cost", "shared-cost numbers are blocked"),
        (
            "+445512345678@fax.local",
            "GB",
            "uan",
            "universal access numbers (UAN) are blocked",
        ),
        ("+447012345678@fax.local", "GB", "personal_number", "personal numbers are blocked"),
        ("+49177991234567@fax.local", "DE", "voicemail", "voicemail numbers are blocked"),
    ],
)
def test_costly_number_types_are_refused_by_default_even_in_an_allowed_country(
    address: str, region: str, number_type: str, reason: str
) -> None:
    target = number(address)
    assert (target.region, target.number_type) == (region, number_type)
    policy = DestinationPolicy(allowed_countries=frozenset({region}))
    refusal = check_destination(target, policy)
    assert isinstance(refusal, PolicyRefusal)
    assert refusal.reply == f"553 5.7.1 {reason}"
    assert refusal.metric == "blocked_number_type"


def test_blocked_types_match_phonenumbers_example_numbers() -> None:
    for name in sorted(DEFAULT_BLOCKED_NUMBER_TYPES):
        found = [
            example
            for region in ("US", "GB", "FR", "DE", "CH", "IT", "ES", "AU", "IN", "NL")
            if (example := phonenumbers.example_number_for_type(region, NUMBER_TYPES[name]))
        ]
        assert found, name
        e164 = phonenumbers.format_number(found[0], phonenumbers.PhoneNumberFormat.E164)
        target = number(f"{e164}@fax.local")
        assert target.number_type == name
        refusal = check_destination(target, DestinationPolicy(frozenset({target.region})))
        assert isinstance(refusal, PolicyRefusal), name


def test_a_blocked_type_can_be_allowed_explicitly() -> None:
    premium = number("+19002345678@fax.local")
    policy = us_only(blocked_number_types=frozenset())
    assert check_destination(premium, policy) is None


@pytest.mark.parametrize(
    ("address", "region"),
    [
        ("+18765230123@fax.local", "JM"),
        ("1 876 523 0123@fax.local", "JM"),
        ("8765230123@fax.local", "JM"),
        ("+18092345678@fax.local", "DO"),
        ("+15062345678@fax.local", "CA"),
    ],
)
def test_plus_one_numbers_outside_the_us_are_international(address: str, region: str) -> None:
    target = number(address)
    assert target.region == region
    refusal = check_destination(target, us_only())
    assert isinstance(refusal, PolicyRefusal)
    assert refusal.reply == f"553 5.7.1 destination country {region} is not allowed"
    assert refusal.metric == "country_not_allowed"


def test_jamaica_passes_when_jm_is_allowed() -> None:
    policy = DestinationPolicy(allowed_countries=frozenset({"US", "JM"}))
    assert check_destination(number("+18765230123@fax.local"), policy) is None


def test_non_geographic_numbers_need_region_001() -> None:
    inmarsat = number("+870772001799@fax.local")
    assert inmarsat.region == "001"
    refusal = check_destination(inmarsat, us_only())
    assert isinstance(refusal, PolicyRefusal)
    assert refusal.reason == "non-geographic numbers are not allowed"
    allowed = DestinationPolicy(allowed_countries=frozenset({"US", "001"}))
    assert check_destination(inmarsat, allowed) is None


def test_empty_allowed_countries_allows_nothing() -> None:
    refusal = check_destination(
        number("+12125550100@fax.local"), DestinationPolicy(allowed_countries=frozenset())
    )
    assert isinstance(refusal, PolicyRefusal)
    assert refusal.metric == "country_not_allowed"


def test_blocked_prefix_wins_over_allowed_prefix_and_country() -> None:
    policy = DestinationPolicy(
        allowed_countries=frozenset({"US"}),
        blocked_prefixes=frozenset({"+1212555"}),
        allowed_prefixes=frozenset({"+1212"}),
    )
    refusal = check_destination(number("+12125550100@fax.local"), policy)
    assert isinstance(refusal, PolicyRefusal)
    assert refusal.reply == "553 5.7.1 destination prefix +1212555 is blocked"
    assert refusal.metric == "blocked_prefix"
    assert check_destination(number("+12127365000@fax.local"), policy) is None


def test_allowed_prefixes_restrict_to_those_prefixes() -> None:
    policy = us_only(allowed_prefixes=frozenset({"+1212", "+1646"}))
    assert check_destination(number("+12125550100@fax.local"), policy) is None
    refusal = check_destination(number("+12015550123@fax.local"), policy)
    assert isinstance(refusal, PolicyRefusal)
    assert refusal.metric == "prefix_not_allowed"


def test_allowed_prefixes_do_not_override_countries_or_types() -> None:
    policy = us_only(allowed_prefixes=frozenset({"+1"}))
    assert isinstance(check_destination(number("+18765230123@fax.local"), policy), PolicyRefusal)
    premium = check_destination(number("+19002345678@fax.local"), policy)
    assert isinstance(premium, PolicyRefusal)
    assert premium.metric == "blocked_number_type"


def test_blocked_prefix_refuses_a_whole_country() -> None:
    policy = DestinationPolicy(
        allowed_countries=frozenset({"GB", "US"}), blocked_prefixes=frozenset({"+44"})
    )
    refusal = check_destination(number("+442079460958@fax.local"), policy)
    assert isinstance(refusal, PolicyRefusal)
    assert refusal.reason == "destination prefix +44 is blocked"


def test_unknown_type_is_refused_even_if_not_listed() -> None:
    # phonenumbers never calls a valid number UNKNOWN; a FaxNumber built by hand
    # stands in for a metadata surprise.
    odd = FaxNumber("+12125550100", "US", "unknown", "+1 212-555-0100")
    refusal = check_destination(odd, us_only(blocked_number_types=frozenset()))
    assert isinstance(refusal, PolicyRefusal)
    assert refusal.metric == "unknown_number_type"


def test_fixed_line_or_mobile_is_not_treated_as_unknown() -> None:
    target = number("+12125550100@fax.local")
    assert target.number_type == "fixed_line_or_mobile"
    assert check_destination(target, us_only()) is None


def test_policy_normalises_its_values() -> None:
    policy = DestinationPolicy(
        allowed_countries=frozenset({"us", " gb "}),
        blocked_number_types=frozenset({"PREMIUM_RATE"}),
        blocked_prefixes=frozenset({"+1 900"}),
    )
    assert policy.allowed_countries == {"US", "GB"}
    assert policy.blocked_number_types == {"premium_rate"}
    assert policy.blocked_prefixes == {"+1900"}


def test_default_blocked_types_are_the_documented_ones() -> None:
    assert us_only().blocked_number_types == {
        "premium_rate",
        "shared_cost",
        "uan",
        "personal_number",
        "voicemail",
    }


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"allowed_countries": frozenset({"XX"})}, "unknown country code"),
        ({"allowed_countries": frozenset({"UK"})}, "unknown country code"),
        (
            {"allowed_countries": frozenset({"US"}), "blocked_number_types": frozenset({"cheap"})},
            "unknown number type",
        ),
        (
            {"allowed_countries": frozenset({"US"}), "blocked_prefixes": frozenset({"1900"})},
            "blocked_prefixes",
        ),
        (
            {"allowed_countries": frozenset({"US"}), "allowed_prefixes": frozenset({"+１"})},
            "allowed_prefixes",
        ),
    ],
)
def test_invalid_policy_values_are_refused_on_construction(
    kwargs: dict[str, frozenset[str]], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        DestinationPolicy(**kwargs)


@pytest.mark.parametrize("address", ["--()@fax.local", "+@fax.local", "+ - .@fax.local"])
def test_punctuation_without_digits_is_refused_with_a_clear_reason(address: str) -> None:
    result = parse(address)
    assert isinstance(result, RecipientRefusal)
    assert result.reply == "553 5.1.3 the number has no digits"


def test_display_number_formats_e164_for_people() -> None:
    from bridge.numbers import display_number

    assert display_number("+12125550100") == "+1 212-555-0100"
    assert display_number("not a number") == "not a number"
