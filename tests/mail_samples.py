"""Raw messages shaped the way real mail clients send them, as bytes.

Where the exact MIME shape matters the messages are written out literally
(boundaries, header spellings, encodings), so a test sees what a client really
produces rather than what ``EmailMessage`` would generate. Line ends are CRLF,
as on the wire.
"""

from __future__ import annotations

import base64
import quopri

PDF = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
    b"2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
    b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 612 792]>>endobj\n"
    b"trailer<</Root 1 0 R>>\n%%EOF\n"
)
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
DOCX = b"PK\x03\x04" + b"\x00" * 26 + b"word/document.xml"
EXE = b"MZ\x90\x00\x03\x00\x00\x00"

FROM = "Alice Example <alice@example.com>"
TO = "+12125550100@fax.local"


def crlf(text: str) -> bytes:
    """``text`` with CRLF line ends, as UTF-8 bytes (8-bit parts stay raw)."""
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")


def b64(data: bytes) -> str:
    """Base64 in 76-character lines, as MIME writes it."""
    return base64.encodebytes(data).decode("ascii")


def qp(text: str) -> str:
    """Quoted-printable of UTF-8 ``text``."""
    return quopri.encodestring(text.encode("utf-8")).decode("ascii")


def headers(
    subject: str = "Invoice 42",
    *,
    sender: str = FROM,
    extra: str = "",
    message_id: str = "<20240603101500.4711@example.com>",
) -> str:
    """A top-level header block (no trailing blank line); ``extra`` is appended verbatim."""
    lines = [
        "Return-Path: <alice@example.com>",
        "Received: from mail.example.com (mail.example.com [192.0.2.10])",
        "\tby fax.local with ESMTPS id 4VtX; Mon, 03 Jun 2024 08:15:01 +0000",
        "Date: Mon, 03 Jun 2024 10:15:00 +0200",
        f"Message-ID: {message_id}",
        f"From: {sender}",
        f"To: {TO}",
        f"Subject: {subject}",
        "MIME-Version: 1.0",
    ]
    if extra:
        lines.append(extra.rstrip("\n"))
    return "\n".join(lines) + "\n"


def text_only(body: str = "Hello,\n\nplease call me back.\n\nAlice\n", **kw: str) -> bytes:
    """A plain text mail without attachments (8-bit UTF-8)."""
    return crlf(
        headers(**kw)
        + "Content-Type: text/plain; charset=UTF-8; format=flowed\n"
        + "Content-Transfer-Encoding: 8bit\n\n"
        + body
    )


def attachment_part(
    data: bytes,
    *,
    content_type: str = "application/pdf",
    filename: str | None = "invoice.pdf",
    disposition: str = "attachment",
    extra: str = "",
) -> str:
    """One base64 attachment part (headers and body), for :func:`mixed`.

    ``filename`` goes into quoted strings, with ``\\`` and ``"`` escaped as
    RFC 2045 requires.
    """
    quoted = (filename or "").replace("\\", "\\\\").replace('"', '\\"')
    ctype = f'{content_type}; name="{quoted}"' if filename else content_type
    lines = [f"Content-Type: {ctype}"]
    if disposition:
        lines.append(
            f'Content-Disposition: {disposition}; filename="{quoted}"'
            if filename
            else f"Content-Disposition: {disposition}"
        )
    lines.append("Content-Transfer-Encoding: base64")
    if extra:
        lines.append(extra.rstrip("\n"))
    return "\n".join(lines) + "\n\n" + b64(data)


def mixed(body: str | None, *parts: str, subject: str = "Invoice 42", extra: str = "") -> bytes:
    """multipart/mixed: an optional text/plain body, then ``parts`` verbatim."""
    sections = []
    if body is not None:
        sections.append(
            "Content-Type: text/plain; charset=UTF-8\nContent-Transfer-Encoding: 8bit\n\n" + body
        )
    sections.extend(parts)
    boundary = "------------mixed0123456789"
    text = (
        headers(subject, extra=extra) + f'Content-Type: multipart/mixed; boundary="{boundary}"\n\n'
    )
    text += "This is a multi-part message in MIME format.\n"
    for section in sections:
        text += f"--{boundary}\n{section.rstrip(chr(10))}\n"
    return crlf(text + f"--{boundary}--\n")


