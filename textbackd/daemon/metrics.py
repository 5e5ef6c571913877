"""Prometheus metrics and the health verdict of one running daemon.

Every ``Daemon`` owns a ``Metrics`` with its own ``CollectorRegistry`` (never
the process-global one, so tests and the soak benchmark can run several
daemons in one process). Counters are bumped by the daemon as things happen;
gauges that describe the present (PBX link, outbox depth and age, sender
health, modem signal) are read at scrape time by a custom collector, so they
are never stale.

``health(daemon, now)`` is the one definition of "healthy", shared by
``/healthz`` and the systemd watchdog:

* the event loop runs (whoever calls this runs on it);
* the store is writable (a write probe within the last housekeeping tick);
* the outbox is not stuck: the oldest text due has waited less than
  ``STUCK_SECONDS`` (15 min);

and, reported but *not* fatal for the watchdog (a restart would not bring a
PBX or a modem back): the PBX link is up, at least one sender is healthy.
``/healthz`` answers 503 when any of them is false, so a monitor sees it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from textbackd.senders import registry as sender_kinds

if TYPE_CHECKING:
    from textbackd.senders.base import Sender
    from textbackd.store.db import Store


class Daemon(Protocol):
    """What metrics and health read of the running daemon (``daemon/service.py``'s ``Daemon``)."""

    clock: Callable[[], float]
    store: Store | None
    senders: Sequence[Sender]
    store_ok: bool
    outbox_depth_cached: int
    last_event_at: float | None
    started_at: float
    calls: int
    events: int

    @property
    def pbx_connected(self) -> bool: ...

    @property
    def pbx_reconnects(self) -> int: ...

    def oldest_due_age(self, now: float) -> float: ...

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
STUCK_SECONDS = 15 * 60.0
LATENCY_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900, 3600)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.events = Counter("textbackd_pbx_events", "PBX events received", registry=r)
        self.calls = Counter("textbackd_calls", "Finished calls by direction and outcome",
                             ["direction", "outcome"], registry=r)
        self.texts = Counter("textbackd_texts", "Text state changes by new state and sender",
                             ["state", "sender"], registry=r)
        self.send_latency = Histogram("textbackd_send_latency_seconds",
                                      "From the moment a text was due to the sender's acceptance",
                                      buckets=LATENCY_BUCKETS, registry=r)
        self.reloads = Counter("textbackd_config_reloads", "SIGHUP reloads by result", ["result"], registry=r)
        self.retention_deleted = Counter("textbackd_retention_deleted", "Rows deleted by retention", ["table"],
                                         registry=r)
        # issue 14: webhooks out (the queue gauges are read at scrape time by WebhookGauges)
        self.webhook_attempts = Counter("textbackd_webhook_attempts", "Webhook POSTs by endpoint and result "
                                        "(delivered, retry, failed, gone)", ["endpoint", "result"], registry=r)

    def attach(self, daemon: Daemon) -> None:
        self.registry.register(_Live(daemon))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _Live(Collector):
    """Gauges read from the daemon at scrape time."""

    def __init__(self, daemon: Daemon) -> None:
        self.d = daemon

    def describe(self) -> list:
        return []

    def collect(self) -> Iterator[Any]:
        d = self.d
        now = d.clock()
        yield _gauge("textbackd_pbx_connected", "1 when logged in to the PBX", 1 if d.pbx_connected else 0)
        c = CounterMetricFamily("textbackd_pbx_reconnects", "PBX sessions after the first")
        c.add_metric([], d.pbx_reconnects)
        yield c
        yield _gauge("textbackd_last_event_timestamp_seconds", "When the last PBX event arrived (0: none yet)",
                     d.last_event_at or 0)
        yield _gauge("textbackd_outbox_depth", "Texts scheduled or being sent", d.outbox_depth_cached)
        yield _gauge("textbackd_outbox_oldest_due_seconds", "Age of the oldest text due and not yet sent",
                     d.oldest_due_age(now))
        yield _gauge("textbackd_store_writable", "1 when the last write probe succeeded", 1 if d.store_ok else 0)
        yield _gauge("textbackd_store_size_bytes", "SQLite file and WAL size", d.store.size_bytes() if d.store else 0)
        healthy = GaugeMetricFamily("textbackd_sender_healthy", "1 when the sender would attempt a send now",
                                    labels=["sender", "kind"])
        kinds = sender_kinds.all_kinds()
        gauges = {(k.name, g.name): GaugeMetricFamily(f"textbackd_{g.name}", g.doc, labels=["sender"])
                  for k in kinds for g in k.gauges}
        for s in d.senders:
            healthy.add_metric([s.name, s.kind], 1 if _safe_healthy(s) else 0)
            try:
                st = s.status()
            except Exception:  # noqa: BLE001 - a broken sender has no facts to export
                st = {}
            for g in sender_kinds.get(s.kind).gauges if s.kind in sender_kinds.names() else ():
                if st.get(g.key) is not None:
                    gauges[(s.kind, g.name)].add_metric([s.name], float(st[g.key]))
        yield healthy
        yield from gauges.values()
        yield _gauge("textbackd_start_time_seconds", "When the daemon started", d.started_at)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    g = GaugeMetricFamily(name, doc)
    g.add_metric([], float(value))
    return g


