"""Plain-text helpers for mail bodies and header text (pure, no I/O).

* :func:`clean_line` and :func:`clean_body` make untrusted text presentable.
  They are deliberately minimal; ``bridge.headersafe`` is the place for header
  sanitising rules (see the module docstring of :mod:`bridge.mailparse`).
* :func:`html_to_text` turns an HTML body into text, marking ``<blockquote>``
  content with ``>`` so quoted history is recognisable in text form.
* :func:`unflow` undoes RFC 3676 ``format=flowed`` soft line breaks.
* :func:`has_real_text` decides whether a body says anything beyond quoted
  history, reply attributions, forwarded Outlook headers and a signature.
* :func:`ascii_lower` and :func:`has_control` compare and check addresses.

Every scanner here is linear in its input: hostile bodies cannot make it slow.
"""

from __future__ import annotations

import html
import re
import unicodedata

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def ascii_lower(text: str) -> str:
    """``text`` with ASCII letters lowered only: str.lower() folds e.g. KELVIN SIGN to "k"."""
    return text.translate(_ASCII_LOWER)


def has_control(text: str) -> bool:
    """Whether ``text`` holds a C0, DEL or C1 control, or a Unicode line separator."""
    return any(ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F or ch in "\u2028\u2029" for ch in text)


# Characters that never belong in a one-line value: controls, format characters
# (bidi overrides can disguise "gpj.exe" as "exe.jpg"), surrogates, private use.
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co"})
# Category Cc (C0, DEL, C1) but tab and newline, and surrogates (category Cs).
_BODY_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


def unsurrogate(text: str) -> str:
    """Turn the parser's surrogate escapes for raw 8-bit bytes back into UTF-8 text."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:  # lone surrogates that are not byte escapes
        return text.encode("utf-8", "replace").decode("utf-8", "replace")


def clean_line(text: str) -> str:
    """One line of human text: no control, format or line-break characters.

    Whitespace of any kind (CR, LF, tab, U+2028 ...) becomes one space; the
    result is stripped. Safe to show, not a substitute for header sanitising.
    """
    chars = (
        " " if ch.isspace() else ch
        for ch in unsurrogate(text)
        if ch.isspace() or unicodedata.category(ch) not in _INVISIBLE_CATEGORIES
    )
    return " ".join("".join(chars).split())


def clean_body(text: str) -> str:
    """Body text with ``\\n`` line ends and no control characters but tab and newline."""
    text = unsurrogate(text).replace("\r\n", "\n").replace("\r", "\n")
    return _BODY_CONTROLS.sub("", text)


# ---------------------------------------------------------------- format=flowed


def unflow(text: str, *, delsp: bool) -> str:
    """Join RFC 3676 soft line breaks (a line ending in a space continues).

    Quote depth is respected: a flowed line only continues into a line of the
    same depth. The signature separator ``-- `` is never a soft break.
    """
    out: list[str] = []
    pending: list[str] = []  # pieces of a paragraph still flowing (a list: joins stay linear)
    pending_depth = -1

    def flush() -> None:
        out.append(">" * pending_depth + (" " if pending_depth else "") + "".join(pending))
        pending.clear()

    for raw in text.split("\n"):
        depth = len(raw) - len(raw.lstrip(">"))
        body = raw[depth:]
        if body.startswith(" "):  # space-stuffing
            body = body[1:]
        if pending and depth != pending_depth:
            flush()
        pending_depth = depth
        if body.endswith(" ") and body != "-- ":
            pending.append(body[:-1] if delsp else body)
            continue
        pending.append(body)
        flush()
    if pending:
        flush()
    return "\n".join(out)


# ---------------------------------------------------------------- HTML to text

_SKIP_CONTENT = frozenset({"script", "style", "head", "title", "template", "noscript"})
_PARAGRAPH = frozenset(
    {"p", "h1", "h2", "h3", "h4", "h5", "h6", "table", "ul", "ol", "pre", "hr", "blockquote"}
)
_LINE = frozenset(
    {"div", "tr", "li", "dt", "dd", "section", "article", "header", "footer", "address", "center"}
)
_TAG_NAME = re.compile(r"/?\s*([a-zA-Z][a-zA-Z0-9]*)")


class _TextSink:
    """Collects text runs into lines, prefixing lines inside blockquotes with ``>``."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.run: list[str] = []
        self.quote = 0
        self.line_quote = 0
        self.pre = 0

    def text(self, data: str) -> None:
        if self.pre:
            first, *rest = data.split("\n")
            self._add(first)
            for piece in rest:
                self.newline(hard=True)
                self._add(piece)
        else:
            self._add(data)

    def _add(self, data: str) -> None:
        if not self.run:
            self.line_quote = self.quote
        self.run.append(data)

    def newline(self, *, hard: bool) -> None:
        line = " ".join(html.unescape("".join(self.run)).split())
        self.run = []
        if line or hard:
            self.lines.append(("> " * self.line_quote + line).rstrip())

    def paragraph(self) -> None:
        self.newline(hard=False)
        if self.lines and self.lines[-1]:
            self.lines.append("")

    def result(self) -> str:
        self.newline(hard=False)
        return re.sub(r"\n{3,}", "\n\n", "\n".join(self.lines)).strip("\n")


