"""Retention, export and forget: what is deleted, what is kept, and that STOP still holds."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

from textbackd import config as cfgmod
from textbackd.core.model import Call, Direction, MessageState, Outcome
from textbackd.daemon.service import Daemon
from textbackd.store.db import Store, call_key
from textbackd.store.retention import export, forget, purge

NOW = time.time()
DAY = 86400.0


def call(cid: str, caller: str, age_days: float) -> Call:
    t = datetime.fromtimestamp(NOW - age_days * DAY, tz=timezone.utc)
    return Call(id=cid, pbx="asterisk", direction=Direction.INBOUND, outcome=Outcome.NO_ANSWER, caller=caller,
                caller_raw=caller, caller_name="Ann Lee", did="5550100", started=t, ended=t + timedelta(seconds=20))


def fill(store: Store, caller: str, age_days: float, n: int, *, reply: str = "", email: bool = False) -> None:
    c = call(f"{caller[-4:]}.{n}", caller, age_days)
    at = NOW - age_days * DAY
    store.record_call(c, now=at)
    store.add_message(to=caller, kind="textback", state=MessageState.SKIPPED, now=at, call_id=call_key(c),
                      text="Hi, sorry we missed you", reason="duplicate")
    if reply:
        store.record_incoming(sender="modem1", from_number=caller, text=reply, received_at=at + 60)
    if email:
        store.queue_email(kind="reply", to=["desk@apex.example"], subject=f"Reply from {caller}",
                          body=f"{caller} wrote: {reply}", now=at + 61)
        store.email_done(store.db.execute("SELECT MAX(id) FROM emails").fetchone()[0], now=at + 62, ok=True)


def counts(store: Store) -> dict[str, int]:
    return {t: store.db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
            for t in ("calls", "messages", "message_events", "incoming", "emails", "opt_outs", "opt_out_events")}


def test_purge_deletes_old_history_and_keeps_opt_outs_and_recent_rows(tmp_path):
    """purge() removes calls, texts, replies and e-mails before the cutoff and keeps recent rows and active opt-outs."""
    store = Store(tmp_path / "t.db")
    fill(store, "+12125550120", 40, 1, reply="call me", email=True)
    fill(store, "+12125550121", 40, 2, reply="STOP")
    store.set_opt_out("+12125550121", True, now=NOW - 40 * DAY, source="sms")
    fill(store, "+12125550122", 2, 3, reply="thanks", email=True)
    got = purge(store, NOW - 30 * DAY, now=NOW)
    assert got["calls"] == 2 and got["messages"] == 2 and got["incoming"] == 2 and got["emails"] == 1
    left = counts(store)
    assert left["calls"] == 1 and left["messages"] == 1 and left["incoming"] == 1 and left["emails"] == 1
    assert store.is_opted_out("+12125550121")  # STOP still holds
    assert left["opt_out_events"] == 0  # its history (with no content) went with the rest
    assert store.db.execute("SELECT caller FROM calls").fetchone()[0] == "+12125550122"


def test_purge_keeps_texts_still_waiting_to_go(tmp_path):
    """A scheduled text older than the cutoff is work in progress, not history: it and its call stay."""
    store = Store(tmp_path / "t.db")
    c = call("9.1", "+12125550123", 40)
    store.record_call(c, now=NOW - 40 * DAY)
    store.add_message(to="+12125550123", kind="textback", state=MessageState.SCHEDULED, now=NOW - 40 * DAY,
                      call_id=call_key(c), text="Hi")
    assert purge(store, NOW - 30 * DAY)["messages"] == 0
    assert counts(store)["calls"] == 1


def test_export_and_forget_one_number(tmp_path):
    """export lists a number's calls, texts, replies and e-mails; forget erases them and keeps only its opt-out."""
    store = Store(tmp_path / "t.db")
    fill(store, "+12125550124", 1, 1, reply="STOP", email=True)
    store.set_opt_out("+12125550124", True, now=NOW, source="sms")
    fill(store, "+12125550125", 1, 2, reply="hello", email=True)
    data = export(store, "+12125550124")
    assert len(data["calls"]) == 1 and len(data["texts"]) == 1 and data["texts"][0]["history"]
    assert [r["text"] for r in data["replies"]] == ["STOP"]
    assert len(data["emails"]) == 1 and data["opt_out"]["active"] == 1
    got = forget(store, "+12125550124", now=NOW)
    assert got == {"texts": 1, "replies": 1, "calls": 1, "emails": 1, "staff_actions": 0, "events": 0, "opt_out_kept": 1}
    after = export(store, "+12125550124")
    assert not (after["calls"] or after["texts"] or after["replies"] or after["emails"] or after["opt_out_history"])
    assert after["opt_out"]["source"] == "forgotten" and store.is_opted_out("+12125550124")
    assert len(export(store, "+12125550125")["calls"]) == 1  # nobody else touched


