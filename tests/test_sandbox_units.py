"""Unit tests of the sandbox's pure parts: multipart framing, queries, formats, model."""

from __future__ import annotations

import io
from decimal import Decimal

import pytest
from PIL import Image

from bridge.sandbox import errors
from bridge.sandbox.faults import Faults, FaultSettings
from bridge.sandbox.formats import (
    blank_fax_tiff,
    count_pages,
    dumps,
    parse_datetime,
    sniff,
    tiff_page_count,
    timestamp,
)
from bridge.sandbox.model import FaxDocument, FaxOptions
from bridge.sandbox.multipart import MultipartError, Part, parse_multipart
from bridge.sandbox.query import Query
from bridge.sandbox.state import SandboxState

PDF = b"%PDF-1.4\n1 0 obj << /Type /Page >> endobj\n%%EOF"
RB = "43e578690a6d14bf1d776cd55e7d7e29"


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_state(step: float = 0, clock: FakeClock | None = None) -> SandboxState:
    return SandboxState(
        username="user",
        step_seconds=step,
        initial_balance=Decimal("10.0000"),
        cost_per_unit=Decimal("0.15"),
        clock=clock or FakeClock(),
    )


# --- multipart: each official client's framing (shared/interfax-api.md §8) ----------


def test_python_client_form_data_with_empty_disposition_parameters() -> None:
    body = (
        b"--b1\r\nContent-Disposition: form-data; \r\nContent-Type: application/pdf\r\n\r\n"
        + PDF
        + b"\r\n--b1--\r\n"
    )
    [part] = parse_multipart(body, "multipart/form-data; boundary=b1")
    assert part.body == PDF
    assert part.content_type == "application/pdf"
    assert part.filename is None


def test_ruby_mixed_parts_with_one_header_each_keep_their_order() -> None:
    body = (
        f"--{RB}\r\nContent-Type: application/pdf\r\n\r\n".encode()
        + PDF
        + f"\r\n--{RB}\r\nContent-Location: https://example.com/a.pdf\r\n\r\n\r\n".encode()
        + f"--{RB}\r\nContent-Type: text/plain\r\n\r\nhello\r\n--{RB}--\r\n".encode()
    )
    parts = parse_multipart(body, f"multipart/mixed; boundary={RB}")
    assert [p.body for p in parts] == [PDF, b"", b"hello"]
    assert parts[1].content_location == "https://example.com/a.pdf"
    assert parts[2].content_type == "text/plain"


def test_node_framing_empty_url_part_extra_crlf_and_no_final_crlf() -> None:
    body = (
        f"--{RB}\r\nContent-Location: https://example.com/doc\r\n\r\n".encode()
        + f"--{RB}\r\nContent-Type: application/pdf\r\n\r\n".encode()
        + PDF
        + b"\r\n\r\n"
        + f"--{RB}--".encode()
    )
    parts = parse_multipart(body, f"multipart/mixed; boundary={RB}")
    assert len(parts) == 2
    assert parts[0].content_location == "https://example.com/doc"
    assert parts[0].body == b""
    # Node's extra CRLF is part of the body (RFC 2046); a PDF is unharmed by it.
    assert parts[1].body == PDF + b"\r\n"


def test_dotnet_quoted_boundary_and_form_data_without_name() -> None:
    boundary = "6b1a0c4e-6e0b-4b7e-9a57-1f2a3c4d5e6f"
    body = (
        f"--{boundary}\r\nContent-Type: application/pdf\r\n"
        "Content-Disposition: form-data\r\n\r\n".encode()
        + PDF
        + f"\r\n--{boundary}\r\nContent-Location: https://x.test/outbound/documents/ab\r\n"
        "Content-Length: 0\r\nContent-Disposition: form-data\r\n\r\n\r\n"
        f"--{boundary}--\r\n".encode()
    )
    parts = parse_multipart(body, f'multipart/form-data; boundary="{boundary}"')
    assert parts[0].body == PDF
    assert parts[1].content_location == "https://x.test/outbound/documents/ab"


def test_php_and_java_names_and_filenames_are_read() -> None:
    body = (
        b'--B\r\nContent-Disposition: form-data; name="file0"; filename="a%20b.pdf"\r\n'
        b"Content-Type: application/pdf\r\n\r\n" + PDF + b"\r\n"
        b"--B\r\nContent-Disposition: form-data; filename*=UTF-8''r%C3%A9sum%C3%A9.txt; "
        b'name="file1"\r\n\r\ntext\r\n--B--'
    )
    parts = parse_multipart(body, "multipart/form-data; boundary=B")
    assert parts[0].filename == "a%20b.pdf"
    assert parts[1].filename == "résumé.txt"
    assert parts[1].content_type is None


def test_bare_lf_line_endings_and_folded_headers() -> None:
    body = b"--B\nContent-Type:\n application/pdf\n\n" + PDF + b"\n--B--\n"
    [part] = parse_multipart(body, "multipart/mixed; boundary=B")
    assert part.content_type == "application/pdf"
    assert part.body == PDF


