"""What an InterFAX fax status code means (shared/interfax-api.md §3). Pure, no I/O.

A negative code means the fax is still being handled, ``0`` means it was sent
and confirmed by the receiving machine, and a positive code is a final failure.
Forwarding-email ``messageStatus`` and inbound ``messageStatus`` follow the same
sign rule. :func:`describe` gives a sentence a sender can act on for every code
InterFAX documents, and a sensible fallback for any other code.
"""

from __future__ import annotations

import enum
from types import MappingProxyType


class StatusCategory(enum.StrEnum):
    """A short, stable family name for a status code (for logs, metrics, reports)."""

    IN_PROGRESS = "in_progress"
    WAITING_FOR_CREDIT = "waiting_for_credit"
    SENT = "sent"
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    NOT_OPERATIONAL = "not_operational"
    REJECTED = "rejected"
    NUMBER_CHANGED = "number_changed"
    NO_ROUTE = "no_route"
    HUMAN_ANSWERED = "human_answered"
    INCOMPATIBLE = "incompatible"
    DISCONNECTED = "disconnected"
    TELEPHONY = "telephony"
    CANCELLED = "cancelled"
    RENDERING = "rendering"
    QUOTA = "quota"
    INTERNAL = "internal"
    UNKNOWN = "unknown"


_C = StatusCategory

_TELEPHONY = "A telephone line error interrupted the transmission"
_INCOMPATIBLE = "The receiving fax machine is not compatible with ours"
_NOT_OPERATIONAL = "The fax number is not in service"
_BUSY = "The line was busy"
_NO_ANSWER = "No fax machine answered (it may be switched off or out of paper)"
_REJECTED = "The call was rejected by the receiving side"
_RENDERING = "The document could not be converted into fax pages"
_INTERNAL = "InterFAX had an internal error"


def _each(codes: tuple[int, ...], category: StatusCategory, text: str) -> dict[int, tuple[_C, str]]:
    return dict.fromkeys(codes, (category, text))


# Every code listed in §3, with the wording chosen for a sender who is not a fax engineer.
_KNOWN: MappingProxyType[int, tuple[StatusCategory, str]] = MappingProxyType(
    {
        -1: (_C.IN_PROGRESS, "Being prepared for sending"),
        -11: (_C.IN_PROGRESS, "Being prepared for sending"),
        -2: (_C.IN_PROGRESS, "Ready, waiting in the outbound queue"),
        -3: (_C.IN_PROGRESS, "Being sent, or waiting for another attempt"),
        -22: (
            _C.WAITING_FOR_CREDIT,
            "Waiting: the account is out of credit (cancelled after 24 hours without a top-up)",
        ),
        0: (_C.SENT, "Sent successfully and confirmed by the receiving fax machine"),
        1: (_C.INTERNAL, _INTERNAL),
        2: (_C.TELEPHONY, _TELEPHONY),
        12: (_C.TELEPHONY, _TELEPHONY),
        256: (_C.INTERNAL, _INTERNAL),
        263: (_C.BUSY, _BUSY),
        403: (_C.CANCELLED, "The fax was cancelled before it was sent"),
        **_each((3072, 3080, 3300, 3510, 3830), _C.TELEPHONY, _TELEPHONY),
        **_each((3211, 3220, 3225, 3231, 3233, 3264, 3267, 3269), _C.INCOMPATIBLE, _INCOMPATIBLE),
        3223: (_C.DISCONNECTED, "The call was disconnected unexpectedly"),
        3224: (_C.NO_ANSWER, "The remote fax machine did not respond"),
        3230: (_C.DISCONNECTED, "The call was disconnected while the fax machines negotiated"),
        3268: (_C.TELEPHONY, "A transmission error occurred after a page break"),
        **_each((3912, 3932, 3938, 6001, 6027, 6028), _C.NOT_OPERATIONAL, _NOT_OPERATIONAL),
        **_each((3931, 3933, 6017, 8025), _C.BUSY, _BUSY),
        **_each((3935, 6018, 8021), _C.NO_ANSWER, _NO_ANSWER),
        3936: (_C.HUMAN_ANSWERED, "A person answered the call instead of a fax machine"),
        3937: (_C.BUSY, "The line rang busy"),
        **_each((6021, 6029), _C.REJECTED, _REJECTED),
        6022: (_C.NUMBER_CHANGED, "The fax number has changed"),
        6002: (_C.NO_ROUTE, "There is no telephone route to this number"),
        **_each((6088, 6095, 6097, 6099, 6100), _C.INCOMPATIBLE, "The destination is incompatible"),
        **_each((7004, 7012, 7013), _C.TELEPHONY, _TELEPHONY),
        7200: (_C.UNKNOWN, "The fax failed for an unspecified reason"),
        8010: (_C.DISCONNECTED, "The remote side hung up before receiving the fax"),
        204000: (_C.RENDERING, _RENDERING),
        204001: (_C.RENDERING, _RENDERING),
        205000: (_C.QUOTA, "Cancelled: the account's prepaid credit ran out"),
        205001: (_C.INTERNAL, _INTERNAL),
        206001: (_C.INTERNAL, _INTERNAL),
    }
)

#: The unlisted codes of this range are telephony errors or incompatible destinations (§3).
_TELEPHONY_RANGE = range(6003, 6128)


def _lookup(code: int) -> tuple[StatusCategory, str]:
    known = _KNOWN.get(code)
    if known is not None:
        return known
    if code < 0:
        return _C.IN_PROGRESS, "Being handled by InterFAX"
    if code in _TELEPHONY_RANGE:
        return _C.TELEPHONY, "A telephone line error occurred, or the destination is incompatible"
    return _C.UNKNOWN, "The fax failed"


def describe(code: int) -> str:
    """Return a human sentence for a fax status code, ending with the code itself."""
    return f"{_lookup(code)[1]} (InterFAX status {code})"


def category(code: int) -> StatusCategory:
    """Return the short family of a status code (``busy``, ``no_answer``, ...)."""
    return _lookup(code)[0]


def is_final(code: int) -> bool:
    """True when the fax will not change any more (sent or failed)."""
    return code >= 0


def is_success(code: int) -> bool:
    """True only for ``0``: sent and confirmed by the receiving machine."""
    return code == 0