def write_cfg(tmp_path, extra: str = "") -> str:
    p = tmp_path / "t.toml"
    p.write_text(f"""
[pbx]
host = "127.0.0.1"
port = 9
connect_timeout = 1
[business]
name = "Apex Plumbing"
[store]
path = "{tmp_path / 't.db'}"
{extra}
[http]
listen = "127.0.0.1:0"
""")
    return str(p)


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "textbackd", *args], capture_output=True, text=True, timeout=60)


def test_export_and_forget_commands(tmp_path):
    """`textbackd export --json` prints the number's data; `forget --yes` erases it and says the opt-out is kept."""
    cfg = write_cfg(tmp_path)
    store = Store(tmp_path / "t.db")
    fill(store, "+12125550126", 1, 1, reply="STOP")
    store.set_opt_out("+12125550126", True, now=NOW, source="sms")
    store.close()
    r = cli("export", "-c", cfg, "(212) 555-0126", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["number"] == "+12125550126" and len(doc["calls"]) == 1
    r = cli("forget", "-c", cfg, "+12125550126", "--yes")
    assert "erased 1 texts, 1 replies, 1 calls, 0 emails" in r.stdout and "opt-out is kept" in r.stdout
    assert "calls: 0" in cli("export", "-c", cfg, "+12125550126").stdout
    r = cli("forget", "-c", cfg, "+12125550126")  # no terminal, no --yes: refused, nothing asked
    assert r.returncode == 1 and "--yes" in r.stderr
    r = cli("forget", "-c", cfg, "not-a-number", "--yes")
    assert r.returncode == 1 and "not a phone number" in r.stderr


async def test_daemon_housekeeping_applies_retention_days(tmp_path):
    """A running daemon with store.retention_days deletes older history in its housekeeping."""
    cfg = cfgmod.load(write_cfg(tmp_path, "retention_days = 30"))
    store = Store(tmp_path / "t.db")
    fill(store, "+12125550127", 45, 1, reply="ok")
    fill(store, "+12125550128", 3, 2)
    store.close()
    d = Daemon(cfg, senders=[], handle_signals=False, expire_every=0.1)
    task = asyncio.create_task(d.run())
    try:
        await asyncio.wait_for(d.wait_ready(), 10)
        for _ in range(100):
            if d.metrics.retention_deleted.labels("calls")._value.get():
                break
            await asyncio.sleep(0.1)
    finally:
        d.stop()
        await asyncio.wait_for(task, 10)
    store = Store(tmp_path / "t.db")
    assert [r.caller for r in store.calls()] == ["+12125550128"]
    assert counts(store)["incoming"] == 0


def test_every_log_call_masks_the_numbers_it_logs():
    """Each log call in textbackd that passes a caller/number field passes it through numbers.mask."""
    import ast
    import pathlib
    import re

    numberish = re.compile(r"caller|number|^to$|^frm$|^from_?$|msisdn|phone", re.I)
    root = pathlib.Path(__file__).parent.parent / "textbackd"
    bad = []
    for path in root.rglob("*.py"):
        src = path.read_text()
        for node in ast.walk(ast.parse(src)):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "log"):
                continue
            for kw in node.keywords:
                value = ast.get_source_segment(src, kw.value) or ""
                if ((kw.arg and numberish.search(kw.arg)) or re.search(r"caller|_number\b", value)) and "mask(" not in value:
                    bad.append(f"{path.name}:{node.lineno} {kw.arg}={value}")
    assert bad == []
