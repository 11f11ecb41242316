"""InterFAX-shaped errors: ``{"code", "message", "moreInfo"}`` with an HTTP status.

The four errors below that were recorded from the live service are verbatim
(shared/interfax-api.md §2 and §12.12): ``fax_not_found``, ``inbound_not_found``,
``document_not_found`` and ``wrong_status``. Every other code/message pair is a
choice of the sandbox, because the live REST code table was never available (§13):
the codes come from the SOAP-era table (D-ret) and the HTTP statuses follow the
analogies in §5 and §12. They are all UNCONFIRMED, and collected here in one place.
"""

from __future__ import annotations


class ApiError(Exception):
    """An error answered as an InterFAX error body (always ``text/json``)."""

    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        more_info: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status = status
        self.code = code
        self.message = message
        self.more_info = more_info
        self.headers = headers or {}

    def body(self) -> dict[str, object]:
        """The JSON error object, keys in the live order."""
        return {"code": self.code, "message": self.message, "moreInfo": self.more_info}


# --- Verbatim from the live service -------------------------------------------------


def fax_not_found(fax_id: int | str, user: str) -> ApiError:
    """404 -1005 for an unknown or foreign outbound fax (JAVA-REC)."""
    return ApiError(
        404,
        -1005,
        "Fax resource not found",
        f"Fax resource {fax_id} not found or not accessible by user {user}",
    )


def inbound_not_found(message_id: int | str) -> ApiError:
    """404 -3001 for an unknown inbound fax (NET integration tests)."""
    return ApiError(
        404,
        -3001,
        "Invalid MessageID or User is not authorized to access message",
        f"Invalid ID [{message_id}]",
    )


def document_not_found() -> ApiError:
    """404 -1062 for an unknown, deleted or consumed document (NET-REC)."""
    return ApiError(404, -1062, "Wrong uploaded document resource", None)


def wrong_status(fax_id: int) -> ApiError:
    """409 -162 when cancelling a fax that has already completed (NET tests)."""
    return ApiError(
        409,
        -162,
        "Transaction is in a wrong status for this operation",
        f"Transaction ID {fax_id} has already completed",
    )


# --- UNCONFIRMED: codes from the SOAP-era table, wording and statuses chosen here ------


def unauthorized() -> ApiError:
    """401 -1003. The body is UNCONFIRMED (no 401 was ever recorded)."""
    return ApiError(
        401,
        -1003,
        "Authentication error",
        None,
        headers={"WWW-Authenticate": 'Basic realm="InterFAX"'},
    )


def invalid_parameter(detail: str) -> ApiError:
    """400 -1030 for a malformed query parameter or request header."""
    return ApiError(400, -1030, "Invalid verb or verb data", detail)


def invalid_fax_number(detail: str) -> ApiError:
    """400 -112 for a missing or invalid ``faxNumber``."""
    return ApiError(400, -112, "No valid recipients or missing fax number", detail)


def no_documents(detail: str) -> ApiError:
    """400 -123 when a send carries no usable document."""
    return ApiError(400, -123, "No valid documents attached", detail)


def postpone_too_far(detail: str) -> ApiError:
    """400 -114 for a ``postponeTime`` more than 30 days ahead."""
    return ApiError(400, -114, "Postpone date is more than 30 days ahead", detail)


def unsupported_type(detail: str) -> ApiError:
    """415 -1004 for a document type InterFAX does not render."""
    return ApiError(415, -1004, "Unsupported file type", detail)


def too_large(detail: str) -> ApiError:
    """413 -1063 for a document or fax over 20 MB, or bytes beyond a document's size."""
    return ApiError(413, -1063, "Total file size too big", detail)


def missing_chunk(detail: str) -> ApiError:
    """400 -1061 for a chunk that does not start where the previous one ended."""
    return ApiError(400, -1061, "Missing chunk", detail)


def invalid_chunk(detail: str) -> ApiError:
    """400 -3005 for a chunk whose ``Range`` is missing, malformed or wrong in length."""
    return ApiError(400, -3005, "Invalid chunk size", detail)


def not_positive_size(detail: str) -> ApiError:
    """400 -1007 for a document ``size`` that is not a positive number."""
    return ApiError(400, -1007, "Size is not a positive number", detail)


def route_not_found(path: str) -> ApiError:
    """404 -1030 for a path the API does not have."""
    return ApiError(404, -1030, "Invalid verb or verb data", f"No resource at {path}")


def method_not_allowed(method: str, path: str) -> ApiError:
    """405 -1030 for a known path with the wrong method."""
    return ApiError(405, -1030, "Invalid verb or verb data", f"{method} is not allowed on {path}")


def rate_limited(retry_after: int) -> ApiError:
    """429 -1011 (the code is from forum 2998; the REST status is UNCONFIRMED)."""
    return ApiError(
        429,
        -1011,
        "Too many data requests",
        f"Rate limit exceeded; retry after {retry_after} seconds",
        headers={"Retry-After": str(retry_after)},
    )


def injected_failure(status: int) -> ApiError:
    """The error answered by the ``error_rate`` fault."""
    return ApiError(status, -150, "Internal system error", "Fault injected by the sandbox")
