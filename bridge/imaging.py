"""Fax images: TIFF to PDF without loss, page counting. Pure (bytes in, bytes out).

img2pdf embeds each TIFF page as it is (CCITT Group 4 stays Group 4), so the PDF shows
exactly what the fax machine sent. The page count is checked on both sides: a fax must
never lose a page on its way to a mailbox.
"""

from __future__ import annotations

import io
import warnings

import img2pdf
import pikepdf
from PIL import Image, UnidentifiedImageError

from bridge.errors import PermanentError

PDF_MAGIC = b"%PDF-"
TIFF_MAGICS = (b"II*\x00", b"MM\x00*")


class ImageError(PermanentError):
    """The fax image is damaged or not what it claims to be."""


def is_pdf(data: bytes) -> bool:
    """True when ``data`` starts like a PDF file."""
    return data[:1024].lstrip().startswith(PDF_MAGIC)


def is_tiff(data: bytes) -> bool:
    """True when ``data`` starts like a TIFF file."""
    return data[:4] in TIFF_MAGICS


def tiff_pages(data: bytes) -> int:
    """The number of pages in a TIFF."""
    try:
        # Pillow warns about damaged tags; the decision is ours, made on exceptions below.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as image:
                return int(getattr(image, "n_frames", 1))
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ImageError(f"unreadable TIFF: {exc}") from exc


def pdf_pages(data: bytes) -> int:
    """The number of pages in a PDF."""
    try:
        with pikepdf.open(io.BytesIO(data)) as pdf:
            return len(pdf.pages)
    except pikepdf.PdfError as exc:
        raise ImageError(f"unreadable PDF: {exc}") from exc


def tiff_to_pdf(data: bytes) -> bytes:
    """Convert a (multi-page) TIFF to PDF losslessly, checking no page was lost."""
    expected = tiff_pages(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            converted = img2pdf.convert(data, rotation=img2pdf.Rotation.ifvalid)
    except Exception as exc:  # img2pdf raises many types on damaged input
        raise ImageError(f"TIFF could not be converted: {exc}") from exc
    if not isinstance(converted, bytes):
        raise ImageError("TIFF conversion produced no PDF")
    produced = pdf_pages(converted)
    if produced != expected:
        raise ImageError(f"TIFF has {expected} pages but the PDF has {produced}")
    return converted


def as_pdf(data: bytes) -> bytes:
    """The fax image as PDF: a PDF is kept as it is, a TIFF converted."""
    if is_pdf(data):
        return data
    if is_tiff(data):
        return tiff_to_pdf(data)
    raise ImageError("the fax image is neither PDF nor TIFF")
