"""Secrets (password, password_file, $CREDENTIALS_DIRECTORY) and ${ENV_VAR} expansion."""

from __future__ import annotations

import traceback
from pathlib import Path

import pytest

from bridge.config import InvalidConfig, Secret
from tests.config_helpers import MINIMAL, SECRET, load_text, one_problem

# ----------------------------------------------------------------------------- secrets


def test_secrets_never_appear_in_repr_str_or_dumps() -> None:
    config = load_text(MINIMAL)
    assert config.interfax.password.reveal() == SECRET
    for text in (
        repr(config),
        str(config),
        f"{config.interfax.password}",
        str(config.model_dump()),
        config.model_dump_json(),
    ):
        assert SECRET not in text
    assert repr(config.interfax.password) == "Secret('**********')"


def test_secret_equality_compares_values_without_revealing() -> None:
    assert Secret("a") == Secret("a")
    assert Secret("a") != Secret("b")


@pytest.mark.parametrize(
    ("yaml_value", "secret"),
    [
        ("12345678", "12345678"),  # YAML reads a number: refused, not echoed
        ('"two\\nlines-77319"', "lines-77319"),
        ('"${UNSET_PW}-77319"', "77319"),
    ],
)
def test_a_bad_secret_value_is_never_echoed_in_the_error(yaml_value: str, secret: str) -> None:
    with pytest.raises(InvalidConfig) as info:
        load_text(MINIMAL.replace(SECRET, yaml_value))
    [problem] = info.value.problems
    assert problem.key == "interfax.password"
    assert problem.line == 3
    rendered = "".join(traceback.format_exception(info.value))
    assert secret not in rendered
    assert info.value.__cause__ is None
    assert info.value.__context__ is None


def test_a_yaml_syntax_error_on_a_secret_line_does_not_quote_the_line() -> None:
    text = 'interfax:\n  username: clinic\n  password: "hunter2-99812\nstate_dir: /x\n'
    with pytest.raises(InvalidConfig) as info:
        load_text(text)
    assert "hunter2-99812" not in "".join(traceback.format_exception(info.value))


def test_a_secret_from_the_environment_is_masked_like_any_other() -> None:
    config = load_text(MINIMAL.replace(SECRET, "${IFX_PW}"), env={"IFX_PW": "from-env-5521"})
    assert config.interfax.password.reveal() == "from-env-5521"
    assert "from-env-5521" not in repr(config)


def test_password_file_is_read_from_credentials_directory(tmp_path: Path) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "interfax").write_text("cred-dir-secret\n", encoding="utf-8")
    (tmp_path / "interfax").write_text("next-to-config\n", encoding="utf-8")
    text = MINIMAL.replace(f"password: {SECRET}", "password_file: interfax")
    env = {"CREDENTIALS_DIRECTORY": str(credentials)}
    config = load_text(text, env=env, base_dir=tmp_path)
    assert config.interfax.password.reveal() == "cred-dir-secret"
    assert config.interfax.password_file == credentials / "interfax"
    assert "cred-dir-secret" not in repr(config)


def test_password_file_without_credentials_directory_is_next_to_the_config(
    tmp_path: Path,
) -> None:
    (tmp_path / "interfax").write_text("next-to-config\r\n", encoding="utf-8")
    text = MINIMAL.replace(f"password: {SECRET}", "password_file: interfax")
    assert load_text(text, base_dir=tmp_path).interfax.password.reveal() == "next-to-config"


def test_password_file_strips_exactly_one_trailing_newline(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("one line\n\n", encoding="utf-8")
    text = MINIMAL.replace(f"password: {SECRET}", f"password_file: {tmp_path / 'pw'}")
    problem = one_problem(text)
    assert (problem.key, problem.line) == ("interfax.password_file", 3)
    assert problem.message == f"{tmp_path / 'pw'} holds more than one line"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "file not found: {path} (taken from $CREDENTIALS_DIRECTORY)"),
        (b"\n", "{path} is empty"),
    ],
)
def test_password_file_problems_name_the_key_and_the_file(
    tmp_path: Path, content: bytes | None, message: str
) -> None:
    path = tmp_path / "pw"
    if content is not None:
        path.write_bytes(content)
    text = MINIMAL.replace(f"password: {SECRET}", "password_file: pw")
    problem = one_problem(text, env={"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert (problem.key, problem.line) == ("interfax.password_file", 3)
    assert problem.message == message.format(path=path)


def test_password_and_password_file_together_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("x", encoding="utf-8")
    text = MINIMAL.replace("state_dir", "  password_file: pw\nstate_dir")
    problem = one_problem(text, base_dir=tmp_path)
    assert problem.key == "interfax.password_file"
    assert problem.message == "and password are both set: keep only one"


def test_interfax_needs_a_password_or_password_file() -> None:
    problem = one_problem(MINIMAL.replace(f"  password: {SECRET}\n", ""))
    assert (problem.key, problem.line) == ("interfax.password", 1)
    assert problem.message == "is required: set password, or password_file"


# ----------------------------------------------------------------------------- ${ENV}


def test_environment_variables_are_expanded_inside_text_values() -> None:
    text = MINIMAL + "mail:\n  from: fax@${DOMAIN}\n  relay: {host: localhost, port: '${PORT}'}\n"
    config = load_text(text, env={"DOMAIN": "clinic.example.org", "PORT": "2526"})
    assert config.mail.from_ == "fax@clinic.example.org"
    assert config.mail.relay.port == 2526


def test_double_dollar_brace_is_a_literal_and_lone_dollars_stay() -> None:
    config = load_text(MINIMAL.replace(SECRET, "'a$${b}c$d'"))
    assert config.interfax.password.reveal() == "a${b}c$d"


def test_unset_environment_variable_names_the_key_and_is_reported_once() -> None:
    problem = one_problem(MINIMAL + "mail:\n  from: ${FAX_FROM}\n")
    assert (problem.key, problem.line) == ("mail.from", 6)
    assert problem.message == "environment variable FAX_FROM is not set"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("${A:-x}", "'${A:-x}': only ${NAME} is supported"),
        ("${OPEN", "has '${' without '}' (write $${ for a literal ${)"),
    ],
)
def test_malformed_references_are_errors(value: str, message: str) -> None:
    problem = one_problem(MINIMAL + f"mail:\n  admin: '{value}'\n")
    assert (problem.key, problem.message) == ("mail.admin", message)