def thunderbird(
    subject: str = "Rechnung", body: str = "Hallo,\n\nanbei die Rechnung.\n\nGrüße\nAlice\n"
) -> bytes:
    """Thunderbird: flowed text, a PDF with an RFC 2231 encoded non-ASCII name."""
    return crlf(
        headers(subject, extra="User-Agent: Mozilla Thunderbird")
        + 'Content-Type: multipart/mixed; boundary="------------0JxOaTYoYw2qdC3uSfmlTbPc"\n'
        + "Content-Language: de-DE\n\n"
        + "This is a multi-part message in MIME format.\n"
        + "--------------0JxOaTYoYw2qdC3uSfmlTbPc\n"
        + "Content-Type: text/plain; charset=UTF-8; format=flowed\n"
        + "Content-Transfer-Encoding: 8bit\n\n"
        + body
        + "\n--------------0JxOaTYoYw2qdC3uSfmlTbPc\n"
        + "Content-Type: application/pdf; name*=UTF-8''Rechnung%20M%C3%A4rz%E2%80%A6.pdf\n"
        + "Content-Disposition: attachment;\n"
        + " filename*=UTF-8''Rechnung%20M%C3%A4rz%E2%80%A6.pdf\n"
        + "Content-Transfer-Encoding: base64\n\n"
        + b64(PDF)
        + "\n--------------0JxOaTYoYw2qdC3uSfmlTbPc--\n"
    )


def gmail(subject: str = "Signed contract") -> bytes:
    """Gmail: alternative inside related inside mixed, a cid: logo, encoded-word file name."""
    html = (
        '<div dir="ltr">Hi Bob,<div><br></div><div>the signed contract is attached.</div>'
        '<div><br></div><div>Alice</div><div><img src="cid:ii_lx1y2z3" alt="logo.png" '
        'width="120" height="40"></div></div>\n'
    )
    return crlf(
        headers(subject)
        + 'Content-Type: multipart/mixed; boundary="000000000000b1a2c3061a2b3c4d"\n\n'
        + "--000000000000b1a2c3061a2b3c4d\n"
        + 'Content-Type: multipart/related; boundary="000000000000b1a2c2061a2b3c4c"\n\n'
        + "--000000000000b1a2c2061a2b3c4c\n"
        + 'Content-Type: multipart/alternative; boundary="000000000000b1a2c1061a2b3c4b"\n\n'
        + "--000000000000b1a2c1061a2b3c4b\n"
        + 'Content-Type: text/plain; charset="UTF-8"\n\n'
        + "Hi Bob,\n\nthe signed contract is attached.\n\nAlice\n[image: logo.png]\n\n"
        + "--000000000000b1a2c1061a2b3c4b\n"
        + 'Content-Type: text/html; charset="UTF-8"\n'
        + "Content-Transfer-Encoding: quoted-printable\n\n"
        + qp(html)
        + "\n--000000000000b1a2c1061a2b3c4b--\n"
        + "--000000000000b1a2c2061a2b3c4c\n"
        + 'Content-Type: image/png; name="logo.png"\n'
        + 'Content-Disposition: inline; filename="logo.png"\n'
        + "Content-Transfer-Encoding: base64\n"
        + "X-Attachment-Id: ii_lx1y2z3\n"
        + "Content-ID: <ii_lx1y2z3>\n\n"
        + b64(PNG)
        + "--000000000000b1a2c2061a2b3c4c--\n"
        + "--000000000000b1a2c3061a2b3c4d\n"
        + 'Content-Type: application/pdf; name="=?UTF-8?B?VmVydHJhZyBNw7xsbGVyLnBkZg==?="\n'
        + 'Content-Disposition: attachment; filename="=?UTF-8?B?VmVydHJhZyBNw7xsbGVyLnBkZg==?="\n'
        + "Content-Transfer-Encoding: base64\n"
        + "X-Attachment-Id: f_lx1y2z4\n"
        + "Content-ID: <f_lx1y2z4>\n\n"
        + b64(PDF)
        + "--000000000000b1a2c3061a2b3c4d--\n"
    )


