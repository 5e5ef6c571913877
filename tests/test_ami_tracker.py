"""The Asterisk call tracker against every labelled real trace, plus resync and expiry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from textbackd import config
from textbackd.core.model import Direction, Outcome
from textbackd.pbx.asterisk.frames import AmiParser
from textbackd.pbx.asterisk.replay_source import read_events
from textbackd.pbx.asterisk.tracker import AmiTracker, wants_frame
from textbackd.replay import open_trace, replay_calls

DATA = Path(__file__).parent / "data"
TRACES = sorted((DATA / "asterisk").glob("*.ami*")) + sorted((DATA / "asterisk-freepbx").glob("*.ami*"))
CFG = config.parse({"business": {"name": "test"}})


def _labels(trace: Path) -> list[dict]:
    name = trace.name.split(".ami")[0]
    return json.loads((trace.parent / f"{name}.expected.json").read_text())["calls"]


def _check(calls: dict, labels: list[dict]) -> None:
    assert set(calls) == {lab["linkedid"] for lab in labels}
    for lab in labels:
        c = calls[lab["linkedid"]]
        assert str(c.direction) == lab["direction"], lab["call_id"]
        assert c.caller == lab["caller"], lab["call_id"]
        assert c.missed is lab["missed"], lab["call_id"]
        assert c.voicemail_left is lab["voicemail_left"], lab["call_id"]
        if lab["direction"] == "inbound":
            assert c.did == lab["did"], lab["call_id"]
            assert str(c.outcome) == lab["reason"], lab["call_id"]
        else:
            assert c.did == lab["dialed"], lab["call_id"]
        if "answered_by" in lab:
            assert c.answered_by == lab["answered_by"], lab["call_id"]
        if lab.get("voicemail_left"):
            assert c.voicemail_box == lab["voicemail_box"], lab["call_id"]


def test_all_traces_are_present():
    """Every shared Asterisk trace (15 plain + 2 FreePBX) was copied into tests/data."""
    assert len(TRACES) == 17
    assert sum(len(_labels(t)) for t in TRACES) == 62


@pytest.mark.parametrize("trace", TRACES, ids=lambda p: p.name.split(".")[0])
def test_labelled_calls_reproduce_exactly(trace: Path):
    """Every labelled call of the trace comes out with its direction, caller, DID, outcome and voicemail."""
    calls = {c.id: c for c in replay_calls(trace, CFG, "asterisk")}
    _check(calls, _labels(trace))


def test_daemon_path_with_frame_selection_gives_the_same_calls():
    """Skipping undecoded frames with wants_frame (the daemon's fast path) changes no call."""
    trace = DATA / "asterisk" / "18-busy-office-hour.ami.gz"
    data = open_trace(trace)
    parser = AmiParser(select=wants_frame)
    tracker = AmiTracker(CFG)
    calls = []
    for i in range(0, len(data), 4096):
        for ev in parser.feed(data[i : i + 4096]):
            calls += tracker.feed(ev, 1_000.0 + i / 1e4)
    calls += tracker.flush(2_000.0)
    assert parser.ignored > 1000
    _check({c.id: c for c in calls}, _labels(trace))
    assert tracker.open_calls == 0


def test_lf_only_stream_gives_the_same_calls(tmp_path):
    """The same capture with LF-only line ends gives the same calls."""
    src = DATA / "asterisk" / "07-ringgroup-answered.ami"
    lf = tmp_path / "07.ami"
    lf.write_bytes(src.read_bytes().replace(b"\r\n", b"\n"))
    calls = list(replay_calls(lf, CFG, "asterisk"))
    assert [(c.outcome, c.answered_by) for c in calls] == [(Outcome.ANSWERED, "104")]


def test_ring_and_answer_times_come_from_the_timing_sidecar():
    """Ring time of the answered call matches the 4 s the phone rang in the recording."""
    (call,) = replay_calls(DATA / "asterisk" / "01-answered.ami", CFG, "asterisk")
    assert 3.5 < call.ring_seconds < 4.5
    assert call.caller_name == "John Smith"
    assert call.answered_at is not None and call.started < call.answered_at < call.ended


def _events(trace: str) -> list[tuple[dict, float]]:
    return list(read_events(DATA / "asterisk" / trace))


def test_resync_confirms_a_call_in_progress_and_closes_one_that_ended_in_the_gap():
    """After a reconnect, CoreShowChannels keeps live calls and closes vanished ones as unknown."""
    tracker = AmiTracker(CFG)
    evs = _events("02-voicemail-left.ami")
    # feed the start of the call up to the Dial ringing, then "lose the link"
    cut = next(i for i, (e, _) in enumerate(evs) if e.get("Event") == "DialState")
    for e, at in evs[:cut]:
        assert tracker.feed(e, at) == []
    assert tracker.open_calls == 1
    at = evs[cut][1]
    # Asterisk lists nothing: the call ended while we were away
    done = tracker.feed({"Event": "CoreShowChannelsComplete", "ListItems": "0"}, at + 30)
    assert [(c.outcome, c.direction, "ended_during_gap" in c.notes) for c in done] == [
        (Outcome.UNKNOWN, Direction.INBOUND, True)
    ]
    assert tracker.open_calls == 0


def test_resync_picks_up_a_call_that_began_before_the_daemon_connected():
    """A call first seen through CoreShowChannel is tracked and classified when it ends."""
    tracker = AmiTracker(CFG)
    lid = "1795000000.1"
    base = {"Linkedid": lid, "ChannelState": "4", "ChannelStateDesc": "Ring"}
    trunk = {**base, "Event": "CoreShowChannel", "Channel": "PJSIP/carrier-00000001", "Uniqueid": lid,
             "Context": "from-pstn", "Exten": "5550100", "CallerIDNum": "2125550104",
             "CallerIDName": "Zoë Ünal", "Application": "Dial", "ApplicationData": "PJSIP/101,20", "Duration": "00:00:07"}
    phone = {**base, "Event": "CoreShowChannel", "Channel": "PJSIP/101-00000002", "Uniqueid": "1795000000.2",
             "ChannelState": "5", "Context": "from-internal", "Exten": "s", "Application": "AppDial", "Duration": "00:00:07"}
    assert tracker.feed(trunk, 100.0) == [] and tracker.feed(phone, 100.0) == []
    assert tracker.feed({"Event": "CoreShowChannelsComplete", "ListItems": "2"}, 100.0) == []
    assert tracker.open_calls == 1
    tracker.feed({**trunk, "Event": "VarSet", "Variable": "DIALSTATUS", "Value": "CANCEL"}, 105.0)
    tracker.feed({**phone, "Event": "Hangup", "Cause": "19"}, 105.0)
    (call,) = tracker.feed({**trunk, "Event": "Hangup", "Cause": "19"}, 105.1)
    assert call.outcome is Outcome.CALLER_CANCEL and call.missed
    assert call.caller == "+12125550104" and call.caller_name == "Zoë Ünal"
    assert call.started.timestamp() == pytest.approx(93.0)
    assert "resynced" in call.notes


def test_calls_without_hangup_expire_and_memory_stays_flat():
    """Calls whose hangup never comes are closed as unknown after call_expiry_seconds."""
    cfg = config.parse({"business": {"name": "t"}, "pbx": {"call_expiry_seconds": 600}})
    tracker = AmiTracker(cfg)
    out = []
    for i in range(2000):
        lid = f"1795000000.{i}"
        ev = {"Event": "Newchannel", "Channel": f"PJSIP/trunk-{i:08x}", "Uniqueid": lid, "Linkedid": lid,
              "ChannelState": "4", "Context": "from-trunk", "Exten": "5550100", "CallerIDNum": "+12125550107"}
        out += tracker.feed(ev, 1000.0 + i * 5)
    assert tracker.open_calls <= 600 / 5 + 60 / 5 + 1
    assert len(out) + tracker.open_calls == 2000
    assert all(c.outcome is Outcome.UNKNOWN and "expired" in c.notes for c in out)
    out = tracker.expire(1000.0 + 2000 * 5 + 601)
    assert tracker.open_calls == 0 and len(out) > 0


def test_pbx_answer_for_a_menu_is_not_a_human():
    """The trunk channel going Up for the IVR leaves an abandoned menu call missed."""
    (call,) = replay_calls(DATA / "asterisk" / "11-ivr-abandon.ami", CFG, "asterisk")
    assert call.outcome is Outcome.IVR_ABANDON and call.missed and call.answered_at is None


def test_inbound_detection_follows_configured_contexts_and_trunk_patterns():
    """With the trunk context unlisted, a trunk channel pattern still makes the call inbound."""
    trace = DATA / "asterisk" / "03-caller-cancel.ami"
    cfg = config.parse({"business": {"name": "t"}, "pbx": {"inbound_contexts": ["ext-*"]}})
    (call,) = replay_calls(trace, cfg, "asterisk")
    assert call.direction is Direction.OUTBOUND
    cfg = config.parse(
        {"business": {"name": "t"}, "pbx": {"inbound_contexts": [], "trunk_channel_patterns": [r"^IAX2/carrier-"]}}
    )
    (call,) = replay_calls(trace, cfg, "asterisk")
    assert call.direction is Direction.INBOUND and call.outcome is Outcome.CALLER_CANCEL


def test_leg_answered_but_never_bridged_is_not_a_human():
    """A ring-group leg that goes Up without ever being bridged (a refused 'confirm calls' voicemail) is no answer."""
    events = _events("08-ringgroup-noanswer.ami")
    leg = next(e for e, _ in events if e.get("Event") == "Newchannel" and e["Uniqueid"] != e["Linkedid"])
    i = next(i for i, (e, _) in enumerate(events) if e.get("Event") == "DialState")
    up = {**leg, "Event": "Newstate", "ChannelState": "6", "ChannelStateDesc": "Up"}
    events.insert(i + 1, (up, events[i][1]))
    tracker = AmiTracker(CFG)
    calls = [c for e, at in events for c in tracker.feed(e, at)]
    assert [(c.outcome, c.missed, c.answered_by) for c in calls] == [(Outcome.NO_ANSWER, True, None)]


def test_resync_call_in_an_ivr_is_inbound_when_its_trunk_is_known():
    """A call first seen by CoreShowChannel in an IVR context is inbound because its trunk brought calls before."""
    tracker = AmiTracker(CFG)
    for e, at in _events("01-answered.ami"):  # teaches the tracker that IAX2/carrier brings calls in
        tracker.feed(e, at)
    lid = "1795000100.1"
    chan = {"Event": "CoreShowChannel", "Channel": "IAX2/carrier-999", "Uniqueid": lid, "Linkedid": lid,
            "ChannelState": "6", "ChannelStateDesc": "Up", "Context": "ivr-main", "Exten": "s",
            "CallerIDNum": "+12125550108", "Application": "WaitExten", "ApplicationData": "6", "Duration": "00:00:03"}
    tracker.feed(chan, 2_000_000_000.0)
    tracker.feed({"Event": "CoreShowChannelsComplete", "ListItems": "1"}, 2_000_000_000.0)
    (call,) = tracker.feed({**chan, "Event": "Hangup", "Cause": "16"}, 2_000_000_004.0)
    assert (call.direction, call.outcome, call.missed) == (Direction.INBOUND, Outcome.IVR_ABANDON, True)
    assert "inbound_by_trunk" in call.notes


def test_late_event_of_a_hung_up_leg_does_not_keep_the_call_open():
    """An event that arrives after a leg's Hangup does not resurrect the leg, so the call still ends on time."""
    events = _events("05-busy.ami")
    leg_hangup = next(i for i, (e, _) in enumerate(events) if e.get("Event") == "Hangup" and e["Uniqueid"] != e["Linkedid"])
    late = {**events[leg_hangup][0], "Event": "VarSet", "Variable": "DIALSTATUS", "Value": "BUSY"}
    events.insert(leg_hangup + 1, (late, events[leg_hangup][1]))
    tracker = AmiTracker(CFG)
    calls = [c for e, at in events for c in tracker.feed(e, at)]
    assert [(c.outcome, c.notes) for c in calls] == [(Outcome.BUSY, ())]
    assert tracker.open_calls == 0


def test_freepbx_cid_prefix_does_not_replace_the_callers_name():
    """The caller name stays what the carrier sent, not FreePBX's prefixed rewrite ('Appts' + name)."""
    (call,) = replay_calls(DATA / "asterisk-freepbx" / "23-fpbx-queue-local-abandon.ami.gz", CFG, "asterisk")
    assert call.caller_name == "Lucas Gray"
