"""The per-daemon Prometheus registry and the sample Grafana dashboard agree on metric names."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from pathlib import Path

from textbackd import config as config_mod
from textbackd.daemon.service import Daemon

DASHBOARD = Path(__file__).parent.parent / "contrib" / "grafana-textbackd.json"


def daemon(tmp_path) -> Daemon:
    cfg = config_mod.parse({"business": {"name": "Apex"}, "store": {"path": str(tmp_path / "t.db")}})
    return Daemon(cfg, senders=[], handle_signals=False)


def test_every_metric_the_dashboard_queries_is_exported(tmp_path):
    """Each textbackd_* series used in contrib/grafana-textbackd.json is in a daemon's /metrics output."""
    text = daemon(tmp_path).metrics.render().decode()
    exprs = [t["expr"] for p in json.loads(DASHBOARD.read_text())["panels"] for t in p["targets"]]
    used = {re.sub(r"_(total|bucket|count|sum)$", "", n) for e in exprs for n in re.findall(r"textbackd_\w+", e)}
    assert used
    missing = [n for n in sorted(used) if not re.search(rf"^# TYPE {n}(_total)? ", text, re.M)]
    assert missing == []


def test_two_daemons_in_one_process_keep_separate_counts(tmp_path):
    """Metrics live in a per-daemon registry: counting in one daemon leaves another at zero."""
    a, b = daemon(tmp_path / "a"), daemon(tmp_path / "b")
    a.metrics.events.inc(5)
    assert "textbackd_pbx_events_total 5.0" in a.metrics.render().decode()
    assert "textbackd_pbx_events_total 0.0" in b.metrics.render().decode()


async def test_watchdog_is_withheld_when_a_core_task_died_or_too_many_calls_are_held(tmp_path):
    """The watchdog ping needs the PBX and outbox tasks alive and fewer than MAX_UNWRITTEN held calls."""
    d = daemon(tmp_path)

    async def crashed() -> None:
        raise RuntimeError("boom")

    async def forever() -> None:
        await asyncio.Event().wait()

    alive = asyncio.create_task(forever())
    dead = asyncio.create_task(crashed())
    await asyncio.sleep(0)
    try:
        d._tasks = {"pbx": alive, "outbox": alive}
        assert d.watchdog_healthy()
        d.unwritten = [None] * d.MAX_UNWRITTEN
        assert not d.watchdog_healthy()
        d.unwritten = []
        d._tasks = {"pbx": alive, "outbox": dead}
        assert not d.watchdog_healthy()
    finally:
        alive.cancel()
        with contextlib.suppress(BaseException):
            await dead
