"""The FreeSWITCH call tracker on the real labelled captures and on small hand-made event sequences."""

from __future__ import annotations

import json
import pathlib
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from textbackd.config import Config, parse
from textbackd.core.model import Call, Direction, Outcome
from textbackd.pbx.freeswitch.replay_source import read_events
from textbackd.pbx.freeswitch.tracker import FsTracker
from textbackd.pbx.registry import make_tracker
from textbackd.replay import replay_calls

TRACES = pathlib.Path(__file__).parent / "data" / "freeswitch" / "traces"
CAPTURES = sorted(p.name.removesuffix(".expected.json") for p in TRACES.glob("*.expected.json"))


def fs_config(**pbx: Any) -> Config:
    return parse({"pbx": {"kind": "freeswitch", "password": "ClueCon", **pbx}, "business": {"name": "Acme Dental"}}, env={})


@pytest.fixture(scope="module")
def config() -> Config:
    return fs_config()


@pytest.mark.parametrize("capture", CAPTURES)
def test_every_labelled_call_is_reproduced(capture: str, config: Config) -> None:
    """Each labelled call of a real capture comes out with its direction, caller, DID, missed flag, outcome and voicemail."""
    labels = json.loads((TRACES / f"{capture}.expected.json").read_text())["calls"]
    calls = {c.id: c for c in replay_calls(TRACES / f"{capture}.esl.gz", config, "freeswitch")}
    assert set(calls) == {lab["uuid"] for lab in labels}
    for lab in labels:
        c = calls[lab["uuid"]]
        assert c.pbx == "freeswitch"
        assert str(c.direction) == lab["direction"], lab["call_id"]
        assert c.caller == lab["caller"], lab["call_id"]
        assert c.did == lab["did"], lab["call_id"]
        assert c.missed == lab["missed"], lab["call_id"]
        assert c.voicemail_left == lab["voicemail_left"], lab["call_id"]
        if lab["direction"] == "inbound":
            assert str(c.outcome) == lab["reason"], lab["call_id"]
            if lab.get("answered_by"):
                assert c.answered_by == lab["answered_by"], lab["call_id"]
        else:
            assert lab["reason"] == str(c.direction)
        assert ("after_hours" in c.notes) == lab["after_hours"], lab["call_id"]
        if "queue" in lab.get("kind", "") or lab["reason"] == "queue_abandon" or capture.startswith(("09", "10")):
            assert c.queue == "support@default", lab["call_id"]
        if lab["reason"] == "voicemail":
            assert c.voicemail_box is not None, lab["call_id"]
        assert c.started <= c.ended


def test_plain_and_json_captures_of_the_busy_hour_agree(config: Config) -> None:
    """The same busy hour seen through ``event plain`` and ``event json`` gives identical calls."""
    plain = [c.to_json() for c in replay_calls(TRACES / "18-busy-hour.esl.gz", config, "freeswitch")]
    js = [c.to_json() for c in replay_calls(TRACES / "18-busy-hour.json.esl.gz", config, "freeswitch")]
    assert len(plain) == 46
    assert sorted(plain, key=lambda c: c["id"]) == sorted(js, key=lambda c: c["id"])
    assert sum(c["missed"] for c in plain) == 27


def test_replay_source_times_come_from_the_events(config: Config) -> None:
    """Replayed event times are the events' own Event-Date-Timestamp, in order for one capture."""
    times = [t for _, t in read_events(TRACES / "01-answered.esl.gz")]
    assert times[0] == pytest.approx(1795395601.348915)
    assert times == sorted(times)
    (call,) = replay_calls(TRACES / "01-answered.esl.gz", config, "freeswitch")
    assert call.answered_at is not None and 4.0 < call.ring_seconds < 7.0  # 1001 rang 5 s


def test_make_tracker_builds_the_freeswitch_tracker(config: Config) -> None:
    """``pbx.make_tracker`` gives an FsTracker for kind = "freeswitch"."""
    assert isinstance(make_tracker(config), FsTracker)


# ---------------------------------------------------------------------------- hand-made sequences

A = "aaaaaaaa-0000-0000-0000-000000000001"


def ev(name: str, uuid: str, **h: str) -> dict[str, str]:
    return {"Event-Name": name, "Unique-ID": uuid, **{k.replace("__", "-"): v for k, v in h.items()}}


