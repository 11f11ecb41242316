"""Show the mail in a Maildir on the sandbox page (used by ``fax-bridge demo``).

The demo's mail catcher stores every email the bridge sends in a Maildir; the sandbox
lists them so a newcomer sees reports and received faxes next to the faxes they belong
to. Read-only; names are taken from the directory listing only, never from the request.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from email import message_from_bytes, policy
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bridge.sandbox.web import context


@dataclass(frozen=True)
class CaughtMail:
    """One caught message, as the page lists it."""

    name: str
    sender: str
    to: str
    subject: str
    date: str
    attachments: tuple[str, ...]


def _files(maildir: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for sub in ("new", "cur"):
        folder = maildir / sub
        if folder.is_dir():
            for path in folder.iterdir():
                if path.is_file():
                    found[path.name] = path
    return found


def caught_mail(maildir: Path | None, limit: int = 50) -> list[CaughtMail]:
    """The newest messages of ``maildir`` (none when it is not set)."""
    if maildir is None:
        return []
    items = sorted(_files(maildir).items(), key=lambda kv: kv[1].stat().st_mtime, reverse=True)
    result = []
    for name, path in items[:limit]:
        try:
            msg = message_from_bytes(path.read_bytes(), policy=policy.default)
            attachments = tuple(
                str(part.get_filename() or "attachment") for part in msg.iter_attachments()
            )
            result.append(
                CaughtMail(
                    name=name,
                    sender=str(msg.get("From", "")),
                    to=str(msg.get("To", "")),
                    subject=str(msg.get("Subject", "")),
                    date=str(msg.get("Date", "")),
                    attachments=attachments,
                )
            )
        except Exception:  # a damaged file is listed, not fatal to the page
            result.append(CaughtMail(name, "", "", "(unreadable message)", "", ()))
    return result


async def raw_mail(request: Request) -> Response:
    """One caught message as an .eml download."""
    maildir = context(request).mailbox
    path = _files(maildir).get(request.path_params["name"]) if maildir else None
    if path is None:
        return Response("no such message\n", status_code=404, media_type="text/plain")
    return Response(
        await asyncio.to_thread(path.read_bytes),
        media_type="message/rfc822",
        headers={"Content-Disposition": 'attachment; filename="message.eml"'},
    )


def routes() -> list[Route]:
    """The download route."""
    return [Route("/_sandbox/mail/{name}", raw_mail, methods=["GET"])]