def test_boundary_prefix_inside_a_body_is_not_a_delimiter() -> None:
    body = b"--B\r\nContent-Type: text/plain\r\n\r\nline\r\n--Boat\r\n--B--\r\n"
    [part] = parse_multipart(body, "multipart/mixed; boundary=B")
    assert part.body == b"line\r\n--Boat"


def test_preamble_and_epilogue_are_ignored() -> None:
    body = b"preamble\r\n--B\r\nContent-Type: text/plain\r\n\r\nx\r\n--B--\r\nepilogue"
    assert [p.body for p in parse_multipart(body, "multipart/mixed; boundary=B")] == [b"x"]


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"--B\r\n\r\nx\r\n--B--", "multipart/mixed"),
        (b"no delimiters here", "multipart/mixed; boundary=B"),
        (b"--B\r\nnot a header\r\nx\r\n--B--", "multipart/mixed; boundary=B"),
    ],
)
def test_unusable_multipart_bodies_are_refused(body: bytes, content_type: str) -> None:
    with pytest.raises(MultipartError):
        parse_multipart(body, content_type)


def test_part_without_headers_has_its_body() -> None:
    [part] = parse_multipart(b"--B\r\n\r\nraw\r\n--B--", "multipart/mixed; boundary=B")
    assert part == Part(headers={}, body=b"raw")


# --- lenient query parsing (§12.9) ---------------------------------------------------


@pytest.mark.parametrize("raw", ["True", "true", "TRUE", "1"])
def test_booleans_in_any_case(raw: str) -> None:
    assert Query(f"unreadOnly={raw}").boolean("unreadOnly", False) is True


@pytest.mark.parametrize("raw", ["False", "false", "FALSE", "0"])
def test_false_in_any_case(raw: str) -> None:
    assert Query(f"unread={raw}").boolean("unread", True) is False


def test_parameter_names_match_case_insensitively_and_unknown_ones_are_ignored() -> None:
    query = Query("FAXNUMBER=%2B1&shared=True&emailAddress=x")
    assert query.fax_number("faxNumber") == "+1"


@pytest.mark.parametrize("raw", ["%2B12125551234", "%2b12125551234", "+12125551234"])
def test_plus_in_fax_number_survives_every_encoding(raw: str) -> None:
    assert Query(f"faxNumber={raw}").fax_number("faxNumber") == "+12125551234"


@pytest.mark.parametrize("raw", ["1,2,3", "1, 2, 3", "1%2C2%2C3", "1%2C+2%2C+3"])
def test_ids_with_or_without_spaces(raw: str) -> None:
    assert Query(f"ids={raw}").ids("ids") == [1, 2, 3]


def test_python_1_0_0_tuple_ids_are_refused_not_guessed() -> None:
    with pytest.raises(errors.ApiError) as caught:
        Query("ids=%28123%2C+234%29").ids("ids")
    assert caught.value.status == 400


def test_enums_case_insensitively_to_pascal_case() -> None:
    choices = {"singleuse": "SingleUse", "multiuse": "MultiUse"}
    for raw in ("singleuse", "singleUse", "SingleUse", "SINGLEUSE"):
        assert Query(f"d={raw}").enum("d", choices, "MultiUse") == "SingleUse"
    with pytest.raises(errors.ApiError):
        Query("d=sometimes").enum("d", choices, "MultiUse")


def test_bad_numbers_and_booleans_are_400_not_defaults() -> None:
    for query, call in (
        ("limit=abc", lambda q: q.integer("limit", 25, 1)),
        ("limit=0", lambda q: q.integer("limit", 25, 1)),
        ("unread=maybe", lambda q: q.boolean("unread", False)),
        ("dateFrom=yesterday", lambda q: q.datetime("dateFrom")),
    ):
        with pytest.raises(errors.ApiError) as caught:
            call(Query(query))
        assert caught.value.code == -1030


# --- formats ----------------------------------------------------------------------


def test_dumps_keeps_decimal_places_and_key_order() -> None:
    value = {"units": Decimal("1.00"), "costPerUnit": Decimal("0.1500"), "a": [None, True]}
    assert dumps(value) == '{"units":1.00,"costPerUnit":0.1500,"a":[null,true]}'
    assert dumps(Decimal("12.3400")) == "12.3400"


def test_timestamps_are_utc_without_zone() -> None:
    assert timestamp(1475455001) == "2016-10-03T00:36:41"
    assert parse_datetime("2016-10-03T00:36:41Z") == 1475455001
    assert parse_datetime("2016-10-03T00:36:41") == 1475455001
    assert parse_datetime("2016-10-03T02:36:41+02:00") == 1475455001


def test_blank_tiff_is_a_valid_multi_page_bilevel_image() -> None:
    data = blank_fax_tiff(3, fine=True)
    assert data.startswith(b"II*\x00")
    assert tiff_page_count(data) == 3
    image = Image.open(io.BytesIO(data))
    assert image.n_frames == 3
    for frame in range(3):
        image.seek(frame)
        assert image.mode == "1"
        assert image.size[0] == 1728
        assert image.getextrema() == (255, 255)  # white pages


