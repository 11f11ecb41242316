"""Fax recipients: envelope RCPT parsing and the destination policy (toll fraud).

Pure logic: plain values in, frozen dataclasses out. The SMTP listener calls
:func:`parse_fax_recipient` for every ``RCPT TO`` and then
:func:`check_destination`; a refusal carries the exact reply to send.

Recipient syntax (shared/reliability-design.md, "Recipient syntax"):

* only ``<number>@<fax_domain>``; the domain is compared case-insensitively and
  exactly, in ASCII only (no subdomains, no trailing dot, no Unicode case folding
  such as KELVIN SIGN -> ``k``); another domain is ``550 5.7.1`` (never a relay);
* the local part may be ``+E.164``, ``00`` + international, or a national number
  read with ``default_country``; spaces and ``-().`` are ignored;
* digits are ASCII ``0-9`` only (never ``\\d``, which also matches full-width and
  Arabic-Indic digits);
* ``%``, ``!``, source routes, quoted local parts, several ``@``, empty parts,
  control characters, non-ASCII text and over-long addresses are ``553 5.1.3``,
  as is a number that ``phonenumbers`` does not consider valid.

Refusal reasons are fixed texts plus values we derived ourselves (a region code,
a configured prefix): the raw address is never echoed on the wire.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

import phonenumbers

from bridge.mailtext import ascii_lower, has_control

# RFC 5321 §4.5.3.1: local part <= 64 octets, forward path <= 256 (with brackets).
_MAX_LOCAL_LEN = 64
_MAX_ADDRESS_LEN = 254
# E.164 allows at most 15 digits after the "+". A national form may add a trunk
# prefix or an IDD such as the NANP's "011", hence the looser bound.
_MAX_E164_DIGITS = 15
_MAX_NATIONAL_DIGITS = 18

_IGNORED_PUNCTUATION = str.maketrans("", "", " -().")
_NUMBER_RE = re.compile(r"\+?[0-9]+", re.ASCII)
_LOCAL_CHARS_RE = re.compile(r"[0-9+ \-().]+", re.ASCII)
_PREFIX_RE = re.compile(r"\+[0-9]{1,15}", re.ASCII)

#: phonenumbers' region code for non-geographic numbers (+800, +870, +883, ...).
NON_GEOGRAPHIC_REGION = "001"

#: Policy names (lower case) -> phonenumbers.PhoneNumberType values.
NUMBER_TYPES: dict[str, int] = {
    "fixed_line": phonenumbers.PhoneNumberType.FIXED_LINE,
    "mobile": phonenumbers.PhoneNumberType.MOBILE,
    "fixed_line_or_mobile": phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
    "toll_free": phonenumbers.PhoneNumberType.TOLL_FREE,
    "premium_rate": phonenumbers.PhoneNumberType.PREMIUM_RATE,
    "shared_cost": phonenumbers.PhoneNumberType.SHARED_COST,
    "voip": phonenumbers.PhoneNumberType.VOIP,
    "personal_number": phonenumbers.PhoneNumberType.PERSONAL_NUMBER,
    "pager": phonenumbers.PhoneNumberType.PAGER,
    "uan": phonenumbers.PhoneNumberType.UAN,
    "voicemail": phonenumbers.PhoneNumberType.VOICEMAIL,
    "unknown": phonenumbers.PhoneNumberType.UNKNOWN,
}
_TYPE_NAMES: dict[int, str] = {value: name for name, value in NUMBER_TYPES.items()}

#: Number types refused unless the configuration says otherwise.
DEFAULT_BLOCKED_NUMBER_TYPES: frozenset[str] = frozenset(
    {"premium_rate", "shared_cost", "uan", "personal_number", "voicemail"}
)

_TYPE_REASONS: dict[str, str] = {
    "premium_rate": "premium-rate numbers are blocked",
    "shared_cost": "shared-cost numbers are blocked",
    "uan": "universal access numbers (UAN) are blocked",
    "personal_number": "personal numbers are blocked",
    "voicemail": "voicemail numbers are blocked",
}


@dataclass(frozen=True)
class Refusal:
    """An SMTP refusal: ``code`` and ``enhanced`` status, a human ``reason``.

    ``metric`` is a short stable label for logs and the refused-by-reason metric.
    """

    code: int
    enhanced: str
    reason: str
    metric: str

    @property
    def reply(self) -> str:
        """The reply line as the listener sends it, e.g. ``553 5.1.3 ...``."""
        return f"{self.code} {self.enhanced} {self.reason}"


@dataclass(frozen=True)
class RecipientRefusal(Refusal):
    """The RCPT address is not an acceptable fax recipient."""


@dataclass(frozen=True)
class PolicyRefusal(Refusal):
    """The number is valid but the destination policy refuses it."""


@dataclass(frozen=True)
class FaxNumber:
    """A valid destination number.

    ``region`` is the ISO 3166 alpha-2 code phonenumbers assigns (``"001"`` for
    non-geographic numbers), ``number_type`` a lower-case key of
    :data:`NUMBER_TYPES`, ``international`` the human form (``+1 212-555-0100``).
    """

    e164: str
    region: str
    number_type: str
    international: str


def _bad(reason: str, metric: str) -> RecipientRefusal:
    return RecipientRefusal(553, "5.1.3", reason, metric)


def _check_shape(address: str, fax_domain: str) -> RecipientRefusal | str:
    """Return the local part of ``address``, or refuse the address for its shape."""
    if not address:
        return _bad("empty recipient address", "empty_address")
    if len(address) > _MAX_ADDRESS_LEN:
        return _bad("recipient address is too long", "too_long")
    if has_control(address):
        return _bad("control characters are not allowed in the address", "control_chars")
    if address.startswith("@"):
        return _bad("source routes are not accepted", "source_route")
    if '"' in address:
        return _bad("quoted local parts are not accepted", "quoted_local_part")
    if address.count("@") != 1:
        return _bad("the address must contain exactly one @", "bad_syntax")
    local, domain = address.split("@")
    if not local or not domain:
        return _bad("the address has an empty part", "bad_syntax")
    if not domain.isascii() or ascii_lower(domain) != ascii_lower(fax_domain):
        return RecipientRefusal(
            550, "5.7.1", f"relaying denied: only <number>@{fax_domain} is accepted", "relay_denied"
        )
    return local


def _normalise_local(local: str) -> RecipientRefusal | tuple[str, bool]:
    """Return (digits with optional leading +, is_international) or a refusal."""
    if len(local) > _MAX_LOCAL_LEN:
        return _bad("the number is too long", "too_long")
    if "%" in local or "!" in local:
        return _bad("% and ! routing is not accepted", "routing_hack")
    if not local.isascii():
        return _bad("only ASCII digits 0-9 are accepted", "non_ascii")
    if not _LOCAL_CHARS_RE.fullmatch(local):
        return _bad("the local part must be a fax number", "not_a_number")
    number = local.translate(_IGNORED_PUNCTUATION)
    if not number.strip("+"):
        return _bad("the number has no digits", "bad_syntax")
    if not _NUMBER_RE.fullmatch(number):
        return _bad("a + may only start the number", "bad_syntax")
    if number.startswith("+"):
        international, digits = True, number[1:]
    elif number.startswith("00"):
        international, digits = True, number[2:]
    else:
        international, digits = False, number
    limit = _MAX_E164_DIGITS if international else _MAX_NATIONAL_DIGITS
    if len(digits) > limit:
        return _bad("the number is too long", "too_long")
    return ("+" + digits if international else digits), international


def parse_fax_recipient(
    address: str, *, fax_domain: str, default_country: str
) -> FaxNumber | RecipientRefusal:
    """Parse an envelope RCPT address (without angle brackets) into a :class:`FaxNumber`.

    Returns a :class:`RecipientRefusal` (``550 5.7.1`` for another domain,
    ``553 5.1.3`` for anything malformed or an invalid number) instead of raising.
    """
    shape = _check_shape(address, fax_domain)
    if isinstance(shape, RecipientRefusal):
        return shape
    normalised = _normalise_local(shape)
    if isinstance(normalised, RecipientRefusal):
        return normalised
    number, international = normalised
    try:
        parsed = phonenumbers.parse(number, None if international else default_country)
    except phonenumbers.NumberParseException:
        return _bad("not a valid phone number", "invalid_number")
    if not phonenumbers.is_valid_number(parsed):
        return _bad("not a valid phone number", "invalid_number")
    region = phonenumbers.region_code_for_number(parsed)
    type_name = _TYPE_NAMES.get(phonenumbers.number_type(parsed), "unknown")
    return FaxNumber(
        e164=phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164),
        region=str(region) if region else "",
        number_type=type_name,
        international=phonenumbers.format_number(
            parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL
        ),
    )


@dataclass(frozen=True)
class DestinationPolicy:
    """Which valid numbers we may dial. Deny by default.

    Checks, in order; the first that fails refuses with ``553 5.7.1``:

    1. ``blocked_prefixes``: a number starting with one is refused. Always wins,
       even over ``allowed_prefixes`` and ``allowed_countries``.
    2. ``allowed_prefixes``: when non-empty, the number must start with one of
       them. It only narrows: countries and types below still apply.
    3. ``allowed_countries``: the number's region must be listed (ISO alpha-2, so
       a ``+1 876`` number is ``JM``, not ``US``). Non-geographic numbers (+800,
       +870 satellite, +979 premium, ...) have region ``"001"`` and pass only when
       ``"001"`` is listed. An empty set allows no destination at all.
    4. ``blocked_number_types``: names from :data:`NUMBER_TYPES`.
    5. A number of type ``unknown`` is always refused (fail closed). A valid
       number never has that type in phonenumbers, so this only guards against a
       metadata surprise. ``fixed_line_or_mobile`` (normal for NANP) is allowed.

    Values are normalised (upper-case countries, lower-case type names) and
    validated on construction; a bad value raises ``ValueError`` naming it.
    """

    allowed_countries: frozenset[str]
    blocked_number_types: frozenset[str] = DEFAULT_BLOCKED_NUMBER_TYPES
    blocked_prefixes: frozenset[str] = field(default_factory=frozenset)
    allowed_prefixes: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        countries = frozenset(c.strip().upper() for c in self.allowed_countries)
        known = frozenset(str(r) for r in phonenumbers.SUPPORTED_REGIONS)
        unknown_countries = sorted(countries - known - {NON_GEOGRAPHIC_REGION})
        if unknown_countries:
            raise ValueError(f"unknown country code(s): {', '.join(unknown_countries)}")
        types = frozenset(t.strip().lower() for t in self.blocked_number_types)
        unknown_types = sorted(types - NUMBER_TYPES.keys())
        if unknown_types:
            raise ValueError(f"unknown number type(s): {', '.join(unknown_types)}")
        for name in ("blocked_prefixes", "allowed_prefixes"):
            prefixes = frozenset(p.replace(" ", "") for p in getattr(self, name))
            bad = sorted(p for p in prefixes if not _PREFIX_RE.fullmatch(p))
            if bad:
                raise ValueError(f"{name}: not an E.164 prefix like +1900: {', '.join(bad)}")
            object.__setattr__(self, name, prefixes)
        object.__setattr__(self, "allowed_countries", countries)
        object.__setattr__(self, "blocked_number_types", types)


def _refuse(reason: str, metric: str) -> PolicyRefusal:
    return PolicyRefusal(553, "5.7.1", reason, metric)


def check_destination(number: FaxNumber, policy: DestinationPolicy) -> PolicyRefusal | None:
    """Return ``None`` when ``policy`` allows dialling ``number``, else the refusal."""
    for prefix in sorted(policy.blocked_prefixes):
        if number.e164.startswith(prefix):
            return _refuse(f"destination prefix {prefix} is blocked", "blocked_prefix")
    if policy.allowed_prefixes and not any(
        number.e164.startswith(prefix) for prefix in policy.allowed_prefixes
    ):
        return _refuse("destination is outside the allowed prefixes", "prefix_not_allowed")
    if number.region not in policy.allowed_countries:
        if number.region == NON_GEOGRAPHIC_REGION:
            return _refuse("non-geographic numbers are not allowed", "country_not_allowed")
        region = number.region or "unknown"
        return _refuse(f"destination country {region} is not allowed", "country_not_allowed")
    if number.number_type in policy.blocked_number_types:
        reason = _TYPE_REASONS.get(
            number.number_type, f"{number.number_type.replace('_', ' ')} numbers are blocked"
        )
        return _refuse(reason, "blocked_number_type")
    if number.number_type == "unknown":
        return _refuse("numbers of unknown type are not accepted", "unknown_number_type")
    return None


@functools.lru_cache(maxsize=4096)
def display_number(e164: str) -> str:
    """The human international form of a stored E.164 number (``+1 212-555-0100``).

    Falls back to the E.164 text itself when phonenumbers cannot parse it. Cached:
    parsing is slow, and the same numbers come back fax after fax.
    """
    try:
        parsed = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return e164
    return str(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL))
