"""Outbound fax endpoints (shared/interfax-api.md §4 #1-#9) and the fax objects (§6.1)."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bridge.sandbox import errors, send
from bridge.sandbox.formats import NOT_YET, blank_fax_tiff, timestamp
from bridge.sandbox.model import PRIORITY, OutboundFax
from bridge.sandbox.query import Query
from bridge.sandbox.state import SandboxState
from bridge.sandbox.web import (
    DroppedResponse,
    base_url,
    binary,
    context,
    created,
    empty,
    json_response,
    read_body,
)

MAX_LIMIT = 1000
_NO_COST = Decimal("0.0000")


def summary_fax(state: SandboxState, fax: OutboundFax, base: str) -> dict[str, object]:
    """The summary level: exactly the keys JAVA-REC recorded for ``completed``."""
    progress = state.progress(fax)
    done = progress.completion_time
    return {
        "userId": state.username,
        "pagesSent": progress.pages_sent,
        "completionTime": NOT_YET if done is None else timestamp(done),
        "remoteCSID": progress.remote_csid,
        "duration": progress.duration,
        "priority": PRIORITY,
        "units": progress.units,
        "costPerUnit": state.cost_per_unit if progress.status >= 0 else _NO_COST,
        "attemptsMade": progress.attempts_made,
        "id": fax.id,
        "uri": f"{base}/outbound/faxes/{fax.id}",
        "status": progress.status,
    }


def full_fax(state: SandboxState, fax: OutboundFax, base: str) -> dict[str, object]:
    """The full level, keys in the recorded order (JAVA-REC ``body-faxes-667915751``)."""
    options = fax.options
    return {
        "submitTime": timestamp(fax.submit_time),
        "contact": options.contact,
        "destinationFax": fax.destination_fax,
        "replyEmail": options.reply_email,
        # UNCONFIRMED (§13): whether the live service echoes `reference` as `subject`
        # is unknown. The sandbox does, because the PCI API names the same field
        # `reference`; it is null when no reference was given.
        "subject": options.reference,
        "pagesSubmitted": fax.pages_submitted,
        "senderCSID": options.csid,
        "attemptsToPerform": options.attempts_to_perform,
        "pageSize": options.page_size,
        "resolution": options.resolution,
        "pageResolution": options.resolution,
        "pageOrientation": options.page_orientation,
        "rendering": options.rendering,
        "pageHeader": options.page_header,
        **summary_fax(state, fax, base),
    }


def _fax_id(request: Request) -> int:
    raw: str = request.path_params["fax_id"]
    if not raw.isdigit():
        raise errors.fax_not_found(raw, context(request).username)
    return int(raw)


async def send_fax(request: Request) -> Response:
    """POST /outbound/faxes: 201 + Location, or the connection dropped by a fault."""
    sandbox = context(request)
    state = sandbox.state
    query = Query(request.url.query)
    number = send.fax_number(query)
    assert number is not None
    options = send.options(query, state.clock())
    body = await read_body(request, send.SEND_BODY_LIMIT, errors.too_large)
    found = send.documents(state, request.headers, body)
    fax = state.add_fax(number, options, found.documents, found.renderable)
    state.use_documents(found.uploads)
    if sandbox.faults.take_drop():
        return DroppedResponse(sandbox.drop_connection)
    return created(request, f"/outbound/faxes/{fax.id}")


def _page(faxes: list[OutboundFax], query: Query) -> list[OutboundFax]:
    order = query.enum("sortOrder", {"asc": "asc", "desc": "desc"}, "desc")
    return faxes if order == "asc" else list(reversed(faxes))


async def list_faxes(request: Request) -> Response:
    """GET /outbound/faxes: full objects, ``lastId`` an exclusive cursor."""
    state = context(request).state
    query = Query(request.url.query)
    limit = query.integer("limit", 25, minimum=1, maximum=MAX_LIMIT)
    last_id = query.optional_integer("lastId")
    ascending = query.enum("sortOrder", {"asc": "asc", "desc": "desc"}, "desc") == "asc"
    faxes = _page(state.visible_faxes(), query)
    if last_id is not None:
        faxes = [f for f in faxes if (f.id > last_id if ascending else f.id < last_id)]
    base = base_url(request)
    return json_response(request, [full_fax(state, fax, base) for fax in faxes[:limit]])


async def completed(request: Request) -> Response:
    """GET /outbound/faxes/completed?ids=: summaries of the finished ones only."""
    state = context(request).state
    ids = Query(request.url.query).ids("ids")
    if ids is None:
        raise errors.invalid_parameter("ids is required")
    base = base_url(request)
    result = []
    for fax_id in dict.fromkeys(ids):
        fax = state.faxes.get(fax_id)
        if fax is not None and state.progress(fax).status >= 0:
            result.append(summary_fax(state, fax, base))
    return json_response(request, result)


async def record(request: Request) -> Response:
    """GET /outbound/faxes/{id}: one full object."""
    state = context(request).state
    fax = state.get_fax(_fax_id(request))
    return json_response(request, full_fax(state, fax, base_url(request)))


async def image(request: Request) -> Response:
    """GET /outbound/faxes/{id}/image: a multi-page TIFF, one blank page per page."""
    fax = context(request).state.get_fax(_fax_id(request))
    tiff = blank_fax_tiff(fax.pages_submitted, fine=fax.options.resolution == "Fine")
    return binary(tiff, "image/tiff")


async def cancel(request: Request) -> Response:
    """POST /outbound/faxes/{id}/cancel: 200 while in progress, else 409 -162."""
    context(request).state.cancel(_fax_id(request))
    return empty()


async def resend(request: Request) -> Response:
    """POST /outbound/faxes/{id}/resend[?faxNumber=]: 201 with the new fax's Location."""
    number = send.fax_number(Query(request.url.query), required=False)
    fax = context(request).state.resend(_fax_id(request), number)
    return created(request, f"/outbound/faxes/{fax.id}")


