"""The configuration loader: YAML in, frozen values or errors naming key and line out.

Also: the example file and the ``check-config`` command. Secrets and ${ENV} are in
test_config_secrets.py; values in test_config_values.py, test_config_routes.py and
test_config_sections.py.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from textwrap import dedent
from typing import Any, get_args, get_origin

import pytest

from bridge import cli
from bridge.config import Config, InvalidConfig, format_key, load_config
from bridge.errors import ConfigError
from tests.config_helpers import MINIMAL, SECRET, load_text, one_problem, problems_in

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "config.example.yaml"


# ----------------------------------------------------------------------------- loading


def test_minimal_file_loads_with_documented_defaults() -> None:
    config = load_text(MINIMAL)
    assert config.interfax.base_url == "https://rest.interfax.net"
    assert config.interfax.username == "clinic"
    assert config.state_dir == Path("/var/lib/fax-bridge")
    assert str(config.smtp_server.listen) == "127.0.0.1:2525"
    assert config.smtp_server.fax_domain == "fax.local"
    assert config.smtp_server.max_recipients == 50
    assert config.smtp_server.max_message_size == 25_000_000
    assert [str(n) for n in config.smtp_server.trusted_networks] == ["127.0.0.0/8", "::1/128"]
    assert config.outbound.allowed_senders == ()
    assert config.outbound.status_poll_interval == 30.0
    assert config.outbound.max_submit_age == 86400.0
    assert config.outbound.blocked_number_types == (
        "premium_rate",
        "shared_cost",
        "uan",
        "personal_number",
        "voicemail",
    )
    assert config.outbound.notify == "always"
    assert config.outbound.attach_sent_image is False
    assert config.inbound.poll_interval == 60.0
    assert config.inbound.concurrency == 4
    assert config.inbound.mark_read is True
    assert config.inbound.filename == "fax-{received:%Y%m%d-%H%M%S}-{from}.pdf"
    assert config.mail.relay.host == "localhost"
    assert config.mail.relay.port == 25
    assert str(config.http.listen) == "127.0.0.1:9120"
    assert config.retention == 30 * 86400
    assert config.imap_in is None
    assert config.imap_out is None


def test_config_is_frozen_all_the_way_down() -> None:
    config = load_text(
        MINIMAL
        + dedent(
            """\
        mail: {from: fax@clinic.example.org}
        inbound:
          routes:
            "+12125550100": [a@clinic.example.org]
        """
        )
    )
    with pytest.raises(ValueError, match="frozen"):
        config.state_dir = Path("/tmp")  # type: ignore[misc]
    with pytest.raises(ValueError, match="frozen"):
        config.inbound.poll_interval = 1.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.inbound.routes["+12125550199"] = config.inbound.routes["+12125550100"]  # type: ignore[index]
    assert isinstance(config.inbound.routes["+12125550100"].to, tuple)


def test_load_config_reads_the_file_and_resolves_paths_next_to_it(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(MINIMAL.replace("/var/lib/fax-bridge", "state"), encoding="utf-8")
    assert load_config(path, environ={}).state_dir == tmp_path / "state"


def test_load_config_accepts_a_utf8_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + MINIMAL.encode())
    assert load_config(path, environ={}).interfax.username == "clinic"


def test_missing_file_is_a_config_error_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.yaml: cannot read: No such file"):
        load_config(tmp_path / "missing.yaml", environ={})


def test_file_that_is_not_utf8_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(MINIMAL.replace("clinic", "cl\xefnic").encode("latin-1"))
    with pytest.raises(InvalidConfig, match="is not UTF-8 text"):
        load_config(path, environ={})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the file is empty"),
        ("# nothing but a comment\n", "the file is empty"),
        ("- interfax\n- state_dir\n", "the top level must be keys like 'interfax:', not a list"),
        ("just text\n", "not a single value"),
    ],
)
def test_empty_file_or_non_mapping_root_is_a_clear_error(text: str, message: str) -> None:
    assert message in one_problem(text).message


def test_every_problem_is_listed_one_per_line_in_file_order() -> None:
    text = """\
    interfax:
      username: clinic
      password: x
      pasword: y
    state_dir: /var/lib/fax-bridge
    smtp_server:
      max_recipients: lots
    outbound:
      allowed_senders: ["Bob <bob@example.org>"]
      notify: sometimes
    inbound:
      poll_interval: -5
    """
    with pytest.raises(InvalidConfig) as info:
        load_text(text)
    assert str(info.value).splitlines() == [
        "test.yaml:4: interfax.pasword: unknown key (did you mean 'password'?)",
        "test.yaml:7: smtp_server.max_recipients: must be a whole number",
        "test.yaml:9: outbound.allowed_senders[0]: 'Bob <bob@example.org>' is not a bare "
        "email address: write one address like alice@example.org, with no name, quotes, "
        "<> or commas",
        "test.yaml:10: outbound.notify: must be 'always', 'failure', 'success' or 'never' "
        "(got 'sometimes')",
        "test.yaml:12: inbound.poll_interval: must be a positive duration",
    ]


def test_unknown_key_names_its_path_and_line_and_suggests_the_close_one() -> None:
    problem = one_problem(MINIMAL + "inbound:\n  pol_interval: 30s\n")
    assert (problem.line, problem.key) == (6, "inbound.pol_interval")
    assert problem.message == "unknown key (did you mean 'poll_interval'?)"


def test_unknown_key_inside_a_route_suggests_from_the_route_keys() -> None:
    text = MINIMAL + (
        "mail: {from: fax@clinic.example.org}\n"
        "inbound:\n"
        "  routes:\n"
        '    "+12125550100":\n'
        "      to: [a@clinic.example.org]\n"
        "      fromat: tiff\n"
    )
    problem = one_problem(text)
    assert problem.line == 10
    assert problem.key == 'inbound.routes."+12125550100".fromat'
    assert problem.message == "unknown key (did you mean 'format'?)"


def test_unknown_key_far_from_any_known_key_gets_no_guess() -> None:
    problem = one_problem(MINIMAL + "colour: blue\n")
    assert (problem.key, problem.line, problem.message) == ("colour", 5, "unknown key")


def test_a_missing_section_is_named_and_a_missing_key_points_at_its_section() -> None:
    found = problems_in("state_dir: /x\nmail:\n  relay:\n    username: fax\n")
    assert [(p.key, p.line, p.message) for p in found] == [
        ("interfax", None, "is required"),
        ("mail.relay.password", 3, "is required when username is set (or password_file)"),
    ]
    problem = one_problem("interfax:\n  password: x\nstate_dir: /x\n")
    assert (problem.key, problem.line, problem.message) == ("interfax.username", 1, "is required")


def test_wrong_type_messages_say_what_was_expected() -> None:
    text = MINIMAL + "smtp_server: [a, b]\noutbound:\n  allowed_senders: a@b.org\n"
    found = problems_in(text)
    assert [(p.key, p.line, p.message) for p in found] == [
        ("smtp_server", 5, "must be a section of keys (got a list)"),
        ("outbound.allowed_senders", 7, "must be a list"),
    ]


def test_text_read_by_yaml_as_a_number_gets_a_quoting_hint() -> None:
    problem = one_problem(MINIMAL + "mail:\n  admin: 2024-01-01\n")
    assert problem.key == "mail.admin"
    assert "put the value in quotes" in problem.message


def test_yaml_syntax_error_gives_the_line() -> None:
    problem = one_problem("interfax:\n  username: clinic\n   password: x\nstate_dir: /x\n")
    assert problem.line == 3
    assert problem.message.startswith("YAML syntax: ")


def test_duplicate_keys_are_refused_with_both_lines() -> None:
    problem = one_problem(MINIMAL + "state_dir: /elsewhere\n")
    assert (problem.key, problem.line) == ("state_dir", 5)
    assert problem.message == "duplicate key (first at line 4)"


def test_a_duplicate_route_number_key_is_refused() -> None:
    text = (
        MINIMAL
        + 'inbound:\n  routes:\n    "+12125550100": [a@x.org]\n    "+12125550100": [b@x.org]\n'
    )
    problem = one_problem(text)
    assert (problem.key, problem.line) == ('inbound.routes."+12125550100"', 8)


def test_yaml_1_1_surprises_are_avoided_for_codes_and_numbers() -> None:
    config = load_text(
        MINIMAL
        + dedent(
            """\
        outbound:
          default_country: NO
          blocked_prefixes: [+1900, 0044 909]
        mail:
          relay: {starttls: yes, host: localhost}
        """
        )
    )
    assert config.outbound.default_country == "NO"  # not False (the "Norway problem")
    assert config.outbound.blocked_prefixes == ("+1900", "+44909")  # the plus is kept
    assert config.mail.relay.starttls is True  # booleans still accept yes/no


def test_merge_keys_and_aliases_work_as_in_yaml() -> None:
    config = load_text(
        MINIMAL
        + dedent(
            """\
        mail: {from: fax@clinic.example.org}
        inbound:
          routes:
            "+12125550100": &front {to: [front@clinic.example.org], format: both}
            "+12125550101":
              <<: *front
              format: tiff
        """
        )
    )
    routes = config.inbound.routes
    assert routes["+12125550100"].format == "both"
    assert routes["+12125550101"].format == "tiff"
    assert routes["+12125550101"].to == ("front@clinic.example.org",)


def test_alias_bombs_are_refused_quickly() -> None:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for i, name in enumerate("bcdefg"):
        prev = "abcdefg"[i]
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 10) + "]")
    problem = one_problem("\n".join(lines) + "\n")
    assert "too large" in problem.message


def test_invalid_yaml_dates_do_not_crash_the_loader() -> None:
    problem = one_problem(MINIMAL + "mail:\n  admin: 2024-13-45\n")
    assert "cannot read" in problem.message


@pytest.mark.parametrize(
    ("extra", "key", "line", "message"),
    [
        ("mail:\n  admin: a\x07@x.org\n", "", 6, "holds a character YAML does not allow (#x0007)"),
        (
            "x: !!python/object/apply:os.system [id]\n",
            "",
            5,
            "YAML: could not determine a constructor",
        ),
        ("{a: 1}: b\n", "", 5, "YAML: a key must be plain text"),
        (
            "inbound:\n  filename: 'f{received:%Y{x}}.pdf'\n",
            "inbound.filename",
            6,
            "cannot be rendered",
        ),
        (
            "---\na: 1\n",
            "",
            5,
            "YAML syntax: expected a single document in the stream (from line 1), but found",
        ),
    ],
)
def test_hostile_input_is_a_config_error_not_a_crash(
    extra: str, key: str, line: int, message: str
) -> None:
    problem = one_problem(MINIMAL + extra)
    assert (problem.key, problem.line) == (key, line)
    assert problem.message.startswith(message)


def test_format_key_quotes_keys_that_are_not_names() -> None:
    assert format_key(("inbound", "routes", "+12125550100", "to", 1)) == (
        'inbound.routes."+12125550100".to[1]'
    )
    assert format_key(()) == ""


# ----------------------------------------------------------------------------- example, CLI


def _credentials(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "interfax-password").write_text("example-secret\n", encoding="utf-8")
    return {"CREDENTIALS_DIRECTORY": str(tmp_path)}


def test_the_example_file_loads_with_safe_defaults(tmp_path: Path) -> None:
    config = load_config(EXAMPLE, environ=_credentials(tmp_path))
    assert config.outbound.allowed_senders == ()  # deny by default
    assert config.interfax.password.reveal() == "example-secret"
    assert config.smtp_server.listen is not None
    assert config.smtp_server.listen.host == "127.0.0.1"
    assert config.http.listen is not None
    assert config.http.listen.host == "127.0.0.1"
    assert set(config.inbound.routes) == {"+12125550100", "+12125550101"}


def _keys(model: type[Any], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        key = field.alias or name
        keys.append(prefix + key)
        kinds = [field.annotation]
        while kinds:
            kind = kinds.pop()
            if isinstance(kind, type) and hasattr(kind, "model_fields"):
                keys += _keys(kind, prefix + key + ".")
            else:
                kinds += [a for a in get_args(kind) if get_origin(kind) is not None]
    return keys


def test_the_example_file_documents_every_key() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    missing = [
        key
        for key in _keys(Config)
        if not re.search(rf"^\s*#?\s*(- )?{re.escape(key.rsplit('.', 1)[-1])}:", text, re.M)
    ]
    assert missing == []


def test_check_config_exits_0_on_the_example(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", _credentials(tmp_path)["CREDENTIALS_DIRECTORY"])
    assert cli.main(["check-config", "-c", str(EXAMPLE)]) == 0
    assert capsys.readouterr().out.strip().endswith("OK")


def test_check_config_exits_2_naming_the_key_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(MINIMAL + "outbound:\n  notfiy: never\n", encoding="utf-8")
    assert cli.main(["check-config", "-c", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:6: outbound.notfiy: unknown key (did you mean 'notify'?)" in err
    assert SECRET not in err


def _run_module(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "CREDENTIALS_DIRECTORY"}
    full_env.update(PYTHONPATH=str(REPO), **env)
    return subprocess.run(
        [sys.executable, "-m", "bridge", *args],
        cwd=REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_check_config_as_a_process_exits_0_on_the_example(tmp_path: Path) -> None:
    result = _run_module(["check-config", "-c", str(EXAMPLE)], _credentials(tmp_path))
    assert (result.returncode, result.stderr) == (0, "")
    assert "OK" in result.stdout


def test_check_config_as_a_process_exits_2_with_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(MINIMAL + "inbound:\n  concurrency: 0\n", encoding="utf-8")
    result = _run_module(["check-config", "-c", str(bad)], {})
    assert result.returncode == 2
    assert f"{bad}:6: inbound.concurrency: must be at least 1" in result.stderr
    assert "Traceback" not in result.stderr
