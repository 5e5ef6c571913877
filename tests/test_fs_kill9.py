"""`textbackd run` with kind = "freeswitch", killed with SIGKILL mid-hour and restarted from its tracker checkpoint."""

import asyncio
import json
import os
import signal
from collections import Counter

import pytest
from e2e import DATA, query, settled, spawn_daemon, stop_daemon, wait_until, write_config

from textbackd.pbx.freeswitch.replay_server import EslReplayServer, load_capture

pytestmark = pytest.mark.slow

FS = DATA / "freeswitch" / "traces"
BLOCKS = load_capture(FS / "18-busy-hour.esl.gz")
CALLS = json.loads((FS / "18-busy-hour.expected.json").read_text())["calls"]
MISSED = {c["uuid"]: c for c in CALLS if c["missed"]}
ANSWERED = {c["uuid"] for c in CALLS if c["reason"] == "answered"}
CREATED = {b.headers["Unique-ID"]: i for i, b in enumerate(BLOCKS) if b.name == "CHANNEL_CREATE"}
HUNG_UP = {b.headers["Unique-ID"]: i for i, b in enumerate(BLOCKS) if b.name == "CHANNEL_HANGUP_COMPLETE"}
BRIDGED = {}
for _i, _b in enumerate(BLOCKS):
    if _b.name == "CHANNEL_BRIDGE":
        for _u in (_b.headers.get("Bridge-A-Unique-ID"), _b.headers.get("Bridge-B-Unique-ID")):
            BRIDGED.setdefault(_u, _i)

KILL, RESUME = 1380, 1560  # stream positions: the kill, and where FreeSWITCH is when we are back
SAVED_BY = KILL - 450  # what happened before this is surely in the last checkpoint (saved every 0.5 s)
# calls born after the last checkpoint and gone before the restart leave no trace: FreeSWITCH's loss, not ours
UNSEEN = {u for u in CREATED if CREATED[u] >= SAVED_BY and HUNG_UP.get(u, 0) < RESUME}


def vanished(killed_at: int) -> set[str]:
    """Missed calls open at the kill that FreeSWITCH dropped while we were down: only the checkpoint knows them."""
    return {u for u in MISSED if CREATED[u] < SAVED_BY and killed_at + 20 <= HUNG_UP[u] < RESUME}


def stored(db, uuids) -> dict[str, dict]:
    rows = query(db, "SELECT id, direction, missed, caller, outcome FROM calls")
    by_id = {r["id"].split(":", 1)[-1]: dict(r) for r in rows}
    return {u: by_id[u] for u in uuids if u in by_id}


def unknown_texts(db) -> set[str]:
    return {r["to_number"] for r in query(db, "SELECT to_number FROM messages WHERE state='unknown'")}


async def test_kill_9_mid_hour_then_restart_loses_no_freeswitch_caller_and_texts_no_answered_one(tmp_path, sim):
    """kill -9 mid-hour, calls ending while the daemon is down, a restart: every missed caller stored and texted once, no answered call missed."""
    db = tmp_path / "textbackd.db"
    log = tmp_path / "daemon.log"
    due = {u: c for u, c in MISSED.items() if u not in UNSEEN}
    want = {c["caller"] for c in due.values()}
    async with EslReplayServer(BLOCKS, password="e2e-secret", speed=30, resume=True) as srv:
        cfg = write_config(tmp_path, ami_port=srv.port, device=sim.device, grace=1, kind="freeswitch")
        proc = await spawn_daemon(cfg, log)
        await wait_until(lambda: srv.position >= KILL, 60, step=0.005, what="the kill point")
        os.kill(proc.pid, signal.SIGKILL)
        killed_at = srv.position
        await proc.wait()
        await asyncio.sleep(1.0)
        srv.position = max(srv.position, RESUME)  # the PBX went on without us: those events are gone
        proc = await spawn_daemon(cfg, log)
        try:
            await asyncio.wait_for(srv.finished.wait(), 60)
            # calls FreeSWITCH dropped while we were down are closed RESYNC_GRACE (30 s) after the
            # resync, at the daemon's expiry sweep (every 30 s)
            await wait_until(lambda: len(stored(db, due)) == len(due) and settled(db), 120, what="every missed call stored")
            await wait_until(lambda: set(Counter(m.to for m in sim.received)) | unknown_texts(db) >= want, 30, what="texts")
            await asyncio.sleep(1.5)  # nothing more may come
        finally:
            rc = await stop_daemon(proc)
    assert rc == 0, log.read_text()[-3000:]
    assert srv.sessions >= 2
    assert "calls_restored_after_restart" in log.read_text()
    rows = stored(db, due)
    for uuid, row in rows.items():
        assert (row["direction"], row["missed"], row["caller"]) == ("inbound", 1, due[uuid]["caller"]), row
    assert vanished(killed_at)  # the gap really dropped calls that were open at the kill
    for uuid in vanished(killed_at):
        assert rows[uuid]["outcome"] == "unknown", rows[uuid]  # closed by the resync, from the checkpoint
    answered_seen = {u for u in ANSWERED if BRIDGED[u] < SAVED_BY or HUNG_UP[u] >= RESUME}
    for uuid, row in stored(db, answered_seen).items():
        assert row["missed"] == 0, f"answered call stored as missed: {row}"
    got = Counter(m.to for m in sim.received)
    assert max(got.values()) == 1, got  # nothing sent twice
    assert set(got) <= {c["caller"] for c in MISSED.values()}  # nobody who was only ever answered
    assert set(got) | unknown_texts(db) >= want  # each missed caller texted, or (killed mid-send) reported unknown