async def hide(request: Request) -> Response:
    """POST /outbound/faxes/{id}/hide: gone from list and search for good."""
    context(request).state.hide(_fax_id(request))
    return empty()


_FAMILIES: dict[str, Callable[[int], bool]] = {
    "all": lambda status: True,
    "completed": lambda status: status >= 0,
    "success": lambda status: status == 0,
    "failed": lambda status: status > 0,
    "inprocess": lambda status: status < 0,
}


def _status_filter(query: Query) -> Callable[[int], bool]:
    value = (query.text("status") or "all").strip()
    try:
        wanted = int(value)
    except ValueError:
        family = _FAMILIES.get(value.lower().replace(" ", ""))
        if family is None:
            raise errors.invalid_parameter(
                "status must be a number or one of Completed, Success, Failed, Inprocess, All"
            ) from None
        return family
    return lambda status: status == wanted


def _number_key(number: str) -> str:
    digits = "".join(ch for ch in number if ch.isdigit())
    return "00" + digits if number.strip().startswith("+") else digits


async def search(request: Request) -> Response:
    """GET /outbound/search: filters, ``sortOrder``, ``limit`` and ``offset``."""
    state = context(request).state
    query = Query(request.url.query)
    ids = query.ids("ids")
    reference = query.text("reference")
    date_from, date_to = query.datetime("dateFrom"), query.datetime("dateTo")
    status_ok = _status_filter(query)
    number = send.fax_number(query, required=False)
    limit = query.integer("limit", 25, minimum=1, maximum=MAX_LIMIT)
    offset = query.integer("offset", 0, minimum=0)
    selected = []
    for fax in _page(state.visible_faxes(), query):
        submitted = int(fax.submit_time)  # the service reports whole seconds
        if (
            (ids is None or fax.id in ids)
            and (reference is None or fax.options.reference == reference)
            and (date_from is None or submitted >= date_from)
            and (date_to is None or submitted <= date_to)
            and (number is None or fax.destination_fax == _number_key(number))
            and status_ok(state.progress(fax).status)
        ):
            selected.append(fax)
    base = base_url(request)
    page = selected[offset : offset + limit]
    return json_response(request, [full_fax(state, fax, base) for fax in page])


def routes() -> list[Route]:
    """The outbound fax routes (``completed`` before ``{fax_id}``)."""
    return [
        Route("/outbound/faxes", send_fax, methods=["POST"]),
        Route("/outbound/faxes", list_faxes, methods=["GET"]),
        Route("/outbound/faxes/completed", completed, methods=["GET"]),
        Route("/outbound/faxes/{fax_id}", record, methods=["GET"]),
        Route("/outbound/faxes/{fax_id}/image", image, methods=["GET"]),
        Route("/outbound/faxes/{fax_id}/cancel", cancel, methods=["POST"]),
        Route("/outbound/faxes/{fax_id}/resend", resend, methods=["POST"]),
        Route("/outbound/faxes/{fax_id}/hide", hide, methods=["POST"]),
        Route("/outbound/search", search, methods=["GET"]),
    ]
