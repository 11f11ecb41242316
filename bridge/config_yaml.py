"""Reading the configuration YAML: line numbers, duplicate keys, ``${ENV_VAR}``.

Part of :mod:`bridge.config`; nothing else should need it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import yaml

__all__ = ["KeyPath", "Problem", "TooLarge", "expand_environment", "read_yaml"]

KeyPath = tuple[str | int, ...]
Problem = tuple[KeyPath, str, int | None]
"""A problem at a key path, with its line when known here (else looked up by path)."""

_MAX_VALUES = 100_000  # YAML aliases can multiply a small file (the "billion laughs")
_MAX_DEPTH = 64


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` with three deliberate differences, all towards YAML 1.2:

    * mapping keys are always the text as written (``12125550100:`` stays a string
      and ``+1...`` keeps its plus), and must be scalars;
    * only ``true``/``false`` are booleans: ``NO`` (Norway) and ``on`` stay text
      (boolean fields still accept yes/no/on/off);
    * a plain value of digits starting with ``+`` or ``0`` stays text, so
      ``+12125550100`` and ``0049...`` are not turned into numbers.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        self.flatten_mapping(node)
        mapping: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise yaml.constructor.ConstructorError(
                    None, None, "a key must be plain text", key_node.start_mark
                )
            mapping[key_node.value] = self.construct_object(value_node, deep=deep)
        return mapping


_BOOL_TAG = "tag:yaml.org,2002:bool"
_Loader.yaml_implicit_resolvers = {
    first: [r for r in resolvers if r[0] != _BOOL_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
for _first in "tTfF":
    _Loader.yaml_implicit_resolvers.setdefault(_first, []).insert(
        0, (_BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"))
    )
for _first in "+0":
    _Loader.yaml_implicit_resolvers.setdefault(_first, []).insert(
        0, ("tag:yaml.org,2002:str", re.compile(r"^(?:\+[0-9][0-9_]*|0[0-9_]+)$"))
    )


def read_yaml(text: str) -> tuple[Any, dict[KeyPath, int], list[Problem]]:
    """Parse ``text``; return the data, the line of each key path, and problems."""
    lines: dict[KeyPath, int] = {}
    try:
        loader = _Loader(text)
    except yaml.reader.ReaderError as exc:
        message = f"holds a character YAML does not allow (#x{exc.character:04x})"
        return None, lines, [((), message, text.count("\n", 0, exc.position) + 1)]
    try:
        node = loader.get_single_node()
        if node is None:
            return None, lines, [((), "the file is empty (it needs interfax and state_dir)", None)]
        found = _index(node, lines)
        if found:
            return None, lines, found
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        # Never str(exc): its snippet of the line could show a password.
        where = exc.problem_mark or exc.context_mark
        mark_line = where.line + 1 if where is not None else None
        kind = "YAML" if isinstance(exc, yaml.constructor.ConstructorError) else "YAML syntax"
        message = f"{kind}: {exc.problem or exc.context}"
        if exc.context and exc.problem and exc.context_mark is not None:
            at = f"line {exc.context_mark.line + 1}"
            if exc.problem.startswith("but "):  # "expected X, but found Y"
                message = f"{kind}: {exc.context} (from {at}), {exc.problem}"
            else:
                message += f" ({exc.context} at {at})"
        return None, lines, [((), message, mark_line)]
    except yaml.YAMLError as exc:
        return None, lines, [((), f"not readable as YAML: {exc}", None)]
    except RecursionError:
        return None, lines, [((), "is nested too deeply", None)]
    except (ValueError, OverflowError):
        # PyYAML's constructors raise these for values such as the date 2024-13-45;
        # their text may carry the value, so it is not shown.
        return None, lines, [((), "holds a value YAML cannot read (an invalid date?)", None)]
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else "a single value"
        return None, lines, [((), f"the top level must be keys like 'interfax:', not {kind}", 1)]
    return data, lines, []


def _index(root: yaml.Node, lines: dict[KeyPath, int]) -> list[Problem]:
    """Record the line of every key path; report duplicate keys."""
    found: list[Problem] = []
    seen: set[int] = set()
    stack: list[tuple[KeyPath, yaml.Node]] = [((), root)]
    while stack:
        path, node = stack.pop()
        if id(node) in seen:  # an alias: indexed where its anchor is
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first: dict[str, int] = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                if not isinstance(key_node, yaml.ScalarNode):
                    continue  # refused with its line when the document is constructed
                line = key_node.start_mark.line + 1
                key = str(key_node.value)
                lines.setdefault((*path, key), line)
                if key in first:
                    found.append(
                        ((*path, key), f"duplicate key (first at line {first[key]})", line)
                    )
                    continue
                first[key] = line
                stack.append(((*path, key), value_node))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                lines[(*path, index)] = item.start_mark.line + 1
                stack.append(((*path, index), item))
    return found


# ----------------------------------------------------------------------------- ${VAR}

_REFERENCE = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class TooLarge(Exception):
    """Aliases expand the document beyond what a configuration needs."""


class _Expander:
    """Expands ``${NAME}`` in every string value; ``$${`` is a literal ``${``."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.problems: list[Problem] = []
        self.budget = _MAX_VALUES

    def value(self, value: Any, path: KeyPath) -> Any:
        self.budget -= 1
        if self.budget < 0 or len(path) > _MAX_DEPTH:
            raise TooLarge
        if isinstance(value, str):
            return _REFERENCE.sub(lambda m: self._replace(m, path), value)
        if isinstance(value, dict):
            return {k: self.value(v, (*path, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(v, (*path, i)) for i, v in enumerate(value)]
        return value

    def _replace(self, match: re.Match[str], path: KeyPath) -> str:
        name = match.group(1)
        if match.group(0) == "$${":
            return "${"
        if name is None:
            self.problems.append((path, "has '${' without '}' (write $${ for a literal ${)", None))
        elif not _VAR_NAME.fullmatch(name):
            self.problems.append((path, f"'${{{name}}}': only ${{NAME}} is supported", None))
        elif name not in self.environ:
            self.problems.append((path, f"environment variable {name} is not set", None))
        else:
            return self.environ[name]
        return match.group(0)


def expand_environment(data: Any, environ: Mapping[str, str]) -> tuple[Any, list[Problem]]:
    """Expand ``${NAME}`` in every string value of ``data``; return it and the problems.

    Raises :class:`TooLarge` when aliases expand the data beyond any sane configuration.
    """
    expander = _Expander(environ)
    return expander.value(data, ()), expander.problems
