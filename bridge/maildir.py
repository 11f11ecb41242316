"""Local delivery of one message into a Maildir (Maildir++ compatible, e.g. for Dovecot).

The classic protocol (https://cr.yp.to/proto/maildir.html) made durable:

1. create ``tmp``, ``new`` and ``cur`` if they are missing (mode 0700), fsync'ing the
   directories that gained an entry;
2. write the message to ``tmp/<unique>`` (``O_EXCL``, mode 0600) and fsync the file;
3. rename it into ``new/<unique>`` and fsync ``new``.

Only after step 3 returns is the message delivered: a crash before it leaves at most a
stray file in ``tmp`` (which mail servers clean up), never a half message in ``new``.
The unique name is ``<seconds>.M<microseconds>P<pid>Q<counter>R<random>.<host>,S=<size>``,
Dovecot's form; ``,S=`` is the Maildir++ size that quota code reads. Messages are stored
with LF line endings, as Maildir expects.

Blocking file-system calls: run :func:`deliver` in a worker thread. Every ``OSError`` is
translated into :class:`MaildirError`, a transient error (a full disk or a permission
being fixed are worth retrying, and nothing is lost by waiting).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
import socket
import threading
import time
from pathlib import Path

from bridge.errors import TransientError
from bridge.fsync import fsync_dir

__all__ = ["MaildirError", "deliver", "ensure_maildir", "unique_name"]

_SUBDIRS = ("tmp", "new", "cur")
_counter = itertools.count(1)
_counter_lock = threading.Lock()


class MaildirError(TransientError):
    """The message could not be written into the Maildir."""


def _hostname() -> str:
    # Maildir names must not contain "/" or ":"; the spec's escapes keep them readable.
    host = socket.gethostname() or "localhost"
    return host.replace("/", "\\057").replace(":", "\\072")


def unique_name(size: int, *, now: float | None = None) -> str:
    """A file name no other delivery (this process, another process or host) can produce."""
    moment = time.time() if now is None else now
    seconds = int(moment)
    micros = int((moment - seconds) * 1_000_000)
    with _counter_lock:
        count = next(_counter)
    rand = secrets.token_hex(4)
    return f"{seconds}.M{micros}P{os.getpid()}Q{count}R{rand}.{_hostname()},S={size}"


def ensure_maildir(maildir: Path) -> None:
    """Create ``maildir`` and its ``tmp``, ``new`` and ``cur`` when missing, durably."""
    try:
        created_root = not maildir.is_dir()
        maildir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if created_root:
            fsync_dir(maildir.parent)
        created = False
        for sub in _SUBDIRS:
            path = maildir / sub
            if not path.is_dir():
                path.mkdir(mode=0o700, exist_ok=True)
                created = True
        if created:
            fsync_dir(maildir)
    except OSError as exc:
        raise MaildirError(f"cannot prepare the Maildir {maildir}: {exc}") from exc


def deliver(maildir: Path, message: bytes, *, now: float | None = None) -> Path:
    """Deliver ``message`` (bytes with LF line endings) into ``maildir/new``; its final path."""
    ensure_maildir(maildir)
    name = unique_name(len(message), now=now)
    temporary = maildir / "tmp" / name
    final = maildir / "new" / name
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise MaildirError(f"cannot create a file in {maildir / 'tmp'}: {exc}") from exc
    try:
        try:
            view = memoryview(message)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(temporary, final)
        fsync_dir(final.parent)
    except OSError as exc:
        # A stray file in tmp/ is harmless: mail servers clean it up.
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)
        raise MaildirError(f"cannot deliver into {maildir}: {exc}") from exc
    return final
