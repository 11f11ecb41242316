"""Request framing for InterFAX, bytes in and values out (shared/interfax-api.md §1, §5)."""

from __future__ import annotations

import email.parser
import email.policy
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from urllib.parse import parse_qs

import pytest

from bridge import interfax_wire as wire
from bridge.faxmodels import (
    DocumentRef,
    FaxDocument,
    FitToPage,
    Orientation,
    PageSize,
    Rendering,
    Resolution,
    SendOptions,
)
from bridge.interfax_models import Disposition

PDF = FaxDocument("a.pdf", "application/pdf", b"%PDF-1.4\n1 0 obj\n%%EOF\n")
TXT = FaxDocument("body.txt", "text/plain; charset=utf-8", "Grüße\r\n".encode())
REF = DocumentRef("https://rest.interfax.net/outbound/documents/69d6415f2be541e88809322691373fce")


def test_plus_in_a_fax_number_travels_as_percent_2b_never_as_a_plus() -> None:
    query = wire.encode_query({"faxNumber": "+1 212-555 0100"})
    assert query == "faxNumber=%2B1%20212-555%200100"
    assert parse_qs(query)["faxNumber"] == ["+1 212-555 0100"]


def test_all_send_options_become_lower_camel_case_parameters_with_lowercase_enums() -> None:
    options = SendOptions(
        reference="job-1&x=y",
        contact="Subject: hello",
        postpone_time=datetime(2030, 1, 2, 4, 5, 6, tzinfo=timezone(timedelta(hours=1))),
        retries_to_perform=3,
        csid="ACME",
        page_header="{To} {From}",
        reply_address="a@b.example",
        page_size=PageSize.A4,
        fit_to_page=FitToPage.NOSCALE,
        page_orientation=Orientation.LANDSCAPE,
        resolution=Resolution.FINE,
        rendering=Rendering.GRAYSCALE,
    )
    parsed = parse_qs(wire.encode_query(wire.send_params("+12125550100", options)))
    assert {k: v[0] for k, v in parsed.items()} == {
        "faxNumber": "+12125550100",
        "reference": "job-1&x=y",
        "contact": "Subject: hello",
        "postponeTime": "2030-01-02T03:05:06Z",
        "retriesToPerform": "3",
        "csid": "ACME",
        "pageHeader": "{To} {From}",
        "replyAddress": "a@b.example",
        "pageSize": "a4",
        "fitToPage": "noscale",
        "pageOrientation": "landscape",
        "resolution": "fine",
        "rendering": "grayscale",
    }


def test_unset_options_are_left_out_of_the_query() -> None:
    assert wire.encode_query(wire.send_params("+1", SendOptions())) == "faxNumber=%2B1"


def test_booleans_ids_and_document_disposition_are_encoded_as_interfax_reads_them() -> None:
    assert wire.encode_query({"unread": False, "allUsers": True}) == "unread=false&allUsers=true"
    assert wire.encode_query({"ids": [1, 22, 333]}) == "ids=1%2C22%2C333"
    assert wire.encode_query({"disposition": Disposition.MULTI_USE}) == "disposition=multiuse"


def test_a_naive_postpone_time_is_refused_because_its_zone_is_unknown() -> None:
    with pytest.raises(ValueError, match="naive"):
        wire.encode_query({"postponeTime": datetime(2030, 1, 1)})


def test_one_inline_document_is_the_raw_body_with_its_content_type() -> None:
    body = wire.send_body([PDF])
    assert body.content is PDF.data
    assert dict(body.headers) == {"Content-Type": "application/pdf"}


def test_one_reference_is_an_empty_body_with_a_content_location_header() -> None:
    body = wire.send_body([REF])
    assert body.content == b""
    assert dict(body.headers) == {"Content-Location": REF.uri}


def test_several_documents_are_multipart_mixed_parts_in_order() -> None:
    body = wire.send_body([PDF, REF, TXT])
    ctype = body.headers["Content-Type"]
    assert ctype.startswith("multipart/mixed; boundary=")
    raw = f"Content-Type: {ctype}\r\n\r\n".encode() + body.content
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(raw)
    parts = list(message.iter_parts())
    assert [p.get_content_type() for p in parts][::2] == ["application/pdf", "text/plain"]
    assert "Content-Type" not in parts[1]  # a reference part carries only Content-Location
    assert parts[2].get_content_charset() == "utf-8"
    assert parts[0].get_payload(decode=True) == PDF.data
    assert parts[1]["Content-Location"] == REF.uri
    assert parts[1].get_payload() == ""
    assert parts[2].get_payload(decode=True) == TXT.data
    assert message.defects == []


def test_multipart_framing_is_exact_rfc2046() -> None:
    body = wire.multipart_body([TXT, REF], boundary="B")
    assert body.content == (
        b"--B\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        + TXT.data
        + b"\r\n--B\r\nContent-Location: "
        + REF.uri.encode()
        + b"\r\n\r\n\r\n--B--\r\n"
    )
    assert body.headers["Content-Type"] == "multipart/mixed; boundary=B"


def test_random_boundaries_differ_and_never_occur_inside_a_document() -> None:
    first = wire.send_body([PDF, TXT]).headers["Content-Type"]
    second = wire.send_body([PDF, TXT]).headers["Content-Type"]
    assert first != second
    tricky = FaxDocument("x.txt", "text/plain", b"--B\r\n")
    with pytest.raises(ValueError, match="boundary"):
        wire.multipart_body([tricky, PDF], boundary="B")


