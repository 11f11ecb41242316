"""Routing a received fax: values in, decision out (no I/O)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.inbound_settings import required_templates
from bridge.jobs import DeliveryChannel
from bridge.routing import (
    Decision,
    ImageFormat,
    RouteSource,
    RoutingTable,
    Target,
    match_number,
    normalise_number,
    route_fax,
)
from tests.config_helpers import ROUTED, load

US = ROUTED + "outbound:\n  default_country: US\n"

TABLE = """\
inbound:
  routes:
    "+12125550100": [front@clinic.example.org]
    "+442084978672":
      to: [london@clinic.example.org]
      cc: [records@clinic.example.org, LONDON@clinic.example.org]
      format: both
      attach: false
      template: london
  default_route: [catchall@clinic.example.org]
  sender_routes:
    - caller_id: "+1 212 555 0199"
      to: [lab@clinic.example.org]
    - remote_csid: "CITY  LAB"
      to: [city@clinic.example.org]
      format: tiff
    - caller_id: "+12125550177"
      remote_csid: BOTH
      to: [both@clinic.example.org]
"""


def table(extra: str = TABLE, *, head: str = ROUTED) -> RoutingTable:
    return RoutingTable.from_config(load(extra, head=head))


def routed(
    t: RoutingTable, number: str | None, caller: str | None = None, csid: str | None = None
) -> Decision | None:
    return route_fax(t, phone_number=number, caller_id=caller, remote_csid=csid)


def decided(
    t: RoutingTable, number: str | None, caller: str | None = None, csid: str | None = None
) -> Decision:
    decision = routed(t, number, caller, csid)
    assert decision is not None, (number, caller, csid)
    return decision


@pytest.mark.parametrize(
    "number", ["+12125550100", "12125550100", "1-212-555-0100", "+1 (212) 555-0100"]
)
def test_receiving_number_forms_without_a_country_are_one_key(number: str) -> None:
    decision = decided(table(), number)
    assert (decision.source, decision.key) == (RouteSource.NUMBER, "+12125550100")
    assert decision.targets == (Target("front@clinic.example.org", DeliveryChannel.SMTP),)


def test_a_bare_national_number_matches_without_a_default_country() -> None:
    # "2125550100" is no valid number with a "+" in front: the national part decides.
    decision = decided(table(), "2125550100")
    assert decision.key == "+12125550100"


@pytest.mark.parametrize("number", ["2125550100", "+12125550100", "1-212-555-0100"])
def test_receiving_number_forms_with_the_default_country_are_one_key(number: str) -> None:
    decision = decided(table(head=US), number)
    assert decision.key == "+12125550100"


def test_a_national_number_of_another_country_finds_its_unique_route() -> None:
    decision = decided(table(head=US), "020 8497 8672")
    assert decision.key == "+442084978672"


def test_route_object_gives_format_attach_template_and_deduplicated_recipients() -> None:
    decision = decided(table(), "+44 20 8497 8672")
    p = decision.presentation
    assert (p.format, p.attach, p.template) == (ImageFormat.BOTH, False, "london")
    assert p.to == ("london@clinic.example.org",)
    assert [t.recipient for t in decision.targets] == [
        "london@clinic.example.org",
        "records@clinic.example.org",
    ]


@pytest.mark.parametrize("number", ["+12125550111", "", None, "unknown", "+1 900 555 0100"])
def test_unknown_numbers_take_the_default_route(number: str | None) -> None:
    decision = decided(table(), number)
    assert decision.source is RouteSource.DEFAULT
    assert decision.targets == (Target("catchall@clinic.example.org", DeliveryChannel.SMTP),)


def test_no_route_and_no_default_gives_none() -> None:
    t = table('inbound:\n  routes:\n    "+12125550100": [a@clinic.example.org]\n')
    assert routed(t, "+12125550111") is None
    assert routed(t, "+12125550100") is not None


def test_caller_id_overrides_the_number_route_in_any_form() -> None:
    for caller in ("+12125550199", "12125550199", "(212) 555-0199", "2125550199"):
        decision = decided(table(), "+12125550100", caller)
        assert (decision.source, decision.key) == (RouteSource.SENDER, "+12125550199")
        assert decision.presentation.to == ("lab@clinic.example.org",)


def test_remote_csid_overrides_after_cleaning_and_exactly() -> None:
    for csid in ("CITY LAB", " CITY\tLAB ", "CITY\r\nLAB"):
        decision = decided(table(), "+12125550100", None, csid)
        assert decision.key == "CITY  LAB", csid
        assert decision.presentation.format is ImageFormat.TIFF
    for csid in ("city lab", "CITY LAB 2", ""):
        decision = decided(table(), "+12125550100", None, csid)
        assert decision.source is RouteSource.NUMBER, csid


def test_a_sender_route_naming_caller_and_csid_needs_both() -> None:
    decision = decided(table(), "+12125550100", "+12125550177", "BOTH")
    assert decision.presentation.to == ("both@clinic.example.org",)
    for caller, csid in (("+12125550177", "OTHER"), ("+12125550178", "BOTH")):
        decision = decided(table(), "+12125550100", caller, csid)
        assert decision.source is RouteSource.NUMBER


def test_hostile_caller_id_and_csid_match_nothing_and_do_not_raise() -> None:
    decision = decided(table(), "+12125550100", "+1212\r\nBcc: x@evil", "=?utf-8?q?a=0Ab?=")
    assert decision.source is RouteSource.NUMBER


def test_maildir_route_targets_its_directory(tmp_path: Path) -> None:
    route = f"deliver: maildir\n      path: {tmp_path}/Maildir"
    t = table(f'inbound:\n  routes:\n    "+12125550100":\n      {route}\n')
    decision = decided(t, "+12125550100")
    assert decision.targets == (Target(f"{tmp_path}/Maildir", DeliveryChannel.MAILDIR),)


def test_normalise_number_reads_national_forms_and_retries_with_a_plus() -> None:
    assert normalise_number("2125550100", "US") == "+12125550100"
    assert normalise_number("12125550100", None) == "+12125550100"
    assert normalise_number("Anonymous", "US") is None
    assert normalise_number(None, "US") is None


def test_match_number_refuses_ambiguous_national_parts() -> None:
    keys = ["+12125550100", "+912125550100"]
    assert match_number("2125550100", None, keys) is None
    assert match_number("+912125550100", None, keys) == "+912125550100"


def test_a_configuration_without_any_route_routes_nothing() -> None:
    assert not table("inbound:\n  poll_interval: 60s\n").configured
    assert table().configured
    assert table("inbound:\n  default_route: [a@clinic.example.org]\n").configured


def test_required_templates_include_every_route_template() -> None:
    config = load(TABLE, head=ROUTED)
    assert required_templates(config) == (
        "inbound.txt.j2",
        "inbound.html.j2",
        "inbound-admin.txt.j2",
        "london.txt.j2",
        "london.html.j2",
    )
