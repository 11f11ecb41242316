"""Every fax status code of shared/interfax-api.md §3 has a meaning a sender can read."""

from __future__ import annotations

import pytest

from bridge import fax_status
from bridge.fax_status import StatusCategory as C

# The table of §3, transcribed independently of bridge/fax_status.py: code -> (family, a
# word the description must contain).
LISTED: dict[int, tuple[C, str]] = {
    -1: (C.IN_PROGRESS, "prepared"),
    -11: (C.IN_PROGRESS, "prepared"),
    -2: (C.IN_PROGRESS, "queue"),
    -3: (C.IN_PROGRESS, "sent"),
    -22: (C.WAITING_FOR_CREDIT, "credit"),
    0: (C.SENT, "successfully"),
    1: (C.INTERNAL, "internal"),
    2: (C.TELEPHONY, "line"),
    12: (C.TELEPHONY, "line"),
    256: (C.INTERNAL, "internal"),
    263: (C.BUSY, "busy"),
    403: (C.CANCELLED, "cancelled"),
    3223: (C.DISCONNECTED, "disconnected"),
    3224: (C.NO_ANSWER, "did not respond"),
    3230: (C.DISCONNECTED, "negotiated"),
    3268: (C.TELEPHONY, "page break"),
    3936: (C.HUMAN_ANSWERED, "person"),
    3937: (C.BUSY, "busy"),
    6022: (C.NUMBER_CHANGED, "changed"),
    6002: (C.NO_ROUTE, "route"),
    7200: (C.UNKNOWN, "unspecified"),
    8010: (C.DISCONNECTED, "hung up"),
    204000: (C.RENDERING, "converted"),
    204001: (C.RENDERING, "converted"),
    205000: (C.QUOTA, "credit"),
    205001: (C.INTERNAL, "internal"),
    206001: (C.INTERNAL, "internal"),
}
for _code in (3072, 3080, 3300, 3510, 3830, 7004, 7012, 7013):
    LISTED[_code] = (C.TELEPHONY, "line")
for _code in (3211, 3220, 3225, 3231, 3233, 3264, 3267, 3269):
    LISTED[_code] = (C.INCOMPATIBLE, "compatible")
for _code in (3912, 3932, 3938, 6001, 6027, 6028):
    LISTED[_code] = (C.NOT_OPERATIONAL, "not in service")
for _code in (3931, 3933, 6017, 8025):
    LISTED[_code] = (C.BUSY, "busy")
for _code in (3935, 6018, 8021):
    LISTED[_code] = (C.NO_ANSWER, "out of paper")
for _code in (6021, 6029):
    LISTED[_code] = (C.REJECTED, "rejected")
for _code in (6088, 6095, 6097, 6099, 6100):
    LISTED[_code] = (C.INCOMPATIBLE, "incompatible")


@pytest.mark.parametrize(("code", "expected"), sorted(LISTED.items()))
def test_every_listed_code_has_its_family_and_a_readable_description(
    code: int, expected: tuple[C, str]
) -> None:
    family, word = expected
    assert fax_status.category(code) is family
    text = fax_status.describe(code)
    assert word in text.lower()
    assert text.endswith(f"(InterFAX status {code})")


@pytest.mark.parametrize("code", [-4, -99, -1004, -1062, -123456])
def test_any_other_negative_code_is_being_handled(code: int) -> None:
    assert fax_status.category(code) is C.IN_PROGRESS
    assert "being handled" in fax_status.describe(code).lower()
    assert not fax_status.is_final(code)


@pytest.mark.parametrize("code", [6003, 6050, 6087, 6101, 6127])
def test_unlisted_codes_in_the_6003_6127_range_are_telephony_or_incompatibility(code: int) -> None:
    assert fax_status.category(code) is C.TELEPHONY
    assert "incompatible" in fax_status.describe(code)


@pytest.mark.parametrize("code", [5, 6128, 9999, 300000])
def test_unknown_positive_codes_are_failures_with_the_code_quoted(code: int) -> None:
    assert fax_status.category(code) is C.UNKNOWN
    assert fax_status.describe(code) == f"The fax failed (InterFAX status {code})"
    assert fax_status.is_final(code)
    assert not fax_status.is_success(code)


def test_sign_rule_zero_is_the_only_success() -> None:
    assert fax_status.is_success(0)
    assert fax_status.is_final(0)
    assert fax_status.is_final(3931)
    assert not fax_status.is_success(3931)
    assert not fax_status.is_final(-3)
    assert not fax_status.is_success(-3)


def test_descriptions_are_single_lines_safe_for_mail_headers() -> None:
    for code in [*LISTED, -4, 6050, 9999]:
        text = fax_status.describe(code)
        assert "\n" not in text
        assert "\r" not in text
        assert text[0].isupper()
