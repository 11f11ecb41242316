"""Document types InterFAX accepts (shared/interfax-api.md §9), as pure lookups.

The table is the one shipped with the official .NET client. Extensions match
case-insensitively. InterFAX takes a document's type from the extension of its
name, so every document we upload carries a name with a supported extension.
"""

from __future__ import annotations

from types import MappingProxyType

#: extension (lower case, no dot) -> MIME type, as InterFAX's own table has it.
EXTENSION_TO_MIME: MappingProxyType[str, str] = MappingProxyType(
    {
        "pdf": "application/pdf",
        "txt": "text/plain",
        "doc": "application/msword",
        "dot": "application/msword",
        "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "xls": "application/vnd.ms-excel",
        "xlsx": "application/vnd.ms-excel",
        "ppt": "application/vnd.ms-powerpoint",
        "pptx": "application/vnd.ms-powerpoint",
        "html": "text/html",
        "htm": "text/html",
        "mht": "message/rfc822",
        "xml": "application/xml",
        "url": "application/internet-shortcut",
        "tif": "image/tiff",
        "tiff": "image/tiff",
        "gif": "image/gif",
        "png": "image/png",
        "jpg": "image/jpeg",
        "jpeg": "image/jpeg",
        "bmp": "image/bmp",
        "pcx": "application/pcx",
        "ps": "application/postscript",
        "eps": "application/eps",
        "rtf": "application/rtf",
        "snp": "application/snapshot",
        "zip": "application/zip",
        "odt": "application/vnd.oasis.opendocument.text",
        "ods": "application/vnd.oasis.opendocument.spreadsheet",
        "odp": "application/vnd.oasis.opendocument.presentation",
        "odg": "application/vnd.oasis.opendocument.graphics",
        "odf": "application/vnd.oasis.opendocument.formula",
        "odm": "application/vnd.oasis.opendocument.textmaster",
    }
)

# MIME types mail clients use for the same formats, beyond InterFAX's own names.
_MIME_ALIASES: MappingProxyType[str, str] = MappingProxyType(
    {
        "application/x-pdf": "pdf",
        "image/jpg": "jpg",
        "image/pjpeg": "jpg",
        "image/x-png": "png",
        "image/x-ms-bmp": "bmp",
        "image/x-bmp": "bmp",
        "text/xml": "xml",
        "application/vnd.ms-word": "doc",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation": "pptx",
        "application/x-zip-compressed": "zip",
    }
)

#: MIME type -> preferred extension (first one listed in the table wins).
MIME_TO_EXTENSION: MappingProxyType[str, str] = MappingProxyType(
    {
        **{mime: ext for ext, mime in reversed(list(EXTENSION_TO_MIME.items()))},
        **_MIME_ALIASES,
    }
)

#: Types that say nothing about the content; the file name decides instead.
GENERIC_TYPES = frozenset(
    {"application/octet-stream", "application/x-download", "binary/octet-stream"}
)


def extension_of(filename: str) -> str:
    """Return the lower-case extension of ``filename`` without the dot, or ``""``."""
    base = filename.rsplit("/", 1)[-1].rsplit("\\", 1)[-1]
    if "." not in base.strip("."):
        return ""
    return base.rsplit(".", 1)[1].lower()


def supported_extension(content_type: str, filename: str | None) -> str | None:
    """Return the InterFAX extension for a document, or ``None`` if unsupported.

    A specific content type wins when InterFAX knows it; a generic type such as
    Outlook's ``application/octet-stream`` defers to the file name's extension.
    """
    mime = content_type.split(";", 1)[0].strip().lower()
    ext = extension_of(filename) if filename else ""
    if mime and mime not in GENERIC_TYPES and mime in MIME_TO_EXTENSION:
        by_mime = MIME_TO_EXTENSION[mime]
        # Keep the file's own extension when it names the same type (docx vs doc).
        if ext and EXTENSION_TO_MIME.get(ext) == EXTENSION_TO_MIME[by_mime]:
            return ext
        return by_mime
    if ext in EXTENSION_TO_MIME:
        return ext
    return None


def mime_for_extension(ext: str) -> str:
    """Return InterFAX's MIME type for a supported extension (``KeyError`` otherwise)."""
    return EXTENSION_TO_MIME[ext.lower()]


def supported_extensions_text() -> str:
    """A human list of supported extensions, for reports to senders."""
    return ", ".join(sorted(EXTENSION_TO_MIME))
