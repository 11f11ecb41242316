"""Housekeeping: the account balance (metric and low-balance alert) and retention.

Runs hourly. The low-balance alert goes to ``mail.admin`` at most once a day; the "once"
is remembered in the store (as a rate event), so restarts do not repeat it. Retention
removes message bytes and ledger rows of finished work older than ``retention``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import astuple
from datetime import UTC, datetime
from decimal import Decimal

from bridge import metrics
from bridge.errors import BridgeError
from bridge.interfax import InterfaxClient
from bridge.mailbuild import MailAddress, build_mail, deterministic_message_id
from bridge.mailer import Mailer
from bridge.store import Store
from bridge.workers import Heartbeat, sleep_or_stop

log = logging.getLogger(__name__)

_DAY = 86400.0
_ALERT_KEY = "alert:low_balance"


class Maintenance:
    """Hourly balance check and retention purge."""

    name = "maintenance"

    def __init__(
        self,
        store: Store,
        client: InterfaxClient,
        mailer: Mailer,
        *,
        sender: MailAddress,
        admin: str | None,
        low_balance: Decimal | None,
        retention: float,
        interval: float = 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._client = client
        self._mailer = mailer
        self._sender = sender
        self._admin = admin
        self._low_balance = low_balance
        self._retention = retention
        self._interval = interval
        self._clock = clock
        self.heartbeat = Heartbeat(interval)

    def replace_contacts(self, *, sender: MailAddress, admin: str | None) -> None:
        """Alert ``admin`` from ``sender`` from now on (``mail.*`` after a reload)."""
        self._sender = sender
        self._admin = admin

    async def run(self, stopping: asyncio.Event) -> None:
        """Check and purge every interval until ``stopping`` is set."""
        while not stopping.is_set():
            self.heartbeat.beat()
            await self.run_once()
            await sleep_or_stop(stopping, self._interval, heartbeat=self.heartbeat)

    async def run_once(self) -> None:
        """One round of housekeeping; failures are logged, never raised."""
        try:
            await self.check_balance()
        except BridgeError as exc:
            log.warning("balance check failed: %s", exc)
        try:
            cutoff = self._clock() - self._retention
            report = await self._store.purge(cutoff)
            if any(astuple(report)):
                log.info("retention removed %s", report)
            imap_rows = await self._store.imap_purge(cutoff)
            if imap_rows:
                log.info("retention removed %d IMAP ledger rows", imap_rows)
        except BridgeError as exc:
            log.warning("retention purge failed: %s", exc)

    async def check_balance(self) -> Decimal:
        """Publish the balance; alert the admin (once a day) when it is low."""
        balance = await self._client.balance()
        metrics.BALANCE.set(float(balance))
        if self._low_balance is None or balance >= self._low_balance or self._admin is None:
            return balance
        now = self._clock()
        if await self._store.count_recent(_ALERT_KEY, now - _DAY) > 0:
            return balance
        day = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d")
        message = build_mail(
            sender=self._sender,
            to=[MailAddress(self._admin)],
            subject=f"InterFAX balance is low: {balance}",
            text=(
                f"The InterFAX account balance is {balance}, below the alert level of "
                f"{self._low_balance}.\n\nTop up the account so that faxes keep going out; "
                "faxes waiting for credit are cancelled by InterFAX after 24 hours.\n\n-- \n"
                "fax-bridge\n"
            ),
            date=datetime.now(UTC),
            message_id=deterministic_message_id("low-balance", day, domain=self._sender.domain),
        )
        await self._mailer.send(message, sender=self._sender.addr_spec, recipients=[self._admin])
        await self._store.record_event(_ALERT_KEY, now)
        log.warning("InterFAX balance %s is below %s: admin alerted", balance, self._low_balance)
        return balance
