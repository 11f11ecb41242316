"""Sender authorisation (deny by default) and automatic-mail detection.

Pure logic. The SMTP listener passes the envelope sender and the message's From
header values; nothing here does I/O.

Address parsing is strict on purpose (CVE-2023-27043: ``email.utils.parseaddr``
and ``getaddresses`` on this Python read ``alice@ex.org <bob@ex.com>`` as
alice, which defeats a domain allowlist). :func:`parse_single_address` uses the
modern ``email.headerregistry`` parser and then verifies its answer on its own:

* no control characters at all (CR, LF, NUL, DEL, C1, Unicode line separators);
* exactly one ``@`` in the whole raw value, so a display name or a comment can
  never carry a second address (``"alice@ex.org" <bob@ex.com>`` and
  ``alice@ex.org (bob@ex.com)`` are refused, not read either way);
* exactly one mailbox: no ``,`` or ``;`` outside quotes, no group syntax, no
  parser defects (unbalanced quotes or brackets, trailing junk, obsolete
  routes) except an unquoted dot in a display name (``J. Smith <j@ex.org>``);
* a decoded display name must not contain ``@`` (encoded-word disguise);
* the address found is an unquoted ASCII dot-atom ``local@domain`` with a
  hostname domain (no IP literals, no numeric top label), and that exact text
  occurs in the raw value, so the parser cannot have assembled it from pieces
  (``alice(x)@ex.org``, ``alice @ ex.org``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from email import policy as email_policy
from email.headerregistry import AddressHeader, BaseHeader

from bridge.mailtext import ascii_lower, has_control

_MAX_VALUE_LEN = 998
_MAX_LOCAL_LEN = 64
_MAX_DOMAIN_LEN = 253
_MAX_ADDRESS_LEN = 254

# RFC 5322 atext, ASCII only.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LOCAL_RE = re.compile(rf"{_ATOM}(?:\.{_ATOM})*", re.ASCII)
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN_RE = re.compile(rf"{_LABEL}(?:\.{_LABEL})*", re.ASCII)

# Unquoted dots in a display name ("J. Smith <j@ex.org>") are common and harmless;
# every other defect (routes, junk after the address, a second address) refuses.
_TOLERATED_DEFECTS = frozenset({"period in 'phrase'"})


def _has_unquoted_separator(value: str) -> bool:
    """True when ``,`` or ``;`` appears outside a quoted string (a list or a group)."""
    quoted = escaped = False
    for ch in value:
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch in ",;" and not quoted:
            return True
    return False


def _valid_addr_spec(local: str, domain: str) -> bool:
    return (
        0 < len(local) <= _MAX_LOCAL_LEN
        and len(local) + 1 + len(domain) <= _MAX_ADDRESS_LEN
        and _LOCAL_RE.fullmatch(local) is not None
        # An encoded-word opener in an address is never needed and could be
        # decoded by a later header round trip.
        and "=?" not in local
        and _valid_domain(domain)
    )


def _valid_domain(domain: str) -> bool:
    return (
        0 < len(domain) <= _MAX_DOMAIN_LEN
        and _DOMAIN_RE.fullmatch(domain) is not None
        # A numeric last label is an IP address written without brackets.
        and not domain.rsplit(".", 1)[-1].isdigit()
    )


def parse_single_address(value: str) -> str | None:
    """Return the one ``local@domain`` in an envelope or From value, else ``None``.

    Accepts ``alice@ex.org``, ``<alice@ex.org>``, ``Alice <alice@ex.org>``,
    ``"Alice Smith" <alice@ex.org>``, encoded-word display names and a trailing
    comment without ``@``. Refuses everything ambiguous (see the module doc).
    The domain is returned lower-cased (ASCII), the local part as written.
    """
    value = str(value)
    if not value or len(value) > _MAX_VALUE_LEN or has_control(value):
        return None
    if value.count("@") != 1 or _has_unquoted_separator(value):
        return None
    try:
        header = email_policy.default.header_factory("From", value)
        if not isinstance(header, AddressHeader) or not isinstance(header, BaseHeader):
            return None
        if any(str(defect) not in _TOLERATED_DEFECTS for defect in header.defects):
            return None
        groups = header.groups
        if len(groups) != 1 or groups[0].display_name is not None:
            return None
        addresses = groups[0].addresses
        if len(addresses) != 1:
            return None
        address = addresses[0]
        local, domain, display = address.username, address.domain, address.display_name
    except Exception:
        # The modern parser raises bare IndexError & co. on hostile input.
        return None
    if "@" in display or not _valid_addr_spec(local, domain):
        return None
    if f"{local}@{domain}" not in value:
        return None
    return f"{local}@{ascii_lower(domain)}"


@dataclass(frozen=True)
class SenderPolicy:
    """Who may send faxes: exact addresses and ``*@domain`` patterns.

    Matching is case-insensitive for the domain and, deliberately, for the local
    part too: mail systems treat ``Alice@`` and ``alice@`` as one mailbox in
    practice, and an allowlist that silently missed ``Alice@`` would only cause
    confusing refusals. A pattern matches its domain exactly (``*@ex.org`` does
    not match ``a@sub.ex.org``). An empty tuple denies everyone.

    Entries are validated and lower-cased on construction; an invalid entry
    raises ``ValueError`` naming it.
    """

    allowed: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        normalised: list[str] = []
        for entry in self.allowed:
            text = entry.strip()
            if text.startswith("*@"):
                domain = text[2:]
                if not _valid_domain(domain):
                    raise ValueError(f"invalid sender pattern: {entry!r}")
                normalised.append("*@" + ascii_lower(domain))
                continue
            if "*" in text:
                raise ValueError(
                    f"invalid sender pattern: {entry!r} (the only wildcard is *@domain)"
                )
            address = parse_single_address(text)
            # Only a bare addr-spec round-trips; "Alice <a@ex.org>" is a typo here.
            if address is None or ascii_lower(address) != ascii_lower(text):
                raise ValueError(f"invalid sender address: {entry!r} (use a bare address)")
            normalised.append(ascii_lower(address))
        object.__setattr__(self, "allowed", tuple(normalised))

    def allows(self, address: str) -> bool:
        """True when the bare ``address`` (from :func:`parse_single_address`) is listed."""
        wanted = ascii_lower(address)
        _, at, domain = wanted.rpartition("@")
        if not at:
            return False
        return any(entry in (wanted, "*@" + domain) for entry in self.allowed)


@dataclass(frozen=True)
class SenderDecision:
    """The outcome of :func:`authorise`.

    ``reason`` is a stable code for logs and metrics: ``ok``, ``null_sender``,
    ``bad_sender`` (the envelope sender is not one clean address),
    ``not_allowed`` (envelope sender not listed), ``missing_from``,
    ``ambiguous_from`` (several From headers, or not exactly one clean address)
    or ``from_not_allowed``. ``sender`` is the parsed envelope address when there
    was one.
    """

    allowed: bool
    reason: str
    sender: str | None = None


def check_envelope_sender(envelope_sender: str, policy: SenderPolicy) -> SenderDecision:
    """Decide on the envelope sender alone (usable at ``MAIL FROM``).

    The null sender (``""`` or ``<>``) is never authorised: it marks bounces and
    other automatic mail, and a report could not be returned to it anyway.
    """
    if envelope_sender.strip(" ") in ("", "<>"):
        return SenderDecision(False, "null_sender")
    # Not stripped further: a trailing CR/LF must refuse, not vanish.
    sender = parse_single_address(envelope_sender)
    if sender is None:
        return SenderDecision(False, "bad_sender")
    if not policy.allows(sender):
        return SenderDecision(False, "not_allowed", sender)
    return SenderDecision(True, "ok", sender)


def authorise(
    envelope_sender: str,
    from_header: str | Sequence[str] | None,
    policy: SenderPolicy,
) -> SenderDecision:
    """Authorise a message: the envelope sender and the From address must both be allowed.

    ``from_header`` is the From value, or better every From value of the message
    (``msg.get_all("From", [])``): zero values is ``missing_from``, more than one
    is ``ambiguous_from``. The two addresses need not be equal, but each must pass
    the policy on its own.
    """
    decision = check_envelope_sender(envelope_sender, policy)
    if not decision.allowed:
        return decision
    values = [from_header] if isinstance(from_header, str) else list(from_header or ())
    if not values:
        return SenderDecision(False, "missing_from", decision.sender)
    if len(values) != 1:
        return SenderDecision(False, "ambiguous_from", decision.sender)
    from_address = parse_single_address(values[0])
    if from_address is None:
        return SenderDecision(False, "ambiguous_from", decision.sender)
    if not policy.allows(from_address):
        return SenderDecision(False, "from_not_allowed", decision.sender)
    return decision


# Header -> values that mean "a person sent this" (anything else is automatic).
_HUMAN_VALUES: dict[str, frozenset[str]] = {
    "auto-submitted": frozenset({"no"}),
    "x-autoreply": frozenset({"no", "false", "0"}),
    "x-autorespond": frozenset({"no", "false", "0"}),
}
_AUTOMATIC_PRECEDENCE = frozenset({"bulk", "junk", "list", "auto_reply"})


def auto_submitted_marker(headers: Iterable[tuple[str, str]]) -> str | None:
    """Return the header name that marks the message as automatic, or ``None``.

    ``headers`` are (name, value) pairs, e.g. ``msg.items()``. Automatic mail
    never creates a fax (RFC 3834), and a report to it could start a mail loop:

    * ``Auto-Submitted``: any value but ``no`` (an empty value counts as automatic);
    * ``X-Autoreply`` / ``X-Autorespond``: present with any value but
      ``no``/``false``/``0`` (vacation responders);
    * ``Precedence``: ``bulk``, ``junk``, ``list`` or ``auto_reply``;
    * ``Content-Type: multipart/report``: a bounce (DSN) or read receipt (MDN).
    """
    for name, raw in headers:
        key = ascii_lower(str(name).strip())
        # Drop an RFC 5322 comment or parameters: "auto-replied (vacation)".
        value = ascii_lower(re.split(r"[\s(;]", str(raw).strip(), maxsplit=1)[0])
        if key in _HUMAN_VALUES and value not in _HUMAN_VALUES[key]:
            return str(name)
        if key == "precedence" and value in _AUTOMATIC_PRECEDENCE:
            return str(name)
        if key == "content-type" and value == "multipart/report":
            return str(name)
    return None
