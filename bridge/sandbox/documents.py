"""Document upload endpoints (shared/interfax-api.md §4 #16-#20, §6.4, §7, §12.11)."""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bridge.sandbox import errors
from bridge.sandbox.formats import timestamp, type_for_name
from bridge.sandbox.model import MAX_CHUNK_BYTES, MAX_DOCUMENT_BYTES, UploadDocument
from bridge.sandbox.query import Query
from bridge.sandbox.web import base_url, context, created, empty, json_response, read_body

MAX_LIMIT = 1000
DISPOSITIONS = {"singleuse": "SingleUse", "multiuse": "MultiUse", "permanent": "Permanent"}
SHARINGS = {"private": "Private", "shared": "Shared"}
_RANGE = re.compile(r"^\s*bytes\s*[= ]\s*(\d+)\s*-\s*(\d+)\s*$", re.IGNORECASE)


def upload_session(document: UploadDocument, user: str, base: str) -> dict[str, object]:
    """One upload session; note ``lastusageTime`` with a lower-case ``u`` (live casing)."""
    return {
        "userId": user,
        "fileName": document.file_name,
        "fileSize": document.file_size,
        "uploaded": len(document.data),
        "uri": f"{base}/outbound/documents/{document.id}",
        "creationTime": timestamp(document.creation_time),
        "lastusageTime": timestamp(document.last_usage_time),
        "status": document.status,
        "disposition": document.disposition,
        "sharing": document.sharing,
    }


async def create(request: Request) -> Response:
    """POST /outbound/documents?size=&name=: 201 + Location."""
    query = Query(request.url.query)
    size_text = query.text("size")
    if size_text is None or not size_text.strip():
        raise errors.invalid_parameter("size is required")
    try:
        size = int(size_text.strip())
    except ValueError:
        raise errors.not_positive_size(f"size {size_text!r} is not a number") from None
    if size <= 0:
        raise errors.not_positive_size(f"size must be positive, got {size}")
    if size > MAX_DOCUMENT_BYTES:
        raise errors.too_large(f"size {size} exceeds the {MAX_DOCUMENT_BYTES}-byte limit")
    name = (query.text("name") or "").strip()
    if not name:
        raise errors.invalid_parameter("name is required")
    if type_for_name(name) is None:
        raise errors.unsupported_type(f"The extension of {name!r} is not a supported file type")
    disposition = query.enum("disposition", DISPOSITIONS, "SingleUse")
    sharing = query.enum("sharing", SHARINGS, "Private")
    # Python 1.0.0 and Ruby can only send `shared` (a boolean), never `sharing`.
    if query.text("sharing") is None and query.boolean("shared", False):
        sharing = "Shared"
    document = context(request).state.create_document(name, size, disposition, sharing)
    return created(request, f"/outbound/documents/{document.id}")


async def upload_chunk(request: Request) -> Response:
    """POST /outbound/documents/{id} with ``Range: bytes=a-b`` (inclusive): 202, then 200."""
    state = context(request).state
    document_id: str = request.path_params["document_id"]
    state.get_document(document_id)
    match = _RANGE.match(request.headers.get("range", ""))
    if match is None:
        raise errors.invalid_chunk("A Range header like 'bytes=0-1023' is required")
    chunk = await read_body(request, MAX_CHUNK_BYTES, errors.invalid_chunk)
    complete = state.upload_chunk(document_id, int(match.group(1)), int(match.group(2)), chunk)
    return empty(200 if complete else 202)


async def list_documents(request: Request) -> Response:
    """GET /outbound/documents[?limit=&offset=]: an array of sessions, oldest first."""
    sandbox = context(request)
    query = Query(request.url.query)
    limit = query.integer("limit", 25, minimum=1, maximum=MAX_LIMIT)
    offset = query.integer("offset", 0, minimum=0)
    page = sandbox.state.live_documents()[offset : offset + limit]
    base = base_url(request)
    return json_response(request, [upload_session(d, sandbox.username, base) for d in page])


async def status(request: Request) -> Response:
    """GET /outbound/documents/{id}: one session, or 404 -1062."""
    sandbox = context(request)
    document = sandbox.state.get_document(request.path_params["document_id"])
    return json_response(request, upload_session(document, sandbox.username, base_url(request)))


async def delete(request: Request) -> Response:
    """DELETE /outbound/documents/{id}: 200; afterwards GET gives 404 -1062."""
    context(request).state.delete_document(request.path_params["document_id"])
    return empty()


def routes() -> list[Route]:
    """The document routes."""
    return [
        Route("/outbound/documents", create, methods=["POST"]),
        Route("/outbound/documents", list_documents, methods=["GET"]),
        Route("/outbound/documents/{document_id}", upload_chunk, methods=["POST"]),
        Route("/outbound/documents/{document_id}", status, methods=["GET"]),
        Route("/outbound/documents/{document_id}", delete, methods=["DELETE"]),
    ]
