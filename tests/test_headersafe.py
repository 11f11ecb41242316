"""Header-safe text (bridge.headersafe): hostile strings in, one-line values out.

The interpreter here (3.11.7) has CVE-2024-6923; the protective tests must pass
whatever the interpreter does, so only the single demonstration of the bug
itself (and the self-check's failure mode, which needs the bug) may skip.
"""

from __future__ import annotations

import email.policy
import random
import sys
import unicodedata
from email.headerregistry import Address
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

import pytest

from bridge import headersafe
from bridge.headersafe import (
    CVE_2024_6923_PAYLOAD,
    clean_csid,
    clean_filename,
    clean_header_text,
    clean_phone,
    clean_subject,
    decoded_header_text,
    self_check,
)

PAYLOAD = "=?utf-8?q?hello=0AX-Injected=3A_yes?="
LINE_BREAKS = "\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"

HOSTILE = [
    PAYLOAD,
    "=?utf-8?b?aGVsbG8NClgtSW5qZWN0ZWQ6IHllcw==?=",  # base64 "hello\r\nX-Injected: yes"
    "=?UTF-8?Q?hello=0D=0AX-Injected=3A_yes?=",
    "=?utf-8?q?hello?= =?utf-8?q?=0AX-Injected=3A_yes?=",
    "before =?utf-8?q?=0AX-Injected=3A_yes?= after",
    "a=?utf-8?q?=0AX-Injected=3A_yes?=b",
    # Encoded twice: one decoding leaves a live encoded word.
    "=?utf-8?q?=3D=3Futf-8=3Fq=3Fhello=3D0AX-Injected=3D3A_yes=3F=3D?=",
    # Removing the NUL / bidi character between "=" and "?" must not revive the word.
    "=\x00?utf-8?q?hello=0AX-Injected=3A_yes?=",
    "=\u202e?utf-8?q?hello=0AX-Injected=3A_yes?=",
    "=\ufeff?utf-8?q?hello=0AX-Injected=3A_yes?=",
    "hello\r\nX-Injected: yes",
    "hello\nX-Injected: yes",
    "hello\rX-Injected: yes",
    "hello\r\n\r\n<html>body</html>",
    "hello\u2028X-Injected: yes",
    "hello\u2029X-Injected: yes",
    "hello\x85X-Injected: yes",
    "hello\x0bX-Injected: yes",
    "hello\x0cX-Injected: yes",
    "hello\x1cX-Injected: yes",
    "hello\x00X-Injected: yes",
    "hello\x1b[31mred",
    "\u202egnp.exe",
    "invoice\u202efdp.exe",
    "x" * 5000 + "\r\nX-Injected: yes",
    "\udcff\udc80 surrogate-escaped bytes",
]


def interpreter_is_vulnerable() -> bool:
    """True when setting the raw payload as a Subject writes an extra header line."""
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["Subject"] = PAYLOAD
    parsed = BytesParser(policy=email.policy.default).parsebytes(msg.as_bytes())
    return "X-Injected" in parsed


def roundtrip(headers: list[tuple[str, str | Address]]) -> EmailMessage:
    msg = EmailMessage(policy=email.policy.SMTP)
    for name, value in headers:
        msg[name] = value
    parsed = BytesParser(policy=email.policy.default).parsebytes(msg.as_bytes())
    assert isinstance(parsed, EmailMessage)
    return parsed


def assert_one_line(text: str) -> None:
    assert text.splitlines() == ([text] if text else [])
    assert not set(text) & set(LINE_BREAKS + BIDI + "\x00")


# --------------------------------------------------------------------------- the bug itself


@pytest.mark.skipif(
    not interpreter_is_vulnerable(),
    reason=f"Python {sys.version.split()[0]} is fixed for CVE-2024-6923; nothing to demonstrate",
)
def test_without_cleaning_this_interpreter_writes_the_injected_header() -> None:
    parsed = roundtrip([("Subject", PAYLOAD)])
    assert sorted(parsed.keys()) == ["Subject", "X-Injected"]


