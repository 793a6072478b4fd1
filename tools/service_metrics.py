"""The service's Prometheus metrics, read from the audit trail at each scrape.

Every process of the service (N `serve`, M workers) writes the same database, so reading the
metrics from it gives one true figure whichever process is scraped, with nothing to aggregate
and nothing lost when a process restarts. Totals of rows that are never deleted (attempts,
webhook events) are counters; counts by a state that changes (sends by status) are gauges.
Labels are providers, states and outcomes only: never a workspace, an address or an id.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy import case, func, literal, select

from persistence import (
    DeliveryAttempt,
    EmailExecution,
    ExecutionStatus,
    ProviderEvent,
    all_workspaces,
)
from persistence.models import ProviderBreaker
from tools.runtime import get_runtime

# Seconds: a local relay answers in milliseconds, a distant API in a second or two, and a
# send retried with waits takes up to minutes.
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
WAITING = (ExecutionStatus.QUEUED, ExecutionStatus.SCHEDULED, ExecutionStatus.SENDING)

_ex, _at, _ev = EmailExecution, DeliveryAttempt, ProviderEvent
_SENDS = select(_ex.status, func.coalesce(_ex.provider, ""), func.count()).group_by(
    _ex.status, _ex.provider
)
_ATTEMPTS = select(_at.provider, _at.outcome, func.count()).group_by(_at.provider, _at.outcome)
_EVENTS = select(
    _ev.provider,
    _ev.kind,
    case((_ev.execution_id.is_(None), literal("waiting")), else_=literal("linked")),
    func.count(),
).group_by(_ev.provider, _ev.kind, _ev.execution_id.is_(None))
_BREAKERS = select(ProviderBreaker.provider, ProviderBreaker.state)
# A send's hand-over time: its attempts' latencies summed (retries and fallbacks included).
_PER_SEND = (
    select((func.sum(_at.latency_ms) / 1000.0).label("seconds"))
    .group_by(_at.execution_id)
    .subquery()
)
_DURATIONS = select(
    func.count(),
    func.coalesce(func.sum(_PER_SEND.c.seconds), 0.0),
    *(func.sum(case((_PER_SEND.c.seconds <= bound, 1), else_=0)) for bound in DURATION_BUCKETS),
)


class AuditTrailCollector(Collector):
    """The metrics `/metrics` serves (see the module's note)."""

    def collect(self) -> Iterator[Metric]:
        # The service's figures span workspaces (their labels never name one).
        with all_workspaces(), get_runtime().reader.connect() as conn:
            sends = conn.execute(_SENDS).all()
            attempts = conn.execute(_ATTEMPTS).all()
            events = conn.execute(_EVENTS).all()
            breakers = conn.execute(_BREAKERS).all()
            durations = conn.execute(_DURATIONS).one()
        yield from _sends(sends)
        yield _counter(
            "email_provider_attempts",
            "Provider attempts by outcome (one per call to a provider)",
            ["provider", "outcome"],
            attempts,
        )
        yield _counter(
            "email_webhook_events",
            "Verified provider webhook events by kind, linked to their send or waiting for it",
            ["provider", "kind", "result"],
            events,
        )
        open_ = GaugeMetricFamily(
            "email_breakers_open",
            "1 while a provider's circuit breaker is open",
            labels=["provider"],
        )
        for provider, state in breakers:
            open_.add_metric([provider], 1.0 if state == "open" else 0.0)
        yield open_
        yield _histogram(durations)


def _sends(rows: list) -> Iterator[Metric]:
    by_status = GaugeMetricFamily(
        "email_sends",
        "Sends by their status now and the provider that last took or refused them",
        labels=["status", "provider"],
    )
    waiting = GaugeMetricFamily(
        "email_rows_waiting", "Sends waiting for a worker or a delivery", labels=["status"]
    )
    counts = dict.fromkeys((str(s) for s in WAITING), 0)
    for status, provider, count in rows:
        by_status.add_metric([str(status), provider], count)
        if status in WAITING:
            counts[str(status)] += count
    for status, count in counts.items():
        waiting.add_metric([status], count)
    yield by_status
    yield waiting


def _counter(name: str, documentation: str, labels: list[str], rows: list) -> Metric:
    family = CounterMetricFamily(name, documentation, labels=labels)
    for *values, count in rows:
        family.add_metric([str(v) for v in values], count)
    return family


def _histogram(durations: tuple) -> Metric:
    count, total, *cumulative = durations
    pairs = zip(DURATION_BUCKETS, cumulative, strict=True)
    buckets = [(str(bound), int(n or 0)) for bound, n in pairs]
    family = HistogramMetricFamily(
        "email_send_duration_seconds",
        "How long handing one send over took: its provider attempts summed",
    )
    family.add_metric([], [*buckets, ("+Inf", int(count))], float(total))
    return family
