"""The systemd notification protocol: a few datagrams to ``$NOTIFY_SOCKET``.

Without ``NOTIFY_SOCKET`` (not started by systemd, or ``Type=simple``) every call is a
no-op, so the service can notify unconditionally.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping


class SystemdNotifier:
    """Send ``READY=1``, ``STOPPING=1``, ``WATCHDOG=1`` and ``STATUS=`` to systemd."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        path = env.get("NOTIFY_SOCKET", "")
        # An abstract socket is spelled with a leading '@' in the environment.
        self._address = "\0" + path[1:] if path.startswith("@") else path
        self._watchdog_usec = _watchdog_usec(env)

    @property
    def enabled(self) -> bool:
        """Whether a notification socket was given."""
        return bool(self._address)

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between ``WATCHDOG=1`` pings (half of ``WatchdogSec``), or None."""
        if self._watchdog_usec is None:
            return None
        return self._watchdog_usec / 2_000_000

    def notify(self, **fields: str | int) -> bool:
        """Send one notification; returns False when it could not be delivered."""
        if not self._address:
            return False
        payload = "\n".join(f"{key.upper()}={value}" for key, value in fields.items())
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.connect(self._address)
                sock.sendall(payload.encode())
        except OSError:
            return False
        return True

    def ready(self, status: str = "running") -> bool:
        """Tell systemd that start-up finished."""
        return self.notify(ready=1, status=status)

    def stopping(self, status: str = "stopping") -> bool:
        """Tell systemd that shutdown began."""
        return self.notify(stopping=1, status=status)

    def watchdog(self) -> bool:
        """Reset systemd's watchdog timer."""
        return self.notify(watchdog=1)

    def status(self, text: str) -> bool:
        """Update the one-line status ``systemctl status`` shows."""
        return self.notify(status=text.replace("\n", " "))


def _watchdog_usec(env: Mapping[str, str]) -> int | None:
    raw = env.get("WATCHDOG_USEC")
    if not raw or not raw.isdigit() or int(raw) == 0:
        return None
    pid = env.get("WATCHDOG_PID")
    # The watchdog is meant for one process; a child we spawned must not feed it.
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None
    return int(raw)
