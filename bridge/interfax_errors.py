"""The InterFAX client's exceptions and how an HTTP answer maps onto them. Pure, no httpx.

All are rooted in :mod:`bridge.errors`, so callers decide by category alone:

* The request never went out (connect error, connect or pool timeout, TLS
  handshake refused): :class:`InterfaxTransientError`. Retrying cannot duplicate.
* The request went out but no usable answer came back (read/write error or
  timeout, connection dropped, 5xx, a malformed success) on a call that changes
  state (send a fax, create or fill a document, cancel):
  :class:`InterfaxAmbiguousError`. This is the safe reading: the fax may exist,
  so the caller reconciles through ``search(reference=...)`` before sending
  again. For reads the same failures are plainly transient, since repeating a
  read is harmless.
* 429 and 503 carry ``retry_after`` (seconds) from ``Retry-After``.
* 401 and 403: :class:`InterfaxAuthError`; the caller pauses instead of failing
  every job (a 403 means a blocked or unauthorised account, where pausing and
  alerting is the right reaction too).
* Any other 4xx: :class:`InterfaxPermanentError` (404: :class:`InterfaxNotFoundError`)
  carrying InterFAX's ``code``, ``message`` and ``moreInfo``.
"""

from __future__ import annotations

import enum
from datetime import datetime

from bridge.errors import AmbiguousError, AuthError, BridgeError, PermanentError, TransientError
from bridge.interfax_wire import parse_error_body, parse_retry_after


class InterfaxError(BridgeError):
    """Base of the client's errors: what failed (``endpoint``) and what InterFAX said."""

    retry_after: float | None

    def __init__(
        self,
        description: str,
        *,
        endpoint: str,
        http_status: int | None = None,
        code: int | None = None,
        message: str | None = None,
        more_info: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(description)
        #: ``METHOD /path`` of the failed call (no query string, no ids of other calls).
        self.endpoint = endpoint
        self.http_status = http_status
        #: InterFAX's application code (usually negative), not the HTTP status.
        self.code = code
        self.message = message
        self.more_info = more_info
        self.retry_after = retry_after


class InterfaxTransientError(InterfaxError, TransientError):
    """Retry later: the request had no effect (or, for a read, its effect does not matter)."""


class InterfaxAmbiguousError(InterfaxTransientError, AmbiguousError):
    """A state-changing request may have taken effect: reconcile before repeating it."""


class InterfaxRateLimitError(InterfaxTransientError):
    """HTTP 429: slow down; ``retry_after`` says for how long when InterFAX tells."""


class InterfaxTLSError(InterfaxTransientError):
    """The server's certificate was not trusted, so nothing was sent.

    Transient on purpose: retrying is safe, and queued work must survive until an
    operator fixes the CA bundle (or a bad certificate is replaced upstream).
    Failing jobs permanently over a configuration slip would lose them.
    """


class InterfaxProtocolError(InterfaxTransientError):
    """A success answer to a read that we cannot use (bad JSON, missing fields)."""


class InterfaxAmbiguousProtocolError(InterfaxProtocolError, InterfaxAmbiguousError):
    """A success answer to a state change that we cannot use: it did take effect."""


class InterfaxPermanentError(InterfaxError, PermanentError):
    """InterFAX refused the request itself (4xx); repeating it will fail again."""


class InterfaxNotFoundError(InterfaxPermanentError):
    """HTTP 404: the fax, message or document does not exist (or is not ours)."""


class InterfaxRequestError(InterfaxPermanentError):
    """The request could not be built from the given input; nothing was sent."""


class InterfaxAuthError(InterfaxError, AuthError):
    """HTTP 401/403: credentials refused or the account may not do this; pause and alert."""


def error_for_status(
    status: int,
    body: bytes,
    *,
    endpoint: str,
    mutating: bool,
    retry_after: str | None,
    now: datetime,
) -> InterfaxError:
    """The exception for an HTTP answer whose status the call did not expect."""
    if 200 <= status < 300:
        success_cls = InterfaxAmbiguousProtocolError if mutating else InterfaxProtocolError
        return success_cls(
            f"{endpoint}: unexpected success status {status}", endpoint=endpoint, http_status=status
        )
    err = parse_error_body(body)
    code = None if err.code is None else f"code {err.code}"
    said = "; ".join(part for part in (err.message, code, err.more_info) if part)
    cls: type[InterfaxError]
    if status in (401, 403):
        cls = InterfaxAuthError
    elif status == 429:
        cls = InterfaxRateLimitError
    elif status >= 500:
        cls = InterfaxAmbiguousError if mutating else InterfaxTransientError
    elif status == 408:
        cls = InterfaxTransientError  # the server gave up before reading the whole request
    elif status == 404:
        cls = InterfaxNotFoundError
    else:
        cls = InterfaxPermanentError
    text = f"{endpoint}: HTTP {status}" + (f": {said}" if said else "")
    if cls is InterfaxAmbiguousError:
        text += " (the request may have taken effect)"
    return cls(
        text,
        endpoint=endpoint,
        http_status=status,
        code=err.code,
        message=err.message,
        more_info=err.more_info,
        retry_after=parse_retry_after(retry_after, now),
    )


class Delivery(enum.Enum):
    """How far a request got before the connection failed."""

    #: Never sent: no connection, connect or pool timeout.
    NOT_SENT = "no connection, nothing was sent"
    #: Never sent: the TLS handshake failed (untrusted or invalid certificate).
    TLS_REFUSED = "TLS handshake failed, nothing was sent"
    #: Never sent: the request itself cannot be sent (bad URL or scheme, bad header).
    UNSENDABLE = "the request cannot be sent"
    #: Sent, at least in part, but no complete answer came back.
    ANSWER_LOST = "no complete answer after the request went out"


def error_for_transport(
    delivery: Delivery, detail: str, *, endpoint: str, mutating: bool
) -> InterfaxError:
    """The exception for a connection-level failure, by how far the request got."""
    text = f"{endpoint}: {delivery.value}: {detail}"
    if delivery is Delivery.TLS_REFUSED:
        return InterfaxTLSError(text, endpoint=endpoint)
    if delivery is Delivery.NOT_SENT:
        return InterfaxTransientError(text, endpoint=endpoint)
    if delivery is Delivery.UNSENDABLE:
        return InterfaxRequestError(text, endpoint=endpoint)
    if mutating:
        return InterfaxAmbiguousError(f"{text}; it may have taken effect", endpoint=endpoint)
    return InterfaxTransientError(text, endpoint=endpoint)
