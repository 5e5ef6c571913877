"""FreeSWITCH calls in progress survive a daemon crash through the tracker's snapshot.

The daemon saves ``FsTracker.snapshot()`` in its store and restores it at start;
the ``show channels`` resync of the new session then closes the restored calls
FreeSWITCH no longer has. Swept over crash points and gap lengths of the
recorded busy hour: tracker A is fed up to the crash, its snapshot goes through
JSON (the store's column), tracker B restores it, misses the events of the gap,
gets the resync (``channels_at`` the position it reconnects at, possibly a few
events after the stream resumed, as on a real socket) and the rest of the hour.
"""

from __future__ import annotations

import json
import pathlib

import pytest

from textbackd.config import parse
from textbackd.core.model import Call
from textbackd.pbx.freeswitch.frames import event_time
from textbackd.pbx.freeswitch.replay_server import EslReplayServer, load_capture
from textbackd.pbx.freeswitch.tracker import CUSTOM_SUBCLASSES, EVENTS, RESYNC_GRACE, SNAPSHOT_EVENT, FsTracker

TRACES = pathlib.Path(__file__).parent / "data" / "freeswitch" / "traces"
CFG = parse({"pbx": {"kind": "freeswitch", "password": "ClueCon"}, "business": {"name": "Acme Dental"}}, env={})
BLOCKS = load_capture(TRACES / "18-busy-hour.esl.gz")
LABELS = json.loads((TRACES / "18-busy-hour.expected.json").read_text())["calls"]
MISSED = {c["uuid"]: c for c in LABELS if c["missed"]}
ANSWERED = {c["uuid"] for c in LABELS if c["reason"] == "answered"}
OFFICE = {c["uuid"] for c in LABELS if c["direction"] != "inbound"}


def _subscribed(b) -> bool:
    return b.subclass in CUSTOM_SUBCLASSES if b.name == "CUSTOM" else b.name in EVENTS


def _timed() -> list[tuple[dict | None, float]]:
    """Each block as (event the client would deliver or None, its time)."""
    out, last = [], 0.0
    for b in BLOCKS:
        last = event_time(b.headers) or last
        out.append((b.headers if _subscribed(b) else None, last))
    return out


EVENTS_AT = _timed()
HANGUP_AT = {b.headers.get("Unique-ID"): i for i, b in enumerate(BLOCKS) if b.name == "CHANNEL_HANGUP_COMPLETE"}
SERVER = EslReplayServer(BLOCKS)  # only for channels_at(): no socket is opened


class Fed:
    """A tracker fed event by event, with ``expire`` driven by event time every 30 s as the daemon does."""

    def __init__(self, tracker: FsTracker) -> None:
        self.tracker, self.calls, self.last_expire, self.now = tracker, [], None, 0.0

    def feed(self, event: dict, at: float) -> None:
        self.now = max(self.now, at)
        self.calls += self.tracker.feed(event, at)
        if self.last_expire is None:
            self.last_expire = at
        elif at - self.last_expire >= 30.0:
            self.last_expire = at
            self.calls += self.tracker.expire(at)

    def blocks(self, start: int, stop: int) -> None:
        for ev, at in EVENTS_AT[start:stop]:
            if ev is not None:
                self.feed(ev, at)


def crash_and_restart(crash: int, gap: int, late: int) -> tuple[list[dict], list[Call], list[Call]]:
    """(snapshot at the crash, calls reported before it, calls reported by the restarted tracker to the end)."""
    first = Fed(FsTracker(CFG))
    first.blocks(0, crash)
    saved = json.loads(json.dumps(first.tracker.snapshot()))  # through the store's JSON column
    back = min(crash + gap, len(BLOCKS))  # the events in between went to the dead process
    second = Fed(FsTracker(CFG))
    assert second.tracker.restore(saved) == len(saved)
    seen_at = min(back + late, len(BLOCKS))  # the resync answer comes `late` events after the stream resumed
    session_start = EVENTS_AT[back - 1][1] + 0.000_5
    second.blocks(back, seen_at)
    rows = SERVER.channels_at(seen_at)
    body = json.dumps({"row_count": len(rows), "rows": rows} if rows else {"row_count": 0})
    at = max(session_start, EVENTS_AT[seen_at - 1][1])
    second.feed({"Event-Name": SNAPSHOT_EVENT, "Session-Start": f"{session_start:.6f}", "_body": body}, at)
    second.blocks(seen_at, len(BLOCKS))
    end = second.now + RESYNC_GRACE + 1
    second.calls += second.tracker.expire(end)  # the daemon's housekeeping after the last event
    return saved, first.calls, second.calls + second.tracker.flush(end)