def trunk_create(uuid: str = A, caller: str = "+12125550123", dest: str = "5550100") -> dict[str, str]:
    return ev(
        "CHANNEL_CREATE",
        uuid,
        Channel__Name=f"sofia/external/{caller}@198.51.100.7",
        Call__Direction="inbound",
        Caller__Context="public",
        variable_sofia_profile_name="external",
        Caller__Caller__ID__Number=caller,
        Caller__Caller__ID__Name="Pat",
        Caller__Destination__Number=dest,
        Channel__Call__UUID=uuid,
    )


def bleg(uuid: str, user: str, parent: str = A, channel: str | None = None) -> dict[str, str]:
    return ev(
        "CHANNEL_CREATE",
        uuid,
        Channel__Name=channel or f"sofia/internal/{user}@192.0.2.10",
        Call__Direction="outbound",
        variable_originator=parent,
        Other__Leg__Unique__ID=parent,
        Channel__Call__UUID=parent,
        variable_dialed_user=user,
    )


def hangup(uuid: str, cause: str = "NORMAL_CLEARING", **h: str) -> dict[str, str]:
    return ev("CHANNEL_HANGUP_COMPLETE", uuid, Hangup__Cause=cause, **h)


def run(tracker: FsTracker, events: list[dict[str, str]], t0: float = 1_800_000_000.0) -> list[Call]:
    out: list[Call] = []
    for i, e in enumerate(events):
        out += tracker.feed(e, t0 + i)
    return out


def test_ring_group_loser_lose_race_does_not_make_the_call_missed(config: Config) -> None:
    """A ring group where one leg wins and the other ends LOSE_RACE is answered, by the winner."""
    calls = run(
        FsTracker(config),
        [
            trunk_create(),
            bleg("b1", "1002"),
            bleg("b2", "1005"),
            ev("CHANNEL_BRIDGE", A, Bridge__A__Unique__ID=A, Bridge__B__Unique__ID="b2"),
            hangup("b1", "LOSE_RACE"),
            hangup("b2"),
            hangup(A, variable_originate_disposition="SUCCESS"),
        ],
    )
    (c,) = calls
    assert c.outcome is Outcome.ANSWERED and c.answered_by == "1005" and not c.missed
    assert c.caller == "+12125550123" and c.direction is Direction.INBOUND


def test_picked_off_leg_counts_as_answered(config: Config) -> None:
    """A b-leg ended PICKED_OFF (call pickup) means someone took the call even if the bridge was not seen."""
    (c,) = run(
        FsTracker(config),
        [trunk_create(), bleg("b1", "1002"), hangup("b1", "PICKED_OFF"), hangup(A, variable_originate_disposition="SUCCESS")],
    )
    assert c.outcome is Outcome.ANSWERED and not c.missed


def test_bridge_to_a_loopback_voicemail_leg_is_not_an_answer(config: Config) -> None:
    """Voicemail through a loopback pair is voicemail; the message seen on the -b leg belongs to the caller."""
    lb_b = ev(
        "CHANNEL_CREATE",
        "lbb",
        Channel__Name="loopback/voicemail-b",
        Call__Direction="inbound",
        Caller__Context="default",
        variable_other_loopback_leg_uuid="lba",
    )
    calls = run(
        FsTracker(config),
        [
            trunk_create(dest="5550106"),
            bleg("b1", "1009"),
            hangup("b1", "NO_ANSWER"),
            lb_b,  # the -b twin arrives first: it waits for its -a leg
            bleg("lba", "", channel="loopback/voicemail-a"),
            ev("CHANNEL_BRIDGE", A, Bridge__A__Unique__ID=A, Bridge__B__Unique__ID="lba"),
            ev("CHANNEL_EXECUTE", "lbb", Application="voicemail", Application__Data="default example.com 1009"),
            hangup(A, variable_originate_disposition="SUCCESS"),
            ev("CUSTOM", "lbb", Event__Subclass="vm::maintenance", VM__Action="leave-message", VM__User="1009", VM__UUID="lbb"),
            hangup("lba"),
            hangup("lbb"),
        ],
    )
    (c,) = calls
    assert c.outcome is Outcome.VOICEMAIL and c.voicemail_left and c.voicemail_box == "1009" and c.missed


def test_hung_up_call_waiting_for_a_silent_loopback_leg_is_reported_by_expire(config: Config) -> None:
    """When a loopback leg never reports its hangup, the call still comes out two minutes after the caller left."""
    tracker = FsTracker(config)
    events = [trunk_create(), bleg("lba", "", channel="loopback/voicemail-a"), hangup(A, variable_originate_disposition="SUCCESS")]
    assert run(tracker, events, t0=1000.0) == []
    assert tracker.expire(1060.0) == []
    (c,) = tracker.expire(1200.0)
    assert c.outcome is Outcome.VOICEMAIL and "loopback_leg_lingered" in c.notes


