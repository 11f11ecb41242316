"""The validated, frozen configuration of fax-bridge: the root :class:`Config`.

Built only by :func:`bridge.config.load_config` / :func:`bridge.config.parse_config`.
Field names are the YAML key names (except ``mail.from`` -> ``MailConfig.from_`` and
``outbound.rate_limits.global`` -> ``RateLimits.global_``). Secrets are
:class:`~bridge.config_types.Secret`; ``password`` always holds the effective secret,
also when it was read from ``password_file``.
"""

from __future__ import annotations

import importlib.util
import ipaddress
from decimal import Decimal
from types import MappingProxyType
from typing import Annotated, Literal, Self
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, Field, PlainValidator, ValidationInfo, model_validator

from bridge.config_flows import Folder, InboundConfig, InboundRoute, OutboundConfig
from bridge.config_secrets import NO_SECRET, Secret, SecretFile, apply_password_file
from bridge.config_types import (
    ConfigPath,
    Duration,
    EmailAddress,
    ExistingDir,
    ExistingFile,
    FrozenModel,
    Hostname,
    HostPort,
    ListenAddress,
    Lower,
    Size,
    is_loopback_host,
    normalize_number,
    problems,
)

__all__ = [
    "Config",
    "HttpConfig",
    "ImapConnection",
    "ImapInConfig",
    "InterfaxConfig",
    "MailConfig",
    "RelayConfig",
    "SmtpServerConfig",
]

Loc = tuple[str | int, ...]


def _no_clear_text(host: str, key: str) -> str | None:
    if is_loopback_host(host):
        return None
    return f"would send the password unencrypted to {host}; {key}"


# ----------------------------------------------------------------------------- sections


def _network(value: object) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    if not isinstance(value, str):
        raise ValueError("must be a network in quotes, like '10.0.0.0/8' or '::1'")
    try:
        return ipaddress.ip_network(value.strip())
    except ValueError:
        try:
            suggestion = ipaddress.ip_network(value.strip(), strict=False)
        except ValueError:
            raise ValueError(f"{value!r} is not an IP network like 10.0.0.0/8") from None
        raise ValueError(f"{value!r} has host bits set; did you mean {suggestion}?") from None


def _check_domain_name(value: str) -> str:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return value
    raise ValueError("must be a domain name, not an IP address")


def _check_base_url(value: str) -> str:
    url = urlsplit(value.strip())
    if url.scheme not in ("http", "https") or not url.hostname:
        raise ValueError("must be an http(s) URL like https://rest.interfax.net")
    if url.username or url.query or url.fragment:
        raise ValueError("must not hold credentials, a query or a fragment")
    if url.scheme == "http" and (message := _no_clear_text(url.hostname, "use https")):
        raise ValueError(message)
    return value.strip().rstrip("/")


class InterfaxConfig(FrozenModel):
    """The InterFAX account (``interfax``)."""

    base_url: Annotated[str, AfterValidator(_check_base_url)] = "https://rest.interfax.net"
    username: Annotated[str, Field(min_length=1)]
    password: Secret = NO_SECRET
    password_file: SecretFile | None = None
    timeout: Duration = 30.0
    ca_bundle: ExistingFile | None = None
    upload_threshold: Size = 1024 * 1024
    max_connections: int = Field(default=10, ge=1, le=100)
    low_balance_alert: Decimal | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _check(self, info: ValidationInfo) -> Self:
        return apply_password_file(self, info, required=True)


class SmtpServerConfig(FrozenModel):
    """The SMTP listener that takes mail to ``<number>@<fax_domain>`` (``smtp_server``)."""

    listen: ListenAddress = HostPort("127.0.0.1", 2525)
    fax_domain: Annotated[Hostname, AfterValidator(_check_domain_name)] = "fax.local"
    max_recipients: int = Field(default=50, ge=1, le=1000)
    max_message_size: Size = 25_000_000
    tls_cert: ExistingFile | None = None
    tls_key: ExistingFile | None = None
    auth_users_file: ConfigPath | None = None
    trusted_networks: tuple[
        Annotated[ipaddress.IPv4Network | ipaddress.IPv6Network, PlainValidator(_network)], ...
    ] = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))

    @model_validator(mode="after")
    def _check(self) -> Self:
        found: list[tuple[Loc, str]] = []
        if (self.tls_cert is None) != (self.tls_key is None):
            missing = "tls_key" if self.tls_key is None else "tls_cert"
            found.append(((missing,), "is required: tls_cert and tls_key go together"))
        if self.auth_users_file is not None and (self.tls_cert is None or self.tls_key is None):
            found.append((("auth_users_file",), "needs tls_cert and tls_key (no AUTH without TLS)"))
        if found:
            raise problems(found)
        return self


