"""The ``fax-bridge`` command line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from bridge import __version__
from bridge.errors import BridgeError, ConfigError

if TYPE_CHECKING:
    from bridge.config import Config
    from bridge.store import Store

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2


def _cmd_version(_args: argparse.Namespace) -> int:
    print(f"fax-bridge {__version__}")
    return EXIT_OK


def _cmd_check_config(args: argparse.Namespace) -> int:
    config = _load(args.config)
    if config is None:
        return EXIT_CONFIG
    print(f"{args.config}: OK")
    if not args.probe:
        return EXIT_OK
    import asyncio

    from bridge.admin import probe

    failed = False
    for what, ok, detail in asyncio.run(probe(config)):
        print(f"{'ok' if ok else 'FAILED':6}  {what}: {detail}")
        failed = failed or not ok
    return EXIT_FAILURE if failed else EXIT_OK


def _with_store(args: argparse.Namespace, work: Callable[[Config, Store], Awaitable[int]]) -> int:
    """Run ``work`` with the configuration and the service's (shared) database."""
    import asyncio

    from bridge.store import Store

    config = _load(args.config)
    if config is None:
        return EXIT_CONFIG

    async def run() -> int:
        async with await Store.open(config.state_dir) as store:
            return await work(config, store)

    try:
        return asyncio.run(run())
    except BridgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE


def _cmd_queue(args: argparse.Namespace) -> int:
    from bridge import admin

    async def work(config: Config, store: Store) -> int:
        if args.action == "list":
            rows = await admin.queue_list(store, state=args.state, limit=args.limit)
            admin.emit(rows, as_json=args.json, columns=admin.QUEUE_COLUMNS)
            return EXIT_OK
        if args.id is None:
            print(f"queue {args.action} needs a job id", file=sys.stderr)
            return EXIT_FAILURE
        if args.action == "show":
            row = await admin.queue_show(store, args.id)
            if row is None:
                print(f"no job {args.id}", file=sys.stderr)
                return EXIT_FAILURE
            admin.emit(row, as_json=args.json)
            return EXIT_OK
        if args.action == "retry":
            print(await admin.queue_retry(store, args.id))
        else:
            print(await admin.queue_cancel(store, config, args.id))
        return EXIT_OK

    return _with_store(args, work)


def _cmd_inbound(args: argparse.Namespace) -> int:
    from bridge import admin

    async def work(config: Config, store: Store) -> int:
        if args.action == "list":
            rows = await admin.inbound_list(store, limit=args.limit)
            admin.emit(rows, as_json=args.json, columns=admin.INBOUND_COLUMNS)
            return EXIT_OK
        if args.id is None:
            print("inbound redeliver needs a message id", file=sys.stderr)
            return EXIT_FAILURE
        print(await admin.inbound_redeliver(store, args.id))
        return EXIT_OK

    return _with_store(args, work)


def _cmd_send(args: argparse.Namespace) -> int:
    from bridge import admin

    async def work(config: Config, store: Store) -> int:
        files = [Path(f) for f in args.files]
        reply = await admin.send_files(store, config, args.number, files, args.sender)
        print(reply.line)
        return EXIT_OK if reply.accepted else EXIT_FAILURE

    return _with_store(args, work)


def _cmd_balance(args: argparse.Namespace) -> int:
    import asyncio

    from bridge import wiring

    config = _load(args.config)
    if config is None:
        return EXIT_CONFIG

    async def run() -> str:
        async with wiring.interfax_client(config) as client:
            return str(await client.balance())

    try:
        balance = asyncio.run(run())
    except BridgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    print(json.dumps({"balance": balance}) if args.json else balance)
    return EXIT_OK


def _load(path: str) -> Config | None:
    from bridge.config import load_config

    try:
        return load_config(Path(path))
    except ConfigError as exc:
        print(f"{path}: invalid configuration", file=sys.stderr)
        print(str(exc), file=sys.stderr)
        return None


def _cmd_run(args: argparse.Namespace) -> int:
    import asyncio

    from bridge import logsetup
    from bridge.service import Service

    config = _load(args.config)
    if config is None:
        return EXIT_CONFIG
    logsetup.configure(config.log_format, config.log_level)
    service = Service(config, config_path=Path(args.config))
    try:
        asyncio.run(service.serve())
    except ConfigError as exc:
        print(f"cannot start: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except (BridgeError, OSError) as exc:
        if service.started:
            raise  # a failure while running or stopping: its traceback tells where
        print(f"cannot start: {exc}", file=sys.stderr)  # a newer database, a port in use
        return EXIT_FAILURE
    return EXIT_OK


def _cmd_passwd(args: argparse.Namespace) -> int:
    import getpass

    from bridge.smtp_auth import set_password

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"Password for {args.user}: ")
        if getpass.getpass("Again: ") != password:
            print("the passwords differ; nothing changed", file=sys.stderr)
            return EXIT_FAILURE
    try:
        set_password(Path(args.users_file), args.user, password)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_FAILURE
    print(f"{args.users_file}: password set for {args.user}")
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from bridge import logsetup
    from bridge.demo import DemoPorts, run_demo

    logsetup.configure("text", "info")
    # The demo prints what matters; keep routine service chatter for warnings.
    logging.getLogger("bridge").setLevel(logging.WARNING)
    ports = DemoPorts(
        sandbox=args.sandbox_port,
        smtp=args.smtp_port,
        catcher=args.catcher_port,
        http=args.http_port,
    )
    try:
        asyncio.run(run_demo(ports, workdir=Path(args.dir) if args.dir else None))
    except OSError as exc:
        print(
            f"cannot start the demo: {exc} (is another program using these ports?)", file=sys.stderr
        )
        return EXIT_FAILURE
    return EXIT_OK


