"""Sections and cross-field checks: mail, relay, InterFAX, listeners, IMAP, service keys."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from bridge.config import ConfigProblem
from tests.config_helpers import MINIMAL, ROUTED, load, only, problems_of

# ----------------------------------------------------------------------------- sections


def test_mail_from_is_required_once_mail_would_be_sent() -> None:
    assert load().mail.from_ is None
    routes = "inbound:\n  routes:\n    '+12125550100': [a@x.org]\n"
    assert only(routes) == ("mail.from", None, "is required: the address our emails come from")
    senders = "outbound:\n  default_country: US\n  allowed_senders: ['*@x.org']\n"
    assert only(senders)[0] == "mail.from"


def test_allowed_senders_need_a_default_country_and_some_allowed_country() -> None:
    senders = "outbound:\n  allowed_senders: ['*@x.org']\n"
    assert only(senders, head=ROUTED) == (
        "outbound.default_country",
        7,
        "is required when allowed_senders is set (the country of national numbers)",
    )
    no_country = senders + "  default_country: US\n  allowed_countries: []\n"
    assert only(no_country, head=ROUTED) == (
        "outbound.allowed_countries",
        10,
        "is empty: no fax could be sent",
    )


@pytest.mark.parametrize(
    ("relay", "expected"),
    [
        ("{username: fax}", ("mail.relay.password", 7, "is required when username is set")),
        ("{password: pw}", ("mail.relay.username", 7, "is required when a password is set")),
        (
            "{host: smtp.example.org, username: fax, password: pw}",
            ("mail.relay.starttls", 7, "would send the password unencrypted to smtp.example.org"),
        ),
        (
            "{starttls: true, implicit_tls: true}",
            ("mail.relay.implicit_tls", 7, "and starttls are both true: choose one"),
        ),
        ("{port: 0}", ("mail.relay.port", 7, "must be at least 1")),
    ],
)
def test_relay_problems_name_the_key(relay: str, expected: tuple[str, int, str]) -> None:
    key, line, message = only(f"mail:\n  from: fax@x.org\n  relay: {relay}\n")
    assert (key, line) == expected[:2]
    assert message.startswith(expected[2])


def test_relay_port_follows_the_tls_mode_and_credentials_may_go_to_localhost() -> None:
    relay = load("mail:\n  relay: {implicit_tls: true, host: smtp.example.org}\n").mail.relay
    assert relay.port == 465
    relay = load("mail:\n  relay: {username: fax, password: pw}\n").mail.relay
    assert (relay.host, relay.port, relay.username) == ("localhost", 25, "fax")
    assert relay.password is not None
    assert relay.password.reveal() == "pw"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://rest.example.com", "would send the password unencrypted to rest.example.com"),
        ("ftp://rest.interfax.net", "must be an http(s) URL like https://rest.interfax.net"),
        ("https://u:p@rest.interfax.net", "must not hold credentials, a query or a fragment"),
    ],
)
def test_interfax_base_url_problems(url: str, message: str) -> None:
    head = MINIMAL.replace("state_dir", f"  base_url: {url}\nstate_dir")
    key, line, text = only("", head=head)
    assert (key, line) == ("interfax.base_url", 4)
    assert text.startswith(message)


def test_a_local_sandbox_may_be_plain_http_and_polled_fast() -> None:
    head = MINIMAL.replace("state_dir", "  base_url: http://127.0.0.1:8089/\nstate_dir")
    config = load("outbound:\n  status_poll_interval: 500ms\n", head=head)
    assert config.interfax.base_url == "http://127.0.0.1:8089"
    assert config.outbound.status_poll_interval == 0.5


def test_the_real_interfax_is_not_polled_more_than_six_times_a_minute() -> None:
    assert only("outbound:\n  status_poll_interval: 5s\n") == (
        "outbound.status_poll_interval",
        6,
        "must be at least 10s: InterFAX asks for no more than 6 status polls a minute",
    )


@pytest.mark.parametrize(
    ("listen", "host", "port"),
    [
        ("0.0.0.0:25", "0.0.0.0", 25),
        ("'[::1]:2525'", "::1", 2525),
        ("'[0:0::1]:0'", "::1", 0),
        ("fax-gw.example.org:2525", "fax-gw.example.org", 2525),
    ],
)
def test_listen_addresses_are_parsed_into_host_and_port(listen: str, host: str, port: int) -> None:
    address = load(f"smtp_server:\n  listen: {listen}\n").smtp_server.listen
    assert address is not None
    assert (address.host, address.port) == (host, port)


def test_an_empty_listen_address_turns_the_listener_off() -> None:
    config = load("smtp_server:\n  listen: ''\nhttp:\n  listen:\n")
    assert config.smtp_server.listen is None
    assert config.http.listen is None


@pytest.mark.parametrize(
    ("listen", "message"),
    [
        (":2525", "':2525' is not host:port"),
        ("'::1:2525'", "'::1:2525' is not host:port"),
        ("'[fax]:25'", "'fax' in brackets is not an IPv6 address"),
        ("localhost:99999", "port 99999 is out of range (0-65535)"),
        ("2525", "must be text: write host:port"),
    ],
)
def test_bad_listen_addresses_are_refused(listen: str, message: str) -> None:
    key, line, text = only(f"smtp_server:\n  listen: {listen}\n")
    assert (key, line) == ("smtp_server.listen", 6)
    assert text.startswith(message)


def test_smtp_and_http_cannot_share_an_address() -> None:
    extra = "smtp_server: {listen: '127.0.0.1:9120'}\n"
    assert only(extra)[:2] == ("http.listen", None)


def test_smtp_tls_and_auth_files(tmp_path: Path) -> None:
    (tmp_path / "c.pem").write_text("x")
    (tmp_path / "k.pem").write_text("x")
    config = load(
        "smtp_server: {tls_cert: c.pem, tls_key: k.pem, auth_users_file: u}\n", base_dir=tmp_path
    )
    assert config.smtp_server.tls_cert == tmp_path / "c.pem"
    assert config.smtp_server.auth_users_file == tmp_path / "u"
    assert problems_of(
        "smtp_server: {tls_cert: c.pem, auth_users_file: u}\n", base_dir=tmp_path
    ) == [
        ("smtp_server.tls_key", 5, "is required: tls_cert and tls_key go together"),
        ("smtp_server.auth_users_file", 5, "needs tls_cert and tls_key (no AUTH without TLS)"),
    ]
    assert only("smtp_server: {tls_cert: none.pem, tls_key: k.pem}\n", base_dir=tmp_path) == (
        "smtp_server.tls_cert",
        5,
        f"file not found: {tmp_path / 'none.pem'}",
    )


def test_trusted_networks_are_networks_without_host_bits() -> None:
    config = load("smtp_server:\n  trusted_networks: [10.0.0.0/8, '::1', 192.168.1.7]\n")
    assert [str(n) for n in config.smtp_server.trusted_networks] == [
        "10.0.0.0/8",
        "::1/128",
        "192.168.1.7/32",
    ]
    assert only("smtp_server:\n  trusted_networks: [10.0.0.5/24]\n") == (
        "smtp_server.trusted_networks[0]",
        6,
        "'10.0.0.5/24' has host bits set; did you mean 10.0.0.0/24?",
    )


def test_timezone_is_checked_and_offered_as_tzinfo() -> None:
    assert load("timezone: Europe/Berlin\n").tzinfo.key == "Europe/Berlin"
    assert only("timezone: Europe/Berlinn\n") == (
        "timezone",
        5,
        "'Europe/Berlinn' is not a time zone name like Europe/Berlin or UTC",
    )


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("fax-{sender}.pdf", "uses unknown field {sender}; available: {received}, {from}"),
        ("fax-{received:%Y.pdf", "has unbalanced { or }"),
        ("faxes/{id}.pdf", "must be a file name (no directories)"),
        ("fax-{pages:%Y}.pdf", "cannot be rendered: "),
    ],
)
def test_inbound_filename_template_is_checked(template: str, message: str) -> None:
    key, line, text = only(f"inbound:\n  filename: '{template}'\n")
    assert (key, line) == ("inbound.filename", 6)
    assert text.startswith(message)


def test_outbound_defaults_accept_any_case_and_interfax_spellings() -> None:
    extra = """\
    outbound:
      defaults:
        resolution: Fine
        page_size: A4
        rendering: greyscale
        page_header: false
        csid: CLINIC FAX
    """
    defaults = load(extra).outbound.defaults
    assert (defaults.resolution, defaults.page_size, defaults.rendering) == (
        "fine",
        "a4",
        "grayscale",
    )
    assert defaults.page_header == "N"
    assert only("outbound:\n  defaults: {page_header: ''}\n") == (
        "outbound.defaults.page_header",
        6,
        "must be 1 to 200 printable characters (false: no header)",
    )
    assert only("outbound:\n  defaults: {csid: A CSID THAT IS FAR TOO LONG}\n") == (
        "outbound.defaults.csid",
        6,
        "must be 1 to 20 printable ASCII characters (a fax CSID)",
    )


def test_rate_limits_keep_the_other_defaults_and_null_means_unlimited() -> None:
    limits = load("outbound:\n  rate_limits:\n    global: {per_day: null}\n").outbound.rate_limits
    assert (limits.global_.per_hour, limits.global_.per_day) == (100, None)
    assert (limits.per_sender.per_hour, limits.per_sender.per_day) == (20, 100)
    assert only("outbound:\n  rate_limits:\n    per_sender: {per_hour: 0}\n") == (
        "outbound.rate_limits.per_sender.per_hour",
        7,
        "must be at least 1",
    )


def test_other_service_keys(tmp_path: Path) -> None:
    (tmp_path / "templates").mkdir()
    extra = """\
    templates_dir: templates
    log_format: JSON
    shutdown_timeout: 10s
    inbound: {all_users: true, concurrency: 8, mark_read: false}
    interfax_extra: 1
    """
    assert only(extra, base_dir=tmp_path)[0] == "interfax_extra"
    config = load(extra.replace("interfax_extra: 1\n", ""), base_dir=tmp_path)
    assert config.templates_dir == tmp_path / "templates"
    assert (config.log_format, config.shutdown_timeout) == ("json", 10.0)
    assert (config.inbound.all_users, config.inbound.concurrency) == (True, 8)
    head = MINIMAL.replace("state_dir", "  low_balance_alert: '12.50'\nstate_dir")
    assert load(head=head).interfax.low_balance_alert == Decimal("12.50")
    assert only("templates_dir: nowhere\n", base_dir=tmp_path) == (
        "templates_dir",
        5,
        f"directory not found: {tmp_path / 'nowhere'}",
    )


def test_problem_lines_read_like_compiler_messages() -> None:
    problem = ConfigProblem("c.yaml", 3, "a.b", "is required")
    assert str(problem) == "c.yaml:3: a.b: is required"
    assert (
        str(ConfigProblem("c.yaml", None, "", "the file is empty")) == "c.yaml: the file is empty"
    )


def test_fax_domain_is_a_lower_case_domain_name() -> None:
    assert load("smtp_server: {fax_domain: Fax.Clinic.Example.ORG}\n").smtp_server.fax_domain == (
        "fax.clinic.example.org"
    )
    assert only("smtp_server: {fax_domain: 127.0.0.1}\n") == (
        "smtp_server.fax_domain",
        5,
        "must be a domain name, not an IP address",
    )
