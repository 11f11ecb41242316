"""Counters and gauges in the Prometheus text format, without a third-party client.

One process-wide :data:`REGISTRY`; instrumented code calls ``inc``/``set``/``observe``
on the metric objects defined at the bottom of this module. Pure in-memory bookkeeping:
the HTTP edge (:mod:`bridge.http_status`) renders it.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Sequence
from typing import TypeVar

LabelValues = tuple[str, ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: Sequence[str], values: LabelValues, extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class _Metric:
    kind = "untyped"

    def __init__(self, name: str, help_text: str, labels: Sequence[str] = ()) -> None:
        self.name = name
        self.help = help_text
        self.label_names = tuple(labels)
        self._lock = threading.Lock()

    def _key(self, labels: dict[str, str]) -> LabelValues:
        if set(labels) != set(self.label_names):
            raise ValueError(f"{self.name} takes labels {self.label_names}, got {sorted(labels)}")
        return tuple(str(labels[n]) for n in self.label_names)

    def samples(self) -> Iterable[str]:
        """Exposition lines for this metric's samples."""
        raise NotImplementedError

    def render(self) -> str:
        """HELP, TYPE and the samples."""
        head = f"# HELP {self.name} {self.help}\n# TYPE {self.name} {self.kind}\n"
        return head + "".join(line + "\n" for line in self.samples())


class Counter(_Metric):
    """A value that only goes up."""

    kind = "counter"

    def __init__(self, name: str, help_text: str, labels: Sequence[str] = ()) -> None:
        super().__init__(name, help_text, labels)
        self._values: dict[LabelValues, float] = {}

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        """Add ``amount``."""
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        """The current value for ``labels`` (0 when never incremented)."""
        return self._values.get(self._key(labels), 0.0)

    def samples(self) -> Iterable[str]:
        with self._lock:
            items = sorted(self._values.items())
        for key, value in items:
            yield f"{self.name}{_labels(self.label_names, key)} {_number(value)}"


class Gauge(_Metric):
    """A value that goes up and down, set directly or computed at scrape time."""

    kind = "gauge"

    def __init__(self, name: str, help_text: str, labels: Sequence[str] = ()) -> None:
        super().__init__(name, help_text, labels)
        self._values: dict[LabelValues, float] = {}

    def set(self, value: float, **labels: str) -> None:
        """Set the value for ``labels``."""
        key = self._key(labels)
        with self._lock:
            self._values[key] = value

    def value(self, **labels: str) -> float | None:
        """The current value for ``labels``, or None when never set."""
        return self._values.get(self._key(labels))

    def samples(self) -> Iterable[str]:
        with self._lock:
            items = sorted(self._values.items())
        for key, value in items:
            yield f"{self.name}{_labels(self.label_names, key)} {_number(value)}"


class Histogram(_Metric):
    """Observations counted into cumulative buckets, with their sum and count."""

    kind = "histogram"

    def __init__(
        self,
        name: str,
        help_text: str,
        labels: Sequence[str] = (),
        buckets: Sequence[float] = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    ) -> None:
        super().__init__(name, help_text, labels)
        self._bounds = (*sorted(buckets), math.inf)
        self._counts: dict[LabelValues, list[int]] = {}
        self._sums: dict[LabelValues, float] = {}

    def observe(self, value: float, **labels: str) -> None:
        """Record one observation."""
        key = self._key(labels)
        with self._lock:
            counts = self._counts.setdefault(key, [0] * len(self._bounds))
            for i, bound in enumerate(self._bounds):
                if value <= bound:
                    counts[i] += 1
            self._sums[key] = self._sums.get(key, 0.0) + value

    def count(self, **labels: str) -> int:
        """How many observations were made for ``labels``."""
        counts = self._counts.get(self._key(labels))
        return counts[-1] if counts else 0

    def samples(self) -> Iterable[str]:
        with self._lock:
            items = sorted((k, list(v), self._sums[k]) for k, v in self._counts.items())
        for key, counts, total in items:
            for bound, count in zip(self._bounds, counts, strict=True):
                le = f'le="{_number(bound)}"'
                yield f"{self.name}_bucket{_labels(self.label_names, key, le)} {count}"
            yield f"{self.name}_sum{_labels(self.label_names, key)} {_number(total)}"
            yield f"{self.name}_count{_labels(self.label_names, key)} {counts[-1]}"


_M = TypeVar("_M", bound=_Metric)


class Registry:
    """All metrics of the process, plus collectors run at scrape time."""

    def __init__(self) -> None:
        self._metrics: list[_Metric] = []

    def add(self, metric: _M) -> _M:
        """Register ``metric`` and return it."""
        self._metrics.append(metric)
        return metric

    def render(self) -> str:
        """The whole exposition text."""
        return "".join(metric.render() for metric in self._metrics)


REGISTRY = Registry()

MESSAGES = REGISTRY.add(
    Counter(
        "faxbridge_messages_total",
        "Mail offered for faxing, by outcome and reason.",
        ("outcome", "reason"),
    )
)
FAXES = REGISTRY.add(
    Counter(
        "faxbridge_faxes_total", "Outbound faxes by event (submitted, sent, failed).", ("event",)
    )
)
JOBS = REGISTRY.add(Gauge("faxbridge_jobs", "Outbound jobs by state.", ("state",)))
INBOUND = REGISTRY.add(
    Counter(
        "faxbridge_inbound_total", "Received faxes by event (delivered, unrouted, ...).", ("event",)
    )
)
INTERFAX_LATENCY = REGISTRY.add(
    Histogram(
        "faxbridge_interfax_request_seconds", "InterFAX request latency by endpoint.", ("endpoint",)
    )
)
INTERFAX_ERRORS = REGISTRY.add(
    Counter(
        "faxbridge_interfax_errors_total",
        "InterFAX request failures by endpoint and kind.",
        ("endpoint", "kind"),
    )
)
INBOUND_STATE = REGISTRY.add(
    Gauge("faxbridge_inbound_faxes", "Received faxes by state.", ("state",))
)
BALANCE = REGISTRY.add(Gauge("faxbridge_interfax_balance", "InterFAX prepaid balance."))


def observe_interfax(endpoint: str, seconds: float, error: str | None) -> None:
    """Record one InterFAX request (the client's observer hook)."""
    INTERFAX_LATENCY.observe(seconds, endpoint=endpoint)
    if error is not None:
        INTERFAX_ERRORS.inc(endpoint=endpoint, kind=error)


def set_job_counts(counts: dict[str, int], states: Iterable[str]) -> None:
    """Publish the queue depth per state (every state, zeros included)."""
    for state in states:
        JOBS.set(counts.get(state, 0), state=state)
