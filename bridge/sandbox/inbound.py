"""Inbound fax endpoints (shared/interfax-api.md §4 #10-#15) and objects (§6.2, §6.3)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bridge.sandbox import errors
from bridge.sandbox.formats import timestamp
from bridge.sandbox.model import InboundFax
from bridge.sandbox.query import Query
from bridge.sandbox.web import binary, context, json_response

MAX_LIMIT = 1000
# Seconds of call time per page, for `recordingDuration`.
_SECONDS_PER_PAGE = 25


def inbound_fax(fax: InboundFax, user: str) -> dict[str, object]:
    """One inbound fax with the live field names (JAVA-REC ``body-faxes-292626603``)."""
    return {
        "userId": user,
        "messageId": fax.message_id,
        "phoneNumber": fax.phone_number,
        "remoteCSID": fax.remote_csid,
        "messageStatus": fax.message_status,
        "pages": fax.pages,
        "messageSize": len(fax.image),
        "messageType": 1,
        "receiveTime": timestamp(fax.receive_time),
        "callerId": fax.caller_id,
        "recordingDuration": _SECONDS_PER_PAGE * fax.pages,
        "imageStatus": fax.image_status,
        "numOfEmails": len(fax.emails),
        "numOfFailedEmails": sum(1 for email in fax.emails if email.status > 0),
    }


def _message_id(request: Request) -> int:
    raw: str = request.path_params["message_id"]
    if not raw.isdigit():
        raise errors.inbound_not_found(raw)
    return int(raw)


async def list_inbound(request: Request) -> Response:
    """GET /inbound/faxes: always by descending id; ``lastId`` an exclusive cursor."""
    sandbox = context(request)
    query = Query(request.url.query)
    unread_only = query.boolean("unreadOnly", False)
    limit = query.integer("limit", 25, minimum=1, maximum=MAX_LIMIT)
    last_id = query.optional_integer("lastId")
    # allUsers: a single-user sandbox has nobody else's faxes, but the value is checked.
    query.boolean("allUsers", False)
    faxes = sandbox.state.inbound_page(unread_only, limit, last_id)
    return json_response(request, [inbound_fax(fax, sandbox.username) for fax in faxes])


async def record(request: Request) -> Response:
    """GET /inbound/faxes/{id}."""
    sandbox = context(request)
    fax = sandbox.state.get_inbound(_message_id(request))
    return json_response(request, inbound_fax(fax, sandbox.username))


async def image(request: Request) -> Response:
    """GET /inbound/faxes/{id}/image: the PDF or TIFF that was received."""
    fax = context(request).state.get_inbound(_message_id(request))
    return binary(fax.image, fax.content_type)


async def emails(request: Request) -> Response:
    """GET /inbound/faxes/{id}/emails: an array of forwarding emails."""
    fax = context(request).state.get_inbound(_message_id(request))
    return json_response(
        request,
        [
            {
                "emailAddress": email.address,
                "messageStatus": email.status,
                "completionTime": None
                if email.completion_time is None
                else timestamp(email.completion_time),
            }
            for email in fax.emails
        ],
    )


async def mark(request: Request) -> Response:
    """POST /inbound/faxes/{id}/mark[?unread=]: read by default; answers ``true``."""
    unread = Query(request.url.query).boolean("unread", False)
    context(request).state.mark(_message_id(request), read=not unread)
    return json_response(request, True)


async def resend(request: Request) -> Response:
    """POST /inbound/faxes/{id}/resend[?email=]: answers ``true``.

    ``email`` is what five clients send; .NET's ``emailAddress`` is honoured too
    (which one the live service reads is UNCONFIRMED, §13).
    """
    email = Query(request.url.query).first_text("email", "emailAddress")
    if email is not None:
        email = email.strip()
        if "@" not in email or any(ch in email for ch in "\r\n \t"):
            raise errors.invalid_parameter(f"email {email!r} is not an email address")
    context(request).state.resend_inbound(_message_id(request), email or None)
    return json_response(request, True)


def routes() -> list[Route]:
    """The inbound fax routes."""
    return [
        Route("/inbound/faxes", list_inbound, methods=["GET"]),
        Route("/inbound/faxes/{message_id}", record, methods=["GET"]),
        Route("/inbound/faxes/{message_id}/image", image, methods=["GET"]),
        Route("/inbound/faxes/{message_id}/emails", emails, methods=["GET"]),
        Route("/inbound/faxes/{message_id}/mark", mark, methods=["POST"]),
        Route("/inbound/faxes/{message_id}/resend", resend, methods=["POST"]),
    ]