def outlook(subject: str = "Scan", body: str = "Please fax the attached scan.") -> bytes:
    """Outlook: octet-stream PDF decided by name, QP HTML, an image001.png signature logo."""
    html = (
        '<html xmlns:o="urn:schemas-microsoft-com:office:office"><head>'
        '<meta http-equiv="Content-Type" content="text/html; charset=iso-8859-1">'
        "<style><!-- p.MsoNormal {margin:0cm;} --></style></head>"
        f'<body lang="EN-US"><div class="WordSection1"><p class="MsoNormal">{body}</p>'
        '<p class="MsoNormal">&nbsp;</p><p class="MsoNormal">Kind regards, Alice</p>'
        '<p class="MsoNormal"><img width="96" height="32" id="Picture_x0020_1" '
        'src="cid:image001.png@01DAB5A1.2B3C4D50" alt="ACME"></p></div></body></html>'
    )
    text = f"{body}\n\nKind regards, Alice\n\n[ACME]\n"
    return crlf(
        headers(subject, extra="Thread-Topic: Scan\nX-MS-Has-Attach: yes\nContent-Language: en-US")
        + 'Content-Type: multipart/mixed;\n\tboundary="_004_DB9PR01MB1234EURP_"\n\n'
        + "--_004_DB9PR01MB1234EURP_\n"
        + 'Content-Type: multipart/related;\n\tboundary="_003_DB9PR01MB1234EURP_";\n'
        + '\ttype="multipart/alternative"\n\n'
        + "--_003_DB9PR01MB1234EURP_\n"
        + 'Content-Type: multipart/alternative;\n\tboundary="_000_DB9PR01MB1234EURP_"\n\n'
        + "--_000_DB9PR01MB1234EURP_\n"
        + 'Content-Type: text/plain; charset="iso-8859-1"\n'
        + "Content-Transfer-Encoding: quoted-printable\n\n"
        + quopri.encodestring(text.encode("latin-1")).decode("ascii")
        + "\n--_000_DB9PR01MB1234EURP_\n"
        + 'Content-Type: text/html; charset="iso-8859-1"\n'
        + "Content-Transfer-Encoding: quoted-printable\n\n"
        + quopri.encodestring(html.encode("latin-1")).decode("ascii")
        + "\n--_000_DB9PR01MB1234EURP_--\n\n"
        + "--_003_DB9PR01MB1234EURP_\n"
        + 'Content-Type: image/png; name="image001.png"\n'
        + "Content-Description: image001.png\n"
        + 'Content-Disposition: inline; filename="image001.png"; size=95;\n'
        + '\tcreation-date="Mon, 03 Jun 2024 08:14:58 GMT";\n'
        + '\tmodification-date="Mon, 03 Jun 2024 08:14:58 GMT"\n'
        + "Content-ID: <image001.png@01DAB5A1.2B3C4D50>\n"
        + "Content-Transfer-Encoding: base64\n\n"
        + b64(PNG)
        + "\n--_003_DB9PR01MB1234EURP_--\n\n"
        + "--_004_DB9PR01MB1234EURP_\n"
        + 'Content-Type: application/octet-stream; name="Scan 2024-06-03.pdf"\n'
        + "Content-Description: Scan 2024-06-03.pdf\n"
        + 'Content-Disposition: attachment; filename="Scan 2024-06-03.pdf"; size=216;\n'
        + '\tcreation-date="Mon, 03 Jun 2024 08:13:00 GMT"\n'
        + "Content-Transfer-Encoding: base64\n\n"
        + b64(PDF)
        + "\n--_004_DB9PR01MB1234EURP_--\n"
    )


def apple_mail() -> bytes:
    """Apple Mail: the PDF sits inside the HTML alternative only, between two HTML parts."""
    return crlf(
        headers("Plan", extra="X-Mailer: Apple Mail (2.3774.600.62)")
        + 'Content-Type: multipart/alternative;\n\tboundary="Apple-Mail=_A1B2C3D4-0001"\n\n'
        + "--Apple-Mail=_A1B2C3D4-0001\n"
        + "Content-Transfer-Encoding: 7bit\n"
        + "Content-Type: text/plain;\n\tcharset=us-ascii\n\n"
        + "Here is the floor plan.\n\n\n\nSee you tomorrow.\n\n"
        + "--Apple-Mail=_A1B2C3D4-0001\n"
        + 'Content-Type: multipart/mixed;\n\tboundary="Apple-Mail=_A1B2C3D4-0002"\n\n'
        + "--Apple-Mail=_A1B2C3D4-0002\n"
        + "Content-Transfer-Encoding: 7bit\n"
        + "Content-Type: text/html;\n\tcharset=us-ascii\n\n"
        + "<html><body><div>Here is the floor plan.</div><div><br></div></body></html>\n"
        + "--Apple-Mail=_A1B2C3D4-0002\n"
        + "Content-Disposition: inline;\n\tfilename=plan.pdf\n"
        + "Content-Type: application/pdf;\n\tx-unix-mode=0644;\n\tname=plan.pdf\n"
        + "Content-Transfer-Encoding: base64\n\n"
        + b64(PDF)
        + "--Apple-Mail=_A1B2C3D4-0002\n"
        + "Content-Transfer-Encoding: 7bit\n"
        + "Content-Type: text/html;\n\tcharset=us-ascii\n\n"
        + "<html><body><div>See you tomorrow.</div></body></html>\n"
        + "--Apple-Mail=_A1B2C3D4-0002--\n\n"
        + "--Apple-Mail=_A1B2C3D4-0001--\n"
    )


