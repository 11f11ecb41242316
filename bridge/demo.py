"""``fax-bridge demo``: the sandbox, the bridge and a mail catcher on one machine.

Only the CLI imports this module (it starts the sandbox; the bridge's runtime never
does). Everything listens on loopback; state and caught mail live in a temporary
directory that is printed, so a newcomer can look inside.
"""

from __future__ import annotations

import asyncio
import signal
import tempfile
from dataclasses import dataclass
from pathlib import Path
from textwrap import dedent

from bridge.config import Config, parse_config
from bridge.maildir import deliver, ensure_maildir
from bridge.sandbox.server import SandboxSettings, running_sandbox
from bridge.sdnotify import SystemdNotifier
from bridge.service import Service
from bridge.smtp_server import MailCatcher

DEMO_SENDER_DOMAIN = "example.com"
DEMO_NUMBER = "+12125550100"


@dataclass(frozen=True)
class DemoPorts:
    """Where the demo's parts listen (all on 127.0.0.1)."""

    sandbox: int = 8089
    smtp: int = 2525
    catcher: int = 2526
    http: int = 9120


def demo_config(workdir: Path, ports: DemoPorts, sandbox_port: int, catcher_port: int) -> Config:
    """A configuration that works out of the box against the local sandbox."""
    text = dedent(
        f"""\
        interfax:
          base_url: http://127.0.0.1:{sandbox_port}
          username: demo
          password: demo
        state_dir: {workdir / "state"}
        shutdown_timeout: 5s
        smtp_server:
          listen: 127.0.0.1:{ports.smtp}
          fax_domain: fax.local
        mail:
          from: fax-bridge@demo.example
          admin: admin@{DEMO_SENDER_DOMAIN}
          relay:
            host: 127.0.0.1
            port: {catcher_port}
        outbound:
          allowed_senders: ["*@{DEMO_SENDER_DOMAIN}"]
          default_country: US
          status_poll_interval: 2s
        inbound:
          poll_interval: 3s
          default_route: [front-desk@{DEMO_SENDER_DOMAIN}]
        http:
          listen: "{f"127.0.0.1:{ports.http}" if ports.http else ""}"
        """
    )
    return parse_config(text, source="demo configuration", environ={}, base_dir=workdir)


def instructions(sandbox_url: str, smtp_port: int, http_port: int | None, workdir: Path) -> str:
    """What to do next, printed when the demo is up."""
    one_liner = (
        'python3 -c "import smtplib; from email.message import EmailMessage as M; m=M(); '
        f"m['From']='you@{DEMO_SENDER_DOMAIN}'; m['To']='{DEMO_NUMBER}@fax.local'; "
        "m['Subject']='Hello fax'; m.set_content('Hello from fax-bridge!'); "
        f"smtplib.SMTP('127.0.0.1', {smtp_port}).send_message(m)\""
    )
    status = f"  Bridge status page:    http://127.0.0.1:{http_port}/\n" if http_port else ""
    return (
        "fax-bridge demo is running. Everything listens on 127.0.0.1.\n\n"
        f"  InterFAX sandbox page: {sandbox_url}/   (faxes sent, mail the bridge sent,\n"
        "                         and a form to receive a fax)\n"
        f"{status}"
        f"  Send faxes by email:   SMTP 127.0.0.1:{smtp_port}, from any address"
        f" @{DEMO_SENDER_DOMAIN}\n"
        f"  State and caught mail: {workdir}\n\n"
        "1. Send a fax by email, with any mail client or with one of these:\n"
        f"     swaks --server 127.0.0.1:{smtp_port} --from you@{DEMO_SENDER_DOMAIN} "
        f"--to {DEMO_NUMBER}@fax.local --attach @letter.pdf\n"
        f"     {one_liner}\n"
        "2. Open the sandbox page: the fax appears, is sent within seconds, and the report\n"
        "   the bridge mails back shows up under 'Mail the bridge sent'.\n"
        "3. Receive a fax: drop a PDF into 'Receive a fax' on the same page; it arrives as an\n"
        f"   email to front-desk@{DEMO_SENDER_DOMAIN} within a few seconds.\n\n"
        "Press Ctrl-C to stop.\n"
    )


async def run_demo(ports: DemoPorts, *, workdir: Path | None = None) -> None:
    """Run the demo until SIGINT or SIGTERM."""
    workdir = workdir or Path(tempfile.mkdtemp(prefix="fax-bridge-demo-"))
    maildir = workdir / "mail"
    await asyncio.to_thread(ensure_maildir, maildir)

    async def catch(raw: bytes) -> None:
        await asyncio.to_thread(deliver, maildir, raw)

    settings = SandboxSettings(
        host="127.0.0.1",
        port=ports.sandbox,
        username="demo",
        password="demo",  # noqa: S106 - the demo sandbox's documented login
        step_seconds=2.0,
        mailbox=maildir,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with running_sandbox(settings) as sandbox:
        catcher = MailCatcher("127.0.0.1", ports.catcher, catch)
        await catcher.start()
        service = Service(
            demo_config(workdir, ports, sandbox.port, catcher.port),
            notifier=SystemdNotifier({}),
        )
        try:
            await service.start()
            assert service.listener is not None
            print(
                instructions(sandbox.base_url, service.listener.port, service.status_port, workdir),
                flush=True,
            )
            await stop.wait()
        finally:
            await service.shutdown()
            await catcher.close()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
