"""SMTP AUTH users: a file of ``name:scrypt$N$r$p$salt$hash`` lines (salted scrypt).

Pure functions over text, plus the file update used by ``fax-bridge passwd``. Passwords
are compared in constant time; the file never holds a password in the clear.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bridge.errors import ConfigError
from bridge.fsync import fsync_dir

_N, _R, _P = 2**14, 8, 1
_DKLEN = 32
_MAXMEM = 256 * 1024 * 1024
_MIN_SALT, _MIN_DIGEST, _MAX_DIGEST = 8, 16, 64


@dataclass(frozen=True, slots=True)
class PasswordHash:
    """One stored scrypt hash with its parameters."""

    n: int
    r: int
    p: int
    salt: bytes
    digest: bytes

    def encode(self) -> str:
        """The ``scrypt$N$r$p$salt$hash`` form stored in the file."""
        salt = base64.b64encode(self.salt).decode()
        digest = base64.b64encode(self.digest).decode()
        return f"scrypt${self.n}${self.r}${self.p}${salt}${digest}"

    @classmethod
    def decode(cls, text: str) -> PasswordHash:
        """Parse the stored form; raises ValueError when it is not one.

        Everything :meth:`verify` would trip over is refused here, so a bad entry is
        a configuration error naming its line, not a failure at the client's AUTH.
        """
        parts = text.split("$")
        if len(parts) != 6 or parts[0] != "scrypt":
            raise ValueError("not a scrypt hash")
        if not all(x.isascii() and x.isdigit() for x in parts[1:4]):
            raise ValueError("scrypt parameters must be decimal numbers")
        n, r, p = (int(x) for x in parts[1:4])
        if n < 2**10 or n > 2**20 or n & (n - 1) or not 1 <= r <= 32 or not 1 <= p <= 16:
            raise ValueError("scrypt parameters out of range")
        # OpenSSL's own checks, which hashlib.scrypt would otherwise fail at AUTH time.
        if n >= 2 ** (16 * r):
            raise ValueError("scrypt N must be below 2**(16*r)")
        if 128 * r * (n + p + 2) > _MAXMEM:
            raise ValueError("scrypt parameters need more than 256 MiB")
        try:
            salt = base64.b64decode(parts[4], validate=True)
            digest = base64.b64decode(parts[5], validate=True)
        except binascii.Error:
            raise ValueError("salt or hash is not base64") from None
        if len(salt) < _MIN_SALT or not _MIN_DIGEST <= len(digest) <= _MAX_DIGEST:
            raise ValueError("salt or hash too short or too long")
        return cls(n, r, p, salt, digest)

    def verify(self, password: str) -> bool:
        """True when ``password`` matches, compared in constant time."""
        candidate = hashlib.scrypt(
            password.encode(),
            salt=self.salt,
            n=self.n,
            r=self.r,
            p=self.p,
            maxmem=_MAXMEM,
            dklen=len(self.digest),
        )
        return hmac.compare_digest(candidate, self.digest)


def hash_password(password: str) -> PasswordHash:
    """A fresh salted scrypt hash of ``password``."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=_DKLEN)
    return PasswordHash(_N, _R, _P, salt, digest)


def _valid_user(name: str) -> bool:
    # A leading "#" would make the line a comment: the user could never log in.
    return (
        bool(name)
        and len(name) <= 254
        and not name.startswith("#")
        and all(c.isprintable() and c not in ": " for c in name)
    )


def parse_users(text: str, *, source: str) -> dict[str, PasswordHash]:
    """Parse a users file; raises ConfigError naming the line of any bad entry."""
    users: dict[str, PasswordHash] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        name, sep, stored = stripped.partition(":")
        try:
            if not sep or not _valid_user(name):
                raise ValueError("expected name:scrypt$...")
            if name in users:
                # Which of the two passwords counts would be a guess: refuse both.
                raise ValueError(f"user {name!r} appears twice")
            users[name] = PasswordHash.decode(stored)
        except ValueError as exc:
            raise ConfigError(f"{source}:{number}: invalid user entry ({exc})") from None
    return users


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the SMTP users file ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: the SMTP users file is not UTF-8 text") from None


def load_users(path: Path) -> dict[str, PasswordHash]:
    """Read and parse the users file at ``path``."""
    return parse_users(_read(path), source=str(path))


def check_login(users: Mapping[str, PasswordHash], name: str, password: str) -> bool:
    """True when ``name`` exists and ``password`` matches its hash."""
    stored = users.get(name)
    if stored is None:
        # Spend the same work on unknown users so timing does not reveal who exists.
        hash_password(password)
        return False
    return stored.verify(password)


def set_password(path: Path, name: str, password: str) -> None:
    """Add ``name`` or replace its password in the users file, atomically.

    The new file is written beside the old one, fsynced and renamed over it (then the
    directory is fsynced): a crash leaves either the old file or the new one. Raises
    :class:`ConfigError` for a bad name, an empty password, an existing file that does
    not parse, or any I/O failure; the file is then unchanged (unless only the final directory
    sync failed, which the message says).
    """
    if not _valid_user(name):
        raise ConfigError(f"invalid user name {name!r}")
    if not password:
        raise ConfigError("the password must not be empty")
    lines: list[str] = []
    if path.exists():
        existing = _read(path)
        parse_users(existing, source=str(path))
        lines = [ln for ln in existing.splitlines() if ln.strip().partition(":")[0] != name]
    lines.append(f"{name}:{hash_password(password).encode()}")
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".users-")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot write the SMTP users file ({exc.strerror})") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise ConfigError(f"{path}: cannot write the SMTP users file ({exc.strerror})") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:
        fsync_dir(path.parent)
    except OSError as exc:
        raise ConfigError(
            f"{path}: written, but its directory was not synced ({exc.strerror})"
        ) from None