def test_snapshot_and_restore_without_a_gap_change_nothing():
    """Restoring the JSON snapshot into a new tracker at any point of the hour gives the same calls as never stopping."""
    whole = Fed(FsTracker(CFG))
    whole.blocks(0, len(BLOCKS))
    want = {c.id: c for c in whole.calls + whole.tracker.flush(whole.now)}
    assert len(want) == len(LABELS)
    for cut in range(1, len(BLOCKS), 97):
        a = Fed(FsTracker(CFG))
        a.blocks(0, cut)
        b = Fed(FsTracker(CFG))
        b.tracker.restore(json.loads(json.dumps(a.tracker.snapshot())))
        b.last_expire = a.last_expire
        b.blocks(cut, len(BLOCKS))
        got = {c.id: c for c in a.calls + b.calls + b.tracker.flush(b.now)}
        assert set(got) == set(want), cut
        for k, c in got.items():
            assert c.to_json() == want[k].to_json(), (cut, k)
            assert set(c.notes) - set(want[k].notes) <= {"restored_after_restart"}, (cut, k)


@pytest.mark.parametrize("late", [0, 4])
@pytest.mark.parametrize("gap", [3, 40, 150, 600])
@pytest.mark.parametrize("crash", range(30, len(BLOCKS) - 100, 131))
def test_calls_in_progress_survive_a_crash_through_the_snapshot(crash, gap, late):
    """A crash, a gap of lost events and a restart from the saved snapshot: no missed caller lost, no answered call texted."""
    saved, before, after = crash_and_restart(crash, gap, late)
    ids = [c.id for c in before + after]
    assert len(ids) == len(set(ids)), "a call reported twice"
    seen = {c.id: c for c in before + after}
    open_at_crash = {d["uuid"] for d in saved}
    back = crash + gap
    for uuid, lab in MISSED.items():
        if uuid in open_at_crash or HANGUP_AT.get(uuid, -1) >= back:
            c = seen.get(uuid)
            assert c is not None, f"lost {lab['caller']} ({lab['call_id']}; crash {crash}, gap {gap})"
            assert (str(c.direction), c.missed, c.caller) == ("inbound", True, lab["caller"]), (lab["call_id"], c)
    answered_before = {d["uuid"] for d in saved if d["answered_at"] is not None or d["picked_off"]} - OFFICE
    for uuid in answered_before:
        assert uuid in ANSWERED, uuid
        assert uuid in seen and not seen[uuid].missed, f"answered call {uuid} would be texted (crash {crash}, gap {gap})"
    for uuid in OFFICE & set(seen):
        assert str(seen[uuid].direction) != "inbound", seen[uuid]


def test_a_restored_call_gone_from_freeswitch_is_closed_with_its_stage():
    """A call answered before the crash and one ringing at it, both gone by the restart: answered stays answered, the other is missed."""
    crash = next(i for i in range(1, len(BLOCKS)) if _answered_and_ringing(i))
    saved, before, after = crash_and_restart(crash, 400, 0)
    got = {c.id: c for c in after}
    answered, ringing = _answered_and_ringing(crash)
    assert str(got[answered].outcome) == "answered" and "restored_after_restart" in got[answered].notes
    assert got[ringing].missed and got[ringing].caller == MISSED[ringing]["caller"]
    assert HANGUP_AT[answered] < crash + 400 and HANGUP_AT[ringing] < crash + 400  # both ended while we were down


