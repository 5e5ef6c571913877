"""A restarted daemon joins the AMI stream mid-call: no missed caller may be lost.

After a restart the events flow right after login, before the answer to
CoreShowChannels, so the tracker meets calls by their middle or only by their
final Hangup. Swept over cut points of the recorded busy hour, with the resync
list arriving 0, 3 or 10 events late, every missed inbound call whose caller
channel hangs up after the cut must still come out as a missed inbound call
from the right number.
"""

import json
import re

import pytest
from e2e import ASTERISK

from textbackd import config
from textbackd.pbx.asterisk.frames import AmiParser
from textbackd.pbx.asterisk.replay_server import AmiReplayServer, _frame, builtin_busy_hour
from textbackd.pbx.asterisk.tracker import AmiTracker

CFG = config.parse({"business": {"name": "x"}}, env={})
BLOCKS = builtin_busy_hour()
LABELS = json.loads((ASTERISK / "18-busy-office-hour.expected.json").read_text())["calls"]
MISSED = {c["linkedid"]: c for c in LABELS if c["missed"]}


def _origin_hangup_index() -> dict[str, int]:
    out = {}
    for i, b in enumerate(BLOCKS):
        if b.data.startswith(b"Event: Hangup"):
            uid = re.search(rb"Uniqueid: (\S+)", b.data).group(1).decode()
            lid = re.search(rb"Linkedid: (\S+)", b.data).group(1).decode()
            if uid == lid:
                out[lid] = i
    return out


HANGUP_AT = _origin_hangup_index()


def restarted_stream(cut: int, late: int) -> bytes:
    srv = AmiReplayServer(BLOCKS)
    srv.position = min(cut + late, len(BLOCKS))
    resync = b"".join(_frame("CoreShowChannel", "", ch) for ch in srv.channels_up())
    resync += b"Event: CoreShowChannelsComplete\r\nEventList: Complete\r\n\r\n"
    before = b"".join(b.data for b in BLOCKS[cut : cut + late])
    after = b"".join(b.data for b in BLOCKS[cut + late :])
    return b"Event: FullyBooted\r\n\r\n" + before + resync + after


def track(cut: int, late: int) -> list:
    """The calls a fresh tracker reports from the restarted stream, to the end."""
    tracker, parser = AmiTracker(CFG), AmiParser(select=AmiTracker.wants_frame)
    calls = []
    for ev in parser.feed(restarted_stream(cut, late)):
        calls += tracker.feed(ev, 1000.0)
    return calls + tracker.flush(2000.0)


@pytest.mark.parametrize("late", [0, 3, 10])
@pytest.mark.parametrize("cut", range(40, len(BLOCKS), 97))
def test_no_missed_caller_lost_when_joining_mid_stream(cut, late):
    """Every missed call still running at the cut is reported as a missed inbound call from its caller."""
    got = {c.id: c for c in track(cut, late)}
    due = [lid for lid in MISSED if HANGUP_AT.get(lid, -1) >= cut]
    for lid in due:
        assert lid in got, f"lost {MISSED[lid]['caller']} (cut {cut}, resync {late} late)"
        c = got[lid]
        assert (str(c.direction), c.missed, c.caller) == ("inbound", True, MISSED[lid]["caller"])


OFFICE = {c["linkedid"] for c in LABELS if c["direction"] != "inbound"}


@pytest.mark.parametrize("late", [0, 10])
@pytest.mark.parametrize("cut", range(40, len(BLOCKS), 61))
def test_office_calls_joined_mid_stream_are_never_taken_for_customers(cut, late):
    """Internal and outbound calls met mid-stream after a restart are never reported as inbound (never texted)."""
    for c in track(cut, late):
        if c.id in OFFICE:
            assert str(c.direction) != "inbound", c


ANSWERED = {c["linkedid"] for c in LABELS if c["reason"] == "answered"}


def _stream(blocks) -> bytes:
    return b"".join(b.data for b in blocks)


@pytest.mark.parametrize("gap", [5, 40, 150])
@pytest.mark.parametrize("crash", range(60, len(BLOCKS) - 200, 113))
def test_calls_in_progress_survive_a_crash_through_the_snapshot(crash, gap):
    """A crash, a gap of lost events and a restart from the saved snapshot: no missed call lost, no answered call texted."""
    import json as _json

    first, parser = AmiTracker(CFG), AmiParser(select=AmiTracker.wants_frame)
    before = []
    for ev in parser.feed(_stream(BLOCKS[:crash])):
        before += first.feed(ev, 1000.0)
    saved = _json.loads(_json.dumps(first.snapshot()))  # through the store's JSON column
    back = crash + gap  # events in between went to the dead process and are gone
    second = AmiTracker(CFG)
    second.restore(saved)
    after = []
    for ev in AmiParser(select=AmiTracker.wants_frame).feed(restarted_stream(back, 0)):
        after += second.feed(ev, 1000.0)
    after += second.flush(2000.0)
    seen = {c.id: c for c in before + after}
    open_at_crash = {d["id"] for d in saved}
    for lid in MISSED:
        if lid in open_at_crash or HANGUP_AT.get(lid, -1) >= back:
            assert lid in seen and seen[lid].missed, f"lost {MISSED[lid]['caller']} (crash {crash}, gap {gap})"
    for lid in ANSWERED & open_at_crash:
        c = seen.get(lid)
        answered_before = any(d["id"] == lid and d["answered_at"] for d in saved)
        if answered_before:
            assert c is not None and not c.missed, f"answered call {lid} would be texted"


def test_a_new_call_makes_the_tracker_urgent():
    """A call appearing sets ``urgent`` so the daemon checkpoints it at once; ``snapshot()`` clears it."""
    t, parser = AmiTracker(CFG), AmiParser(select=AmiTracker.wants_frame)
    created = 0
    for ev in parser.feed(b"".join(b.data for b in BLOCKS[:400])):
        before = t.open_calls
        t.feed(ev, 1000.0)
        if t.open_calls > before:
            created += 1
            assert t.urgent
        if t.urgent:
            t.snapshot()
            assert not t.urgent
    assert created >= 3