class RelayConfig(FrozenModel):
    """The mail server that takes our outgoing mail (``mail.relay``)."""

    host: Hostname = "localhost"
    port: int = Field(default=0, ge=1, le=65535)  # 0: chosen from the TLS mode below
    starttls: bool = False
    implicit_tls: bool = False
    username: Annotated[str, Field(min_length=1)] | None = None
    password: Secret | None = None
    password_file: SecretFile | None = None
    timeout: Duration = 30.0
    ca_bundle: ExistingFile | None = None

    @model_validator(mode="after")
    def _check(self, info: ValidationInfo) -> Self:
        checked = apply_password_file(self, info, required=False)
        found: list[tuple[Loc, str]] = []
        if self.starttls and self.implicit_tls:
            found.append((("implicit_tls",), "and starttls are both true: choose one"))
        if checked.username and checked.password is None:
            found.append((("password",), "is required when username is set (or password_file)"))
        if checked.password is not None and not checked.username:
            found.append((("username",), "is required when a password is set"))
        tls = self.starttls or self.implicit_tls
        if checked.username and not tls and (msg := _no_clear_text(self.host, "set starttls")):
            found.append((("starttls",), msg))
        if found:
            raise problems(found)
        if "port" not in self.model_fields_set:
            checked = checked.model_copy(update={"port": 465 if self.implicit_tls else 25})
        return checked


class MailConfig(FrozenModel):
    """Outgoing mail (``mail``); ``from_`` is the YAML key ``from``."""

    relay: RelayConfig = Field(default_factory=dict, validate_default=True)
    from_: EmailAddress | None = Field(default=None, alias="from")
    admin: EmailAddress | None = None


class ImapConnection(FrozenModel):
    """An IMAP mailbox login (``imap_out``, and the connection keys of ``imap_in``)."""

    host: Hostname
    port: int = Field(default=0, ge=1, le=65535)  # 0: 993 for implicit TLS, else 143
    tls: Annotated[Literal["implicit", "starttls", "none"], Lower] = "implicit"
    username: Annotated[str, Field(min_length=1)]
    password: Secret = NO_SECRET
    password_file: SecretFile | None = None
    timeout: Duration = 30.0
    ca_bundle: ExistingFile | None = None

    @model_validator(mode="after")
    def _check(self, info: ValidationInfo) -> Self:
        if self.tls == "none" and (msg := _no_clear_text(self.host, "use tls: implicit")):
            raise problems([(("tls",), msg)])
        checked = apply_password_file(self, info, required=True)
        if "port" not in self.model_fields_set:
            checked = checked.model_copy(update={"port": 993 if self.tls == "implicit" else 143})
        return checked


class ImapInConfig(ImapConnection):
    """A mailbox watched for fax requests (``imap_in``)."""

    folder: Folder = "INBOX"
    done_folder: Folder = "Faxed"
    rejected_folder: Folder = "Rejected"
    poll_interval: Duration = 60.0

    @model_validator(mode="after")
    def _folders(self) -> Self:
        found: list[tuple[Loc, str]] = []
        for key in ("done_folder", "rejected_folder"):
            if getattr(self, key) == self.folder:
                found.append(((key,), f"must differ from folder ({self.folder!r})"))
        if found:
            raise problems(found)
        return self


class HttpConfig(FrozenModel):
    """Health, readiness, metrics and the status page (``http``); listen '' turns it off."""

    listen: ListenAddress = HostPort("127.0.0.1", 9120)


def _check_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{value!r} is not a time zone name like Europe/Berlin or UTC") from None
    return value


# ----------------------------------------------------------------------------- root


