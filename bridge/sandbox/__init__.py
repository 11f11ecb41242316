"""A local simulator of the InterFAX REST API (the "sandbox").

It is a product of its own: a real HTTP(S) server that answers the way the live
service does (shared/interfax-api.md §12), for tests, the demo and users who want
to try fax-bridge without an InterFAX account. The bridge's runtime never imports
this package; only ``fax-bridge sandbox`` (bridge/cli.py) and the tests start it.

Modules:

* :mod:`.server`: :class:`~.server.SandboxSettings`, :func:`~.server.running_sandbox`
  (an async context manager serving on the current event loop) and
  :func:`~.server.run_forever` (the CLI entry point).
* :mod:`.model`: the records (faxes, documents) and fixed rules; :mod:`.state`:
  the in-memory state and the lazily computed status progression;
  :mod:`.persist` saves it as JSON.
* :mod:`.app`, :mod:`.outbound`, :mod:`.send`, :mod:`.documents`, :mod:`.inbound`,
  :mod:`.account`: the InterFAX API; :mod:`.web`: shared response helpers.
* :mod:`.control`: the unauthenticated control API under ``/_sandbox/``;
  :mod:`.faults`: fault injection; :mod:`.page`: the HTML page at ``/``.
* :mod:`.multipart`, :mod:`.query`, :mod:`.formats`, :mod:`.errors`: lenient
  request parsing and the exact wire formats.

Security: the control API and the page need no credentials. The sandbox is meant
for loopback use only; never expose it on a shared network.
"""
