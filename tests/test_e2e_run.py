"""`textbackd run` as a real process against a replaying AMI server and a modem on a pty."""

import asyncio
import json
import os
import signal
from collections import Counter

import pytest
from e2e import (
    DATA,
    capture,
    chain,
    labels,
    query,
    rewrite,
    settled,
    spawn_daemon,
    stop_daemon,
    wait_until,
    write_config,
)

from textbackd.pbx.asterisk.replay_server import AmiReplayServer
from textbackd.pbx.freeswitch.replay_server import EslReplayServer
from textbackd.pbx.freeswitch.replay_server import load_capture as load_esl

pytestmark = pytest.mark.slow

BUSY = "18-busy-office-hour"


def expected_texts() -> dict[str, str]:
    """Unique missed callers of the busy hour (from the labels) → the DID they called first."""
    out: dict[str, str] = {}
    for c in labels(BUSY):
        if c["missed"] and c["caller"] not in out:
            out[c["caller"]] = c["did"]
    return out


async def test_busy_hour_texts_each_missed_caller_once_with_the_right_template(tmp_path, sim):
    """Every missed caller of the recorded busy hour gets exactly one text, with its line's wording; nobody else gets one."""
    async with AmiReplayServer(capture(BUSY), secret="e2e-secret", speed=30) as srv:
        cfg = write_config(tmp_path, ami_port=srv.port, device=sim.device, grace=1)
        proc = await spawn_daemon(cfg, tmp_path / "daemon.log")
        try:
            await asyncio.wait_for(srv.finished.wait(), 60)
            await wait_until(lambda: len(sim.received) >= len(expected_texts()) and settled(tmp_path / "textbackd.db"),
                             30, what="all texts sent")
            await asyncio.sleep(1.5)  # nothing more may come
        finally:
            rc = await stop_daemon(proc)
    assert rc == 0, (tmp_path / "daemon.log").read_text()[-3000:]
    got = Counter(m.to for m in sim.received)
    want = expected_texts()
    assert set(got) == set(want)
    assert max(got.values()) == 1
    for m in sim.received:
        if want[m.to] == "5550500":
            assert m.text.startswith("Hi, this is Apex Plumbing Brooklyn. We're closed right now"), m.text
        else:
            assert m.text.startswith("Hi, this is Apex Plumbing. Sorry we missed your call."), m.text
    # the two repeat callers' second misses are recorded as skipped duplicates
    skipped = query(
        tmp_path / "textbackd.db",
        "SELECT m.reason FROM messages m JOIN calls c ON c.id = m.call_id WHERE m.state='skipped' AND c.missed=1",
    )
    assert sorted(r["reason"] for r in skipped) == ["duplicate", "duplicate"]
    # and every call of the hour is in the store with a decision
    assert query(tmp_path / "textbackd.db", "SELECT COUNT(*) AS n FROM calls")[0]["n"] == len(labels(BUSY))


async def test_kill_9_mid_hour_then_restart_loses_and_duplicates_nothing(tmp_path, sim):
    """kill -9 in the middle of the busy hour and a restart: every missed caller still gets one text, none gets two."""
    db = tmp_path / "textbackd.db"
    async with AmiReplayServer(capture(BUSY), secret="e2e-secret", speed=30, resume=True) as srv:
        cfg = write_config(tmp_path, ami_port=srv.port, device=sim.device, grace=1)
        proc = await spawn_daemon(cfg, tmp_path / "daemon.log")
        await wait_until(lambda: len(sim.received) >= 10, 60, what="ten texts")
        os.kill(proc.pid, signal.SIGKILL)
        await proc.wait()
        await asyncio.sleep(1.0)  # the PBX goes on without us
        proc = await spawn_daemon(cfg, tmp_path / "daemon.log")
        try:
            await asyncio.wait_for(srv.finished.wait(), 60)
            await wait_until(lambda: settled(db), 30, what="outbox drained")
            await asyncio.sleep(2.0)
        finally:
            rc = await stop_daemon(proc)
    assert rc == 0
    assert srv.sessions >= 2
    got = Counter(m.to for m in sim.received)
    assert max(got.values()) == 1, got  # nothing sent twice
    unknown = {r["to_number"] for r in query(db, "SELECT to_number FROM messages WHERE state='unknown'")}
    # nothing lost: each missed caller got a text, or (killed mid-send) is reported as unknown
    assert set(got) | unknown == set(expected_texts())
    assert not unknown - set(got) or all(r["reason"] for r in query(db, "SELECT reason FROM messages WHERE state='unknown'"))


async def test_caller_answered_on_call_back_within_grace_gets_no_text(tmp_path, sim):
    """A caller who hangs up while ringing, then calls again and is answered within the grace, gets no text."""
    caller = "+12125550103"
    missed = capture("03-caller-cancel")
    answered = rewrite(capture("01-answered"), "+12125550101", caller)
    async with AmiReplayServer(chain(missed, answered, capture("05-busy")), secret="e2e-secret", speed=4) as srv:
        cfg = write_config(tmp_path, ami_port=srv.port, device=sim.device, grace=12)
        proc = await spawn_daemon(cfg, tmp_path / "daemon.log")
        try:
            await asyncio.wait_for(srv.finished.wait(), 60)
            await wait_until(lambda: settled(tmp_path / "textbackd.db"), 40, what="outbox drained")
        finally:
            rc = await stop_daemon(proc)
    assert rc == 0
    assert [m.to for m in sim.received] == ["+12125550105"]  # only the busy caller, who never got through
    rows = query(tmp_path / "textbackd.db", "SELECT state, reason FROM messages WHERE to_number=? ORDER BY id", (caller,))
    # the missed call's text was scheduled, then cancelled; the answered call-back needs none
    assert [(r["state"], r["reason"]) for r in rows] == [("cancelled", "answered_callback"), ("skipped", "answered")]


FS = DATA / "freeswitch" / "traces"


async def test_freeswitch_busy_hour_texts_each_missed_caller_once(tmp_path, sim):
    """The same daemon with kind = "freeswitch" texts every missed caller of the recorded FreeSWITCH hour once."""
    calls = json.loads((FS / "18-busy-hour.expected.json").read_text())["calls"]
    want = {c["caller"] for c in calls if c["missed"]}
    async with EslReplayServer(load_esl(FS / "18-busy-hour.esl.gz"), password="e2e-secret", speed=30) as srv:
        cfg = write_config(tmp_path, ami_port=srv.port, device=sim.device, grace=1, kind="freeswitch")
        proc = await spawn_daemon(cfg, tmp_path / "daemon.log")
        try:
            await wait_until(lambda: len(sim.received) >= len(want) and settled(tmp_path / "textbackd.db"),
                             90, what="all texts sent")
            await asyncio.sleep(1.5)
        finally:
            rc = await stop_daemon(proc)
    assert rc == 0, (tmp_path / "daemon.log").read_text()[-3000:]
    got = Counter(m.to for m in sim.received)
    assert set(got) == want and max(got.values()) == 1
    assert all(m.text.startswith("Hi, this is Apex Plumbing. Sorry we missed your call.") for m in sim.received)
    stored = query(tmp_path / "textbackd.db", "SELECT COUNT(*) AS n, SUM(missed) AS m FROM calls")[0]
    assert (stored["n"], stored["m"]) == (len(calls), len([c for c in calls if c["missed"]]))
