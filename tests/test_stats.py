"""`textbackd stats` on the recorded busy office hour, checked against counts done by hand from its labels."""

import json
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
from test_followups import Clock, RecordingSender

from textbackd import config
from textbackd.core.model import IncomingText, MessageState
from textbackd.daemon.conversations import Conversations
from textbackd.daemon.outbox import Outbox
from textbackd.daemon.pipeline import Pipeline
from textbackd.replay import replay_calls
from textbackd.staff.actions import queue_staff_text
from textbackd.store import figures as stats
from textbackd.store.db import Store

DATA = Path(__file__).parent / "data" / "asterisk"
TRACE = DATA / "18-busy-office-hour.ami.gz"
LABELS = json.loads((DATA / "18-busy-office-hour.expected.json").read_text())["calls"]

# The PBX was recorded on a Monday morning in Tokyo: the office is open, every text goes at once.
CFG_DATA = {
    "business": {
        "name": "Acme",
        "timezone": "Asia/Tokyo",
        "hours": {d: "08:00-18:00" for d in ("mon", "tue", "wed", "thu", "fri")},
    },
    "policy": {"grace_seconds": 30},
}
CFG = config.parse(CFG_DATA, env={})


def at(ts):
    return datetime.fromtimestamp(ts, tz=timezone.utc)


@pytest.fixture(scope="module")
def busy_hour(tmp_path_factory):
    """The busy hour run through the daemon's path (tracker → Pipeline → Outbox), then a few replies."""
    path = tmp_path_factory.mktemp("stats") / "busy.db"
    store = Store(path)
    clock = Clock(0.0)
    pipeline = Pipeline(store, CFG)
    outbox = Outbox(store, [RecordingSender()], clock=clock, recheck=pipeline.recheck)
    calls = list(replay_calls(TRACE, CFG, "asterisk"))
    import asyncio

    async def run():
        for call in calls:
            clock.t = call.ended.timestamp()
            await outbox.process_due()
            pipeline.handle_call(call, clock.t)
        end = max(c.ended.timestamp() for c in calls)
        clock.t = end + 60
        await outbox.process_due()
        conv = Conversations(store, CFG, clock=clock)
        # by hand: three texted callers reply, one sends STOP, staff answer the first reply 5 minutes later
        for i, (number, text) in enumerate([
            ("+16145550118", "Is there a slot today?"),  # c02, voicemail on the main line
            ("+12025550109", "ok thanks"),  # c13, no answer on sales
            ("+12125550165", "Please call me back"),  # c22, voicemail on the main line
            ("+17135550169", "STOP"),  # c04, ring group: opt-out, not a reply
        ]):
            clock.t = end + 120 + 60 * i
            await conv.incoming(IncomingText(sender="rec", from_number=number, text=text, received_at=at(clock.t)))
        clock.t = end + 120 + 300
        queue_staff_text(store, CFG, "+16145550118", "Yes, 4pm works", now=clock.t, source="cli")
        clock.t += 30
        await outbox.process_due()
        return end

    end = asyncio.run(run())
    yield store, calls, end
    store.close()


def test_the_busy_hour_figures_match_the_hand_count(busy_hour):
    """Missed calls, texts, replies, recoveries and opt-outs over the busy hour match the labels counted by hand."""
    store, calls, end = busy_hour
    r = stats.compute(store, CFG, since=0, until=end + 3600)
    t = r.total
    inbound_missed = [lab for lab in LABELS if lab["direction"] == "inbound" and lab["missed"]]
    assert t.missed == len(inbound_missed) == 30
    # 30 missed calls from 28 numbers: +16145550158 (c10, c28) and +14045550119 (c11, c27) missed twice,
    # so their second call is a duplicate; every other missed call got its text
    assert t.texts == 28
    assert t.skipped == {"duplicate": 2}
    assert t.failures == {}
    assert t.send_rate == pytest.approx(28 / 30)
    assert t.replied == 3 and t.reply_rate == pytest.approx(3 / 28)
    # recovered: the three replies, plus +16145550187 who missed (c06) then called back and was answered (c23)
    assert t.recovered == 4 and t.recovery_rate == pytest.approx(4 / 30)
    assert t.opt_outs == 1
    assert t.staff_texts == 1
    assert t.median_staff_response == pytest.approx(300)  # first reply at +120 s, staff at +420 s
    # each text went at the first outbox pass after its grace: between 30 s and the gap to the next call
    sent = [m for m in store.messages(limit=100) if m.kind == "textback" and m.state is MessageState.SENT]
    ended = {row.id: row.ended for row in store.calls(limit=100)}
    delays = sorted(m.sent_at - ended[m.call_id] for m in sent)
    assert t.median_to_text == pytest.approx((delays[13] + delays[14]) / 2) and t.median_to_text >= 30


def test_per_line_and_per_day_add_up_to_the_total(busy_hour):
    """The per-line rows match the labels' missed calls per DID and the single day holds everything."""
    store, calls, end = busy_hour
    r = stats.compute(store, CFG, since=0, until=end + 3600)
    by_hand: dict[str, int] = {}
    for lab in LABELS:
        if lab["direction"] == "inbound" and lab["missed"]:
            by_hand[lab["did"]] = by_hand.get(lab["did"], 0) + 1
    assert {did: f.missed for did, f in r.by_line.items()} == by_hand
    assert sum(f.texts for f in r.by_line.values()) == r.total.texts
    assert list(r.by_day) == ["2026-11-23"] and r.by_day["2026-11-23"].missed == 30
    main = r.by_line["5550100"]
    assert (main.missed, main.replied) == (by_hand["5550100"], 2)  # c02 and c22 replied


def test_line_filter_and_window(busy_hour):
    """--line keeps one DID's calls; a window before the hour is empty."""
    store, calls, end = busy_hour
    sales = stats.compute(store, CFG, since=0, until=end + 3600, line="5550101")
    assert sales.total.missed == 8 and set(sales.by_line) == {"5550101"}
    empty = stats.compute(store, CFG, since=0, until=calls[0].started.timestamp())
    assert empty.total.missed == 0 and empty.total.send_rate is None
    assert "all" in stats.render(empty)


def test_the_stats_command_prints_the_table_and_json(busy_hour, tmp_path):
    """`textbackd stats --json` and the table read the same store."""
    store, calls, end = busy_hour
    cfg_file = tmp_path / "t.toml"
    tz_hours = "\n".join(f'{d} = "08:00-18:00"' for d in ("mon", "tue", "wed", "thu", "fri"))
    cfg_file.write_text(
        f'[business]\nname = "Acme"\ntimezone = "Asia/Tokyo"\n[business.hours]\n{tz_hours}\n'
        f'[store]\npath = "{store.path}"\n'
    )
    since = datetime.fromtimestamp(calls[0].started.timestamp() - 60).isoformat()
    base = [sys.executable, "-m", "textbackd", "stats", "-c", str(cfg_file), "--since", since]
    out = subprocess.run([*base, "--json"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["total"]["missed"] == 30 and data["total"]["texts"] == 28 and data["total"]["opt_outs"] == 1
    assert data["by_line"]["5550101"]["missed"] == 8
    table = subprocess.run([*base, "--line", "5550101"], capture_output=True, text=True, timeout=60)
    assert table.returncode == 0, table.stderr
    first = next(line for line in table.stdout.splitlines() if line.startswith("all"))
    assert first.split()[:3] == ["all", "8", "8"]
    bad = subprocess.run([*base[:-2], "--since", "yesterday-ish"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "--since" in bad.stderr and "Traceback" not in bad.stderr