def _safe_healthy(s: Any) -> bool:
    try:
        return bool(s.healthy())
    except Exception:  # noqa: BLE001 - a broken sender is an unhealthy one
        return False


def health(daemon: Daemon, now: float) -> dict[str, Any]:
    """The health verdict (see the module docstring): ``ok`` plus each part."""
    d = daemon
    oldest = d.oldest_due_age(now)
    senders = {s.name: {"kind": s.kind, "healthy": _safe_healthy(s)} for s in d.senders}
    checks = {
        "loop": True,
        "store_writable": d.store_ok,
        "outbox_not_stuck": oldest < STUCK_SECONDS,
        "pbx_connected": d.pbx_connected,
        "a_sender_healthy": any(v["healthy"] for v in senders.values()) if senders else False,
    }
    return {
        "ok": all(checks.values()),
        "watchdog_ok": checks["store_writable"] and checks["outbox_not_stuck"],
        "checks": checks,
        "pbx": {"connected": checks["pbx_connected"], "last_event_at": d.last_event_at,
                "reconnects": d.pbx_reconnects},
        "senders": senders,
        "outbox": {"depth": d.outbox_depth_cached, "oldest_due_seconds": round(oldest, 1)},
        "calls": d.calls,
        "events": d.events,
    }


class WebhookGauges(Collector):
    """Per-endpoint webhook queue gauges, read from the store at scrape time (issue 14)."""

    def __init__(self, daemon: Daemon) -> None:
        self.d = daemon

    def describe(self) -> list:
        return []

    def collect(self) -> Iterator[Any]:
        from textbackd.store import webhooks as wh_q

        depth = GaugeMetricFamily("textbackd_webhook_queue_depth", "Events waiting for the endpoint",
                                  labels=["endpoint"])
        due = GaugeMetricFamily("textbackd_webhook_due", "Events due now for the endpoint", labels=["endpoint"])
        failing = GaugeMetricFamily("textbackd_webhook_failing", "1 when the head of the queue has failed at least once",
                                    labels=["endpoint"])
        disabled = GaugeMetricFamily("textbackd_webhook_disabled", "1 when 410 Gone disabled the endpoint",
                                     labels=["endpoint"])
        failed = CounterMetricFamily("textbackd_webhook_failed_events", "Events the endpoint never got (given up, "
                                     "refused, disabled)", labels=["endpoint"])
        store = self.d.store
        if store is not None:
            try:
                rows = wh_q.status(store, self.d.clock())
            except Exception:  # noqa: BLE001 - a locked store must not break the scrape
                rows = []
            for st in rows:
                if not st.active:
                    continue
                depth.add_metric([st.name], st.pending)
                due.add_metric([st.name], st.due)
                failing.add_metric([st.name], 1 if st.failing else 0)
                disabled.add_metric([st.name], 1 if st.disabled_at is not None else 0)
                failed.add_metric([st.name], st.failed)
        yield from (depth, due, failing, disabled, failed)