def forwarded(comment: str = "FYI, see the forwarded mail.\n") -> bytes:
    """Thunderbird "forward as attachment": message/rfc822 holding text and a PDF."""
    inner = (
        "Date: Fri, 31 May 2024 16:02:11 +0200\n"
        "From: Bob Builder <bob@example.org>\n"
        "To: alice@example.com\n"
        "Subject: Quote for the roof\n"
        "Message-ID: <quote-1@example.org>\n"
        "MIME-Version: 1.0\n"
        'Content-Type: multipart/mixed; boundary="inner-boundary"\n\n'
        "--inner-boundary\n"
        "Content-Type: text/plain; charset=UTF-8\n\n"
        "Dear Alice, the quote is attached.\n\n"
        "--inner-boundary\n"
        'Content-Type: application/pdf; name="quote.pdf"\n'
        'Content-Disposition: attachment; filename="quote.pdf"\n'
        "Content-Transfer-Encoding: base64\n\n" + b64(PDF) + "--inner-boundary--\n"
    )
    return crlf(
        headers("Fwd: Quote for the roof")
        + 'Content-Type: multipart/mixed; boundary="outer-boundary"\n\n'
        + "--outer-boundary\n"
        + "Content-Type: text/plain; charset=UTF-8; format=flowed\n\n"
        + comment
        + "\n--outer-boundary\n"
        + 'Content-Type: message/rfc822; name="Quote for the roof.eml"\n'
        + 'Content-Disposition: attachment; filename="Quote for the roof.eml"\n\n'
        + inner
        + "\n--outer-boundary--\n"
    )


def quoted_reply(with_pdf: bool = True) -> bytes:
    """A reply whose own text is empty: attribution, quoted history and a signature."""
    body = (
        "\n"
        "On Mon, Jun 3, 2024 at 9:12 AM Bob Builder <bob@example.org>\n"
        "wrote:\n"
        "> Could you fax me the signed form?\n"
        ">\n"
        "> Bob\n"
        "\n"
        "-- \n"
        "Alice Example\n"
        "ACME Corp. | +1 212 555 0199\n"
    )
    if not with_pdf:
        return text_only(body, subject="Re: form")
    return mixed(body, attachment_part(PDF, filename="form.pdf"), subject="Re: form")


def html_only_qp(body_html: str = "<p>Hello <b>Bob</b>,</p><p>caf\u00e9 at 10?</p>") -> bytes:
    """A single-part quoted-printable HTML mail (no text alternative)."""
    return crlf(
        headers("Lunch")
        + 'Content-Type: text/html; charset="utf-8"\n'
        + "Content-Transfer-Encoding: quoted-printable\n\n"
        + qp(f"<html><body>{body_html}</body></html>")
    )


def nested_multiparts(depth: int) -> bytes:
    """``depth`` multipart/mixed containers inside each other, a text part at the bottom."""
    text = headers("deep")
    for level in range(depth):
        text += f'Content-Type: multipart/mixed; boundary="b{level}"\n\n--b{level}\n'
    text += "Content-Type: text/plain\n\nbottom\n"
    for level in reversed(range(depth)):
        text += f"--b{level}--\n"
    return crlf(text)


def many_parts(count: int) -> bytes:
    """One multipart/mixed with ``count`` small PDF parts."""
    part = attachment_part(b"%PDF-1.4 x", filename="p.pdf")
    return mixed(None, *([part] * count), subject="many")