class Config(FrozenModel):
    """The whole configuration file."""

    interfax: InterfaxConfig
    state_dir: ConfigPath
    timezone: Annotated[str, AfterValidator(_check_timezone)] = "UTC"
    templates_dir: ExistingDir | None = None
    log_format: Annotated[Literal["text", "json"], Lower] = "text"
    log_level: Annotated[Literal["debug", "info", "warning", "error"], Lower] = "info"
    retention: Duration = 30 * 86400.0
    shutdown_timeout: Duration = 30.0
    smtp_server: SmtpServerConfig = Field(default_factory=dict, validate_default=True)
    mail: MailConfig = Field(default_factory=dict, validate_default=True)
    outbound: OutboundConfig = Field(default_factory=dict, validate_default=True)
    inbound: InboundConfig = Field(default_factory=dict, validate_default=True)
    imap_in: ImapInConfig | None = None
    imap_out: ImapConnection | None = None
    http: HttpConfig = Field(default_factory=dict, validate_default=True)

    @property
    def tzinfo(self) -> ZoneInfo:
        """``timezone`` as a tzinfo, for showing times to people."""
        return ZoneInfo(self.timezone)

    @model_validator(mode="after")
    def _cross_check(self) -> Self:
        found: list[tuple[Loc, str]] = []
        inbound = _normalised_inbound(self, found)
        found.extend(_cross_problems(self))
        if found:
            raise problems(found)
        return self.model_copy(update={"inbound": inbound})


def _normalised_inbound(config: Config, found: list[tuple[Loc, str]]) -> InboundConfig:
    country = config.outbound.default_country
    routes: dict[str, InboundRoute] = {}
    first_key: dict[str, str] = {}
    for key, route in config.inbound.routes.items():
        try:
            number = normalize_number(key, country)
        except ValueError as exc:
            found.append((("inbound", "routes", key), str(exc)))
            continue
        if number in routes:
            found.append(
                (
                    ("inbound", "routes", key),
                    f"is the same number ({number}) as the route {first_key[number]!r}; merge them",
                )
            )
            continue
        routes[number], first_key[number] = route, key
    sender_routes = []
    for index, sender in enumerate(config.inbound.sender_routes):
        if sender.caller_id is not None:
            try:
                caller = normalize_number(sender.caller_id, country)
            except ValueError as exc:
                found.append((("inbound", "sender_routes", index, "caller_id"), str(exc)))
                continue
            sender = sender.model_copy(update={"caller_id": caller})
        sender_routes.append(sender)
    return config.inbound.model_copy(
        update={"routes": MappingProxyType(routes), "sender_routes": tuple(sender_routes)}
    )


def _all_routes(config: Config) -> list[tuple[Loc, InboundRoute]]:
    inbound = config.inbound
    routes: list[tuple[Loc, InboundRoute]] = [
        (("inbound", "routes", key), route) for key, route in inbound.routes.items()
    ]
    if inbound.default_route is not None:
        routes.append((("inbound", "default_route"), inbound.default_route))
    routes += [(("inbound", "sender_routes", i), r) for i, r in enumerate(inbound.sender_routes)]
    return routes


def _cross_problems(config: Config) -> list[tuple[Loc, str]]:
    found: list[tuple[Loc, str]] = []
    routes = _all_routes(config)
    sends_mail = bool(routes or config.outbound.allowed_senders or config.imap_in)
    if sends_mail and config.mail.from_ is None:
        found.append((("mail", "from"), "is required: the address our emails come from"))
    outbound = config.outbound
    if outbound.allowed_senders and outbound.default_country is None:
        found.append(
            (
                ("outbound", "default_country"),
                "is required when allowed_senders is set (the country of national numbers)",
            )
        )
    elif outbound.allowed_senders and not outbound.allowed_countries:
        found.append((("outbound", "allowed_countries"), "is empty: no fax could be sent"))
    host = urlsplit(config.interfax.base_url).hostname or ""
    if (host == "interfax.net" or host.endswith(".interfax.net")) and (
        outbound.status_poll_interval < 10
    ):
        found.append(
            (
                ("outbound", "status_poll_interval"),
                "must be at least 10s: InterFAX asks for no more than 6 status polls a minute",
            )
        )
    try:
        imap_available = importlib.util.find_spec("aioimaplib") is not None
    except (ImportError, ValueError):
        imap_available = False
    extra = "needs the IMAP extra: pip install 'fax-bridge[imap]'"
    if config.imap_in is not None and not imap_available:
        found.append((("imap_in",), extra))
    for loc, route in routes:
        if route.deliver != "imap":
            continue
        if not imap_available:
            found.append(((*loc, "deliver"), f"imap {extra}"))
        if config.imap_out is None:
            found.append(((*loc, "deliver"), "imap needs the imap_out section (the mailbox)"))
    listens = config.smtp_server.listen, config.http.listen
    if listens[0] is not None and listens[0] == listens[1] and listens[0].port != 0:
        found.append((("http", "listen"), "is the same address as smtp_server.listen"))
    return found
