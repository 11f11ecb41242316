"""Load the one YAML configuration file into a validated, frozen :class:`Config`.

Steps: read the YAML (``yaml.safe_load`` semantics with the deviations listed
on :class:`_Loader`; duplicate keys refused) while noting the line of every key,
expand ``${ENV_VAR}`` in string values, then validate once with pydantic. Every
problem found on the way is collected and raised together as one
:class:`InvalidConfig` (a :class:`~bridge.errors.ConfigError`), one line per
problem, each naming the dotted key and, where possible, the line::

    /etc/fax-bridge/config.yaml:14: inbound.routes."+12125550100".to[1]: ...

No message ever includes the value of a secret, and the pydantic error is never
chained to the raised exception (its text would carry the input values).
"""

from __future__ import annotations

import difflib
import json
import os
import re
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NoReturn, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from bridge.config_flows import (
    GlobalRateLimit,
    InboundConfig,
    InboundRoute,
    NumberType,
    OutboundConfig,
    OutboundDefaults,
    RateLimit,
    RateLimits,
    SenderRateLimit,
    SenderRoute,
)
from bridge.config_schema import (
    Config,
    HttpConfig,
    ImapConnection,
    ImapInConfig,
    InterfaxConfig,
    MailConfig,
    RelayConfig,
    SmtpServerConfig,
)
from bridge.config_secrets import Secret
from bridge.config_types import HostPort, normalize_number
from bridge.config_yaml import KeyPath, Problem, TooLarge, expand_environment, read_yaml
from bridge.errors import ConfigError

__all__ = [
    "Config",
    "ConfigProblem",
    "GlobalRateLimit",
    "HostPort",
    "HttpConfig",
    "ImapConnection",
    "ImapInConfig",
    "InboundConfig",
    "InboundRoute",
    "InterfaxConfig",
    "InvalidConfig",
    "MailConfig",
    "NumberType",
    "OutboundConfig",
    "OutboundDefaults",
    "RateLimit",
    "RateLimits",
    "RelayConfig",
    "Secret",
    "SenderRateLimit",
    "SenderRoute",
    "SmtpServerConfig",
    "format_key",
    "load_config",
    "normalize_number",
    "parse_config",
]