@pytest.mark.parametrize("value", HOSTILE)
def test_cleaned_values_never_create_or_change_headers(value: str) -> None:
    """The cheap oracle: the re-parsed header names are exactly the ones we set."""
    subject = clean_header_text(value, max_len=200)
    decoded = decoded_header_text(value)
    csid = clean_csid(value)
    parsed = roundtrip(
        [
            (
                "From",
                Address(display_name=clean_header_text(value, max_len=78), addr_spec="f@x.example"),
            ),
            ("To", "r@x.example"),
            ("Subject", subject),
            ("Comments", decoded),
            ("X-Fax-CSID", csid),
            ("X-Fax-Caller-ID", clean_phone(value)),
        ]
    )
    assert parsed.keys() == ["From", "To", "Subject", "Comments", "X-Fax-CSID", "X-Fax-Caller-ID"]
    # What we wrote is what a reader gets back: nothing was decoded on the way.
    assert str(parsed["Subject"]) == subject
    assert str(parsed["Comments"]) == decoded
    assert str(parsed["X-Fax-CSID"]) == csid
    for _, header in parsed.items():
        assert_one_line(str(header))


@pytest.mark.parametrize("value", HOSTILE)
def test_cleaned_attachment_names_never_create_headers(value: str) -> None:
    name = clean_filename(value + ".pdf", fallback="fax.pdf")
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["Subject"] = "files"
    msg.set_content("see attachment\n")
    msg.add_attachment(b"%PDF-1.4\n", maintype="application", subtype="pdf", filename=name)
    parsed = BytesParser(policy=email.policy.default).parsebytes(msg.as_bytes())
    assert isinstance(parsed, EmailMessage)
    parts = list(parsed.iter_attachments())
    assert len(parts) == 1
    assert parts[0].get_filename() == name
    assert sorted(parts[0].keys()) == [
        "Content-Disposition",
        "Content-Transfer-Encoding",
        "Content-Type",
        "MIME-Version",
    ]


def test_self_check_passes_with_our_cleaners() -> None:
    self_check()


@pytest.mark.skipif(
    not interpreter_is_vulnerable(),
    reason=f"Python {sys.version.split()[0]} is fixed for CVE-2024-6923; nothing to detect",
)
def test_self_check_refuses_to_pass_when_cleaning_is_broken(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(headersafe, "clean_header_text", lambda value, max_len: value)
    monkeypatch.setattr(headersafe, "decoded_header_text", lambda raw: raw)
    with pytest.raises(RuntimeError, match="X-Injected"):
        self_check()


def test_self_check_uses_exactly_the_cve_payload() -> None:
    assert CVE_2024_6923_PAYLOAD == PAYLOAD


# --------------------------------------------------------------------------- clean_header_text


def test_decoding_the_cve_payload_loses_its_newline() -> None:
    assert decoded_header_text(PAYLOAD) == "hello X-Injected: yes"


def test_undecoded_payload_is_kept_as_inert_text() -> None:
    assert clean_header_text(PAYLOAD, max_len=200) == "= ?utf-8?q?hello=0AX-Injected=3A_yes?="


@pytest.mark.parametrize("brk", list(LINE_BREAKS))
def test_every_line_break_becomes_a_space(brk: str) -> None:
    assert clean_header_text(f"hello{brk}X-Injected: yes", max_len=200) == "hello X-Injected: yes"


@pytest.mark.parametrize(
    "ctl", ["\x00", "\x01", "\x07", "\x08", "\x1b", "\x1f", "\x7f", "\x80", "\x9f"]
)
def test_other_controls_become_a_space(ctl: str) -> None:
    assert clean_header_text(f"a{ctl}b", max_len=10) == "a b"


@pytest.mark.parametrize("mark", [*BIDI, "\ufeff"])
def test_bidi_controls_are_removed(mark: str) -> None:
    assert clean_header_text(f"invoice{mark}fdp.exe", max_len=50) == "invoicefdp.exe"


def test_no_code_point_can_smuggle_a_line_break_or_a_control() -> None:
    risky = [
        chr(cp)
        for cp in range(0x110000)
        if unicodedata.category(chr(cp)) in {"Cc", "Cf", "Cs", "Zl", "Zp", "Zs"}
    ]
    for ch in risky:
        out = clean_header_text(f"a{ch}b{ch}", max_len=20)
        assert out.splitlines() == [out], repr(ch)
        assert all(unicodedata.category(c) not in {"Cc", "Zl", "Zp", "Cs"} for c in out), repr(ch)
        assert not set(out) & set(BIDI)


def test_whitespace_collapses_and_ends_are_trimmed() -> None:
    assert clean_header_text("  a \t\u00a0 b\u3000c  ", max_len=20) == "a b c"


def test_ordinary_text_is_unchanged() -> None:
    text = "Grüße aus Köln – 東京 ✓ (50% off) a=b?"
    assert clean_header_text(text, max_len=200) == text


def test_no_truncation_at_exactly_max_len() -> None:
    assert clean_header_text("x" * 20, max_len=20) == "x" * 20


def test_truncation_marks_the_cut_within_max_len() -> None:
    out = clean_header_text("x" * 21, max_len=20)
    assert out == "x" * 19 + "…"
    assert len(out) == 20


def test_truncation_counts_characters_not_bytes() -> None:
    out = clean_header_text("ä" * 300, max_len=10)
    assert out == "ä" * 9 + "…"


def test_very_long_values_are_bounded() -> None:
    out = clean_header_text("word " * 100_000 + "\r\nX-Injected: yes", max_len=998)
    assert len(out) == 998
    assert_one_line(out)


def test_max_len_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_len"):
        clean_header_text("x", max_len=0)


def test_clean_subject_limits_to_200_characters() -> None:
    assert clean_subject("Invoice\r\nBcc: x@y") == "Invoice Bcc: x@y"
    out = clean_subject("s" * 500)
    assert len(out) == 200
    assert out.endswith("…")
    assert clean_subject(None) == ""


# --------------------------------------------------------------------------- decoded_header_text


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("=?utf-8?q?Gr=C3=BC=C3=9Fe?=", "Grüße"),
        ("=?iso-8859-1?q?Andr=E9?= Pirard", "André Pirard"),
        ("=?utf-8?b?SGVsbG8gV29ybGQ=?=", "Hello World"),
        ("=?utf-8?q?a?= =?utf-8?q?b?=", "ab"),
        ("plain text", "plain text"),
        ("Grüße =?utf-8?q?aus?= Köln", "Grüße aus Köln"),
        ("=?x-unknown?q?abc?=", "abc"),
        ("=?utf-8?b?////?=", "\ufffd\ufffd\ufffd"),
        ("=?utf-8?q?unterminated", "= ?utf-8?q?unterminated"),
        ("", ""),
    ],
)
def test_decoded_header_text_decodes_leniently(raw: str, expected: str) -> None:
    assert decoded_header_text(raw) == expected