def _answered_and_ringing(crash: int) -> tuple[str, str] | None:
    """An answered call and a missed one, both open at ``crash`` and both hung up within 400 events."""
    t = Fed(FsTracker(CFG))
    t.blocks(0, crash)
    snap = t.tracker.snapshot()
    up = [d for d in snap if d["answered_at"] is not None and HANGUP_AT.get(d["uuid"], 0) < crash + 400]
    miss = [d for d in snap if d["uuid"] in MISSED and d["hangup"] is None and HANGUP_AT.get(d["uuid"], 0) < crash + 400]
    return (up[0]["uuid"], miss[0]["uuid"]) if up and miss else None


def test_answering_makes_the_tracker_urgent_and_snapshot_clears_it():
    """A new call or a human answering sets ``urgent`` (the daemon saves at once); ``snapshot()`` clears it; other events do not."""
    t = FsTracker(CFG)
    flags = []
    for ev, at in EVENTS_AT:
        if ev is None:
            continue
        open_before = set(t._calls)
        was = {u for u, c in t._calls.items() if c.answered_at is not None or c.picked_off}
        done = t.feed(ev, at)
        now = {u for u, c in t._calls.items() if c.answered_at is not None or c.picked_off}
        now |= {c.id for c in done if c.answered_at is not None}  # answered by the event that ended it
        new_call = bool(set(t._calls) - open_before)
        flags.append((bool(now - was) or new_call, t.urgent))
        if t.urgent:
            t.snapshot()
            assert not t.urgent
    assert sum(a for a, _ in flags) >= len(ANSWERED)  # every answer (and every new call) flagged
    for answered, urgent in flags:
        assert urgent == answered


def _first_bridge(uuid: str) -> int:
    return next(i for i, b in enumerate(BLOCKS) if b.name == "CHANNEL_BRIDGE" and uuid in b.headers.values())


@pytest.mark.parametrize("uuid", sorted(ANSWERED))
def test_a_call_answered_while_the_daemon_was_down_is_not_texted(uuid):
    """A call ringing at the crash and answered during the gap is reported answered from its hangup's bridge variables."""
    bridge = _first_bridge(uuid)
    assert bridge < HANGUP_AT[uuid]
    saved, before, after = crash_and_restart(bridge, 1, 0)  # the restart comes right after the bridge
    assert uuid in {d["uuid"] for d in saved} and not any(d["answered_at"] for d in saved if d["uuid"] == uuid)
    (c,) = [c for c in after if c.id == uuid]
    assert str(c.outcome) == "answered" and not c.missed, c


def test_a_damaged_snapshot_entry_is_skipped_and_the_rest_restored():
    """Entries that are not saved calls are skipped with a warning; the good ones still come back, once."""
    t = Fed(FsTracker(CFG))
    t.blocks(0, 1500)
    saved = json.loads(json.dumps(t.tracker.snapshot()))
    assert saved
    damaged = [None, "junk", {"uuid": "x"}, {**saved[0], "legs": 5}, *saved]
    again = FsTracker(CFG)
    assert again.restore(damaged) == len(saved)
    assert again.restore(saved) == 0  # restoring twice adds nothing
    assert again.open_calls == len(saved)


def test_an_a_leg_met_only_at_its_hangup_is_reported():
    """A caller's a-leg seen only by its hangup is a missed inbound call with caller and DID; lone b-leg hangups and ones without a uuid give nothing."""
    lab = next(c for c in LABELS if c["call_id"] == "c34")  # unavailable, whole call in a few events
    hangups = {b.headers["Unique-ID"]: b.headers for b in BLOCKS if b.name == "CHANNEL_HANGUP_COMPLETE"}
    t = FsTracker(CFG)
    b_legs = [h for h in hangups.values() if h.get("Call-Direction") == "outbound"]
    assert b_legs and not any(t.feed(h, 1.0) for h in b_legs)
    assert t.feed({k: v for k, v in hangups[lab["uuid"]].items() if k != "Unique-ID"}, 2.0) == []
    (c,) = t.feed(hangups[lab["uuid"]], 3.0)
    assert (c.id, str(c.direction), c.missed, c.caller, c.did) == (lab["uuid"], "inbound", True, lab["caller"], lab["did"])
    assert str(c.outcome) == lab["reason"] and "joined_at_hangup" in c.notes
    assert t.feed(hangups[lab["uuid"]], 4.0) == []  # a repeat is not a second call