@dataclass(frozen=True)
class ConfigProblem:
    """One problem in a configuration file."""

    source: str
    line: int | None
    key: str  # dotted key path, "" for the file as a whole
    message: str

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line else self.source
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class InvalidConfig(ConfigError):
    """The configuration has problems; ``str()`` lists them, one per line."""

    def __init__(self, problems: Sequence[ConfigProblem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def load_config(path: Path, *, environ: Mapping[str, str] | None = None) -> Config:
    """Read, validate and return the configuration file at ``path``.

    ``environ`` (default ``os.environ``) supplies ``${VAR}`` values and
    ``$CREDENTIALS_DIRECTORY``. Relative paths in the file are taken from the
    file's directory. Raises :class:`InvalidConfig` listing every problem.
    """
    source = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise InvalidConfig([ConfigProblem(source, None, "", f"cannot read: {reason}")]) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        problem = ConfigProblem(source, None, "", f"is not UTF-8 text (bad byte at {exc.start})")
        raise InvalidConfig([problem]) from None
    return parse_config(text, source=source, environ=environ, base_dir=path.absolute().parent)


def parse_config(
    text: str,
    *,
    source: str,
    environ: Mapping[str, str] | None = None,
    base_dir: Path | None = None,
) -> Config:
    """Validate configuration ``text``; ``source`` names it in messages.

    ``base_dir`` (default: the working directory) anchors relative paths.
    """
    env = os.environ if environ is None else environ
    raw, lines, found = read_yaml(text)
    if found:
        _raise(source, lines, found)
    try:
        raw, found = expand_environment(raw, env)
    except TooLarge:
        _raise(source, lines, [((), "is too large or too deeply nested (check aliases)", None)])
    context = {"environ": env, "base_dir": base_dir or Path.cwd(), "secrets": {}}
    try:
        config = Config.model_validate(raw, context=context)
    except ValidationError as exc:
        invalid = _translate(exc)
    else:
        invalid = []
    # A value whose ${VAR} failed also fails validation: report it once.
    bad = [path for path, _, _ in found]
    found += [(p, m, None) for p, m in invalid if not any(p[: len(b)] == b for b in bad)]
    if found:
        _raise(source, lines, found)
    return config


def _raise(source: str, lines: dict[KeyPath, int], found: list[Problem]) -> NoReturn:
    problems = [
        ConfigProblem(source, line or _line_for(lines, path), format_key(path), message)
        for path, message, line in found
    ]
    problems.sort(key=lambda p: (p.line is not None, p.line or 0))
    raise InvalidConfig(problems)


def format_key(path: KeyPath) -> str:
    """``("inbound", "routes", "+1 212", "to", 1)`` -> ``inbound.routes."+1 212".to[1]``."""
    out = ""
    for seg in path:
        if isinstance(seg, int):
            out += f"[{seg}]"
        else:
            name = (
                seg
                if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", seg)
                else json.dumps(seg, ensure_ascii=False)
            )
            out += f".{name}" if out else name
    return out


def _line_for(lines: dict[KeyPath, int], path: KeyPath) -> int | None:
    line, i = None, 0
    prefix: KeyPath = ()
    while i < len(path):
        if (*prefix, path[i]) in lines:
            prefix = (*prefix, path[i])
            line = lines[prefix]
        elif i + 1 < len(path) and (*prefix, path[i + 1]) in lines:
            pass  # a key the schema adds (a route given as a bare list is its "to")
        else:
            break
        i += 1
    return line


# ----------------------------------------------------------------------------- messages

_PLAIN = {
    "missing": "is required",
    "string_type": "must be text",
    "string_too_short": "must not be empty",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "decimal_type": "must be a number",
    "decimal_parsing": "must be a number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "model_type": "must be a section of keys",
    "model_attributes_type": "must be a section of keys",
    "dict_type": "must be a section of keys",
    "mapping_type": "must be a section of keys",
    "tuple_type": "must be a list",
    "list_type": "must be a list",
    "iterable_type": "must be a list",
}
_BOUNDS = {
    "greater_than_equal": ("ge", "at least"),
    "greater_than": ("gt", "more than"),
    "less_than_equal": ("le", "at most"),
    "less_than": ("lt", "less than"),
}


def _translate(exc: ValidationError) -> list[tuple[KeyPath, str]]:
    found: list[tuple[KeyPath, str]] = []
    for error in exc.errors(include_url=False):
        loc: KeyPath = tuple(error["loc"])
        kind, ctx = error["type"], error.get("ctx") or {}
        if kind == "config_problems":
            found += [((*loc, *at), message) for at, message in ctx["items"]]
            continue
        if kind == "extra_forbidden":
            message = "unknown key" + _suggestion(loc)
        elif kind in ("value_error", "assertion_error"):
            message = str(ctx.get("error") or error["msg"])
        elif kind == "literal_error":
            message = f"must be {ctx['expected']}" + _got(error.get("input"))
        elif kind in _BOUNDS:
            name, words = _BOUNDS[kind]
            message = f"must be {words} {ctx[name]}"
        else:
            message = _PLAIN.get(kind, error["msg"]) + _type_hint(kind, error.get("input"))
        found.append((loc, message))
    return found


def _got(value: object) -> str:
    return f" (got {value!r})" if isinstance(value, str) and len(value) <= 40 else ""


def _type_hint(kind: str, value: object) -> str:
    if kind not in _PLAIN or kind == "missing":
        return ""
    if isinstance(value, dict):
        return " (got a section of keys)"
    if isinstance(value, list):
        return " (got a list)"
    if kind == "string_type" and value is not None:
        return " (YAML read it as a number, date or true/false: put the value in quotes)"
    return ""


def _suggestion(loc: KeyPath) -> str:
    model = _model_at(loc[:-1])
    if model is None or not isinstance(loc[-1], str):
        return ""
    known = [field.alias or name for name, field in model.model_fields.items()]
    close = difflib.get_close_matches(loc[-1], known, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _model_at(path: KeyPath) -> type[BaseModel] | None:
    """The section model at ``path`` (for the names of its keys)."""
    kind: Any = Config
    for seg in path:
        kind = _strip(kind)
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            fields = {(f.alias or n): f for n, f in kind.model_fields.items()}
            if seg not in fields:
                return None
            kind = fields[str(seg)].annotation
        elif get_origin(kind) in (tuple, list):
            kind = get_args(kind)[0]
        elif get_origin(kind) in (dict, Mapping):
            kind = get_args(kind)[1]
        else:
            return None
    kind = _strip(kind)
    return kind if isinstance(kind, type) and issubclass(kind, BaseModel) else None


def _strip(kind: Any) -> Any:
    while True:
        origin = get_origin(kind)
        if origin is Annotated:
            kind = get_args(kind)[0]
        elif origin in (Union, types.UnionType):
            members = [a for a in get_args(kind) if a is not type(None)]
            if len(members) != 1:
                return kind
            kind = members[0]
        else:
            return kind
