"""Subject tags, X-Fax-* headers, defaults and their precedence."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from bridge.faxmodels import Orientation, PageSize, Resolution
from bridge.faxoptions import (
    BodyMode,
    FaxDefaults,
    FaxOptions,
    InvalidFaxOption,
    parse_fax_headers,
    parse_subject,
    resolve_options,
)

BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2024, 6, 3, 8, 0, tzinfo=UTC)  # 10:00 in Berlin


def resolve(
    subject: str = "Invoice",
    headers: tuple[tuple[str, str], ...] = (),
    defaults: FaxDefaults | None = None,
) -> tuple[str, FaxOptions]:
    return resolve_options(
        subject, headers, defaults=defaults or FaxDefaults(), timezone=BERLIN, now=NOW
    )


@pytest.mark.parametrize(
    ("subject", "visible", "field", "value"),
    [
        ("Invoice /rs", "Invoice", "resolution", Resolution.STANDARD),
        ("/RF Invoice", "Invoice", "resolution", Resolution.FINE),
        ("Invoice /b", "Invoice", "body", BodyMode.COVER),
        ("Invoice /bn", "Invoice", "body", BodyMode.IGNORE),
        ("Invoice /BB", "Invoice", "body", BodyMode.DOCUMENT),
        ("Invoice /hn", "Invoice", "page_header", "N"),
        ("Invoice /h ACME {TotalPages}", "Invoice", "page_header", "ACME {TotalPages}"),
        ("Invoice /h ACME Corp /rf", "Invoice", "resolution", Resolution.FINE),
        ('/h "ACME /rf" Invoice', "Invoice", "page_header", "ACME /rf"),
    ],
)
def test_subject_tag_sets_its_option_and_leaves_the_subject(
    subject: str, visible: str, field: str, value: object
) -> None:
    shown, options = resolve(subject)
    assert shown == visible
    assert getattr(options, field) == value


def test_page_header_text_runs_to_the_next_tag() -> None:
    tags = parse_subject("Quote /h ACME Corp /bn", timezone=BERLIN)
    assert (tags.visible_subject, tags.page_header, tags.body) == (
        "Quote",
        "ACME Corp",
        BodyMode.IGNORE,
    )


def test_unknown_slash_words_stay_in_the_subject() -> None:
    assert parse_subject("Order 2024/05 /x and/or /", timezone=BERLIN).visible_subject == (
        "Order 2024/05 /x and/or /"
    )


def test_postpone_tag_is_read_in_the_configured_time_zone() -> None:
    shown, options = resolve("Report /d 2024-06-04 14:30")
    assert shown == "Report"
    assert options.postpone == datetime(2024, 6, 4, 12, 30, tzinfo=UTC)


def test_postpone_at_exactly_30_days_is_allowed() -> None:
    limit = (NOW + timedelta(days=30)).astimezone(BERLIN)
    _, options = resolve(f"x /d {limit:%Y-%m-%d %H:%M}")
    assert options.postpone == NOW + timedelta(days=30)


@pytest.mark.parametrize(
    ("subject", "message"),
    [
        ("x /d 2024-06-03 09:59", "is in the past"),  # 07:59 UTC
        ("x /d 2024-06-03 10:00", "is in the past"),  # exactly now
        ("x /d 2024-07-03 10:01", "more than 30 days ahead"),
        ("x /d 2024-06-04", "needs a date and time"),
        ("x /d tomorrow 10:00", "needs a date and time"),
        ("x /d 2024-02-30 10:00", "is not a valid date and time"),
        ("x /d 2024-06-04 25:00", "is not a valid date and time"),
        ("x /h", "needs a header text"),
        ("x /h /rf", "needs a header text"),
        ('x /h "open', "missing its closing quote"),
        ("x /rs /rf", "/rs and /rf contradict each other"),
        ("x /b /bn", "/b and /bn contradict each other"),
        ("x /hn /h ACME", "/hn and /h contradict each other"),
        ("x /h " + "a" * 201, "1 to 200 printable characters"),
    ],
)
def test_invalid_subject_tags_are_rejected_with_a_reason(subject: str, message: str) -> None:
    with pytest.raises(InvalidFaxOption, match=message):
        resolve(subject)


def test_repeating_the_same_tag_is_not_a_conflict() -> None:
    assert resolve("x /rf /rf")[1].resolution is Resolution.FINE


@pytest.mark.parametrize(
    ("name", "value", "field", "expected"),
    [
        ("x-fax-resolution", "Fine", "resolution", Resolution.FINE),
        ("x-fax-page-size", "LETTER", "page_size", PageSize.LETTER),
        ("x-fax-orientation", "landscape", "orientation", Orientation.LANDSCAPE),
        ("x-fax-csid", "+1 212 555 0100", "csid", "+1 212 555 0100"),
        ("x-fax-page-header", "From {From}", "page_header", "From {From}"),
        ("x-fax-page-header", "N", "page_header", "N"),
        (
            "x-fax-postpone",
            "2024-06-04T14:30",
            "postpone",
            datetime(2024, 6, 4, 12, 30, tzinfo=UTC),
        ),
        (
            "x-fax-postpone",
            "2024-06-04 14:30Z",
            "postpone",
            datetime(2024, 6, 4, 14, 30, tzinfo=UTC),
        ),
        (
            "x-fax-postpone",
            "2024-06-04T14:30:00-04:00",
            "postpone",
            datetime(2024, 6, 4, 18, 30, tzinfo=UTC),
        ),
    ],
)
def test_header_sets_its_option(name: str, value: str, field: str, expected: object) -> None:
    assert getattr(resolve(headers=((name, value),))[1], field) == expected


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("x-fax-resolution", "superfine", "X-Fax-Resolution: expected one of standard|fine"),
        ("x-fax-page-size", "a5", "X-Fax-Page-Size: expected one of a4|letter|legal|b4"),
        ("x-fax-orientation", "diagonal", "X-Fax-Orientation"),
        ("x-fax-csid", "A" * 21, "X-Fax-CSID: a CSID is 1 to 20 printable ASCII"),
        ("x-fax-csid", "A\nB", "X-Fax-CSID"),
        ("x-fax-csid", "Müller", "X-Fax-CSID"),
        ("x-fax-csid", "", "X-Fax-CSID"),
        ("x-fax-page-header", "a\nX-Injected: yes", "X-Fax-Page-Header"),
        ("x-fax-page-header", "\u202eevil", "X-Fax-Page-Header"),
        ("x-fax-postpone", "next week", "X-Fax-Postpone: expected a time"),
        (
            "x-fax-postpone",
            "2024-13-01T10:00",
            "X-Fax-Postpone: 2024-13-01T10:00 is not a valid date",
        ),
        ("x-fax-postpone", "2020-01-01T10:00", "in the past"),
    ],
)
def test_invalid_header_values_are_rejected_naming_the_header(
    name: str, value: str, message: str
) -> None:
    with pytest.raises(InvalidFaxOption, match=message.replace("|", r"\|")):
        resolve(headers=((name, value),))


def test_one_header_twice_with_different_values_is_a_conflict() -> None:
    headers = (("x-fax-resolution", "fine"), ("x-fax-resolution", "standard"))
    with pytest.raises(InvalidFaxOption, match="contradict"):
        parse_fax_headers(headers, timezone=BERLIN)


def test_unknown_fax_headers_are_ignored() -> None:
    assert parse_fax_headers((("x-fax-pages", "3"),), timezone=BERLIN).resolution is None


def test_precedence_is_subject_tag_then_header_then_default() -> None:
    defaults = FaxDefaults(
        resolution=Resolution.STANDARD,
        page_header="default header",
        page_size=PageSize.A4,
        csid="DEFAULT",
        body=BodyMode.DOCUMENT,
    )
    headers = (
        ("x-fax-resolution", "standard"),
        ("x-fax-page-header", "header header"),
        ("x-fax-page-size", "legal"),
    )
    _, tagged = resolve("x /rf /h tag header /bn", headers, defaults)
    assert (tagged.resolution, tagged.page_header, tagged.body) == (
        Resolution.FINE,
        "tag header",
        BodyMode.IGNORE,
    )
    _, from_headers = resolve("x", headers, defaults)
    assert (from_headers.resolution, from_headers.page_header, from_headers.page_size) == (
        Resolution.STANDARD,
        "header header",
        PageSize.LEGAL,
    )
    _, from_defaults = resolve("x", (), defaults)
    assert from_defaults == FaxOptions(
        resolution=Resolution.STANDARD,
        page_size=PageSize.A4,
        csid="DEFAULT",
        page_header="default header",
        body=BodyMode.DOCUMENT,
    )


def test_subject_postpone_wins_over_header_postpone() -> None:
    headers = (("x-fax-postpone", "2024-06-05T10:00"),)
    assert resolve("x /d 2024-06-04 10:00", headers)[1].postpone == datetime(
        2024, 6, 4, 8, 0, tzinfo=UTC
    )


@pytest.mark.parametrize("defaults", [{"csid": "x" * 21}, {"page_header": ""}])
def test_invalid_defaults_are_refused_at_construction(defaults: dict[str, str]) -> None:
    with pytest.raises(ValueError, match=r"CSID|page header"):
        FaxDefaults(**defaults)  # type: ignore[arg-type]
