"""The control API under ``/_sandbox/``: what tests and demos use to steer the sandbox.

It needs no credentials (the sandbox is for loopback use only). As a guard against
cross-site requests from a browser, a POST or DELETE whose ``Origin`` header names
another host is refused with 403. Answers are 200 ``application/json``; errors are
``{"error": "..."}`` with status 400 or 404.

* ``POST /_sandbox/inbound`` (multipart/form-data: ``file`` = PDF or TIFF; fields
  ``phoneNumber`` (required), ``callerId``, ``remoteCSID``, optional
  ``messageStatus``, ``pages``, ``emails`` (comma-separated forwarding addresses))
  -> ``{"messageId": N}``: an UNREAD inbound fax. With a field ``next=/`` (the
  HTML form) it answers 303 to ``/`` instead.
* ``GET /_sandbox/inbound`` -> every inbound fax with its ``imageStatus``;
  ``GET /_sandbox/inbound/{id}/image`` -> its bytes.
* ``GET /_sandbox/outbound`` -> every fax received (hidden ones too), with its
  documents; ``GET /_sandbox/outbound/{id}/documents/{n}`` -> document n's bytes.
* ``GET|POST|DELETE /_sandbox/faults`` -> show, set, clear fault injection (faults.py).
* ``POST /_sandbox/advance`` ``{"id": N?, "status": int?}`` -> ``{"advanced": [ids]}``.
* ``POST /_sandbox/balance`` ``{"balance": "12.34"}`` -> ``{"balance": "12.3400"}``.
* ``POST /_sandbox/reset`` -> ``{"reset": true}``: forget everything, clear faults.
"""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from urllib.parse import urlsplit

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from bridge.sandbox.errors import ApiError
from bridge.sandbox.faults import FaultSettings
from bridge.sandbox.formats import count_pages, sniff, timestamp
from bridge.sandbox.model import MAX_DOCUMENT_BYTES, ForwardEmail, InboundFax, OutboundFax
from bridge.sandbox.web import base_url, binary, context

_IMAGE_TYPES = {"application/pdf", "image/tiff"}


class ControlError(Exception):
    """Answered as ``{"error": message}``."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def control_error(error: ControlError) -> Response:
    """The JSON body of a control API error."""
    return JSONResponse({"error": str(error)}, error.status)


def check_origin(request: Request) -> None:
    """Refuse a browser's cross-site POST/DELETE (a hostile page cannot steer us)."""
    origin = request.headers.get("origin")
    host = request.headers.get("host", "").lower()
    if origin and request.method not in ("GET", "HEAD") and urlsplit(origin).netloc.lower() != host:
        raise ControlError(f"cross-site request from {origin} refused", 403)


