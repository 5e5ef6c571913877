"""The replay's event filter drops only events the FreeSWITCH tracker ignores, and the capture is streamed."""

from __future__ import annotations

import gzip
import json
import pathlib
import subprocess
import sys
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from textbackd.config import Config, parse
from textbackd.core.errors import TextbackError
from textbackd.pbx.base import open_trace, stream_trace
from textbackd.pbx.freeswitch.frames import EVENT_JSON, EVENT_PLAIN, EslParser, EventFilter, event_of
from textbackd.pbx.freeswitch.replay_source import TRACKER_EVENTS, iter_events, read_events
from textbackd.pbx.freeswitch.tracker import CUSTOM_SUBCLASSES, EVENTS, FsTracker

DATA = pathlib.Path(__file__).parent / "data" / "freeswitch"
CAPTURES = sorted(p.name for p in (DATA / "traces").glob("*.esl.gz")) + sorted(
    p.name for p in (DATA / "samples").glob("*.txt")
)


def capture_path(name: str) -> pathlib.Path:
    return DATA / ("traces" if name.endswith(".gz") else "samples") / name


@pytest.fixture(scope="module")
def config() -> Config:
    return parse({"pbx": {"kind": "freeswitch", "password": "x"}, "business": {"name": "Acme Dental"}}, env={})


def replayed(config: Config, path: pathlib.Path, *, filtered: bool) -> str:
    """The calls of a replay as the JSON lines ``textbackd replay --calls-only`` prints."""
    tracker = FsTracker(config)
    calls = []
    last = 0.0
    try:
        for event, at in read_events(path, filtered=filtered):
            last = max(last, at)
            calls += tracker.feed(event, at)
    except TextbackError:
        pass  # a sample with no event frame at all: the same error either way
    calls += tracker.flush(last)
    return "".join(json.dumps(c.to_json(), ensure_ascii=False) + "\n" for c in calls)


def tracked(event) -> bool:  # type: ignore[no-untyped-def]
    """What ``FsTracker.feed`` dispatches on, read from the parsed event."""
    name = event.get("Event-Name")
    return name in EVENTS or (name == "CUSTOM" and event.get("Event-Subclass") in CUSTOM_SUBCLASSES)


@pytest.mark.parametrize("capture", CAPTURES)
def test_every_capture_gives_byte_identical_calls_with_the_filter_on_and_off(config: Config, capture: str) -> None:
    """Every FreeSWITCH capture and sample in tests/data replays to the very same JSON lines filtered or not."""
    path = capture_path(capture)
    on, off = replayed(config, path, filtered=True), replayed(config, path, filtered=False)
    assert on == off
    if capture.endswith(".esl.gz"):
        assert on.count("\n") >= 1


@pytest.mark.parametrize("capture", CAPTURES)
def test_the_filter_keeps_exactly_the_events_the_tracker_reads(capture: str) -> None:
    """Read on the raw bytes, the filter keeps every event the tracker dispatches on, with the same headers,
    and drops only events whose parsed name and subclass the tracker ignores (an `event plain ALL` hour: most)."""
    data = capture_path(capture).read_bytes()
    data = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
    every = [event_of(f) for f in EslParser().feed(data)]
    every = [e for e in every if e is not None]
    parser = EslParser(wanted=TRACKER_EVENTS)
    kept = [event_of(f) for f in parser.feed(data)]
    kept = [e for e in kept if e is not None]
    assert [dict(e) for e in kept] == [dict(e) for e in every if tracked(e)]
    assert parser.stats.filtered == len(every) - len(kept)
    if capture.startswith("18-busy-hour"):
        assert parser.stats.filtered > 2 * len(kept)


