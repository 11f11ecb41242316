"""Account and helper endpoints (shared/interfax-api.md §4 #21-#22)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bridge.sandbox.formats import media_type_list
from bridge.sandbox.web import context, json_response


async def balance(request: Request) -> Response:
    """GET /accounts/self/ppcards/balance: a bare decimal such as ``12.3400``."""
    return json_response(request, context(request).state.balance())


async def media_types(request: Request) -> Response:
    """GET /outbound/help/mediatype: ``[{"MediaType", "FileType"}]`` (shape UNCONFIRMED)."""
    return json_response(request, media_type_list())


def routes() -> list[Route]:
    """The account and helper routes."""
    return [
        Route("/accounts/self/ppcards/balance", balance, methods=["GET"]),
        Route("/outbound/help/mediatype", media_types, methods=["GET"]),
    ]