async def _json_body(request: Request) -> dict[str, object]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ControlError(f"the body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ControlError("the body must be a JSON object")
    return data


def _int_field(value: object, name: str) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ControlError(f"{name} must be an integer")
    try:
        return int(str(value).strip())
    except ValueError:
        raise ControlError(f"{name} must be an integer") from None


async def inject_inbound(request: Request) -> Response:
    """Receive a fax: the uploaded PDF or TIFF becomes an unread inbound fax."""
    sandbox = context(request)
    async with request.form(max_files=1, max_fields=20) as form:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise ControlError("a file field named 'file' (PDF or TIFF) is required")
        data = await upload.read(MAX_DOCUMENT_BYTES + 1)
        filename = upload.filename
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
    if len(data) > MAX_DOCUMENT_BYTES:
        raise ControlError(f"the file exceeds {MAX_DOCUMENT_BYTES} bytes")
    content_type = sniff(data)
    if content_type not in _IMAGE_TYPES:
        raise ControlError("the file must be a PDF or a TIFF (checked by its first bytes)")
    assert content_type is not None
    phone_number = fields.get("phoneNumber", "").strip()
    if not phone_number:
        raise ControlError("phoneNumber is required")
    pages = _int_field(fields.get("pages"), "pages")
    now = sandbox.state.clock()
    emails = [a.strip() for a in fields.get("emails", "").split(",") if a.strip()]
    fax = sandbox.state.add_inbound(
        InboundFax(
            message_id=0,
            phone_number=phone_number,
            caller_id=fields.get("callerId") or None,
            remote_csid=fields.get("remoteCSID", ""),
            message_status=_int_field(fields.get("messageStatus"), "messageStatus") or 0,
            pages=pages if pages and pages > 0 else count_pages(data, content_type),
            receive_time=now,
            image=data,
            content_type=content_type,
            filename=filename,
            emails=[ForwardEmail(address, 0, now) for address in emails],
        )
    )
    if fields.get("next") == "/":
        return RedirectResponse("/", 303)
    return JSONResponse({"messageId": fax.message_id})


def _inbound_entry(fax: InboundFax, base: str) -> dict[str, object]:
    return {
        "messageId": fax.message_id,
        "phoneNumber": fax.phone_number,
        "callerId": fax.caller_id,
        "remoteCSID": fax.remote_csid,
        "messageStatus": fax.message_status,
        "pages": fax.pages,
        "imageStatus": fax.image_status,
        "receiveTime": timestamp(fax.receive_time),
        "contentType": fax.content_type,
        "filename": fax.filename,
        "size": len(fax.image),
        "url": f"{base}/_sandbox/inbound/{fax.message_id}/image",
        "emails": [email.address for email in fax.emails],
    }


async def list_inbound(request: Request) -> Response:
    """Every inbound fax, ascending id."""
    state = context(request).state
    base = base_url(request)
    return JSONResponse([_inbound_entry(state.inbound[i], base) for i in sorted(state.inbound)])


def _path_int(request: Request, name: str) -> int:
    raw: str = request.path_params[name]
    if not raw.isdigit():
        raise ControlError(f"{name} must be a number", 404)
    return int(raw)


async def inbound_image(request: Request) -> Response:
    """The bytes of one inbound fax."""
    fax = context(request).state.inbound.get(_path_int(request, "message_id"))
    if fax is None:
        raise ControlError("no such inbound fax", 404)
    return _document_bytes(fax.image, fax.content_type)


def _outbound_entry(fax: OutboundFax, status: int, base: str) -> dict[str, object]:
    options = fax.options
    return {
        "id": fax.id,
        "faxNumber": fax.fax_number,
        "status": status,
        "reference": options.reference,
        "contact": options.contact,
        "hidden": fax.hidden,
        "submitTime": timestamp(fax.submit_time),
        "pages": fax.pages_submitted,
        # Named like the send arguments, as the request carried them.
        "options": {
            "replyAddress": options.reply_email,
            "csid": options.csid,
            "pageHeader": options.page_header,
            "retriesToPerform": options.attempts_to_perform,
            "pageSize": options.page_size,
            "resolution": options.resolution,
            "pageOrientation": options.page_orientation,
            "rendering": options.rendering,
            "fitToPage": options.fit_to_page,
            "postponeTime": None
            if options.postpone_time is None
            else timestamp(options.postpone_time),
        },
        "documents": [
            {
                "kind": doc.kind,
                "contentType": doc.content_type,
                "size": len(doc.data),
                "sha256": doc.sha256,
                "pages": doc.pages,
                "filename": doc.filename,
                "location": doc.location,
                "url": None
                if doc.kind == "external"
                else f"{base}/_sandbox/outbound/{fax.id}/documents/{index}",
            }
            for index, doc in enumerate(fax.documents)
        ],
    }


async def list_outbound(request: Request) -> Response:
    """Every fax the sandbox received, ascending id, hidden ones included."""
    state = context(request).state
    base = base_url(request)
    return JSONResponse(
        [
            _outbound_entry(fax, state.progress(fax).status, base)
            for _, fax in sorted(state.faxes.items())
        ]
    )


def _document_bytes(data: bytes, media_type: str | None) -> Response:
    response = binary(data, media_type or "application/octet-stream")
    # The page serves these on the sandbox's own origin: never let one run script.
    response.headers["Content-Security-Policy"] = "sandbox"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


async def outbound_document(request: Request) -> Response:
    """The bytes of document ``n`` (0-based) of fax ``id``."""
    fax = context(request).state.faxes.get(_path_int(request, "fax_id"))
    index = _path_int(request, "index")
    if fax is None or index >= len(fax.documents) or fax.documents[index].kind == "external":
        raise ControlError("no such document", 404)
    document = fax.documents[index]
    return _document_bytes(document.data, document.content_type)


async def faults(request: Request) -> Response:
    """GET shows, POST replaces, DELETE clears the fault configuration."""
    sandbox = context(request)
    if request.method == "POST":
        try:
            sandbox.faults.configure(FaultSettings.from_json(await _json_body(request)))
        except ValueError as exc:
            raise ControlError(str(exc)) from None
    elif request.method == "DELETE":
        sandbox.faults.clear()
    return JSONResponse(sandbox.faults.as_json())


async def advance(request: Request) -> Response:
    """Move one fax (``id``) or all in progress to ``status`` or their final status."""
    body = await _json_body(request)
    fax_id, status = _int_field(body.get("id"), "id"), _int_field(body.get("status"), "status")
    try:
        advanced = context(request).state.advance(fax_id, status)
    except ApiError:
        raise ControlError(f"no fax with id {fax_id}", 404) from None
    return JSONResponse({"advanced": advanced})


async def balance(request: Request) -> Response:
    """Set the account balance (it then goes down as faxes complete)."""
    state = context(request).state
    value = (await _json_body(request)).get("balance")
    try:
        state.set_balance(Decimal(str(value)))
    except (InvalidOperation, ValueError):
        raise ControlError('balance must be a decimal, e.g. {"balance": "12.34"}') from None
    return JSONResponse({"balance": str(state.balance())})


async def reset(request: Request) -> Response:
    """Forget every fax and document, restore the balance, clear the faults."""
    sandbox = context(request)
    sandbox.state.reset()
    sandbox.faults.clear()
    return JSONResponse({"reset": True})


def routes() -> list[Route]:
    """The control routes."""
    return [
        Route("/_sandbox/inbound", inject_inbound, methods=["POST"]),
        Route("/_sandbox/inbound", list_inbound, methods=["GET"]),
        Route("/_sandbox/inbound/{message_id}/image", inbound_image, methods=["GET"]),
        Route("/_sandbox/outbound", list_outbound, methods=["GET"]),
        Route("/_sandbox/outbound/{fax_id}/documents/{index}", outbound_document, methods=["GET"]),
        Route("/_sandbox/faults", faults, methods=["GET", "POST", "DELETE"]),
        Route("/_sandbox/advance", advance, methods=["POST"]),
        Route("/_sandbox/balance", balance, methods=["POST"]),
        Route("/_sandbox/reset", reset, methods=["POST"]),
    ]