def test_a_dropped_event_would_not_have_changed_the_tracker(config: Config) -> None:
    """Fed the unfiltered busy hour, the tracker's saved state and its answer are unchanged by every event the
    filter drops: skipping them cannot change a call. (Time still passes: a call whose voicemail linger is over
    is reported by ``expire``, which the daemon's linger loop calls, before the dropped event is fed.)"""
    data = gzip.decompress((DATA / "traces" / "18-busy-hour.esl.gz").read_bytes())
    tracker = FsTracker(config)
    checked = 0
    for frame in EslParser().feed(data):
        event = event_of(frame)
        if event is None:
            continue
        raw = frame.body
        dropped = not TRACKER_EVENTS.keeps(frame.content_type, raw, 0, len(raw))
        at = 1.0e9 + checked
        if dropped:  # what the passage of time alone does (a voicemail linger ending) is not the event's doing
            tracker.expire(at)
        before = json.dumps(tracker.snapshot(), sort_keys=True) if dropped else None
        out = tracker.feed(event, at)
        if dropped:
            checked += 1
            assert out == [] and json.dumps(tracker.snapshot(), sort_keys=True) == before
    assert checked > 2000


# ---------------------------------------------------------------------------- raw-byte reading, adversarial


def plain_body(lines: list[str]) -> bytes:
    return ("".join(line + "\n" for line in lines) + "\n").encode()


_NAMES = ["CHANNEL_CREATE", "CHANNEL_STATE", "CUSTOM", "HEARTBEAT", "CODEC", "CHANNEL_HANGUP_COMPLETE"]
_SUBS = ["vm::maintenance", "menu::exit", "menu::enter", "sofia::register", "callcenter::info"]
_line = st.one_of(
    st.sampled_from(_NAMES).map(lambda n: f"Event-Name: {n}"),
    st.sampled_from(_NAMES).map(lambda n: f"Event-Name: {quote(n, safe='')}{'%5F' if n == 'CODEC' else ''}"),
    st.sampled_from(_SUBS).map(lambda s: f"Event-Subclass: {quote(s, safe='')}"),
    st.sampled_from(_SUBS).map(lambda s: f"Event-Subclass: {s}"),
    st.sampled_from(["Unique-ID: a1", "Core-UUID: b2", "X: a: b", "Event-Name:", "Empty: "]),
    st.sampled_from(["raw continuation", "o=- 1 2 IN IP4 192.0.2.1", "a=sendrecv", "name with space: v"]),
    st.sampled_from(["Event-Name: CHANNEL_STATE\r", "Event-Name: CHANNEL_CREATE\r", "Event-Name: CHANNEL_CREATE "]),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_line, max_size=8), st.booleans(), st.binary(max_size=20))
@example(["Event-Name: CHANNEL_STATE", "Unique-ID: a1", "Event-Name: CHANNEL_CREATE", "X: a", "o=raw"], False, b"")
@example(["Event-Name: CHANNEL_STATE", "o=- 1 2 IN IP4 192.0.2.1", "Event-Name: CHANNEL_CREATE"], False, b"")
def test_a_plain_event_is_dropped_only_when_its_parsed_name_is_ignored(lines: list[str], inner: bool, junk: bytes) -> None:
    """Whatever the header block (repeated names, URL-encoding, CR, raw multi-line values, no name, an inner
    body that names another event), a dropped plain event is one whose mapping the tracker ignores."""
    body = plain_body(lines)
    if inner:
        body = body[:-1] + b"Content-Length: %d\n\nEvent-Name: CHANNEL_CREATE\n" % (len(junk) + 27) + junk
    for buf in (body, bytearray(b"xx" + body + b"yy")):
        start = 2 if isinstance(buf, bytearray) else 0
        if not TRACKER_EVENTS.keeps(EVENT_PLAIN, buf, start, start + len(body)):
            frame = b"Content-Length: %d\nContent-Type: text/event-plain\n\n" % len(body) + body
            (f,) = EslParser().feed(frame)
            event = event_of(f)
            if event is not None:  # read lazily (the tracker's first look) and whole (after a multi-line value)
                assert not tracked(event) and not tracked(event_of(f).to_dict()), (lines, dict(event))