def test_double_encoded_payload_stays_inert_after_one_decoding() -> None:
    twice = "=?utf-8?q?=3D=3Futf-8=3Fq=3Fhello=3D0AX-Injected=3D3A_yes=3F=3D?="
    # Q-encoding turns the inner "_" into a space; the inner word is no longer live.
    assert decoded_header_text(twice) == "= ?utf-8?q?hello=0AX-Injected=3A yes?="


def test_decoded_header_text_respects_max_len() -> None:
    assert decoded_header_text("=?utf-8?q?" + "a" * 60 + "?=", max_len=10) == "a" * 9 + "…"


# --------------------------------------------------------------------------- CSID and phone


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+1 212 555 0100", "+1 212 555 0100"),
        ("  HQ Fax  ", "HQ Fax"),
        ("FAX\r\nX-Injected: yes", "FAX X-Injected: yes"),
        ("\u202eXAF", "XAF"),
        ("A" * 40, "A" * 20),
        ("A" * 19 + " B", "A" * 19),
        ("", ""),
        (None, ""),
    ],
)
def test_clean_csid(raw: str | None, expected: str) -> None:
    assert clean_csid(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+1 (212) 555-0100", "+1 (212) 555-0100"),
        ("+1 212\r\nX-Injected: 555", "+1 212 - 555"),
        ("Anonymous", ""),
        ("+1.212.555.0100", "+1 212 555 0100"),
        ("＋１２１２", ""),
        ("٢١٢", ""),
        ("=?utf-8?q?=0A?=", "-8 0"),
        ("1" * 30, "1" * 20),
        (None, ""),
    ],
)
def test_clean_phone_keeps_only_the_whitelist(raw: str | None, expected: str) -> None:
    assert clean_phone(raw) == expected


