"""Hollowed parsing: long base64 runs skip the email package, with the same results."""

from __future__ import annotations

import base64
import os
import tracemalloc

import pytest

from bridge.mailhollow import hollow
from bridge.mailparse import ParsedMail, ParseLimits, parse_message
from tests import mail_samples as s

DEFAULT = ParseLimits()
EVERY_RUN = ParseLimits(hollow_min_bytes=1)
NEVER = ParseLimits(hollow_min_bytes=DEFAULT.max_message_bytes + 1)


def parsed(raw: bytes, limits: ParseLimits) -> ParsedMail:
    result = parse_message(raw, limits=limits)
    assert isinstance(result, ParsedMail), result
    return result


def same_either_way(raw: bytes) -> ParsedMail:
    """Parse ``raw`` hollowing every run, the default runs and none; all must agree."""
    expected = parsed(raw, NEVER)
    assert parsed(raw, EVERY_RUN) == expected
    assert parsed(raw, DEFAULT) == expected
    return expected


def lf(raw: bytes) -> bytes:
    return raw.replace(b"\r\n", b"\n")


def big_pdf(size: int = 300_000) -> bytes:
    return s.PDF + os.urandom(size)


def with_part(part: str, *, body: str | None = "See attached.\n") -> bytes:
    return s.mixed(body, part, subject="hollow")


SAMPLES = {
    "thunderbird": s.thunderbird(),
    "gmail": s.gmail(),
    "outlook": s.outlook(),
    "apple": s.apple_mail(),
    "forwarded": s.forwarded(),
    "quoted reply": s.quoted_reply(),
    "html qp": s.html_only_qp(),
    "text": s.text_only(),
}


@pytest.mark.parametrize("name", sorted(SAMPLES))
@pytest.mark.parametrize("endings", ["crlf", "lf"])
def test_client_samples_parse_the_same_hollowed_or_not(name: str, endings: str) -> None:
    raw = SAMPLES[name]
    same_either_way(lf(raw) if endings == "lf" else raw)


def test_a_large_attachment_is_decoded_straight_from_the_message() -> None:
    data = big_pdf()
    raw = with_part(s.attachment_part(data, filename="scan.pdf"))
    skeleton, hollows = hollow(raw, min_bytes=DEFAULT.hollow_min_bytes)
    assert hollows is not None
    assert len(hollows.spans) == 1
    assert len(skeleton) < 2_000
    result = same_either_way(raw)
    assert [a.data for a in result.attachments] == [data]


def test_a_large_attachment_in_a_forwarded_message_is_found() -> None:
    data = big_pdf()
    inner = with_part(s.attachment_part(data, filename="inner.pdf")).decode()
    raw = s.crlf(
        f"From: {s.FROM}\nTo: {s.TO}\nSubject: fwd\nMIME-Version: 1.0\n"
        "Content-Type: multipart/mixed; boundary=OUT\n\n--OUT\n"
        "Content-Type: text/plain\n\nFYI\n--OUT\nContent-Type: message/rfc822\n\n"
        f"{inner}\n--OUT--\n"
    )
    result = same_either_way(raw)
    assert [a.data for a in result.attachments] == [data]


def test_base64_without_padding_falls_back_to_the_email_package() -> None:
    encoded = base64.encodebytes(big_pdf(300_001)).decode().rstrip("=\n") + "\n"
    part = (
        'Content-Type: application/pdf; name="a.pdf"\nContent-Transfer-Encoding: base64\n'
        'Content-Disposition: attachment; filename="a.pdf"\n\n' + encoded
    )
    result = same_either_way(with_part(part))
    assert len(result.attachments[0].data) == 300_001 + len(s.PDF)


def test_padding_in_the_middle_and_a_blank_line_inside_decode_like_the_email_package() -> None:
    first = base64.encodebytes(big_pdf(100_001)).decode()
    second = base64.encodebytes(os.urandom(100_000)).decode()
    for body in (first + second, first + "\n" + second):
        part = (
            "Content-Type: application/pdf\nContent-Transfer-Encoding: base64\n"
            'Content-Disposition: attachment; filename="odd.pdf"\n\n' + body
        )
        same_either_way(with_part(part))


def test_a_text_body_made_of_base64_characters_is_restored_exactly() -> None:
    armour = base64.encodebytes(os.urandom(120_000)).decode()
    body = f"Key below.\n\n-----BEGIN PGP MESSAGE-----\n\n{armour}-----END PGP MESSAGE-----\n"
    result = same_either_way(s.text_only(body))
    assert armour.replace("\n", "") in result.body[0].text.replace("\n", "")


def test_runs_in_the_preamble_and_epilogue_change_nothing() -> None:
    filler = base64.encodebytes(os.urandom(100_000)).decode()
    raw = s.crlf(
        f"From: {s.FROM}\nTo: {s.TO}\nSubject: p\nMIME-Version: 1.0\n"
        f"Content-Type: multipart/mixed; boundary=B\n\n{filler}--B\n"
        f"Content-Type: text/plain\n\nHello\n--B--\n{filler}"
    )
    assert parsed(raw, DEFAULT).body[0].text.strip() == "Hello"
    same_either_way(raw)


def test_a_forged_token_in_the_message_is_only_text() -> None:
    body = "FaxBridgeHollow" + "0" * 32 + "n0\n"
    result = same_either_way(s.text_only(body))
    assert "FaxBridgeHollow" in result.body[0].text


def test_hollowing_never_merges_lines_across_a_bare_cr() -> None:
    run = base64.encodebytes(os.urandom(100_000))
    raw = s.text_only("start\n") + run.replace(b"\n", b"\r\n")[:5000] + b"\rABCD\r\n" + run
    same_either_way(raw)


def test_parsing_a_large_attachment_costs_about_two_copies_not_six() -> None:
    """Peak Python allocations while parsing (the email package alone costs > 5x)."""
    raw = with_part(s.attachment_part(big_pdf(3_000_000), filename="big.pdf"))
    tracemalloc.start()
    try:
        result = parse_message(raw, limits=DEFAULT)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert isinstance(result, ParsedMail)
    assert peak < 1.5 * len(raw), f"peak {peak / len(raw):.2f}x the message"
