"""The last oracle of mail building: a header that appears or vanishes on the wire is refused.

``build_mail`` cleans every value, so these tests reach past the cleaning with ``set_raw``
to prove the re-parse itself catches an injection, whatever let it through.
"""

from __future__ import annotations

from email import policy
from email.message import EmailMessage

import pytest

from bridge.errors import PermanentError
from bridge.mailbuild import verify_header_block


def _message(raw_subject: str, *, attachment: bool = False) -> EmailMessage:
    msg = EmailMessage(policy=policy.SMTP)
    msg["From"] = "fax@example.org"
    msg["To"] = "alice@example.org"
    msg.set_raw("Subject", raw_subject)
    msg.set_content("hello")
    if attachment:
        msg.add_attachment(b"%PDF-1.4", maintype="application", subtype="pdf", filename="f.pdf")
    return msg


LINESEPS = pytest.mark.parametrize("linesep", ["\r\n", "\n"])


def mail_bytes(msg: EmailMessage, *, linesep: str) -> bytes:
    data = msg.as_bytes(policy=msg.policy.clone(linesep=linesep))
    verify_header_block(msg.keys(), data)
    return data


@LINESEPS
@pytest.mark.parametrize("attachment", [False, True])
def test_a_clean_message_passes_the_header_check(attachment: bool, linesep: str) -> None:
    data = mail_bytes(_message("Fax from ACME", attachment=attachment), linesep=linesep)
    assert data.startswith(b"From: fax@example.org" + linesep.encode())


@LINESEPS
@pytest.mark.parametrize("attachment", [False, True])
def test_an_injected_header_line_is_refused(attachment: bool, linesep: str) -> None:
    with pytest.raises(PermanentError, match="bcc"):
        mail_bytes(_message("x\r\nBcc: victim@example.com", attachment=attachment), linesep=linesep)


@LINESEPS
def test_a_value_that_ends_the_header_block_early_is_refused(linesep: str) -> None:
    # The headers after the blank line would become body text: they vanish on the wire.
    with pytest.raises(PermanentError, match="headers changed"):
        mail_bytes(_message("x\r\n\r\nfake body"), linesep=linesep)