_jkey = st.sampled_from(['"Event-Name"', '"Event-Subclass"', '"\\u0045vent-Name"', '"X"', '"\\"Event-Name"'])
_jval = st.sampled_from([*map(json.dumps, _NAMES + _SUBS), '"CHANNEL_\\u0043REATE"', "null", "1", '["CUSTOM"]'])


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(_jkey, _jval), max_size=6), st.sampled_from(["", " ", "\n"]))
@example([('"Event-Name"', '"CHANNEL_STATE"'), ('"\\u0045vent-Name"', '"CHANNEL_CREATE"')], "")
def test_a_json_event_is_dropped_only_when_its_parsed_name_is_ignored(pairs: list[tuple[str, str]], ws: str) -> None:
    """Repeated keys, escapes, non-string values and spacing: a dropped JSON event is one the tracker ignores."""
    body = ("{" + ",".join(f"{k}:{ws}{v}" for k, v in pairs) + "}").encode()
    if not TRACKER_EVENTS.keeps(EVENT_JSON, body, 0, len(body)):
        (f,) = EslParser().feed(b"Content-Length: %d\nContent-Type: text/event-json\n\n" % len(body) + body)
        event = event_of(f)
        assert event is None or not tracked(event), (body, event)


def test_malformed_frames_among_dropped_ones_are_still_reported() -> None:
    """A bad Content-Length and an event without a name between dropped events are reported, the stream goes on."""
    drop = b"Event-Name: CHANNEL_STATE\nUnique-ID: u\n\n"
    keep = b"Event-Name: CHANNEL_CREATE\nUnique-ID: u\n\n"
    nameless = b"Unique-ID: u\n\n"

    def frame(body: bytes) -> bytes:
        return b"Content-Length: %d\nContent-Type: text/event-plain\n\n" % len(body) + body

    data = frame(drop) + b"Content-Length: x1\nContent-Type: text/event-plain\n\n" + frame(nameless) + frame(keep)
    parser = EslParser(wanted=EventFilter(["CHANNEL_CREATE"]))
    frames = []
    for i in range(0, len(data), 7):
        frames += parser.feed(data[i : i + 7])
    assert parser.stats.skipped == 1 and parser.stats.reasons == {"bad_content_length": 1}
    assert parser.stats.filtered == 1 and parser.stats.frames == 3
    assert [event_of(f) is None for f in frames] == [True, False]  # the nameless one is warned about by event_of


# ---------------------------------------------------------------------------- streaming the file


def test_a_gzipped_capture_streams_in_pieces_equal_to_the_whole(tmp_path: pathlib.Path) -> None:
    """``stream_trace`` gives the same bytes as reading the capture whole, gzipped or not, in bounded pieces."""
    gz = DATA / "traces" / "09-queue-abandon.esl.gz"
    raw = tmp_path / "09.esl"
    raw.write_bytes(gzip.decompress(gz.read_bytes()))
    for path in (gz, raw):
        pieces = list(stream_trace(path, 4096))
        assert b"".join(pieces) == open_trace(path) and max(map(len, pieces)) <= 4096


def test_iter_events_takes_bytes_or_pieces_alike() -> None:
    """The same capture as one bytes object or as a stream of pieces gives the same events and times."""
    data = open_trace(DATA / "traces" / "07-ring-group-answered.esl.gz")
    whole = [(dict(e), t) for e, t in iter_events(data)]
    pieces = [(dict(e), t) for e, t in iter_events(data[i : i + 1000] for i in range(0, len(data), 1000))]
    assert whole == pieces and len(whole) > 10


def test_a_damaged_gzip_capture_is_a_clear_error(tmp_path: pathlib.Path) -> None:
    """A gzip capture cut short prints the calls read before the damage, then one clear line, exit 1."""
    data = (DATA / "traces" / "18-busy-hour.esl.gz").read_bytes()
    bad = tmp_path / "cut.esl.gz"
    bad.write_bytes(data[: len(data) // 2])
    r = subprocess.run(
        [sys.executable, "-m", "textbackd", "replay", "--calls-only", "--pbx", "freeswitch", str(bad)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1
    assert "damaged gzip file" in r.stderr and "Traceback" not in r.stderr
    assert 0 < r.stdout.count("\n") < 46


def test_a_missing_capture_fails_before_any_event(tmp_path: pathlib.Path) -> None:
    """``read_events`` on a missing file raises at once, not at the first event."""
    with pytest.raises(TextbackError, match="no such file"):
        read_events(tmp_path / "nope.esl")
