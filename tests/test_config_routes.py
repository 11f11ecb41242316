"""Inbound routes: number normalisation, route shapes and options, IMAP delivery."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.config_helpers import ROUTED, load, only, problems_of

# ----------------------------------------------------------------------------- routes


@pytest.mark.parametrize(
    "number", ["2125550100", "+12125550100", "1-212-555-0100", "(212) 555-0100"]
)
def test_route_numbers_are_normalised_to_e164(number: str) -> None:
    config = load(
        f"outbound: {{default_country: US}}\ninbound:\n  routes:\n    '{number}': [a@x.org]\n",
        head=ROUTED,
    )
    assert list(config.inbound.routes) == ["+12125550100"]


def test_route_numbers_in_international_form_need_no_default_country() -> None:
    config = load("inbound:\n  routes:\n    '0044 20 7946 0958': a@x.org\n", head=ROUTED)
    assert list(config.inbound.routes) == ["+442079460958"]
    assert config.inbound.routes["+442079460958"].to == ("a@x.org",)


def test_two_spellings_of_one_number_are_an_error_naming_both_keys() -> None:
    extra = """\
    outbound: {default_country: US}
    inbound:
      routes:
        2125550100: [a@x.org]
        +1 212 555 0100: [b@x.org]
        1-212-555-0100: [c@x.org]
    """
    assert problems_of(extra, head=ROUTED) == [
        (
            'inbound.routes."+1 212 555 0100"',
            11,
            "is the same number (+12125550100) as the route '2125550100'; merge them",
        ),
        (
            'inbound.routes."1-212-555-0100"',
            12,
            "is the same number (+12125550100) as the route '2125550100'; merge them",
        ),
    ]


@pytest.mark.parametrize(
    ("number", "message"),
    [
        (
            "2125550100",
            "'2125550100' is a national number: write it as +E.164 or set outbound.default_country",
        ),
        ("+1 555", "'+1 555' is not a valid phone number"),
        ("front desk", "'front desk' is not a phone number"),
    ],
)
def test_bad_route_numbers_name_the_route(number: str, message: str) -> None:
    extra = f"inbound:\n  routes:\n    '{number}': [a@x.org]\n"
    assert only(extra, head=ROUTED) == (f'inbound.routes."{number}"', 9, message)


def test_a_bad_address_in_a_route_list_names_its_index_and_line() -> None:
    extra = """\
    inbound:
      routes:
        "+12125550100":
          - a@clinic.example.org
          - not an address
    """
    key, line, _ = only(extra, head=ROUTED)
    assert (key, line) == ('inbound.routes."+12125550100".to[1]', 11)


def test_route_objects_carry_their_delivery_options(tmp_path: Path) -> None:
    extra = """\
    inbound:
      routes:
        "+12125550100":
          to: lab@x.org
          cc: [chief@x.org]
          format: BOTH
          attach: false
          template: lab-results
        "+12125550101": {deliver: maildir, path: maildir/fax}
      default_route: desk@x.org
    """
    inbound = load(extra, head=ROUTED, base_dir=tmp_path).inbound
    lab = inbound.routes["+12125550100"]
    assert (lab.to, lab.cc, lab.format, lab.attach, lab.template, lab.deliver) == (
        ("lab@x.org",),
        ("chief@x.org",),
        "both",
        False,
        "lab-results",
        "smtp",
    )
    assert inbound.routes["+12125550101"].path == tmp_path / "maildir/fax"
    assert inbound.default_route is not None
    assert inbound.default_route.to == ("desk@x.org",)


@pytest.mark.parametrize(
    ("route", "key", "message"),
    [
        ("{cc: [a@x.org]}", "to", "is required: at least one address to send the fax to"),
        ("{deliver: maildir}", "path", "is required with deliver: maildir (the Maildir directory)"),
        ("{to: [a@x.org], path: /m}", "path", "is only used with deliver: maildir"),
        (
            "{deliver: imap, folder: Fax}",
            "deliver",
            "imap needs the imap_out section (the mailbox)",
        ),
        ("{deliver: imap}", "folder", "is required with deliver: imap (the IMAP folder)"),
        ("{to: [a@x.org], template: ../x}", "template", "'../x' is not a template name"),
    ],
)
def test_route_option_problems_name_the_option(route: str, key: str, message: str) -> None:
    extra = f"inbound:\n  routes:\n    '+12125550100': {route}\n"
    found_key, line, text = only(extra, head=ROUTED)
    assert (found_key, line) == (f'inbound.routes."+12125550100".{key}', 9)
    assert text.startswith(message)


def test_imap_delivery_without_the_imap_extra_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "aioimaplib", None)  # what an absent package looks like
    extra = """\
    imap_in: {host: imap.example.org, username: fax, password: pw}
    imap_out: {host: imap.example.org, username: fax, password: pw}
    inbound:
      routes:
        "+12125550100": {deliver: imap, folder: Faxes}
    """
    assert problems_of(extra, head=ROUTED) == [
        ("imap_in", 7, "needs the IMAP extra: pip install 'fax-bridge[imap]'"),
        (
            'inbound.routes."+12125550100".deliver',
            11,
            "imap needs the IMAP extra: pip install 'fax-bridge[imap]'",
        ),
    ]


def test_imap_sections_take_defaults_by_tls_mode() -> None:
    extra = """\
    imap_in: {host: imap.example.org, username: fax, password: pw}
    imap_out: {host: 127.0.0.1, username: fax, password: pw, tls: none}
    """
    config = load(extra, head=ROUTED)
    assert config.imap_in is not None
    assert config.imap_out is not None
    assert (config.imap_in.port, config.imap_in.folder, config.imap_in.done_folder) == (
        993,
        "INBOX",
        "Faxed",
    )
    assert (config.imap_out.port, config.imap_out.tls) == (143, "none")


def test_imap_problems_name_their_keys() -> None:
    extra = """\
    imap_in:
      host: imap.example.org
      tls: none
      username: fax
      password: pw
      done_folder: INBOX
    imap_out:
      host: imap.example.org
      username: fax
    """
    assert problems_of(extra, head=ROUTED) == [
        (
            "imap_in.tls",
            9,
            "would send the password unencrypted to imap.example.org; use tls: implicit",
        ),
        ("imap_out.password", 13, "is required: set password, or password_file"),
    ]
    extra = extra.replace("tls: none", "tls: starttls")
    assert problems_of(extra, head=ROUTED)[0] == (
        "imap_in.done_folder",
        12,
        "must differ from folder ('INBOX')",
    )


def test_sender_routes_match_by_caller_id_or_csid() -> None:
    extra = """\
    outbound: {default_country: US}
    inbound:
      sender_routes:
        - {caller_id: (212) 555-0123, to: [a@x.org]}
        - {remote_csid: CITY LAB, to: [b@x.org]}
    """
    routes = load(extra, head=ROUTED).inbound.sender_routes
    assert [(r.caller_id, r.remote_csid) for r in routes] == [
        ("+12125550123", None),
        (None, "CITY LAB"),
    ]
    assert only("inbound:\n  sender_routes:\n    - to: [a@x.org]\n", head=ROUTED) == (
        "inbound.sender_routes[0].caller_id",
        9,
        "is required: set caller_id or remote_csid",
    )