def test_sniffing_and_page_counting() -> None:
    assert sniff(PDF) == "application/pdf"
    assert sniff(blank_fax_tiff(1)) == "image/tiff"
    assert sniff(b"MZ\x90\x00") is None
    assert count_pages(blank_fax_tiff(4), "image/tiff") == 4
    assert count_pages(b"%PDF-1.4 /Type /Pages /Type /Page /Type/Page", "application/pdf") == 2


# --- the model -------------------------------------------------------------------


def _doc() -> list[FaxDocument]:
    return [FaxDocument("inline", "application/pdf", PDF, pages=2)]


def test_timed_progression_steps_through_negative_statuses_to_final() -> None:
    clock = FakeClock()
    state = make_state(step=10, clock=clock)
    fax = state.add_fax("+12125550100", FaxOptions(), _doc())
    seen = []
    for _ in range(5):
        seen.append(state.progress(fax).status)
        clock.now += 10
    assert seen == [-1, -2, -3, 0, 0]
    progress = state.progress(fax)
    assert progress.completion_time == fax.submit_time + 30
    assert (progress.pages_sent, progress.attempts_made, progress.units) == (2, 1, Decimal("2.00"))
    assert state.balance() == Decimal("9.7000")


@pytest.mark.parametrize(("suffix", "status"), [("0001", 3931), ("0002", 8021), ("0003", 204000)])
def test_special_numbers_force_their_failure(suffix: str, status: int) -> None:
    state = make_state()
    fax = state.add_fax("+1212555" + suffix, FaxOptions(attempts_to_perform=3), _doc())
    assert state.progress(fax).status == -1  # manual mode: waits
    state.advance(None, None)
    progress = state.progress(fax)
    assert progress.status == status
    assert progress.pages_sent == 0
    assert progress.units == Decimal("0.00")
    assert progress.attempts_made == (0 if status == 204000 else 3)
    assert state.balance() == Decimal("10.0000")


def test_postponed_fax_waits_for_its_time() -> None:
    clock = FakeClock()
    state = make_state(step=1, clock=clock)
    fax = state.add_fax("+12125550100", FaxOptions(postpone_time=clock.now + 100), _doc())
    clock.now += 50
    assert state.progress(fax).status == -1
    clock.now += 53
    assert state.progress(fax).status == 0


def test_a_fax_moved_by_hand_is_no_longer_moved_by_the_clock() -> None:
    clock = FakeClock()
    state = make_state(step=1, clock=clock)
    fax = state.add_fax("+12125550100", FaxOptions(), _doc())
    state.cancel(fax.id)
    clock.now += 100
    assert state.progress(fax).status == 403
    with pytest.raises(errors.ApiError) as caught:
        state.cancel(fax.id)
    assert (caught.value.status, caught.value.code) == (409, -162)


def test_multi_use_documents_expire_an_hour_after_last_use() -> None:
    clock = FakeClock()
    state = make_state(clock=clock)
    document = state.create_document("a.pdf", 3, "MultiUse", "Private")
    state.upload_chunk(document.id, 0, 2, b"abc")
    state.use_documents([document])
    clock.now += 3599
    assert state.get_document(document.id).status == "Ready"
    clock.now += 2
    with pytest.raises(errors.ApiError) as caught:
        state.get_document(document.id)
    assert caught.value.code == -1062


# --- faults configuration ---------------------------------------------------------


@pytest.mark.parametrize(
    "config",
    [
        [],
        {"latency": 5},
        {"error_rate": 2},
        {"error_status": 200},
        {"latency_ms": -1},
        {"drop_after_commit": True},
        {"paths": "outbound"},
    ],
)
def test_invalid_fault_configurations_are_refused(config: object) -> None:
    with pytest.raises(ValueError, match=r"\w"):
        FaultSettings.from_json(config)


async def test_rate_limit_window_slides_and_retry_after_counts_down() -> None:
    clock = FakeClock(0)
    faults = Faults(clock=clock, chance=lambda: 1.0)
    faults.configure(FaultSettings(rate_limit_per_minute=2))
    assert await faults.before("/x") is None
    clock.now = 20
    assert await faults.before("/x") is None
    clock.now = 30
    limited = await faults.before("/x")
    assert limited is not None
    assert (limited.status, limited.code, limited.headers["Retry-After"]) == (429, -1011, "30")
    clock.now = 60
    assert await faults.before("/x") is None  # the first hit left the window


async def test_latency_waits_before_matching_paths_only() -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    faults = Faults(sleep=sleep)
    faults.configure(FaultSettings(latency_ms=60, paths=("/accounts",)))
    assert await faults.before("/accounts/self/ppcards/balance") is None
    assert await faults.before("/outbound/faxes") is None
    assert waits == [0.06]