def html_to_text(markup: str) -> str:
    """Readable text from an HTML mail body (scripts, styles and comments dropped)."""
    sink = _TextSink()
    lower = markup.lower()
    pos, end = 0, len(markup)
    while pos < end:
        lt = markup.find("<", pos)
        if lt < 0:
            sink.text(markup[pos:])
            break
        if lt > pos:
            sink.text(markup[pos:lt])
        if markup.startswith("<!--", lt):
            close = markup.find("-->", lt + 4)
            pos = end if close < 0 else close + 3
            continue
        gt = markup.find(">", lt + 1)
        if gt < 0:
            break
        pos = gt + 1
        match = _TAG_NAME.match(markup, lt + 1, gt)
        if match is None:  # <!DOCTYPE>, <?xml?>, stray "<"
            continue
        name = match.group(1).lower()
        closing = markup[lt + 1] == "/"
        if name in _SKIP_CONTENT and not closing:
            close = lower.find("</" + name, pos)
            if name == "head":  # an unclosed <head> must not swallow the body
                body = lower.find("<body", pos)
                close = body if close < 0 or 0 <= body < close else close
            pos = end if close < 0 else close
        elif name == "br":
            sink.newline(hard=True)
        elif name in _PARAGRAPH:
            sink.paragraph()
            if name == "blockquote":
                sink.quote = max(0, sink.quote + (-1 if closing else 1))
            elif name == "pre":
                sink.pre = max(0, sink.pre + (-1 if closing else 1))
        elif name in _LINE:
            sink.newline(hard=False)
            if name == "li" and not closing:
                sink.text("- ")
    return sink.result()


# ---------------------------------------------------------------- real text

_ATTRIBUTION = re.compile(
    r"^(on|am|le|el|il|op|em)\b.*\b(wrote|schrieb|a écrit|escribió|ha scritto|schreef|escreveu)"
    r"\b.*:$",
    re.IGNORECASE,
)
_ORIGINAL_MESSAGE = re.compile(
    r"^-{2,}\s*(original message|ursprüngliche nachricht|message d'origine|mensaje original"
    r"|messaggio originale|oorspronkelijk bericht)\s*-{2,}$",
    re.IGNORECASE,
)
_OUTLOOK_FROM = re.compile(r"^(from|von|de|da|van)\s*:", re.IGNORECASE)
_OUTLOOK_SENT = re.compile(
    r"^(sent|date|gesendet|datum|envoyé|enviado|inviato|verzonden)\s*:", re.IGNORECASE
)
_MOBILE_SIGNATURE = re.compile(
    r"^(sent from my\b|sent from mail for windows|sent from yahoo mail|get outlook for\b"
    r"|von meinem .* gesendet|envoyé de mon\b)",
    re.IGNORECASE,
)
_DECORATION = re.compile(r"^[-_=*~#.]+$")


def has_real_text(text: str) -> bool:
    """True when ``text`` holds something its author wrote for this message.

    Not real text: lines quoted with ``>``; reply attributions ("On ... wrote:",
    also wrapped over two lines and in a few languages); everything after a
    signature separator (``-- `` or ``--``), an Outlook "-----Original
    Message-----" line or an Outlook "From: ... Sent: ..." header block; mobile
    signatures such as "Sent from my iPhone"; lines of pure decoration.
    """
    lines = [line.strip() for line in text.split("\n")]
    for index, line in enumerate(lines):
        if line in ("--", "-- ") or _ORIGINAL_MESSAGE.match(line):
            return False
        following = next((later for later in lines[index + 1 : index + 4] if later), "")
        if _OUTLOOK_FROM.match(line) and _OUTLOOK_SENT.match(following):
            return False
        if not line or line.startswith(">") or _DECORATION.match(line):
            continue
        if _is_attribution(line) or _MOBILE_SIGNATURE.match(line):
            continue
        if _is_attribution(f"{line} {following}"):  # attribution wrapped onto 2 lines
            continue
        if index > 0 and lines[index - 1] and _is_attribution(f"{lines[index - 1]} {line}"):
            continue
        return True
    return False


def _is_attribution(line: str) -> bool:
    # Attributions are short; the length cap keeps the two ".*" of the pattern linear.
    return len(line) <= 400 and _ATTRIBUTION.match(line) is not None
