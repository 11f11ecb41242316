"""Where a received fax goes: pure routing from the fax's numbers to a :class:`Decision`.

Order (issue 4 §3): ``inbound.sender_routes`` first (first match wins; a sender route
matches when its ``caller_id`` equals the caller id normalised to E.164 and its
``remote_csid`` equals the remote CSID exactly after cleaning, each only when set), then
``inbound.routes`` by the number the fax arrived on, then ``inbound.default_route``.
No match at all gives ``None``: the caller leaves the fax unread and tells the admin.

Numbers. InterFAX writes ``phoneNumber`` in whatever form the account shows
(``2125550100``, ``+12125550100``, ``1-212-555-0100``); route keys are E.164 after the
configuration loaded. A number is read with ``outbound.default_country`` when it is
national, retried with a ``+`` in front (``12125550100`` is ``+1 212...``), and, when
neither gives a route key, matched against the route keys' national significant numbers
(``2125550100`` is the national part of ``+12125550100`` whatever the country setting).
The last step accepts only a single, unambiguous key.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import phonenumbers

from bridge.config import Config, InboundRoute, SenderRoute, normalize_number
from bridge.headersafe import clean_csid
from bridge.jobs import DeliveryChannel

__all__ = [
    "Decision",
    "ImageFormat",
    "Presentation",
    "RouteSource",
    "RoutingTable",
    "Target",
    "match_number",
    "normalise_number",
    "route_fax",
]


class RouteSource(enum.StrEnum):
    """Which part of ``inbound`` chose the route."""

    SENDER = "sender_routes"
    NUMBER = "routes"
    DEFAULT = "default_route"


class ImageFormat(enum.StrEnum):
    """What a route wants attached (``format``)."""

    PDF = "pdf"
    TIFF = "tiff"
    BOTH = "both"


@dataclass(frozen=True, slots=True)
class Presentation:
    """How the mail for a route looks; the same for every recipient of the route."""

    format: ImageFormat = ImageFormat.PDF
    attach: bool = True
    template: str | None = None
    to: tuple[str, ...] = ()
    cc: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Target:
    """One delivery: the ledger's recipient key and its channel.

    ``recipient`` is an email address for SMTP, the Maildir directory for
    ``deliver: maildir`` and the folder for ``deliver: imap``.
    """

    recipient: str
    channel: DeliveryChannel


@dataclass(frozen=True, slots=True)
class Decision:
    """The route chosen for a fax, why, and who gets it."""

    source: RouteSource
    key: str  # the matched number, caller id or CSID; "" for the default route
    presentation: Presentation
    targets: tuple[Target, ...]


@dataclass(frozen=True, slots=True)
class RoutingTable:
    """The routing part of the configuration, frozen."""

    routes: Mapping[str, InboundRoute]
    default_route: InboundRoute | None = None
    sender_routes: tuple[SenderRoute, ...] = ()
    default_country: str | None = None

    @property
    def configured(self) -> bool:
        """False when ``inbound`` names no route at all (the bridge only sends faxes)."""
        return bool(self.routes or self.default_route or self.sender_routes)

    @classmethod
    def from_config(cls, config: Config) -> RoutingTable:
        """The table of a loaded configuration (route keys are already E.164)."""
        inbound = config.inbound
        return cls(
            routes=MappingProxyType(dict(inbound.routes)),
            default_route=inbound.default_route,
            sender_routes=tuple(inbound.sender_routes),
            default_country=config.outbound.default_country,
        )


def _digits(text: str) -> str:
    return "".join(ch for ch in text if "0" <= ch <= "9")


@functools.lru_cache(maxsize=4096)
def normalise_number(text: str | None, default_country: str | None) -> str | None:
    """``text`` as E.164 (national numbers read in ``default_country``, then with a ``+``).

    None when it is not a valid number either way (a caller id of ``Anonymous``, say).
    Cached: every fax asks for the same few receiving numbers, and parsing is slow.
    """
    if not text or not text.strip():
        return None
    for candidate, country in ((text, default_country), ("+" + _digits(text), None)):
        try:
            return normalize_number(candidate, country)
        except ValueError:
            continue
    return None


@functools.lru_cache(maxsize=1024)
def _national_part(e164: str) -> str | None:
    try:
        parsed = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return None
    return str(phonenumbers.national_significant_number(parsed))


def match_number(text: str | None, default_country: str | None, keys: Iterable[str]) -> str | None:
    """The one key of ``keys`` (E.164 numbers) that ``text`` denotes, or None."""
    if not text:
        return None
    known = tuple(keys)
    e164 = normalise_number(text, default_country)
    if e164 is not None and e164 in known:
        return e164
    digits = _digits(text).lstrip("0")
    if len(digits) < 4:
        return None
    found = [key for key in known if (_national_part(key) or "").lstrip("0") == digits]
    return found[0] if len(found) == 1 else None


def _targets(route: InboundRoute) -> tuple[Target, ...]:
    if route.deliver == "maildir":
        assert route.path is not None  # the configuration requires it
        return (Target(str(route.path), DeliveryChannel.MAILDIR),)
    if route.deliver == "imap":
        assert route.folder is not None  # the configuration requires it
        return (Target(route.folder, DeliveryChannel.IMAP),)
    seen: set[str] = set()
    targets = []
    for address in (*route.to, *route.cc):
        if address.lower() not in seen:
            seen.add(address.lower())
            targets.append(Target(address, DeliveryChannel.SMTP))
    return tuple(targets)


def _decision(source: RouteSource, key: str, route: InboundRoute) -> Decision:
    presentation = Presentation(
        format=ImageFormat(route.format),
        attach=route.attach,
        template=route.template,
        to=tuple(route.to),
        cc=tuple(route.cc),
    )
    return Decision(source, key, presentation, _targets(route))


def route_fax(
    table: RoutingTable,
    *,
    phone_number: str | None,
    caller_id: str | None,
    remote_csid: str | None,
) -> Decision | None:
    """Choose the route of a fax from its (untrusted) numbers and CSID; None: no route."""
    callers = [s.caller_id for s in table.sender_routes if s.caller_id is not None]
    caller = match_number(caller_id, table.default_country, callers)
    csid = clean_csid(remote_csid)
    for sender in table.sender_routes:
        # A sender route names a caller id, a CSID or both; every one named must match.
        if sender.caller_id is not None and caller != sender.caller_id:
            continue
        if sender.remote_csid is not None and csid != clean_csid(sender.remote_csid):
            continue
        key = sender.caller_id if sender.caller_id is not None else sender.remote_csid
        return _decision(RouteSource.SENDER, key or "", sender)
    number = match_number(phone_number, table.default_country, table.routes)
    if number is not None:
        return _decision(RouteSource.NUMBER, number, table.routes[number])
    if table.default_route is not None:
        return _decision(RouteSource.DEFAULT, "", table.default_route)
    return None
