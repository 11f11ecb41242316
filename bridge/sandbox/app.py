"""The sandbox's ASGI application: routes, authentication, faults and error bodies.

Every API path needs HTTP Basic credentials (401 with ``WWW-Authenticate: Basic
realm="InterFAX"`` and a ``text/json`` body with code -1003 otherwise). The page
at ``/`` and the control API under ``/_sandbox/`` need none: they are meant for
loopback use only. Faults (faults.py) apply to API paths only, before
authentication, as a network or a struggling server would.
"""

from __future__ import annotations

import base64
import binascii
import hmac

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from bridge.sandbox import account, control, documents, errors, inbound, mailview, outbound, page
from bridge.sandbox.web import SandboxContext, error_response


def _is_public(path: str) -> bool:
    return path in ("/", "/favicon.ico") or path == "/_sandbox" or path.startswith("/_sandbox/")


def credentials_match(header: str | None, username: str, password: str) -> bool:
    """True when ``header`` is ``Basic base64(username:password)`` (scheme any case)."""
    if not header:
        return False
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    user, colon, secret = decoded.partition(b":")
    # Both comparisons always run, so timing does not tell which part was wrong.
    user_ok = hmac.compare_digest(user, username.encode())
    secret_ok = hmac.compare_digest(secret, password.encode())
    return bool(colon) and user_ok and secret_ok


class ApiGate:
    """Pure ASGI middleware: faults, then Basic auth, for every API path."""

    def __init__(self, app: ASGIApp, sandbox: SandboxContext) -> None:
        self.app = app
        self.sandbox = sandbox

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if _is_public(scope["path"]):
            try:
                control.check_origin(Request(scope))
            except control.ControlError as exc:
                await control.control_error(exc)(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        failure = await self.sandbox.faults.before(scope["path"])
        if failure is None:
            request = Request(scope)
            authorization = request.headers.get("authorization")
            if not credentials_match(authorization, self.sandbox.username, self.sandbox.password):
                failure = errors.unauthorized()
        if failure is not None:
            await error_response(failure)(scope, receive, send)
            return
        await self.app(scope, receive, send)


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, errors.ApiError)
    return error_response(exc)


async def _control_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, control.ControlError)
    return control.control_error(exc)


async def _internal_error(request: Request, exc: Exception) -> Response:
    # A sandbox bug: answered like InterFAX's internal error; uvicorn still logs it.
    return error_response(errors.ApiError(500, -150, "Internal system error", None))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    path = request.url.path
    if _is_public(path):
        detail = f"{request.method} {path}: {exc.detail}"
        return control.control_error(control.ControlError(detail, exc.status_code))
    if exc.status_code == 405:
        return error_response(errors.method_not_allowed(request.method, path))
    if exc.status_code == 404:
        return error_response(errors.route_not_found(path))
    # Other HTTP errors raised by the framework (e.g. a malformed form body).
    return error_response(errors.invalid_parameter(str(exc.detail)))


def create_app(sandbox: SandboxContext) -> Starlette:
    """The ASGI app serving ``sandbox``."""
    routes = [
        *outbound.routes(),
        *documents.routes(),
        *inbound.routes(),
        *account.routes(),
        *control.routes(),
        *page.routes(),
        *mailview.routes(),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={
            errors.ApiError: _api_error,
            control.ControlError: _control_error,
            HTTPException: _http_error,
            Exception: _internal_error,
        },
    )
    app.state.sandbox = sandbox
    app.add_middleware(ApiGate, sandbox=sandbox)
    return app
