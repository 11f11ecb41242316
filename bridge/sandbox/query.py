"""Lenient query-string parsing (shared/interfax-api.md §1 and §12.9).

The clients encode the same value in many ways; the live service takes them all:

* parameter names are matched case-insensitively;
* booleans in any case: ``True``, ``true``, ``TRUE`` (also ``1``/``0``);
* enums case-insensitively, with the aliases the clients send (``greyscale``);
* ``ids`` as a comma-separated list with optional spaces;
* a ``+`` in ``faxNumber`` as ``%2B`` or ``%2b`` (and, leniently, a raw ``+`` that
  ``application/x-www-form-urlencoded`` decoding turns into a leading space);
* unknown parameters are ignored.

A value that is present but cannot be understood is a 400 (errors.invalid_parameter),
never silently replaced by a default.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import parse_qsl

from bridge.sandbox import errors
from bridge.sandbox.formats import parse_datetime

_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}
_IDS = re.compile(r"^\s*\d+(\s*,\s*\d+)*\s*,?\s*$")


class Query:
    """The query parameters of one request, first occurrence wins."""

    def __init__(self, raw_query: str) -> None:
        self._values: dict[str, str] = {}
        for name, value in parse_qsl(raw_query, keep_blank_values=True):
            self._values.setdefault(name.lower(), value)

    def text(self, name: str) -> str | None:
        """The raw (decoded) value, or None when absent."""
        return self._values.get(name.lower())

    def first_text(self, *names: str) -> str | None:
        """The value of the first of several alias names that is present."""
        for name in names:
            value = self.text(name)
            if value is not None:
                return value
        return None

    def integer(self, name: str, default: int, minimum: int = 0, maximum: int | None = None) -> int:
        """An integer within bounds; absent or empty means ``default``."""
        value = self.text(name)
        if value is None or not value.strip():
            return default
        try:
            number = int(value.strip())
        except ValueError:
            raise errors.invalid_parameter(f"{name} must be an integer, got {value!r}") from None
        if number < minimum or (maximum is not None and number > maximum):
            upper = "" if maximum is None else f" and at most {maximum}"
            raise errors.invalid_parameter(f"{name} must be at least {minimum}{upper}")
        return number

    def optional_integer(self, name: str) -> int | None:
        """An integer, or None when absent or empty."""
        value = self.text(name)
        if value is None or not value.strip():
            return None
        return self.integer(name, 0, minimum=-(2**63))

    def boolean(self, name: str, default: bool) -> bool:
        """A boolean in any letter case; absent or empty means ``default``."""
        value = self.text(name)
        if value is None or not value.strip():
            return default
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise errors.invalid_parameter(f"{name} must be true or false, got {value!r}")

    def enum(self, name: str, choices: Mapping[str, str], default: str) -> str:
        """One of ``choices`` (keys lower-case, values the canonical PascalCase)."""
        value = self.text(name)
        if value is None or not value.strip():
            return default
        canonical = choices.get(value.strip().lower())
        if canonical is None:
            allowed = ", ".join(sorted(set(choices.values())))
            raise errors.invalid_parameter(f"{name} must be one of {allowed}, got {value!r}")
        return canonical

    def datetime(self, name: str) -> float | None:
        """An ISO-8601 date-time as epoch seconds, or None when absent or empty."""
        value = self.text(name)
        if value is None or not value.strip():
            return None
        try:
            return parse_datetime(value)
        except ValueError:
            raise errors.invalid_parameter(
                f"{name} must be a date-time like 2016-10-03T00:36:41, got {value!r}"
            ) from None

    def ids(self, name: str) -> list[int] | None:
        """A comma-separated id list (``1,2`` or ``1, 2``), or None when absent."""
        value = self.text(name)
        if value is None:
            return None
        if not value.strip():
            return []
        if not _IDS.match(value):
            raise errors.invalid_parameter(
                f"{name} must be comma-separated numeric ids, got {value!r}"
            )
        return [int(part) for part in value.split(",") if part.strip()]

    def fax_number(self, name: str) -> str | None:
        """The fax number with a lost ``+`` restored, stripped; None when absent."""
        value = self.text(name)
        if value is None:
            return None
        if value.startswith(" ") and value.strip()[:1].isdigit():
            # An unencoded '+' decodes to a space; it can only have meant '+'.
            return "+" + value.strip()
        return value.strip()
