"""Configuration of the two fax directions: ``outbound`` (email to fax) and ``inbound``.

Route numbers are normalised and cross-checked in :class:`bridge.config_schema.Config`,
which knows ``outbound.default_country``.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Annotated, Any, Literal, Self

from pydantic import AfterValidator, BeforeValidator, Field, PlainSerializer, model_validator

from bridge.config_types import (
    ConfigPath,
    CountryCode,
    Duration,
    EmailAddress,
    FrozenModel,
    Lower,
    SenderPattern,
    problems,
)

__all__ = [
    "GlobalRateLimit",
    "InboundConfig",
    "InboundRoute",
    "NumberType",
    "OutboundConfig",
    "OutboundDefaults",
    "RateLimit",
    "RateLimits",
    "SenderRateLimit",
    "SenderRoute",
]

NumberType = Literal[
    "fixed_line",
    "mobile",
    "fixed_line_or_mobile",
    "toll_free",
    "premium_rate",
    "shared_cost",
    "voip",
    "personal_number",
    "pager",
    "uan",
    "voicemail",
    "unknown",
]
"""Lower-case names of ``phonenumbers.PhoneNumberType`` members."""


def _one_or_many(value: object) -> object:
    return [value] if isinstance(value, str) else value


def _check_prefix(value: str) -> str:
    text = re.sub(r"[\s().-]", "", value)
    if text.startswith("00"):
        text = "+" + text[2:]
    if not re.fullmatch(r"\+[0-9]{1,15}", text, re.ASCII):
        raise ValueError(
            f"{value!r} is not a number prefix in international form, like +1900 or +44 70"
        )
    return text


def _check_csid(value: str) -> str:
    text = value.strip()
    if not text or len(text) > 20 or not all(" " <= c <= "~" for c in text):
        raise ValueError("must be 1 to 20 printable ASCII characters (a fax CSID)")
    return text


def _check_page_header(value: str) -> str:
    if not value or len(value) > 200 or not value.isprintable():
        raise ValueError("must be 1 to 200 printable characters (false: no header)")
    return value


def _check_folder(value: str) -> str:
    text = value.strip()
    if not text or any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise ValueError("must be a folder name without control characters")
    return text


def _check_template_name(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", value, re.ASCII):
        raise ValueError(
            f"{value!r} is not a template name (letters, digits, '_', '.', '-'; no slashes)"
        )
    return value


_FILENAME_FIELDS = ("received", "from", "to", "id", "pages", "csid")
_FILENAME_SAMPLE: dict[str, Any] = {
    "received": datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
    "from": "+12125550100",
    "to": "+12125550199",
    "id": 123456789,
    "pages": 2,
    "csid": "CLINIC FAX",
}


def _check_filename(value: str) -> str:
    text = value.strip()
    if not text or "/" in text or "\\" in text:
        raise ValueError("must be a file name (no directories)")
    names = ", ".join("{" + n + "}" for n in _FILENAME_FIELDS)
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(text) if f is not None]
    except ValueError:
        raise ValueError("has unbalanced { or }; write {{ and }} for literal braces") from None
    for field in fields:
        if field not in _FILENAME_FIELDS:
            raise ValueError(f"uses unknown field {{{field}}}; available: {names}")
    try:
        text.format(**_FILENAME_SAMPLE)
    except (ValueError, TypeError, LookupError, AttributeError) as exc:
        # LookupError: a field nested in a format spec, like {received:%Y{x}}.
        raise ValueError(f"cannot be rendered: {exc!r}") from None
    return text


Prefix = Annotated[str, AfterValidator(_check_prefix)]
Csid = Annotated[str, AfterValidator(_check_csid)]
Folder = Annotated[str, AfterValidator(_check_folder)]
Addresses = Annotated[tuple[EmailAddress, ...], BeforeValidator(_one_or_many)]


def _freeze_mapping(value: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(value))


# ----------------------------------------------------------------------------- outbound


class OutboundDefaults(FrozenModel):
    """Fax options used when a message does not set them; None = the InterFAX account setting."""

    resolution: Annotated[Literal["standard", "fine"] | None, Lower] = None
    page_size: Annotated[Literal["a4", "letter", "legal", "b4"] | None, Lower] = None
    orientation: Annotated[Literal["portrait", "landscape"] | None, Lower] = None
    fit_to_page: Annotated[Literal["scale", "noscale"] | None, Lower] = None
    rendering: Annotated[Literal["grayscale", "bw"] | None, Lower] = None
    csid: Csid | None = None
    page_header: Annotated[str, AfterValidator(_check_page_header)] | None = None
    retries: int | None = Field(default=None, ge=0, le=10)

    @model_validator(mode="before")
    @classmethod
    def _spellings(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            if isinstance(data.get("rendering"), str) and data["rendering"].lower() == "greyscale":
                data["rendering"] = "grayscale"
            if data.get("page_header") is False:
                data["page_header"] = "N"  # InterFAX's value for "no header"
        return data


class RateLimit(FrozenModel):
    """Faxes allowed per hour and per day; None means no limit."""

    per_hour: int | None = Field(default=None, ge=1)
    per_day: int | None = Field(default=None, ge=1)


class SenderRateLimit(RateLimit):
    """Limits for each sender address."""

    per_hour: int | None = Field(default=20, ge=1)
    per_day: int | None = Field(default=100, ge=1)


class GlobalRateLimit(RateLimit):
    """Limits for all senders together."""

    per_hour: int | None = Field(default=100, ge=1)
    per_day: int | None = Field(default=500, ge=1)


class RateLimits(FrozenModel):
    """``outbound.rate_limits``; the YAML key of ``global_`` is ``global``."""

    per_sender: SenderRateLimit = Field(default_factory=dict, validate_default=True)
    global_: GlobalRateLimit = Field(default_factory=dict, validate_default=True, alias="global")


class OutboundConfig(FrozenModel):
    """Email to fax (``outbound``). Empty ``allowed_senders`` means nobody may send."""

    allowed_senders: tuple[SenderPattern, ...] = ()
    default_country: CountryCode | None = None
    allowed_countries: tuple[CountryCode, ...] = ()
    blocked_number_types: tuple[Annotated[NumberType, Lower], ...] = (
        "premium_rate",
        "shared_cost",
        "uan",
        "personal_number",
        "voicemail",
    )
    blocked_prefixes: tuple[Prefix, ...] = ()
    allowed_prefixes: tuple[Prefix, ...] = ()
    status_poll_interval: Duration = 30.0
    max_submit_age: Duration = 86400.0
    in_doubt_grace: Duration = 120.0
    unsupported_attachments: Annotated[Literal["fail", "skip"], Lower] = "fail"
    body: Annotated[Literal["auto", "cover", "document", "ignore"], Lower] = "auto"
    notify: Annotated[Literal["always", "failure", "success", "never"], Lower] = "always"
    attach_sent_image: bool = False
    defaults: OutboundDefaults = Field(default_factory=dict, validate_default=True)
    rate_limits: RateLimits = Field(default_factory=dict, validate_default=True)

    @model_validator(mode="after")
    def _derived(self) -> Self:
        if "allowed_countries" not in self.model_fields_set and self.default_country:
            return self.model_copy(update={"allowed_countries": (self.default_country,)})
        return self


# ----------------------------------------------------------------------------- inbound


class InboundRoute(FrozenModel):
    """Where a received fax goes. In YAML also a bare address list (meaning ``to``)."""

    to: Addresses = ()
    cc: Addresses = ()
    format: Annotated[Literal["pdf", "tiff", "both"], Lower] = "pdf"
    deliver: Annotated[Literal["smtp", "maildir", "imap"], Lower] = "smtp"
    path: ConfigPath | None = None
    folder: Folder | None = None
    template: Annotated[str, AfterValidator(_check_template_name)] | None = None
    attach: bool = True

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"to": data} if isinstance(data, list | str) else data

    @model_validator(mode="after")
    def _delivery(self) -> Self:
        found: list[tuple[tuple[str | int, ...], str]] = []
        if self.deliver == "smtp" and not self.to:
            found.append((("to",), "is required: at least one address to send the fax to"))
        if self.deliver == "maildir" and self.path is None:
            found.append((("path",), "is required with deliver: maildir (the Maildir directory)"))
        if self.deliver != "maildir" and self.path is not None:
            found.append((("path",), "is only used with deliver: maildir"))
        if self.deliver == "imap" and self.folder is None:
            found.append((("folder",), "is required with deliver: imap (the IMAP folder)"))
        if self.deliver != "imap" and self.folder is not None:
            found.append((("folder",), "is only used with deliver: imap"))
        if found:
            raise problems(found)
        return self


class SenderRoute(InboundRoute):
    """An override chosen by the sending machine's caller id or CSID (first match wins)."""

    caller_id: str | None = None
    remote_csid: Csid | None = None

    @model_validator(mode="after")
    def _has_match(self) -> Self:
        if self.caller_id is None and self.remote_csid is None:
            raise problems([(("caller_id",), "is required: set caller_id or remote_csid")])
        return self


Routes = Annotated[
    Mapping[str, InboundRoute],
    AfterValidator(_freeze_mapping),
    PlainSerializer(dict, return_type=dict[str, InboundRoute]),
]


class InboundConfig(FrozenModel):
    """Fax to email (``inbound``). ``routes`` keys are E.164 numbers after loading."""

    poll_interval: Duration = 60.0
    all_users: bool = False
    concurrency: int = Field(default=4, ge=1, le=64)
    mark_read: bool = True
    routes: Routes = Field(default_factory=dict, validate_default=True)
    default_route: InboundRoute | None = None
    sender_routes: tuple[SenderRoute, ...] = ()
    filename: Annotated[str, AfterValidator(_check_filename)] = (
        "fax-{received:%Y%m%d-%H%M%S}-{from}.pdf"
    )
