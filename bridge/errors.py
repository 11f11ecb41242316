"""The one exception tree of fax-bridge.

Every foreign error (httpx, sqlite3, aiosmtplib, aioimaplib, pydantic, ...) is
translated once, at the edge module that imports the library, into one of the
classes below. Callers decide what to do by category alone:

* :class:`TransientError`: try again later (with backoff, honouring
  ``retry_after`` when the remote side gave one).
* :class:`AmbiguousError`: a transient error where the request may already have
  taken effect (the response was lost). Never blindly repeat a non-idempotent
  call after this; reconcile first.
* :class:`PermanentError`: the request itself is wrong; fail and tell someone.
* :class:`AuthError`: credentials were refused; pause the whole worker rather
  than burning every job.
"""

from __future__ import annotations


class BridgeError(Exception):
    """Root of every error raised by fax-bridge."""


class TransientError(BridgeError):
    """A failure that is expected to go away; retry later."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class AmbiguousError(TransientError):
    """The request may or may not have taken effect: reconcile before retrying."""


class PermanentError(BridgeError):
    """A failure that will recur on retry: fail the work item and report it."""


class AuthError(BridgeError):
    """Credentials were refused: pause and alert instead of failing work items."""


class ConfigError(BridgeError):
    """The configuration is invalid. The message names the offending key."""


class StoreError(TransientError):
    """The durable store could not complete an operation (disk full, locked, ...)."""
