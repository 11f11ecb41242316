"""Helpers for the IMAP intake tests: a configured store, intake and worker against Dovecot."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

import yaml

from bridge.config import Config, parse_config
from bridge.imap import ImapClient, ImapSettings
from bridge.imap_intake import ImapIntakeSettings, ImapIntakeWorker
from bridge.imap_refusal import RefusalNotice
from bridge.intake import Intake, IntakePolicy
from bridge.jobs import Job
from bridge.mailer import MailTransientError
from bridge.store import Store
from bridge.store_imap import ImapEntry, ImapKey
from bridge.workers import Backoff
from tests.dovecot import PASSWORD, Dovecot, StoredMessage

ALICE = "alice@clinic.example.org"
MALLORY = "mallory@evil.example"
FAX = "+12025550100@fax.local"
FAST = Backoff(base=0.02, cap=0.2)


class Crash(BaseException):
    """Stands for the process dying: nothing of ours catches a BaseException."""


def fax_request(
    *,
    sender: str = ALICE,
    to: str = FAX,
    cc: str | None = None,
    subject: str = "Contract",
    message_id: bool = True,
    headers: dict[str, str] | None = None,
    body: str = "Please fax this.\n",
) -> bytes:
    """A fax request as a mail client would put it in the mailbox."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    if cc is not None:
        msg["Cc"] = cc
    msg["Subject"] = subject
    msg["Date"] = format_datetime(datetime.now(UTC))
    if message_id:
        msg["Message-ID"] = make_msgid(domain="clinic.example.org")
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(body)
    return msg.as_bytes(policy=SMTP)


def config_for(
    state_dir: Path,
    server: Dovecot,
    user: str,
    *,
    poll: str = "0.1s",
    smtp: str = "",
    outbound: str = "",
) -> Config:
    """A configuration whose imap_in is ``user``'s mailbox on ``server``.

    ``smtp`` and ``outbound`` are extra keys (YAML text) of those sections.
    """
    data: dict[str, Any] = {
        "interfax": {"username": "user", "password": "secret"},
        "state_dir": str(state_dir),
        "smtp_server": {"fax_domain": "fax.local", **(yaml.safe_load(smtp) or {})},
        "mail": {"from": "fax@bridge.example.org"},
        "outbound": {
            "allowed_senders": [ALICE, "*@lawfirm.example"],
            "default_country": "US",
            **(yaml.safe_load(outbound) or {}),
        },
        "imap_in": {
            "host": server.host,
            "port": server.port,
            "tls": "none",
            "username": user,
            "password": PASSWORD,
            "poll_interval": poll,
            "timeout": "5s",
        },
    }
    return parse_config(yaml.safe_dump(data), source="test.yaml", environ={})


@dataclass
class Rig:
    """A store, an intake and a mailbox, as the service would wire them."""

    server: Dovecot
    user: str
    config: Config
    store: Store
    notices: list[RefusalNotice] = field(default_factory=list)
    failing_notices: int = 0

    @property
    def settings(self) -> ImapIntakeSettings:
        assert self.config.imap_in is not None
        return ImapIntakeSettings.from_config(self.config.imap_in)

    async def notify(self, notice: RefusalNotice) -> None:
        """The refusal notifier: records, or fails ``failing_notices`` times first."""
        if self.failing_notices:
            self.failing_notices -= 1
            raise MailTransientError("relay deferred the report: 451 try later")
        self.notices.append(notice)

    def worker(
        self,
        *,
        hide: frozenset[str] = frozenset(),
        intake: Intake | None = None,
        client_factory: Callable[[ImapSettings], ImapClient] | None = None,
        settings: ImapIntakeSettings | None = None,
    ) -> ImapIntakeWorker:
        """A worker on this rig's store; ``hide`` capabilities from it."""

        def connect(settings: ImapSettings) -> ImapClient:
            return ImapClient(settings, ignore_capabilities=hide)

        return ImapIntakeWorker(
            self.store,
            intake or Intake(self.store, IntakePolicy.from_config(self.config)),
            settings or self.settings,
            notify_refusal=self.notify,
            backoff=FAST,
            client_factory=client_factory or connect,
        )

    async def restart_store(self) -> None:
        """Close and reopen the store, as a new process would."""
        await self.store.close()
        self.store = await Store.open(self.config.state_dir)

    async def put(self, raw: bytes, folder: str = "INBOX") -> int:
        """Deliver ``raw`` into the mailbox; its UID."""
        return await asyncio.to_thread(self.server.append, self.user, folder, raw)

    async def folder(self, name: str) -> list[StoredMessage]:
        """The messages in one folder of the mailbox."""
        return await asyncio.to_thread(self.server.messages, self.user, name)

    async def folders(self) -> set[str]:
        """The names of the mailbox's folders."""
        return await asyncio.to_thread(self.server.folders, self.user)

    async def jobs(self) -> list[Job]:
        """Every fax job in the queue."""
        return await self.store.jobs()

    async def entry(self, uid: int, folder: str = "INBOX") -> ImapEntry | None:
        """The ledger row of a message of ``folder`` (under its current UIDVALIDITY)."""
        async with ImapClient(self.settings.connection) as client:
            uidvalidity = (await client.select(folder)).uidvalidity
        key = ImapKey(self.settings.connection.account, folder, uidvalidity, uid)
        return await self.store.imap_get(key)


@asynccontextmanager
async def rig_for(
    tmp_path: Path, server: Dovecot, *, poll: str = "0.1s", smtp: str = "", outbound: str = ""
) -> AsyncIterator[Rig]:
    """A rig with a fresh mailbox user and state directory (see :func:`config_for`)."""
    user = server.add_user()
    config = config_for(tmp_path / "state", server, user, poll=poll, smtp=smtp, outbound=outbound)
    rig = Rig(server, user, config, await Store.open(config.state_dir))
    try:
        yield rig
    finally:
        await rig.store.close()


@asynccontextmanager
async def running(worker: ImapIntakeWorker) -> AsyncIterator[ImapIntakeWorker]:
    """Run ``worker`` in the background; stop it (and surface its failure) at the end."""
    stopping = asyncio.Event()
    task = asyncio.create_task(worker.run(stopping))
    try:
        yield worker
    finally:
        stopping.set()
        await asyncio.wait_for(task, 15)


async def counted(worker: ImapIntakeWorker, name: str, at_least: int = 1) -> bool:
    """For ``eventually``: the worker's counter ``name`` reached ``at_least``."""
    return worker.counters[name] >= at_least
