"""Helpers for the configuration tests: parse YAML text, collect the problems."""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent
from typing import Any

import pytest

from bridge.config import Config, ConfigProblem, InvalidConfig, parse_config

SECRET = "pa55-Word-7731"

MINIMAL = f"""\
interfax:
  username: clinic
  password: {SECRET}
state_dir: /var/lib/fax-bridge
"""
"""The smallest valid file (4 lines): added text starts at line 5."""

ROUTED = MINIMAL + "mail:\n  from: fax@clinic.example.org\n"
"""MINIMAL plus mail.from (needed once routes or senders exist): added text starts at line 7."""


def load_text(
    text: str, *, env: dict[str, str] | None = None, base_dir: Path | None = None
) -> Config:
    """Parse a whole file's ``text`` (dedented) as ``test.yaml``."""
    return parse_config(
        dedent(text),
        source="test.yaml",
        environ=env or {},
        base_dir=base_dir or Path("/nonexistent"),
    )


def problems_in(text: str, **kwargs: Any) -> list[ConfigProblem]:
    """The problems of a whole file's ``text``; fails the test when it loads."""
    with pytest.raises(InvalidConfig) as info:
        load_text(text, **kwargs)
    return list(info.value.problems)


def one_problem(text: str, **kwargs: Any) -> ConfigProblem:
    """The single problem of a whole file's ``text``."""
    found = problems_in(text, **kwargs)
    assert len(found) == 1, found
    return found[0]


def load(extra: str = "", *, head: str = MINIMAL, base_dir: Path | None = None) -> Config:
    """Parse ``head`` followed by ``extra`` (dedented)."""
    return load_text(head + dedent(extra), base_dir=base_dir)


def problems_of(extra: str, **kwargs: Any) -> list[tuple[str, int | None, str]]:
    """``(key, line, message)`` of each problem of ``head + extra``."""
    with pytest.raises(InvalidConfig) as info:
        load(extra, **kwargs)
    return [(p.key, p.line, p.message) for p in info.value.problems]


def only(extra: str, **kwargs: Any) -> tuple[str, int | None, str]:
    """``(key, line, message)`` of the single problem of ``head + extra``."""
    found = problems_of(extra, **kwargs)
    assert len(found) == 1, found
    return found[0]
