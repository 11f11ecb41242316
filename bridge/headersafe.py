"""Untrusted text made safe for mail headers (and file names).

The Python on our machines (3.11.7) has CVE-2024-6923: when a header value
contains an RFC 2047 encoded word that decodes to a newline, the ``email``
package writes it back as two header lines. This is not limited to copying a
parsed header: *setting a plain string* such as
``=?utf-8?q?hello=0AX-Injected=3A_yes?=`` as a Subject, a display name of an
``Address``, or an attachment file name makes the generator decode the word and
emit ``X-Injected: yes`` as a header of its own. So every cleaner here does this,
whatever the interpreter does:

* turns every line break and control character into a space: C0 and C1
  controls (CR, LF, NUL, TAB, VT, FF, the ``\\x1c``-``\\x1e`` separators, NEL
  ``\\x85``), DEL and U+2028/U+2029;
* removes invisible reordering characters: bidi controls (U+061C, U+200E,
  U+200F, U+202A-U+202E, U+2066-U+2069), U+FEFF, and lone surrogates (which
  would make serialisation fail);
* breaks every encoded-word opener ``=?`` that survives into ``= ?``, so the
  result is shown as the literal text it is and can never be decoded later.

Whitespace runs (including NBSP and other Unicode spaces) collapse to one ASCII
space and the ends are trimmed. Truncation counts code points; a truncated
subject or header text ends with ``…`` (within ``max_len``), identifiers (CSID,
phone) are cut without a marker.
"""

from __future__ import annotations

import email.policy
import re
import unicodedata
from email.header import decode_header, make_header
from email.headerregistry import Address
from email.message import EmailMessage
from email.parser import BytesParser

#: InterFAX/phone-line limits for identifiers that reach our headers.
CSID_MAX_LEN = 20
PHONE_MAX_LEN = 20
#: Our limit for subjects in reports.
SUBJECT_MAX_LEN = 200
#: Default limit for :func:`decoded_header_text` (RFC 5322 line length).
HEADER_TEXT_MAX_LEN = 998
#: Default limit for :func:`clean_filename`, extension included.
FILENAME_MAX_LEN = 100

ELLIPSIS = "…"

_BIDI_AND_INVISIBLE = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\ufeff"
)
_PHONE_CHARS = frozenset("0123456789+ ()-")
# Characters a file name may not contain on Windows or Unix, or that start an
# encoded word; replaced by "_".
_FILENAME_UNSAFE = frozenset('<>:"/\\|?*')
_WINDOWS_DEVICE_RE = re.compile(r"(?i)(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?")
_EXTENSION_RE = re.compile(r"[A-Za-z0-9]{1,10}", re.ASCII)


# Breaks and controls separate words ("a\r\nb" reads "a b"); bidi, invisible and
# surrogate code points go. One table, so the cleaning runs at C speed.
_CLEAN_TABLE: dict[int, str | None] = {
    **dict.fromkeys((*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029), " "),
    **{ord(ch): None for ch in _BIDI_AND_INVISIBLE},
    **dict.fromkeys(range(0xD800, 0xE000)),
}
_FILENAME_TABLE = {ord(ch): "_" for ch in _FILENAME_UNSAFE}


def _clean(value: str, max_len: int, *, ellipsis: bool) -> str:
    if max_len < 1:
        raise ValueError("max_len must be at least 1")
    text = str(value).translate(_CLEAN_TABLE)
    text = " ".join(text.split())
    # After the removals above, which could otherwise join "=" and "?".
    text = text.replace("=?", "= ?")
    if len(text) <= max_len:
        return text
    if ellipsis:
        return text[: max_len - 1].rstrip() + ELLIPSIS
    return text[:max_len].rstrip()


def clean_header_text(value: str, *, max_len: int) -> str:
    """Return ``value`` as one line of header-safe text of at most ``max_len`` characters.

    Decodes nothing (see :func:`decoded_header_text` for that). Removes line
    breaks, controls and bidi characters, collapses whitespace, breaks ``=?``
    into ``= ?`` and truncates with a trailing ``…`` when too long.
    """
    return _clean(value, max_len, ellipsis=True)


def clean_subject(value: str | None) -> str:
    """A subject for our reports: header-safe, at most 200 characters."""
    return _clean(value or "", SUBJECT_MAX_LEN, ellipsis=True)


def clean_csid(value: str | None) -> str:
    """A remote CSID (set by the sending machine): printable, at most 20 characters."""
    return _clean(value or "", CSID_MAX_LEN, ellipsis=False)


def clean_phone(value: str | None) -> str:
    """A caller id: only ASCII digits, ``+``, space and ``()-``; at most 20 characters."""
    kept = "".join(ch if ch in _PHONE_CHARS else " " for ch in value or "")
    return " ".join(kept.split())[:PHONE_MAX_LEN].rstrip()


