"""Received faxes into a mailbox folder over IMAP (routes with ``deliver: imap``).

The inbound worker builds the fax email as for any other channel and calls
:meth:`ImapDelivery.append_fax_mail`; the fax is marked read at InterFAX only after it
returned. Each call uses its own short connection to ``imap_out`` (faxes are few, and a
connection that lived through an idle hour would need its own keep-alive and recovery).

The APPEND carries no flags, so the mail arrives unread, and the fax's receive time as
its internal date, so mail clients sort it by when the fax came in. The folder is
created if missing.

Exactly once: when an APPEND's answer is lost (the connection dropped after the message
went out), the call raises a transient error and the inbound worker calls again. Before
appending, the folder is searched for the mail's Message-ID (deterministic for a fax and
recipient), so that second call finds the first copy and appends nothing.

Errors are the typed ones of :mod:`bridge.imap`: :class:`~bridge.imap.ImapQuotaError`
(a :class:`~bridge.errors.PermanentError`) when the mailbox is full, other
:class:`~bridge.imap.ImapRefused` for refusals, :class:`~bridge.imap.ImapAuthError`
for a refused login, transient errors for everything worth retrying.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from datetime import datetime

from bridge.imap import ImapClient, ImapSettings
from bridge.imap_message import message_id_of

__all__ = ["ImapDelivery"]

log = logging.getLogger(__name__)

_LINE_END = re.compile(rb"\r?\n")


class ImapDelivery:
    """Appends fax mails to folders of one mailbox (``imap_out``)."""

    def __init__(
        self,
        settings: ImapSettings,
        *,
        client_factory: Callable[[ImapSettings], ImapClient] = ImapClient,
    ) -> None:
        self._settings = settings
        self._client_factory = client_factory

    @property
    def settings(self) -> ImapSettings:
        """The mailbox faxes go to."""
        return self._settings

    async def append_fax_mail(self, message_bytes: bytes, folder: str, received: datetime) -> None:
        """Put one fax mail into ``folder``, unread, dated ``received`` (aware).

        Returns once the server answered OK (or the same Message-ID is already in the
        folder); raises a typed :class:`~bridge.imap.ImapError` otherwise.
        """
        if received.tzinfo is None:  # before connecting, not halfway through
            raise ValueError("the receive time must carry a time zone")
        # Line ends and the Message-ID take a pass over the whole mail: not on the loop.
        data, message_id = await asyncio.to_thread(_literal, message_bytes)
        async with self._client_factory(self._settings) as client:
            await client.ensure_folder(folder)
            if message_id is not None:
                await client.select(folder)
                if await client.search_message_id(message_id):
                    log.info(
                        "IMAP: %s is already in %r; not appending it again", message_id, folder
                    )
                    return
            await client.append(folder, data, internal_date=received)
        log.info("IMAP: appended a fax mail (%d bytes) to %r", len(data), folder)


def _literal(message_bytes: bytes) -> tuple[bytes, str | None]:
    """The mail with CRLF line ends, as IMAP literals have them, and its Message-ID."""
    data = _LINE_END.sub(b"\r\n", message_bytes)
    return data, message_id_of(data)