# --------------------------------------------------------------------------- file names


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("report.pdf", "report.pdf"),
        ("Rechnung März.PDF", "Rechnung März.PDF"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\scan.tif", "scan.tif"),
        ("/abs/path/to/doc.docx", "doc.docx"),
        (".htaccess", "fax.htaccess"),
        (".pdf", "fax.pdf"),
        ("...", "fax.pdf"),
        ("", "fax.pdf"),
        (None, "fax.pdf"),
        ("  . hidden.pdf", "hidden.pdf"),
        ("name.pdf...", "name.pdf"),
        ('a<b>c:d"e|f?g*h.pdf', "a_b_c_d_e_f_g_h.pdf"),
        ("in\u202efdp.exe", "infdp.exe"),
        ("line\r\nbreak.pdf", "line break.pdf"),
        ("nul\x00byte.pdf", "nul byte.pdf"),
        ("CON.pdf", "_CON.pdf"),
        ("lpt1", "_lpt1"),
        ("e\u0301t\u00e9.pdf", "\u00e9t\u00e9.pdf"),
    ],
)
def test_clean_filename(raw: str | None, expected: str) -> None:
    assert clean_filename(raw, fallback="fax.pdf") == expected


def test_long_file_names_keep_their_extension() -> None:
    out = clean_filename("a" * 300 + ".pdf", fallback="fax.pdf")
    assert out == "a" * 96 + ".pdf"
    assert len(clean_filename("b" * 300, fallback="fax.pdf", max_len=50)) == 50


def test_an_overlong_extension_is_not_treated_as_one() -> None:
    out = clean_filename("x." + "y" * 200, fallback="fax.pdf", max_len=20)
    assert out == "x." + "y" * 18


def test_fallback_is_cleaned_and_must_not_be_empty() -> None:
    assert clean_filename("", fallback="../fax\r\n.pdf") == "fax.pdf"
    with pytest.raises(ValueError, match="fallback"):
        clean_filename("", fallback="...")


@pytest.mark.parametrize("value", HOSTILE)
def test_file_names_never_hold_path_separators_controls_or_leading_dots(value: str) -> None:
    out = clean_filename(value, fallback="fax.pdf")
    assert out
    assert len(out) <= 100
    assert not set(out) & set('/\\<>:"|?*' + LINE_BREAKS + BIDI + "\x00")
    assert not out.startswith((".", " "))


def _reference_clean(value: str) -> str:
    """The cleaning rule spelled out one character at a time."""
    bidi = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\ufeff"
    out = []
    for ch in value:
        code = ord(ch)
        if code < 0x20 or 0x7F <= code <= 0x9F or ch in "\u2028\u2029":
            out.append(" ")
        elif ch not in bidi and not 0xD800 <= code <= 0xDFFF:
            out.append(ch)
    return " ".join("".join(out).split()).replace("=?", "= ?")


def test_the_table_driven_cleaning_matches_the_rule_character_by_character() -> None:
    rng = random.Random(6923)
    alphabet = [chr(c) for c in (*range(0x00, 0x100), *range(0x2000, 0x2070), 0xFEFF)]
    alphabet += ["\ud800", "\udfff", "\U0001f4e0", "=", "?"]
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
        assert clean_header_text(text, max_len=1000) == _reference_clean(text)


@pytest.mark.parametrize("cleaner", ["clean_csid", "clean_phone"])
def test_self_check_fails_when_one_of_the_remote_value_cleaners_stops_cleaning(
    cleaner: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Independent of the interpreter: a CR/LF in an X-Fax-* value adds a header anywhere.
    monkeypatch.setattr(headersafe, cleaner, lambda value: value)
    with pytest.raises(RuntimeError, match="header self-check failed"):
        self_check()


def test_self_check_runs_every_cleaner_on_hostile_input(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, list[str]] = {}
    for name in ("clean_header_text", "decoded_header_text", "clean_csid", "clean_phone"):
        original = getattr(headersafe, name)

        def spy(*args: Any, _name: str = name, _original: Any = original, **kw: Any) -> Any:
            seen.setdefault(_name, []).append(args[0])
            return _original(*args, **kw)

        monkeypatch.setattr(headersafe, name, spy)
    self_check()
    assert set(seen) == {"clean_header_text", "decoded_header_text", "clean_csid", "clean_phone"}
    for name, inputs in seen.items():
        assert any("\r" in value or "\n" in value or "=0A" in value.upper() for value in inputs), (
            name
        )
