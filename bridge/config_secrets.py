"""Secrets in the configuration: the :class:`Secret` type and ``password_file``.

A credentials section has ``password`` (inline, ``${ENV}`` allowed) or
``password_file`` (read once at load time; relative paths are looked up in
``$CREDENTIALS_DIRECTORY`` when set, as systemd ``LoadCredential=`` provides, else
next to the configuration file; one trailing newline is dropped). Either way the
section's ``password`` field holds the effective :class:`Secret`.
"""

from __future__ import annotations

import hmac
import os
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, GetCoreSchemaHandler, ValidationInfo
from pydantic_core import core_schema

from bridge.config_types import FrozenModel, context_value, problems, resolve_path

__all__ = ["NO_SECRET", "Secret", "SecretFile", "apply_password_file"]

_M = TypeVar("_M", bound=FrozenModel)

_MASK = "**********"


class Secret:
    """A secret string (password). Masked in ``repr``, ``str``, f-strings and dumps.

    The only way to the value is :meth:`reveal`; call it at the last moment, where
    the secret goes on the wire.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """Return the secret value. Never log or format the result."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret({_MASK!r})"

    def __str__(self) -> str:
        return _MASK

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(self._value)

    @classmethod
    def __get_pydantic_core_schema__(
        cls, _source: Any, _handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            cls._validate,
            serialization=core_schema.plain_serializer_function_ser_schema(lambda _v: _MASK),
        )

    @classmethod
    def _validate(cls, value: object) -> Secret:
        if isinstance(value, Secret):
            return value
        if not isinstance(value, str):
            # Never echo the value: it is a password read as a number or boolean.
            raise ValueError("must be text; put the value in quotes")
        if not value:
            raise ValueError("must not be empty")
        if "\n" in value or "\r" in value:
            raise ValueError("must not contain a line break")
        return cls(value)


def _read_secret_file(path: Path, where: str = "") -> Secret:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ValueError(f"file not found: {path}{where}") from None
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not UTF-8 text") from None
    text = text.removesuffix("\n").removesuffix("\r")  # one trailing newline, as editors add
    if not text:
        raise ValueError(f"{path} is empty")
    if "\n" in text or "\r" in text:
        raise ValueError(f"{path} holds more than one line")
    return Secret(text)


def _password_file(value: Path, info: ValidationInfo) -> Path:
    environ = context_value(info, "environ")
    credentials = (environ if environ is not None else os.environ).get("CREDENTIALS_DIRECTORY")
    path, where = value.expanduser(), ""
    if path.is_absolute():
        pass
    elif credentials:  # systemd LoadCredential=
        path, where = Path(credentials) / path, " (taken from $CREDENTIALS_DIRECTORY)"
    else:
        path = resolve_path(path, info)
    secret = _read_secret_file(path, where)
    cache = context_value(info, "secrets")
    if isinstance(cache, dict):
        cache[path] = secret
    return path


SecretFile = Annotated[Path, AfterValidator(_password_file)]
# Default of a required password. Secret() refuses empty input, so an empty
# password can only be this default: "not given".
NO_SECRET = Secret("")


def apply_password_file(model: _M, info: ValidationInfo, *, required: bool) -> _M:
    """Check password/password_file of a validated section; return it with ``password`` set.

    For use in a section's ``model_validator(mode="after")``.
    """
    file: Path | None = getattr(model, "password_file", None)
    if file is not None and "password" in model.model_fields_set:
        raise problems([(("password_file",), "and password are both set: keep only one")])
    if file is not None:
        cache = context_value(info, "secrets")
        secret = cache.get(file) if isinstance(cache, dict) else None
        if secret is None:
            secret = _read_secret_file(file)
        return model.model_copy(update={"password": secret})
    password = getattr(model, "password", None)
    if required and isinstance(password, Secret) and not password.reveal():
        raise problems([(("password",), "is required: set password, or password_file")])
    return model
