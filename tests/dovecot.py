"""A real Dovecot (Debian's ``dovecot-imapd`` 2.3) for the IMAP tests: unprivileged, on a
free loopback port, with a throw-away configuration, passwd-file users and Maildirs.

Usage::

    with running_dovecot(tls=False) as server:        # or tls=True (trustme certificate)
        user = server.add_user()                        # an unused mailbox, password "secret"
        uid = server.append(user, "INBOX", raw_bytes)   # plain imaplib, call via to_thread
        server.messages(user, "Faxed")                  # [StoredMessage(uid, flags, date, body)]
        server.restart()                                # same port, same mail

The server runs as ``nobody:nogroup`` when the tests run as root (``setpriv`` drops the
privileges before Dovecot starts, so nothing in it runs as root), else as the current
user. Its files live in a fresh directory under /tmp (pytest's tmp_path is private to
root, so ``nobody`` could not reach it). Every mailbox has the quota plugin; a user from
``add_user(quota=True)`` gets ``NO [OVERQUOTA]`` for anything over 1 KiB.

Without Dovecot the tests skip with a visible reason; with ``CI=true`` they fail instead,
because CI installs Dovecot and a silent skip there would hide the IMAP tests.
"""

from __future__ import annotations

import contextlib
import grp
import imaplib
import os
import pwd
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pytest
import trustme

from bridge.imap_wire import parse_internal_date

HOST = "127.0.0.1"
PASSWORD = "secret"
#: Mailbox users each server has (see :meth:`Dovecot.add_user`).
USERS = 60


def dovecot_binary() -> str:
    """The dovecot executable; skips the test (or fails it with ``CI=true``) when missing."""
    path = shutil.which("dovecot", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if path is not None:
        return path
    if os.environ.get("CI") == "true":
        pytest.fail("CI=true but Dovecot is missing: install dovecot-imapd (see .ci/run)")
    pytest.skip("Dovecot is not installed (apt-get install dovecot-imapd): IMAP tests skipped")


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
    return port


@dataclass(frozen=True)
class StoredMessage:
    """A message as the server holds it."""

    uid: int
    flags: frozenset[str]
    internal_date: datetime | None
    body: bytes


@dataclass
class Dovecot:
    """One Dovecot instance; see the module doc."""

    root: Path
    tls: bool
    port: int = field(default_factory=free_port)
    imaps_port: int = field(default_factory=free_port)
    ca: trustme.CA | None = None
    process: subprocess.Popen[bytes] | None = None
    _plain: list[str] = field(
        default_factory=lambda: [f"user{i}@example.org" for i in range(USERS)]
    )
    _full: list[str] = field(default_factory=lambda: [f"full{i}@example.org" for i in range(9)])

    host = HOST

    @property
    def ca_file(self) -> Path:
        """The PEM of the CA that signed the server certificate (TLS servers only)."""
        return self.root / "ca.pem"

    @property
    def log(self) -> str:
        """What Dovecot logged so far (for failure messages)."""
        path = self.root / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # -- users ------------------------------------------------------------------------

    def add_user(self, *, quota: bool = False) -> str:
        """A fresh mailbox user (password :data:`PASSWORD`) nobody used yet.

        ``quota``: the mailbox holds at most 1 KiB, so a bigger APPEND gets
        ``NO [OVERQUOTA]``. The users exist from the start: Dovecot re-reads a changed
        passwd-file at most once a second, too late for a user made just before a login.
        """
        pool = self._full if quota else self._plain
        if not pool:
            raise RuntimeError("no unused test user left: raise USERS in tests/dovecot.py")
        return pool.pop(0)

    def write_users(self) -> None:
        """Write the passwd-file with every user of the pools."""
        lines = [f"{u}:{{PLAIN}}{PASSWORD}::::::\n" for u in self._plain]
        lines += [
            f"{u}:{{PLAIN}}{PASSWORD}::::::userdb_quota_rule=*:storage=1K\n" for u in self._full
        ]
        (self.root / "users").write_text("".join(lines))

    # -- process --------------------------------------------------------------------------

    def start(self) -> None:
        """Start Dovecot and wait until it accepts connections."""
        binary = dovecot_binary()
        command = [binary, "-c", str(self.root / "dovecot.conf"), "-F"]
        if os.geteuid() == 0:
            command = [
                "setpriv",
                "--reuid=nobody",
                "--regid=nogroup",
                "--clear-groups",
                *command,
            ]
        log = (self.root / "dovecot.log").open("ab")
        try:
            # Its own process group: stop() signals Dovecot and every child at once.
            self.process = subprocess.Popen(command, stdout=log, stderr=log, start_new_session=True)
        finally:
            log.close()
        deadline = time.monotonic() + 15
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"Dovecot exited at start:\n{self.log}")
            with contextlib.suppress(OSError), socket.create_connection((HOST, self.port), 0.5):
                return
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"Dovecot did not listen on {self.port}:\n{self.log}")
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop Dovecot and its children (SIGTERM: clients get BYE) and wait for it.

        The whole process group is signalled, as ``systemctl stop`` would: left to the
        master alone, an IDLE session's process lingers for seconds after it is gone.
        """
        process, self.process = self.process, None
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # anything that outlived the master

    def restart(self) -> None:
        """Stop and start again on the same port, keeping every mailbox."""
        self.stop()
        self.start()

    # -- looking into mailboxes (blocking: call through asyncio.to_thread) ----------------

    @contextlib.contextmanager
    def imap(self, user: str) -> Iterator[imaplib.IMAP4]:
        """A logged-in imaplib connection (plain, or STARTTLS on a TLS server)."""
        conn = imaplib.IMAP4(HOST, self.port, timeout=10)
        try:
            if self.tls:
                conn.starttls(ssl_context=self._client_context())
            conn.login(user, PASSWORD)
            yield conn
        finally:
            with contextlib.suppress(Exception):
                conn.logout()

    def append(
        self, user: str, folder: str, raw: bytes, *, flags: str = "", date: float | None = None
    ) -> int:
        """APPEND ``raw`` to ``folder`` (created if missing); returns the new UID."""
        with self.imap(user) as conn:
            conn.create(_quoted(folder))
            moment = imaplib.Time2Internaldate(date if date is not None else time.time())
            status, data = conn.append(_quoted(folder), flags or None, moment, raw)
            assert status == "OK", data
            text = data[0].decode() if data and data[0] else ""
            return int(text.split("APPENDUID ")[1].split()[1].rstrip("]"))

    def messages(self, user: str, folder: str) -> list[StoredMessage]:
        """Every message of ``folder`` (empty when the folder does not exist)."""
        with self.imap(user) as conn:
            status, _ = conn.select(_quoted(folder), readonly=True)
            if status != "OK":
                return []
            status, data = conn.uid("FETCH", "1:*", "(UID FLAGS INTERNALDATE BODY.PEEK[])")
            assert status == "OK", data
        found = []
        for item in data:
            if not isinstance(item, tuple):
                continue
            head, body = item
            text = head.decode()
            uid = int(text.split("UID ")[1].split()[0].rstrip(")"))
            flags = text.split("FLAGS (")[1].split(")")[0].split()
            date = parse_internal_date(text.split('INTERNALDATE "')[1].split('"')[0])
            found.append(StoredMessage(uid, frozenset(flags), date, body))
        return found

    def folders(self, user: str) -> set[str]:
        """The names of every folder of ``user``."""
        with self.imap(user) as conn:
            status, data = conn.list()
            assert status == "OK", data
        names = set()
        for line in data:
            # (\HasNoChildren) "." "Name with spaces"  -- names as sent (modified UTF-7)
            match = re.fullmatch(r'\([^)]*\) (?:NIL|"[^"]*") (.*)', line.decode() if line else "")
            if match:
                name = match.group(1)
                if name.startswith('"'):
                    name = re.sub(r"\\(.)", r"\1", name[1:-1])
                names.add(name)
        return names

    def _client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))


def _quoted(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _run_as() -> tuple[int, int, str, str]:
    if os.geteuid() == 0:
        return pwd.getpwnam("nobody").pw_uid, grp.getgrnam("nogroup").gr_gid, "nobody", "nogroup"
    uid, gid = os.getuid(), os.getgid()
    return uid, gid, pwd.getpwuid(uid).pw_name, grp.getgrgid(gid).gr_name


def _chown(path: Path) -> None:
    if os.geteuid() == 0:
        uid, gid, _, _ = _run_as()
        os.chown(path, uid, gid)


def _config(root: Path, port: int, imaps_port: int, tls: bool) -> str:
    _, _, user, group = _run_as()
    tls_settings = (
        f"ssl = yes\nssl_cert = <{root}/cert.pem\nssl_key = <{root}/key.pem\n"
        if tls
        else "ssl = no\n"
    )
    return f"""\