def test_fifo_abort_is_a_queue_abandon(config: Config) -> None:
    """A caller who leaves a mod_fifo queue (``fifo::info`` abort) is a queue abandon."""
    (c,) = run(
        FsTracker(config),
        [
            trunk_create(),
            ev("CHANNEL_ANSWER", A),
            ev("CUSTOM", A, Event__Subclass="fifo::info", FIFO__Action="push", FIFO__Name="sales"),
            ev("CUSTOM", A, Event__Subclass="fifo::info", FIFO__Action="abort", FIFO__Name="sales"),
            hangup(A),
        ],
    )
    assert c.outcome is Outcome.QUEUE_ABANDON and c.queue == "sales" and c.missed


@pytest.mark.parametrize(
    ("cause", "disposition", "outcome"),
    [
        ("USER_BUSY", "USER_BUSY", Outcome.BUSY),
        ("NORMAL_CLEARING", "NO_ANSWER", Outcome.NO_ANSWER),
        ("ORIGINATOR_CANCEL", "ORIGINATOR_CANCEL", Outcome.CALLER_CANCEL),
        ("USER_NOT_REGISTERED", "USER_NOT_REGISTERED", Outcome.UNAVAILABLE),
        ("CALL_REJECTED", "CALL_REJECTED", Outcome.BUSY),
    ],
)
def test_failed_ringing_outcomes(config: Config, cause: str, disposition: str, outcome: Outcome) -> None:
    """An unanswered a-leg's hangup cause and originate_disposition give the ringing outcome."""
    (c,) = run(
        FsTracker(config),
        [trunk_create(), ev("CHANNEL_EXECUTE", A, Application="bridge", Application__Data="user/1001"), hangup(A, cause, variable_originate_disposition=disposition)],
    )
    assert c.outcome is outcome and c.missed


def test_withheld_number_request_is_noted(config: Config) -> None:
    """A caller whose number FreeSWITCH was asked to hide keeps the number but carries a privacy note."""
    create = trunk_create()
    create["Caller-Privacy-Hide-Number"] = "true"
    (c,) = run(FsTracker(config), [create, hangup(A, "ORIGINATOR_CANCEL")])
    assert c.caller == "+12125550123" and "privacy_hide_number" in c.notes


def test_direction_from_configured_trunk_pattern_and_contexts() -> None:
    """A trunk recognised by ``trunk_channel_patterns`` is inbound even in a non-public context; phones dialling out are outbound."""
    tracker = FsTracker(fs_config(trunk_channel_patterns=["^sofia/carrier/"], inbound_contexts=["from-carrier"]))
    create = trunk_create()
    create.update({"Channel-Name": "sofia/carrier/+12125550123@x", "Caller-Context": "acme.example.com", "variable_sofia_profile_name": "carrier"})
    (c,) = run(tracker, [create, hangup(A, "ORIGINATOR_CANCEL")])
    assert c.direction is Direction.INBOUND and c.outcome is Outcome.CALLER_CANCEL
    phone = ev(
        "CHANNEL_CREATE",
        "p1",
        Channel__Name="sofia/internal/1001@acme.example.com",
        Call__Direction="inbound",
        Caller__Context="acme.example.com",
        variable_sofia_profile_name="internal",
        Caller__Caller__ID__Number="1001",
        Caller__Destination__Number="12125550188",
    )
    (o,) = run(tracker, [phone, hangup("p1", "ORIGINATOR_CANCEL")])
    assert o.direction is Direction.OUTBOUND and not o.missed and o.caller == "1001"


def test_expire_flush_and_destroy_close_calls(config: Config) -> None:
    """Calls with no hangup expire as unknown; flush closes the rest; a DESTROY without HANGUP_COMPLETE closes one."""
    tracker = FsTracker(replace(config, pbx=replace(config.pbx, call_expiry_seconds=100)))
    run(tracker, [trunk_create("x1"), trunk_create("x2", caller="+12125550124")], t0=1000.0)
    assert tracker.open_calls == 2
    (gone,) = tracker.feed(ev("CHANNEL_DESTROY", "x2"), 1050.0)
    assert gone.id == "x2"
    assert tracker.expire(1050.0) == []
    (old,) = tracker.expire(1200.0)
    assert old.id == "x1" and old.outcome is Outcome.UNKNOWN and "expired" in old.notes
    run(tracker, [trunk_create("x3")], t0=2000.0)
    (last,) = tracker.flush(2100.0)
    assert last.outcome is Outcome.UNKNOWN and tracker.open_calls == 0


