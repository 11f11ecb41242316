"""Requests of one received fax started ahead of the step that waits for them.

They save round trips on a fax's way through :class:`~bridge.inbound_process.FaxProcessor`
without changing what is decided, sent or recorded:

* the envelope (MAIL, RCPT) of the first mail goes to the relay while the image
  downloads; the mail follows in the same transaction, or RSET drops it unsent;
* the mark-read request goes out as soon as the relay accepted the fax's last mail,
  beside that mail's delivery record (an fsync) instead of after it. A crash before the
  record is durable repeats that one mail at restart (same Message-ID), as it would
  without the overlap: the ledger, not the unread flag at InterFAX, decides what is
  retried. (Should a power cut take the fax's whole ledger row, InterFAX may already
  have it read: then nothing is repeated.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from bridge.mailer import OpenMail


class Ahead:
    """The early requests of one fax; :meth:`settle` drops whatever nobody waited for."""

    def __init__(self, mark: Callable[[], Coroutine[Any, Any, None]] | None) -> None:
        """``mark`` marks the fax read at InterFAX (None: the fax is left unread)."""
        self._mark = mark
        self._marking: asyncio.Task[None] | None = None
        self._envelope: tuple[str, asyncio.Task[OpenMail | None]] | None = None

    @property
    def marks(self) -> bool:
        """Whether the fax is to be marked read."""
        return self._mark is not None

    def open_envelope(self, recipient: str, opening: Coroutine[Any, Any, OpenMail | None]) -> None:
        """Open the envelope of ``recipient``'s mail in the background (once a fax)."""
        if self._envelope is not None:
            opening.close()
            raise RuntimeError("an envelope is open already")
        self._envelope = (recipient, asyncio.create_task(opening))

    async def envelope(self, recipient: str) -> OpenMail | None:
        """The envelope opened for ``recipient`` (None if none was), which the caller now
        owns; raises what opening it raised."""
        # The recipient check is defensive: the envelope is opened for the first delivery.
        if self._envelope is None or self._envelope[0] != recipient:
            return None
        opened = await self._envelope[1]  # cancelled here, settle() still finds it
        self._envelope = None
        return opened

    def start_mark(self) -> None:
        """Send the mark-read request now, in the background."""
        if self._mark is not None and self._marking is None:
            self._marking = asyncio.create_task(self._mark())

    async def mark(self) -> None:
        """Mark the fax read: wait for the request started early, or send it now."""
        if self._mark is None:
            raise RuntimeError("this fax is not to be marked read")
        if self._marking is None:
            await self._mark()
            return
        task, self._marking = self._marking, None
        await task

    async def settle(self) -> None:
        """Drop what nobody waited for: RSET an envelope, stop a mark-read request
        (whether InterFAX took it does not matter: the ledger decides what is retried)."""
        if self._marking is not None:
            drop_task(self._marking)
            self._marking = None
        if self._envelope is None:
            return
        task = self._envelope[1]
        self._envelope = None
        if not task.done():
            # Cancelled while opening, it closes its connection; should it finish first,
            # nobody claims the transaction and its connection is closed.
            task.cancel()
            task.add_done_callback(_close_unclaimed)
            return
        if task.cancelled() or task.exception() is not None:
            return
        opened = task.result()
        if opened is not None:
            await opened.abort()


def _close_unclaimed(task: asyncio.Task[OpenMail | None]) -> None:
    if task.cancelled() or task.exception() is not None:
        return
    opened = task.result()
    if opened is not None:
        opened.close()


def drop_task(task: asyncio.Task[Any]) -> None:
    """Stop an early request nobody awaited; its failure, if any, was nobody's concern."""
    if not task.done():
        task.cancel()
    elif not task.cancelled():
        task.exception()  # retrieved: asyncio would otherwise log it as lost