protocols = imap
listen = {HOST}
base_dir = {root}/run
state_dir = {root}/state
log_path = /dev/stderr
{tls_settings}disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
default_internal_user = {user}
default_internal_group = {group}
default_login_user = {user}
mail_location = maildir:{root}/mail/%u
mail_plugins = quota
protocol imap {{
  mail_plugins = $mail_plugins imap_quota
}}
plugin {{
  quota = maildir:User quota
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/users
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {root}/users
  default_fields = uid={user} gid={group} home={root}/home/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    port = {port}
  }}
  inet_listener imaps {{
    port = {imaps_port if tls else 0}
    ssl = yes
  }}
}}
service pop3-login {{
  chroot =
}}
service anvil {{
  chroot =
  # No growing delay for logins after a failed one (tests fail logins on purpose).
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
"""


@contextlib.contextmanager
def running_dovecot(*, tls: bool = False) -> Iterator[Dovecot]:
    """A started Dovecot in a fresh directory; stopped and removed afterwards."""
    dovecot_binary()
    root = Path(tempfile.mkdtemp(prefix="fax-bridge-dovecot-", dir="/tmp"))
    server: Dovecot | None = None
    try:
        root.chmod(0o755)
        for sub in ("run", "state", "mail", "home"):
            (root / sub).mkdir()
        ca = trustme.CA() if tls else None
        for attempt in range(3):
            server = Dovecot(root, tls, ca=ca)
            if ca is not None:
                cert = ca.issue_cert(HOST, "localhost")
                cert.private_key_pem.write_to_path(str(root / "key.pem"))
                cert.cert_chain_pems[0].write_to_path(str(root / "cert.pem"))
                ca.cert_pem.write_to_path(str(server.ca_file))
            (root / "dovecot.conf").write_text(_config(root, server.port, server.imaps_port, tls))
            server.write_users()
            if os.geteuid() == 0:
                for path in [root, *root.rglob("*")]:
                    _chown(path)
            try:
                server.start()
                break
            except RuntimeError:
                # Another process took the port between free_port() and the bind.
                if attempt == 2 or "in use" not in server.log:
                    raise
        assert server is not None
        yield server
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(root, ignore_errors=True)