@pytest.mark.parametrize(
    "doc",
    [
        FaxDocument("a.pdf", "application/pdf\r\nX-Evil: 1", b"x"),
        DocumentRef("https://x.example/doc\nX-Evil: 1"),
        FaxDocument("a.pdf", "application/pdfé", b"x"),
    ],
)
def test_header_injection_through_a_type_or_uri_is_refused(doc: FaxDocument | DocumentRef) -> None:
    with pytest.raises(ValueError, match="single line"):
        wire.validate_documents([doc])
    with pytest.raises(ValueError, match="single line"):
        wire.send_body([doc, PDF])


def test_a_fax_without_documents_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        wire.validate_documents([])


def test_chunk_ranges_cover_every_byte_once_with_inclusive_range_headers() -> None:
    ranges = list(wire.chunk_ranges(17_334_085, wire.MAX_CHUNK_SIZE))
    assert ranges[0] == (0, 1_048_576)
    assert wire.range_header(*ranges[-1]) == "bytes=16777216-17334084"
    assert sum(end - start for start, end in ranges) == 17_334_085
    assert [wire.range_header(*r) for r in wire.chunk_ranges(9147, 4096)] == [
        "bytes=0-4095",
        "bytes=4096-8191",
        "bytes=8192-9146",
    ]


@pytest.mark.parametrize("size", [0, wire.MAX_CHUNK_SIZE + 1, -5])
def test_chunks_above_one_mebibyte_or_empty_are_refused(size: int) -> None:
    with pytest.raises(ValueError, match="chunk_size"):
        list(wire.chunk_ranges(10, size))


def test_ids_come_from_the_last_segment_of_an_absolute_location() -> None:
    assert wire.fax_id_from_location("https://rest.interfax.net/outbound/faxes/750682415") == (
        750682415
    )
    assert wire.location_id(REF.uri + "/") == "69d6415f2be541e88809322691373fce"


@pytest.mark.parametrize(
    "location",
    [
        None,
        "",
        "/outbound/faxes/12",
        "outbound/faxes/12",
        "ftp://h/outbound/faxes/12",
        "https://h/",
    ],
)
def test_a_missing_or_relative_location_is_a_wire_error(location: str | None) -> None:
    with pytest.raises(wire.WireError):
        wire.fax_id_from_location(location)


def test_a_non_numeric_fax_id_is_a_wire_error() -> None:
    with pytest.raises(wire.WireError, match="numeric"):
        wire.fax_id_from_location("https://h/outbound/faxes/abc")


def test_retry_after_in_seconds_or_as_an_http_date() -> None:
    now = datetime(2024, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert wire.parse_retry_after("30", now) == 30.0
    assert wire.parse_retry_after("Mon, 01 Jan 2024 12:01:30 GMT", now) == 90.0
    assert wire.parse_retry_after("Mon, 01 Jan 2024 11:00:00 GMT", now) == 0.0
    assert wire.parse_retry_after(None, now) is None
    assert wire.parse_retry_after("soon", now) is None
    assert wire.parse_retry_after("-3", now) is None


def test_json_bodies_keep_decimal_digits_and_empty_bodies_are_none() -> None:
    assert wire.parse_json(b"3.8500") == Decimal("3.8500")
    assert wire.parse_json(b'[{"units": 1.00}]') == [{"units": Decimal("1.00")}]
    assert wire.parse_json(b"") is None
    assert wire.parse_json(b"  \r\n") is None
    with pytest.raises(wire.WireError, match="not JSON"):
        wire.parse_json(b"<html>502 Bad Gateway</html>")


def test_error_bodies_yield_code_message_and_more_info() -> None:
    body = (
        b'{"code":-1005,"message":"Fax resource not found",'
        b'"moreInfo":"Fax resource 1234 not found or not accessible by user u"}'
    )
    err = wire.parse_error_body(body)
    assert (err.code, err.message) == (-1005, "Fax resource not found")
    assert err.more_info is not None
    assert err.more_info.startswith("Fax resource 1234")
    assert wire.parse_error_body(b'{"code":-1062,"message":"m","moreInfo":null}').more_info is None


def test_foreign_error_bodies_are_tolerated() -> None:
    assert wire.parse_error_body(b"") == wire.ErrorBody()
    html = wire.parse_error_body(b"<html>\n<b>Service\n Unavailable</b></html>")
    assert html.code is None
    assert html.message == "<html> <b>Service Unavailable</b></html>"
    assert wire.parse_error_body(b'{"code":"x","message":5}') == wire.ErrorBody()
    assert wire.parse_error_body(b"\xff\xfe").message is not None


def test_next_cursor_is_the_smallest_id_of_a_full_page() -> None:
    assert wire.next_cursor(3, None, [90, 80, 70]) == 70
    assert wire.next_cursor(3, 70, [60, 50, 40]) == 40
    assert wire.next_cursor(3, 70, [60, 50]) is None
    assert wire.next_cursor(3, None, []) is None


def test_next_cursor_refuses_a_server_that_ignores_it() -> None:
    with pytest.raises(wire.WireError, match="ignored lastId=70"):
        wire.next_cursor(3, 70, [90, 80, 70])
