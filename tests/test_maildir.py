"""Local Maildir delivery: atomic tmp -> new, fsync'd, unique names, readable by mailbox."""

from __future__ import annotations

import mailbox
import os
import re
import stat
from pathlib import Path

import pytest

from bridge import maildir
from bridge.errors import TransientError
from bridge.maildir import MaildirError, deliver, unique_name

MESSAGE = b"From: a@example.org\nTo: b@example.org\nSubject: hi\n\nbody\n"


def test_delivery_creates_the_maildir_and_lands_in_new(tmp_path: Path) -> None:
    box = tmp_path / "deep" / "Maildir"
    final = deliver(box, MESSAGE)
    assert final.parent == box / "new"
    assert final.read_bytes() == MESSAGE
    assert sorted(p.name for p in box.iterdir()) == ["cur", "new", "tmp"]
    assert list((box / "tmp").iterdir()) == []
    assert stat.S_IMODE(final.stat().st_mode) == 0o600
    assert stat.S_IMODE((box / "new").stat().st_mode) == 0o700


def test_python_mailbox_reads_what_we_delivered(tmp_path: Path) -> None:
    deliver(tmp_path / "Maildir", MESSAGE)
    deliver(tmp_path / "Maildir", MESSAGE.replace(b"hi", b"second"))
    box = mailbox.Maildir(tmp_path / "Maildir", create=False)
    assert sorted(str(m["Subject"]) for m in box) == ["hi", "second"]


def test_an_existing_maildir_is_used_as_it_is(tmp_path: Path) -> None:
    box = mailbox.Maildir(tmp_path / "Maildir", create=True)
    box.add(b"Subject: old\n\nold\n")
    deliver(tmp_path / "Maildir", MESSAGE)
    assert len(list((tmp_path / "Maildir" / "new").iterdir())) == 2


def test_names_are_unique_and_maildir_plus_plus_shaped() -> None:
    names = {unique_name(123, now=1700000000.25) for _ in range(500)}
    assert len(names) == 500
    for name in names:
        assert re.fullmatch(r"1700000000\.M250000P\d+Q\d+R[0-9a-f]{8}\.[^/:]+,S=123", name), name


def test_the_file_and_the_directory_are_fsynced_before_the_rename_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    box = tmp_path / "Maildir"
    maildir.ensure_maildir(box)
    events: list[str] = []
    real_fsync, real_rename = os.fsync, os.rename

    def fsync(fd: int) -> None:
        target = os.readlink(f"/proc/self/fd/{fd}")
        events.append("fsync " + os.path.relpath(target, box))
        real_fsync(fd)

    def rename(src: str | Path, dst: str | Path) -> None:
        events.append(f"rename {Path(src).parent.name} -> {Path(dst).parent.name}")
        real_rename(src, dst)

    monkeypatch.setattr(maildir.os, "fsync", fsync)
    monkeypatch.setattr(maildir.os, "rename", rename)
    final = deliver(box, MESSAGE)
    assert events == [f"fsync tmp/{final.name}", "rename tmp -> new", "fsync new"]


def test_a_failed_write_leaves_nothing_in_new_or_tmp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    box = tmp_path / "Maildir"
    maildir.ensure_maildir(box)

    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(maildir.os, "fsync", broken_fsync)
    with pytest.raises(MaildirError, match="No space left"):
        deliver(box, MESSAGE)
    assert list((box / "new").iterdir()) == []
    assert list((box / "tmp").iterdir()) == []


def test_an_unwritable_maildir_is_a_transient_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    box = tmp_path / "Maildir"
    maildir.ensure_maildir(box)

    def refused(path: object, *args: object, **kwargs: object) -> int:
        # What a tmp/ without write permission answers (root would not be refused).
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(maildir.os, "open", refused)
    with pytest.raises(MaildirError, match="Permission denied") as info:
        deliver(box, MESSAGE)
    assert isinstance(info.value, TransientError)
    assert list((box / "new").iterdir()) == []


def test_a_file_where_the_maildir_should_be_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "Maildir").write_text("not a directory")
    with pytest.raises(MaildirError):
        deliver(tmp_path / "Maildir", MESSAGE)
