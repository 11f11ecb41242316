"""Keep long base64 runs out of the email package's parser (pure, no I/O).

The stdlib parser holds a leaf part's body as a list of line strings, joins them,
and decoding base64 copies the text twice more: a 20 MB attachment costs well over
100 MB. Yet what it needs to learn the MIME structure is only the lines that are
*not* base64: headers, blank lines and boundary lines.

:func:`hollow` replaces every run of at least ``min_bytes`` of lines made only of
base64 characters (``A-Z a-z 0-9 + / =``) with one short line, a token. Such a run
holds no header line (those have a colon or start with white space), no blank line
and no boundary line (those start with ``--``), and the token is made of the same
characters, so the parser sees exactly the same structure in the small skeleton
as in the whole message. A part whose payload holds a token gets its real payload
back from :meth:`Hollows.payload`:

* decoding a base64 part that is one token decodes the original bytes in place
  (``binascii.a2b_base64`` on a memoryview), which is what the stdlib would
  return, without the copies;
* anything else (a token in a text part, base64 with missing padding, two runs
  split by a blank line) gets the original text put back, and the stdlib decodes
  it as it always does. Slower, and just as correct.

Tokens carry a random nonce, so a message cannot forge one.
"""

from __future__ import annotations

import binascii
import re
import secrets
from dataclasses import dataclass

# Lines of base64 characters only, each ending in LF or CRLF (a bare CR is a line
# break to the parser too, so it ends a run here). Possessive: a plain repeat keeps a
# backtracking entry per line, about 2.5 bytes of memory per byte of the run.
_RUN = re.compile(rb"(?m)^(?:[A-Za-z0-9+/=]++\r?\n)++")
_NEWLINES = "\r\n"


@dataclass(frozen=True, slots=True)
class Hollows:
    """Where each token's original text lies in the message."""

    raw: memoryview
    marker: str
    spans: dict[str, tuple[int, int]]

    def holds_token(self, payload: str) -> bool:
        """Whether ``payload`` (a part's payload as parsed) contains a token."""
        return self.marker in payload

    def restore(self, payload: str) -> str:
        """``payload`` with every token replaced by the text it stands for."""

        def original(token: re.Match[str]) -> str:
            start, end = self.spans[token.group()]
            return str(self.raw[start:end], "ascii")

        return re.sub(re.escape(self.marker) + "[0-9]+", original, payload)

    def decode_base64(self, payload: str) -> bytes | None:
        """The decoded bytes when ``payload`` is exactly one token; None otherwise.

        None also when the run needs the stdlib's lenient repairs (padding), so
        the result is always what ``get_payload(decode=True)`` would give.
        """
        span = self.spans.get(payload.strip(_NEWLINES))
        if span is None:
            return None
        try:
            return binascii.a2b_base64(self.raw[span[0] : span[1]])
        except binascii.Error:
            return None


def hollow(raw: bytes, *, min_bytes: int) -> tuple[bytes, Hollows | None]:
    """The skeleton of ``raw`` and what its tokens stand for (None: nothing hollowed).

    Runs shorter than ``min_bytes`` stay in the skeleton.
    """
    marker = "FaxBridgeHollow" + secrets.token_hex(16) + "n"
    spans: dict[str, tuple[int, int]] = {}
    pieces: list[bytes | memoryview] = []
    view = memoryview(raw)
    done = 0
    for match in _RUN.finditer(raw):
        start, end = match.span()
        end -= 2 if raw[end - 2 : end] == b"\r\n" else 1  # the line break stays
        if end - start < min_bytes:
            continue
        token = f"{marker}{len(spans)}"
        spans[token] = (start, end)
        pieces += (view[done:start], token.encode("ascii"))
        done = end
    if not spans:
        return raw, None
    pieces.append(view[done:])
    return b"".join(pieces), Hollows(view, marker, spans)