def _cmd_sandbox(args: argparse.Namespace) -> int:
    # Only the CLI imports the sandbox: the bridge's runtime never does.
    from bridge.sandbox.server import SandboxSettings, run_forever

    host, _, port = args.listen.rpartition(":")
    settings = SandboxSettings(
        host=host or "127.0.0.1",
        port=int(port),
        username=args.username,
        password=args.password,
        tls_cert=Path(args.tls_cert) if args.tls_cert else None,
        tls_key=Path(args.tls_key) if args.tls_key else None,
        state_file=Path(args.state) if args.state else None,
        step_seconds=args.step_seconds,
    )
    run_forever(settings)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="fax-bridge",
        description="Email-to-fax and fax-to-email bridge for the InterFAX REST API.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("version", help="print the version")
    p.set_defaults(func=_cmd_version)

    p = sub.add_parser("check-config", help="validate a configuration file")
    p.add_argument("-c", "--config", required=True, help="path to the YAML configuration")
    p.add_argument(
        "--probe", action="store_true", help="also try InterFAX credentials and the mail relay"
    )
    p.set_defaults(func=_cmd_check_config)

    p = sub.add_parser("queue", help="list, show, retry or cancel outbound fax jobs")
    p.add_argument("action", choices=["list", "show", "retry", "cancel"])
    p.add_argument("id", nargs="?", type=int, help="job id (show, retry, cancel)")
    p.add_argument("-c", "--config", required=True, help="path to the YAML configuration")
    p.add_argument("--state", help="list only jobs in this state")
    p.add_argument("--limit", type=int, default=50, help="list at most this many (newest first)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_queue)

    p = sub.add_parser("inbound", help="list received faxes, or deliver one again")
    p.add_argument("action", choices=["list", "redeliver"])
    p.add_argument("id", nargs="?", type=int, help="InterFAX message id (redeliver)")
    p.add_argument("-c", "--config", required=True, help="path to the YAML configuration")
    p.add_argument("--limit", type=int, default=50, help="list at most this many (newest first)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_inbound)

    p = sub.add_parser("send", help="fax files through the same queue and policies as mail")
    p.add_argument("number", help="destination fax number")
    p.add_argument("files", nargs="+", help="documents to fax (PDF, TIFF, DOCX, ...)")
    p.add_argument("--from", dest="sender", required=True, help="an allowed sender address")
    p.add_argument("-c", "--config", required=True, help="path to the YAML configuration")
    p.set_defaults(func=_cmd_send)

    p = sub.add_parser("balance", help="print the InterFAX account balance")
    p.add_argument("-c", "--config", required=True, help="path to the YAML configuration")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_balance)

    p = sub.add_parser("run", help="run the bridge (the systemd service runs this)")
    p.add_argument("-c", "--config", required=True, help="path to the YAML configuration")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("passwd", help="add an SMTP AUTH user or change its password")
    p.add_argument("users_file", help="the smtp_server.auth_users_file to update")
    p.add_argument("user", help="the login name")
    p.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    p.set_defaults(func=_cmd_passwd)

    p = sub.add_parser("demo", help="the sandbox, the bridge and a mail catcher on one machine")
    p.add_argument("--sandbox-port", type=int, default=8089, help="default %(default)s")
    p.add_argument("--smtp-port", type=int, default=2525, help="default %(default)s")
    p.add_argument("--catcher-port", type=int, default=2526, help="default %(default)s")
    p.add_argument("--http-port", type=int, default=9120, help="status page; default %(default)s")
    p.add_argument("--dir", help="keep state and caught mail here (default: a new temp dir)")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("sandbox", help="run the built-in InterFAX sandbox (a local simulator)")
    p.add_argument("--listen", default="127.0.0.1:8089", help="host:port (default %(default)s)")
    p.add_argument("--username", default="sandbox", help="Basic auth user (default %(default)s)")
    p.add_argument("--password", default="sandbox", help="Basic auth password")
    p.add_argument("--tls-cert", help="PEM certificate chain: serve HTTPS")
    p.add_argument("--tls-key", help="PEM private key for --tls-cert")
    p.add_argument("--state", help="JSON file to keep the sandbox's state across restarts")
    p.add_argument(
        "--step-seconds",
        type=float,
        default=2.0,
        help="seconds between status steps of a fax (-1, -2, -3, final); default %(default)s",
    )
    p.set_defaults(func=_cmd_sandbox)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fax-bridge`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result
