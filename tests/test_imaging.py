"""TIFF to PDF without losing pages or quality."""

from __future__ import annotations

import io

import pytest
from pypdf import PdfReader

from bridge.imaging import ImageError, as_pdf, pdf_pages, tiff_pages, tiff_to_pdf
from tests.inbound_helpers import g4_tiff


@pytest.mark.parametrize("pages", [1, 3, 12])
def test_every_tiff_page_becomes_a_pdf_page(pages: int) -> None:
    data = g4_tiff(pages)
    assert tiff_pages(data) == pages
    pdf = tiff_to_pdf(data)
    assert len(PdfReader(io.BytesIO(pdf)).pages) == pages
    assert pdf_pages(pdf) == pages


def test_group4_pages_are_embedded_without_recompression() -> None:
    pdf = tiff_to_pdf(g4_tiff(2))
    reader = PdfReader(io.BytesIO(pdf))
    for page in reader.pages:
        resources = page["/Resources"]["/XObject"]
        [image] = [obj.get_object() for obj in resources.values()]
        filters = image["/Filter"]
        names = list(filters) if isinstance(filters, list) else [filters]
        assert names == ["/CCITTFaxDecode"]


def test_a_pdf_is_kept_byte_for_byte() -> None:
    pdf = tiff_to_pdf(g4_tiff(1))
    assert as_pdf(pdf) is pdf


def test_tiff_is_converted_by_as_pdf() -> None:
    assert as_pdf(g4_tiff(2)).startswith(b"%PDF-")


@pytest.mark.parametrize("data", [b"", b"hello", b"II*\x00garbage-after-magic", b"GIF89a\x01\x00"])
def test_damaged_or_foreign_images_raise_image_error(data: bytes) -> None:
    with pytest.raises(ImageError):
        as_pdf(data)
