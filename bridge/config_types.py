"""Value types of the configuration: durations, sizes, hosts, addresses, numbers, paths.

Part of the configuration layer (the ``bridge.config*`` modules), the only modules
allowed to import pydantic. Everything here turns one YAML scalar into one plain
Python value (``float`` seconds, ``int`` bytes, ``str``, ``Path``) or into a
:class:`HostPort`, so code outside the configuration layer never sees a pydantic type.

Validators raise :class:`ValueError` with a message that never contains the
offending value when that value may be a secret.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import phonenumbers
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, ValidationInfo
from pydantic_core import PydanticCustomError

__all__ = [
    "ConfigPath",
    "CountryCode",
    "Duration",
    "EmailAddress",
    "ExistingDir",
    "ExistingFile",
    "FrozenModel",
    "HostPort",
    "Hostname",
    "ListenAddress",
    "Lower",
    "SenderPattern",
    "Size",
    "is_loopback_host",
    "normalize_number",
    "problems",
]

# --------------------------------------------------------------------------- base, errors


class FrozenModel(BaseModel):
    """Base of every configuration section: immutable, and unknown keys are errors."""

    # hide_input_in_errors: pydantic's own error text must never carry a value
    # (it could be a secret); bridge.config formats errors without inputs anyway.
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)


def _lower(value: object) -> object:
    return value.strip().lower() if isinstance(value, str) else value


Lower = BeforeValidator(_lower)
"""Annotate a ``Literal`` field with this to accept its values in any letter case."""


def problems(items: Iterable[tuple[tuple[str | int, ...], str]]) -> PydanticCustomError:
    """Build one validation error that carries several problems, each at a sub-key.

    pydantic lets a validator raise one error at the model's own location;
    :mod:`bridge.config` expands ``ctx["items"]`` so that each problem is reported
    at ``location + at`` with its own line number.
    """
    listed = tuple(items)
    return PydanticCustomError(
        "config_problems", "{summary}", {"summary": listed[0][1], "items": listed}
    )


# --------------------------------------------------------------------------- durations, sizes

_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h|d)", re.ASCII)
_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]+)?", re.ASCII)


def _parse_duration(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError("must be a duration such as 30s, 5m, 2h, 1d or 250ms")
    if isinstance(value, str):
        text = value.strip()
        if _NUMBER.fullmatch(text):
            seconds = float(text)
        else:
            pos, seconds = 0, 0.0
            for match in _DURATION_PART.finditer(text):
                if text[pos : match.start()].strip():
                    break
                seconds += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
                pos = match.end()
            if pos == 0 or text[pos:].strip():
                raise ValueError(
                    f"{value!r} is not a duration; use seconds or 30s, 5m, 2h, 1d, 250ms, 1h30m"
                )
    else:
        seconds = float(value)
    if not seconds > 0 or seconds == float("inf"):
        raise ValueError("must be a positive duration")
    return seconds


Duration = Annotated[float, BeforeValidator(_parse_duration)]
"""Seconds as ``float``; YAML gives a number of seconds or text like ``5m``."""

_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}
_SIZE = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)", re.ASCII)


def _parse_size(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError("must be a size such as 25MB, 512KB, 1GB or 20MiB")
    if isinstance(value, str):
        match = _SIZE.fullmatch(value.strip())
        unit = match.group(2).lower() if match else ""
        if match is None or unit not in _SIZE_UNITS:
            raise ValueError(f"{value!r} is not a size; use bytes or 25MB, 512KB, 1GB, 20MiB")
        size = round(float(match.group(1)) * _SIZE_UNITS[unit])
    elif isinstance(value, float) and not value.is_integer():
        raise ValueError("must be a whole number of bytes")
    else:
        size = int(value)
    if size <= 0:
        raise ValueError("must be a positive size")
    return size


Size = Annotated[int, BeforeValidator(_parse_size)]
"""Bytes as ``int``; YAML gives a number of bytes or text like ``25MB`` / ``20MiB``."""

# --------------------------------------------------------------------------- hosts

_LABEL = r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)"
_HOSTNAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?", re.ASCII)


def _check_hostname(value: str) -> str:
    text = value.strip()
    try:
        return str(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        pass
    if len(text) > 253 or not _HOSTNAME.fullmatch(text):
        raise ValueError(f"{value!r} is not a valid host name or IP address")
    return text.rstrip(".").lower()


Hostname = Annotated[str, AfterValidator(_check_hostname)]
"""A DNS name (lower-cased) or an IP address (IPv6 without brackets)."""


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback addresses: traffic that never leaves the machine."""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class HostPort:
    """A listening address; ``host`` holds IPv6 addresses without brackets."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


_LISTEN = re.compile(r"(?:\[(?P<v6>[^\]]*)\]|(?P<host>[^:\[\]]+)):(?P<port>[0-9]{1,5})", re.ASCII)


def _parse_listen(value: object) -> HostPort | None:
    if value is None or value == "":
        return None
    if isinstance(value, HostPort):
        return value
    hint = "write host:port, e.g. 127.0.0.1:2525 or \"[::1]:2525\" (quoted), or '' for off"
    if not isinstance(value, str):
        raise ValueError(f"must be text: {hint}")
    match = _LISTEN.fullmatch(value.strip())
    if match is None:
        raise ValueError(f"{value!r} is not host:port; {hint}")
    host = match.group("v6") if match.group("v6") is not None else match.group("host")
    if match.group("v6") is not None:
        try:
            host = str(ipaddress.IPv6Address(host))
        except ValueError:
            raise ValueError(f"{host!r} in brackets is not an IPv6 address") from None
    else:
        host = _check_hostname(host)
    port = int(match.group("port"))
    if port > 65535:
        raise ValueError(f"port {port} is out of range (0-65535)")
    return HostPort(host, port)


ListenAddress = Annotated[HostPort | None, BeforeValidator(_parse_listen)]
"""``host:port`` (port 0 picks a free port); an empty value means "off" (None)."""

# --------------------------------------------------------------------------- addresses

_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LOCAL = re.compile(rf"{_ATOM}(?:\.{_ATOM})*", re.ASCII)
_DOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})+", re.ASCII)


def _check_domain(domain: str, whole: str) -> str:
    if not _DOMAIN.fullmatch(domain) or domain.rsplit(".", 1)[1].isdigit() or len(domain) > 253:
        raise ValueError(f"{whole!r} does not have a valid domain (like example.org)")
    return domain.lower()


def _check_email(value: str) -> str:
    text = value.strip()
    if any(c in text for c in '<>"(),; \t\r\n'):
        raise ValueError(
            f"{value!r} is not a bare email address: write one address like "
            "alice@example.org, with no name, quotes, <> or commas"
        )
    local, at, domain = text.rpartition("@")
    if not at or not local:
        raise ValueError(f"{value!r} is not an email address (like alice@example.org)")
    if len(local) > 64 or not _LOCAL.fullmatch(local):
        raise ValueError(f"{value!r} has an invalid part before the @")
    return f"{local}@{_check_domain(domain, value)}"


EmailAddress = Annotated[str, AfterValidator(_check_email)]
"""One bare address, ``local@domain``; the domain is lower-cased."""


def _check_sender_pattern(value: str) -> str:
    text = value.strip()
    if text.startswith("*@"):
        return f"*@{_check_domain(text[2:], value)}"
    if "*" in text:
        raise ValueError(f"{value!r}: the only wildcard form is *@domain (a whole domain)")
    return _check_email(text)


SenderPattern = Annotated[str, AfterValidator(_check_sender_pattern)]
"""An exact address or ``*@domain``."""

# --------------------------------------------------------------------------- phone numbers

_COUNTRY_HINTS = {"UK": "GB", "EL": "GR"}


def _check_country(value: str) -> str:
    code = value.strip().upper()
    if code in phonenumbers.SUPPORTED_REGIONS:
        return code
    hint = f" (did you mean {_COUNTRY_HINTS[code]}?)" if code in _COUNTRY_HINTS else ""
    raise ValueError(f"{value!r} is not an ISO 3166 alpha-2 country code like US or GB{hint}")


CountryCode = Annotated[str, AfterValidator(_check_country)]
"""ISO 3166-1 alpha-2 region code, upper-cased (``US``, ``GB``, ``DE``)."""


def normalize_number(text: str, default_country: str | None) -> str:
    """Return ``text`` as an E.164 number (``+12125550100``) or raise ValueError.

    National numbers are read in ``default_country``; ``+`` and ``00`` prefixed
    numbers need no country.
    """
    raw = text.strip()
    if not re.fullmatch(r"\+?[0-9 ().\-/]*[0-9][0-9 ().\-/]*", raw, re.ASCII):
        raise ValueError(f"{text!r} is not a phone number")
    if raw.startswith("00"):
        raw = "+" + raw[2:]
    if not raw.startswith("+") and default_country is None:
        raise ValueError(
            f"{text!r} is a national number: write it as +E.164 or set outbound.default_country"
        )
    try:
        parsed = phonenumbers.parse(raw, default_country)
    except phonenumbers.NumberParseException:
        raise ValueError(f"{text!r} is not a phone number") from None
    if not phonenumbers.is_valid_number(parsed):
        raise ValueError(f"{text!r} is not a valid phone number")
    return str(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164))


# --------------------------------------------------------------------------- paths


def context_value(info: ValidationInfo, key: str) -> Any:
    """One entry of the validation context set by :func:`bridge.config.parse_config`."""
    context = info.context if isinstance(info.context, Mapping) else {}
    return context.get(key)


def resolve_path(value: Path, info: ValidationInfo) -> Path:
    """Resolve a relative path against the configuration file's directory."""
    base = context_value(info, "base_dir")
    path = value.expanduser()
    if not path.is_absolute():
        path = (Path(base) if base is not None else Path.cwd()) / path
    return path


def _existing_file(value: Path, info: ValidationInfo) -> Path:
    path = resolve_path(value, info)
    if not path.is_file():
        raise ValueError(f"file not found: {path}")
    return path


def _existing_dir(value: Path, info: ValidationInfo) -> Path:
    path = resolve_path(value, info)
    if not path.is_dir():
        raise ValueError(f"directory not found: {path}")
    return path


ConfigPath = Annotated[Path, AfterValidator(resolve_path)]
"""A path; relative ones are taken from the configuration file's directory."""
ExistingFile = Annotated[Path, AfterValidator(_existing_file)]
"""Like :data:`ConfigPath`, and the file must exist when the configuration loads."""
ExistingDir = Annotated[Path, AfterValidator(_existing_dir)]
"""Like :data:`ConfigPath`, and the directory must exist when the configuration loads."""