def test_resync_closes_vanished_calls_and_adopts_unknown_ones(config: Config) -> None:
    """After a reconnect, ``show channels`` rows close calls that ended unseen (after a grace) and adopt calls that began unseen."""
    tracker = FsTracker(config)
    run(tracker, [trunk_create("gone"), trunk_create("stays", caller="+12125550125")], t0=1000.0)
    rows = [
        {"uuid": "stays", "call_uuid": "stays", "direction": "inbound", "name": "sofia/external/+12125550125@x"},
        {
            "uuid": "new1",
            "call_uuid": "new1",
            "direction": "inbound",
            "name": "sofia/external/+12125550126@x",
            "created_epoch": "1100",
            "initial_context": "public",
            "initial_cid_num": "+12125550126",
            "initial_dest": "5550101",
        },
        {"uuid": "newb", "call_uuid": "new1", "direction": "outbound", "name": "sofia/internal/1002@x"},
    ]
    assert tracker.resync(rows, 1200.0) == []  # its hangup may still be on the way
    assert tracker.expire(1210.0) == []
    (closed,) = tracker.expire(1231.0)
    assert closed.id == "gone" and closed.outcome is Outcome.UNKNOWN
    assert "ended_while_disconnected" in closed.notes
    assert tracker.open_calls == 2
    run(tracker, [ev("CHANNEL_BRIDGE", "new1", Bridge__A__Unique__ID="new1", Bridge__B__Unique__ID="newb")], t0=1210.0)
    (adopted,) = tracker.feed(hangup("new1"), 1300.0)
    assert adopted.outcome is Outcome.ANSWERED and adopted.caller == "+12125550126" and adopted.did == "5550101"
    assert adopted.direction is Direction.INBOUND


def test_call_missing_from_resync_whose_hangup_arrives_late_keeps_its_outcome(config: Config) -> None:
    """A call absent from the snapshot whose hangup then arrives is finished normally, not as unknown."""
    tracker = FsTracker(config)
    run(tracker, [trunk_create(), ev("CHANNEL_EXECUTE", A, Application="bridge", Application__Data="user/1001")], t0=1000.0)
    assert tracker.resync([], 1100.0, since=1090.0) == []
    (c,) = tracker.feed(hangup(A, "ORIGINATOR_CANCEL"), 1101.0)
    assert c.outcome is Outcome.CALLER_CANCEL
    assert tracker.expire(1200.0) == []


def test_events_of_unknown_legs_and_late_events_are_ignored(config: Config) -> None:
    """Events for channels never created, and a second hangup of a finished call, produce nothing."""
    tracker = FsTracker(config)
    assert tracker.feed(hangup("nobody"), 1.0) == []
    assert tracker.feed(ev("CUSTOM", "", Event__Subclass="callcenter::info", CC__Action="member-queue-end"), 1.0) == []
    (c,) = run(tracker, [trunk_create(), hangup(A, "ORIGINATOR_CANCEL")])
    assert tracker.feed(hangup(A), 5.0) == [] and tracker.feed(trunk_create(), 6.0) == []
    assert c.outcome is Outcome.CALLER_CANCEL


# ---------------------------------------------------------------------------- robustness


@pytest.fixture(scope="module")
def loopback_call_events() -> list[tuple[dict[str, str], float]]:
    wanted = {"CHANNEL_CREATE", "CHANNEL_ANSWER", "CHANNEL_BRIDGE", "CHANNEL_EXECUTE", "CHANNEL_HANGUP_COMPLETE", "CHANNEL_DESTROY", "CUSTOM"}
    return [(dict(e.items()), t) for e, t in read_events(TRACES / "13-internal-no-answer.esl.gz") if e["Event-Name"] in wanted]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_shuffled_or_missing_events_never_crash_and_report_each_call_once(
    config: Config, loopback_call_events: list[tuple[dict[str, str], float]], data: st.DataObject
) -> None:
    """Real events dropped or reordered at random never raise, and each a-leg is reported at most once."""
    order = data.draw(st.permutations(range(len(loopback_call_events))))
    keep = data.draw(st.lists(st.booleans(), min_size=len(order), max_size=len(order)))
    tracker = FsTracker(config)
    calls: list[Call] = []
    for i, k in zip(order, keep):
        if k:
            calls += tracker.feed(*loopback_call_events[i])
    later = max(t for _, t in loopback_call_events) + 10 * 86400
    calls += tracker.expire(later) + tracker.flush(later)
    ids = [c.id for c in calls]
    assert len(ids) == len(set(ids)) and tracker.open_calls == 0
    assert all(c.started <= c.ended for c in calls)