def clean_filename(value: str | None, *, fallback: str, max_len: int = FILENAME_MAX_LEN) -> str:
    """A file name safe on disk and in a Content-Disposition header.

    Keeps only the last path component (``/`` and ``\\``), removes controls and
    bidi characters (an RLO could disguise ``exe.pdf``), replaces
    ``<>:"/\\|?*`` with ``_``, drops leading dots and spaces and trailing dots,
    guards Windows device names (``CON.pdf`` -> ``_CON.pdf``) and truncates the
    stem, never the extension (the last ``.`` + 1 to 10 ASCII letters/digits),
    so ``report.pdf`` stays a PDF to InterFAX. A name with an extension but no
    stem (``.pdf``) takes the stem of ``fallback``; a name with nothing usable
    gives ``fallback`` itself (cleaned the same way; it must not clean to empty).
    """
    if max_len < 3:
        raise ValueError("max_len must be at least 3")
    fallback_name = _filename(fallback, max_len, "")
    if not fallback_name:
        raise ValueError("fallback file name is empty after cleaning")
    fallback_stem = fallback_name.rpartition(".")[0] or fallback_name
    return _filename(value or "", max_len, fallback_stem) or fallback_name


def _filename(value: str, max_len: int, fallback_stem: str) -> str:
    text = unicodedata.normalize("NFC", value)
    text = text.replace("\\", "/").rsplit("/", 1)[-1]
    text = text.translate(_FILENAME_TABLE)
    text = _clean(text, 10 * max_len, ellipsis=False)
    stem, dot, ext = text.rpartition(".")
    if not (dot and _EXTENSION_RE.fullmatch(ext)):
        stem, ext = text, ""
    stem = stem.strip(". ")
    if not stem:
        if not ext:
            return ""
        stem = fallback_stem or "file"
    if _WINDOWS_DEVICE_RE.fullmatch(stem):
        stem = "_" + stem
    suffix = "." + ext if ext else ""
    if len(suffix) >= max_len:
        return (stem + suffix)[:max_len].rstrip(". ")
    return stem[: max_len - len(suffix)].rstrip(". ") + suffix


def decoded_header_text(raw: str, *, max_len: int = HEADER_TEXT_MAX_LEN) -> str:
    """Decode the RFC 2047 encoded words of an untrusted header value, then clean it.

    When ``decode_header`` fails (unknown charset, bad bytes, raw UTF-8 beside
    an encoded word) the lenient header-registry parser decodes what it can; if
    that fails too the raw value is used. Either way the result is cleaned, so
    any encoded word left is inert text. This is where the CVE-2024-6923 payload
    ``=?utf-8?q?hello=0AX-Injected=3A_yes?=`` loses its newline.
    """
    try:
        decoded = str(make_header(decode_header(raw)))
    except Exception:
        decoded = _lenient_decode(raw)
    return _clean(decoded, max_len, ellipsis=True)


def _lenient_decode(raw: str) -> str:
    # decode_header gives up on a whole value for one bad word (unknown charset,
    # invalid bytes, raw UTF-8 beside an encoded word); the header registry's
    # parser decodes what it can and substitutes the rest.
    try:
        return str(email.policy.default.header_factory("Subject", raw))
    except Exception:
        return raw


CVE_2024_6923_PAYLOAD = "=?utf-8?q?hello=0AX-Injected=3A_yes?="

# Exactly the header lines self_check() writes, with multiplicity.
_SELF_CHECK_HEADERS = (
    "Content-Transfer-Encoding",
    "Content-Type",
    "From",
    "MIME-Version",
    "Subject",
    "To",
    "X-Fax-CSID",
    "X-Fax-Caller-ID",
)


def self_check() -> None:
    """Prove at start-up that our header path defeats CVE-2024-6923 on this interpreter.

    Builds a message from hostile values through the cleaners (a display name,
    the decoded and the undecoded payload, a CSID and a caller id with CR/LF),
    serialises it with ``email.policy.SMTP``, parses it back and raises
    ``RuntimeError`` if the header lines differ from the expected ones or a line
    break survived into a value.
    """
    payload = CVE_2024_6923_PAYLOAD
    msg = EmailMessage(policy=email.policy.SMTP)
    try:
        msg["From"] = Address(
            display_name=clean_header_text(payload, max_len=SUBJECT_MAX_LEN),
            addr_spec="fax-bridge@self-check.invalid",
        )
        msg["To"] = "self-check@self-check.invalid"
        msg["Subject"] = clean_header_text(decoded_header_text(payload), max_len=SUBJECT_MAX_LEN)
        msg["X-Fax-CSID"] = clean_csid("FAX\r\nX-Injected: yes")
        msg["X-Fax-Caller-ID"] = clean_phone("+1 212\r\nX-Injected: 555")
        msg.set_content("self-check\n")
        parsed = BytesParser(policy=email.policy.default).parsebytes(msg.as_bytes())
        items = [(name, str(value)) for name, value in parsed.items()]
    except Exception as exc:
        raise RuntimeError(f"header self-check failed: {exc!r}") from exc
    names = tuple(sorted(name for name, _ in items))
    if names != _SELF_CHECK_HEADERS or any("\r" in v or "\n" in v for _, v in items):
        raise RuntimeError(
            "header self-check failed: untrusted text can inject mail headers "
            f"(headers written: {', '.join(names)})"
        )
