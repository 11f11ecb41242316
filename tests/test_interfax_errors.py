"""How an InterFAX answer or a broken connection maps onto our exception tree (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bridge.errors import AmbiguousError, AuthError, PermanentError, TransientError
from bridge.interfax_errors import (
    Delivery,
    InterfaxAmbiguousError,
    InterfaxAmbiguousProtocolError,
    InterfaxAuthError,
    InterfaxError,
    InterfaxNotFoundError,
    InterfaxPermanentError,
    InterfaxProtocolError,
    InterfaxRateLimitError,
    InterfaxRequestError,
    InterfaxTLSError,
    InterfaxTransientError,
    error_for_status,
    error_for_transport,
)

NOW = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
NOT_FOUND = (
    b'{"code":-1005,"message":"Fax resource not found",'
    b'"moreInfo":"Fax resource 1 not found or not accessible by user u"}'
)


def _status(
    status: int, body: bytes = b"", *, mutating: bool = False, retry_after: str | None = None
) -> InterfaxError:
    return error_for_status(
        status, body, endpoint="X /p", mutating=mutating, retry_after=retry_after, now=NOW
    )


def test_a_404_is_permanent_and_carries_interfax_code_message_and_more_info() -> None:
    err = _status(404, NOT_FOUND)
    assert isinstance(err, InterfaxNotFoundError)
    assert isinstance(err, PermanentError)
    assert (err.http_status, err.code, err.message) == (404, -1005, "Fax resource not found")
    assert err.more_info == "Fax resource 1 not found or not accessible by user u"
    assert err.endpoint == "X /p"
    assert str(err) == (
        "X /p: HTTP 404: Fax resource not found; code -1005; "
        "Fax resource 1 not found or not accessible by user u"
    )


@pytest.mark.parametrize("status", [400, 409, 413, 415, 422, 301])
def test_other_client_errors_and_redirects_are_permanent(status: int) -> None:
    err = _status(status, b"<html>nope</html>", mutating=True)
    assert type(err) is InterfaxPermanentError
    assert err.code is None
    assert err.message == "<html>nope</html>"


@pytest.mark.parametrize("status", [401, 403])
def test_401_and_403_are_auth_errors_never_transient_or_permanent(status: int) -> None:
    err = _status(status, b'{"code":-1003,"message":"Authentication error","moreInfo":null}')
    assert isinstance(err, InterfaxAuthError)
    assert isinstance(err, AuthError)
    assert not isinstance(err, TransientError | PermanentError)
    assert err.code == -1003


def test_429_is_transient_with_retry_after_in_seconds_or_date() -> None:
    err = _status(429, retry_after="7", mutating=True)
    assert isinstance(err, InterfaxRateLimitError)
    assert not isinstance(err, AmbiguousError)
    assert err.retry_after == 7.0
    assert _status(429, retry_after="Mon, 01 Jan 2024 12:00:42 GMT").retry_after == 42.0
    assert _status(429).retry_after is None


def test_5xx_is_transient_for_reads_but_ambiguous_for_state_changes() -> None:
    read = _status(503, retry_after="3")
    assert type(read) is InterfaxTransientError
    assert read.retry_after == 3.0
    write = _status(503, retry_after="3", mutating=True)
    assert type(write) is InterfaxAmbiguousError
    assert write.retry_after == 3.0
    assert "may have taken effect" in str(write)
    assert type(_status(500, mutating=True)) is InterfaxAmbiguousError


def test_408_is_transient_even_for_a_state_change() -> None:
    assert type(_status(408, mutating=True)) is InterfaxTransientError


def test_an_unexpected_success_status_is_a_protocol_error_ambiguous_only_for_writes() -> None:
    assert type(_status(200)) is InterfaxProtocolError
    write = _status(200, mutating=True)
    assert type(write) is InterfaxAmbiguousProtocolError
    assert isinstance(write, AmbiguousError)
    assert isinstance(write, InterfaxProtocolError)


def test_transport_failures_before_sending_are_never_ambiguous() -> None:
    for mutating in (False, True):
        err = error_for_transport(
            Delivery.NOT_SENT, "ConnectError", endpoint="E", mutating=mutating
        )
        assert type(err) is InterfaxTransientError
        tls = error_for_transport(Delivery.TLS_REFUSED, "bad cert", endpoint="E", mutating=mutating)
        assert type(tls) is InterfaxTLSError
        assert isinstance(tls, TransientError)


def test_a_lost_answer_is_ambiguous_only_for_state_changes() -> None:
    read = error_for_transport(Delivery.ANSWER_LOST, "ReadTimeout", endpoint="E", mutating=False)
    assert type(read) is InterfaxTransientError
    write = error_for_transport(Delivery.ANSWER_LOST, "ReadTimeout", endpoint="E", mutating=True)
    assert type(write) is InterfaxAmbiguousError


def test_an_unsendable_request_is_permanent() -> None:
    err = error_for_transport(Delivery.UNSENDABLE, "bad scheme", endpoint="E", mutating=True)
    assert isinstance(err, InterfaxRequestError)
    assert isinstance(err, PermanentError)
