"""What every route needs: the sandbox context and InterFAX-shaped responses.

Content types (shared/interfax-api.md §1, §12.2): JSON successes are exactly
``text/json``, or ``application/json; charset=utf-8`` when the request's Accept
asks for ``application/json``; errors are always ``text/json``. Empty successes
carry ``Content-Length: 0`` and no body.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from bridge.sandbox import errors
from bridge.sandbox.faults import Faults
from bridge.sandbox.formats import dumps
from bridge.sandbox.state import SandboxState

TEXT_JSON = "text/json"
APPLICATION_JSON = "application/json; charset=utf-8"
_COMMON = {"Cache-Control": "private"}


@dataclass
class SandboxContext:
    """The state and the knobs shared by all routes (``app.state.sandbox``)."""

    state: SandboxState
    faults: Faults
    username: str
    password: str
    # Aborts the connection that carries the request in ``scope``; False if it cannot.
    drop_connection: Callable[[Scope], bool]
    # A Maildir whose messages the page lists (the demo's mail catcher), if any.
    mailbox: Path | None = None


def context(request: Request) -> SandboxContext:
    """The sandbox context of the app serving ``request``."""
    return cast(SandboxContext, request.app.state.sandbox)


def base_url(request: Request) -> str:
    """``scheme://host[:port]`` as the client addressed this server."""
    return str(request.base_url).rstrip("/")


def json_response(request: Request, value: object, status: int = 200) -> Response:
    """A JSON success with the negotiated content type."""
    accept = request.headers.get("accept", "").lower()
    media_type = APPLICATION_JSON if "application/json" in accept else TEXT_JSON
    # The type goes in as a header: Response(media_type=...) would append a charset
    # to text/json, and PHP compares the whole header line.
    return Response(dumps(value), status, headers={**_COMMON, "Content-Type": media_type})


def empty(status: int = 200) -> Response:
    """An empty success (``Content-Length: 0``)."""
    return Response(b"", status, headers=_COMMON)


def created(request: Request, path: str) -> Response:
    """201 with an absolute Location whose last segment is the new id."""
    return Response(b"", 201, headers={**_COMMON, "Location": base_url(request) + path})


def binary(data: bytes, media_type: str) -> Response:
    """Image or document bytes."""
    return Response(data, 200, headers={**_COMMON, "Content-Type": media_type})


def error_response(error: errors.ApiError) -> Response:
    """An InterFAX error body, always ``text/json``."""
    headers = {**_COMMON, **error.headers, "Content-Type": TEXT_JSON}
    return Response(dumps(error.body()), error.status, headers=headers)


async def read_body(
    request: Request, limit: int, too_big: Callable[[str], errors.ApiError]
) -> bytes:
    """The request body, refused with ``too_big`` once it exceeds ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_big(f"The request body of {declared} bytes exceeds {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_big(f"The request body exceeds {limit} bytes")
    return bytes(body)


class DroppedResponse(Response):
    """No response at all: the connection is aborted (``drop_after_commit``)."""

    def __init__(self, drop_connection: Callable[[Scope], bool]) -> None:
        super().__init__(b"", 201)
        self._drop_connection = drop_connection

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._drop_connection(scope):
            # Loud on purpose: the fault would otherwise silently not happen.
            raise RuntimeError("drop_after_commit: the request's connection was not found")
        # Wait for the server to notice, so that it does not answer in our place.
        while (await receive())["type"] != "http.disconnect":
            pass
