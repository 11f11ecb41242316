"""The SMTP AUTH users file (bridge.smtp_auth): scrypt hashes, parsing, atomic updates.

Pure logic and one small file; the SMTP dialogue around it is in
tests/test_smtp_auth_dialogue.py.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import stat
from pathlib import Path
from typing import Any

import pytest

from bridge.errors import ConfigError
from bridge.smtp_auth import (
    PasswordHash,
    check_login,
    hash_password,
    load_users,
    parse_users,
    set_password,
)

_B64 = r"[A-Za-z0-9+/]+={0,2}"


def _stored(n: int = 2**14, r: int = 8, p: int = 1, salt: str = "", digest: str = "") -> str:
    salt = salt or base64.b64encode(b"0123456789abcdef").decode()
    digest = digest or base64.b64encode(b"d" * 32).decode()
    return f"scrypt${n}${r}${p}${salt}${digest}"


# -- hashes ----------------------------------------------------------------------------


def test_hash_is_salted_scrypt_in_the_documented_form_and_round_trips() -> None:
    first, second = hash_password("correct horse"), hash_password("correct horse")
    text = first.encode()
    match = re.fullmatch(rf"scrypt\$16384\$8\$1\$({_B64})\$({_B64})", text)
    assert match is not None, text
    assert len(base64.b64decode(match.group(1))) == 16
    assert len(base64.b64decode(match.group(2))) == 32
    assert PasswordHash.decode(text) == first
    assert first.salt != second.salt
    assert first.digest != second.digest
    expected = hashlib.scrypt(b"correct horse", salt=first.salt, n=2**14, r=8, p=1, dklen=32)
    assert first.digest == expected


def test_verify_accepts_only_the_exact_password() -> None:
    stored = hash_password("Tr0ub4dor&3")
    assert stored.verify("Tr0ub4dor&3")
    for wrong in ("", "tr0ub4dor&3", "Tr0ub4dor&3 ", "Tr0ub4dor&3\n", "Tr0ub4dor"):
        assert not stored.verify(wrong), wrong


def test_verify_compares_digests_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    stored = hash_password("secret")
    assert stored.verify("secret")
    assert not stored.verify("guess")
    assert len(calls) == 2
    assert all(b == stored.digest and len(a) == len(b) for a, b in calls)


def test_unknown_user_costs_one_scrypt_like_a_known_one(monkeypatch: pytest.MonkeyPatch) -> None:
    users = {"alice": hash_password("secret")}
    costs: list[tuple[int, int, int]] = []
    real = hashlib.scrypt

    def spy(password: bytes, **kwargs: Any) -> bytes:
        costs.append((kwargs["n"], kwargs["r"], kwargs["p"]))
        return real(password, **kwargs)

    monkeypatch.setattr(hashlib, "scrypt", spy)
    assert not check_login(users, "mallory", "secret")
    assert not check_login(users, "alice", "guess")
    assert check_login(users, "alice", "secret")
    assert costs == [(2**14, 8, 1)] * 3


# -- the users file --------------------------------------------------------------------


def test_users_file_with_comments_and_blank_lines_parses() -> None:
    alice, bob = hash_password("a"), hash_password("b")
    text = f"# fax senders\n\nalice:{alice.encode()}\n  bob@example.org:{bob.encode()}  \n"
    assert parse_users(text, source="users") == {"alice": alice, "bob@example.org": bob}


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("alice", "expected name:scrypt$..."),
        (":" + _stored(), "expected name:scrypt$..."),
        ("al ice:" + _stored(), "expected name:scrypt$..."),
        ("alice:plain-password", "not a scrypt hash"),
        ("alice:" + _stored().replace("scrypt", "bcrypt"), "not a scrypt hash"),
        ("alice:" + _stored(n=1000), "out of range"),
        ("alice:" + _stored(n=3 * 2**10), "out of range"),  # not a power of two
        ("alice:" + _stored(n=2**21), "out of range"),
        ("alice:" + _stored(r=0), "out of range"),
        ("alice:" + _stored(n=2**16, r=1), "N must be below"),
        ("alice:" + _stored(n=2**20, r=8), "more than 256 MiB"),
        ("alice:" + _stored(n=2**14, r=8, p=-1), "decimal numbers"),
        ("alice:" + _stored(salt="!!!!"), "not base64"),
        ("alice:" + _stored(digest="ZGlnZXN0"), "too short or too long"),
        ("alice:" + _stored(salt="c2FsdA=="), "too short or too long"),
        ("alice:" + _stored()[:-1], "not base64"),
    ],
)
def test_bad_entry_is_a_config_error_naming_file_and_line(line: str, problem: str) -> None:
    text = f"# users\nbob:{_stored()}\n{line}\n"
    with pytest.raises(ConfigError) as info:
        parse_users(text, source="/etc/fax-bridge/users")
    message = str(info.value)
    assert message.startswith("/etc/fax-bridge/users:3: invalid user entry")
    assert problem in message


def test_a_user_listed_twice_is_an_error_naming_the_second_line() -> None:
    text = f"alice:{_stored()}\nbob:{_stored()}\nalice:{_stored()}\n"
    with pytest.raises(ConfigError, match=r"^users:3: .*'alice' appears twice"):
        parse_users(text, source="users")


def test_every_accepted_hash_can_be_verified() -> None:
    """decode refuses exactly what hashlib.scrypt would fail on at AUTH time."""
    salt = base64.b64encode(b"saltsalt").decode()
    for n, r, p in ((2**15, 1, 1), (2**10, 32, 16), (2**16, 2, 3)):
        stored = PasswordHash.decode(_stored(n=n, r=r, p=p, salt=salt))
        assert not stored.verify("anything")


def test_load_users_reports_unreadable_and_non_utf8_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the SMTP users file"):
        load_users(tmp_path / "missing")
    latin1 = tmp_path / "latin1"
    latin1.write_bytes(b"\xe9ric:" + _stored().encode())
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_users(latin1)


# -- set_password ----------------------------------------------------------------------


def test_set_password_adds_then_replaces_keeping_other_lines(tmp_path: Path) -> None:
    users = tmp_path / "users"
    users.write_text(f"# keep me\nbob:{hash_password('bob').encode()}\n")
    set_password(users, "alice", "first")
    set_password(users, "alice", "second")
    text = users.read_text()
    assert text.startswith("# keep me\nbob:")
    assert text.count("alice:") == 1
    loaded = load_users(users)
    assert set(loaded) == {"bob", "alice"}
    assert loaded["alice"].verify("second")
    assert not loaded["alice"].verify("first")
    assert stat.S_IMODE(users.stat().st_mode) == 0o600


def test_set_password_is_atomic_when_writing_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    users = tmp_path / "users"
    set_password(users, "alice", "old")
    before = users.read_bytes()

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(ConfigError, match="cannot write the SMTP users file"):
        set_password(users, "alice", "new")
    assert users.read_bytes() == before
    assert os.listdir(tmp_path) == ["users"]  # no temporary file left behind


@pytest.mark.parametrize(
    ("name", "password", "problem"),
    [
        ("", "pw", "invalid user name"),
        ("al:ice", "pw", "invalid user name"),
        ("al ice", "pw", "invalid user name"),
        ("al\nice", "pw", "invalid user name"),
        ("#alice", "pw", "invalid user name"),  # the line would read as a comment
        ("alice", "", "must not be empty"),
    ],
)
def test_set_password_refuses_bad_input_and_changes_nothing(
    tmp_path: Path, name: str, password: str, problem: str
) -> None:
    users = tmp_path / "users"
    set_password(users, "bob", "pw")
    before = users.read_bytes()
    with pytest.raises(ConfigError, match=problem):
        set_password(users, name, password)
    assert users.read_bytes() == before


def test_set_password_refuses_to_rewrite_a_broken_file(tmp_path: Path) -> None:
    users = tmp_path / "users"
    users.write_text("bob:not-a-hash\n")
    with pytest.raises(ConfigError, match=r"users:1: invalid user entry"):
        set_password(users, "alice", "pw")
    assert users.read_text() == "bob:not-a-hash\n"


def test_set_password_in_a_missing_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot write the SMTP users file"):
        set_password(tmp_path / "nowhere" / "users", "alice", "pw")
