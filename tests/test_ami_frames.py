"""The sans-I/O AMI frame parser: framing, UTF-8 across reads, limits and garbage."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from textbackd.pbx.asterisk.frames import AmiParser
from textbackd.replay import open_trace

DATA = Path(__file__).parent / "data" / "asterisk"
EVENT = "Event: Newchannel\r\nChannel: IAX2/carrier-1\r\nCallerIDName: Zoë Ünal\r\nUniqueid: 1.1\r\n\r\n".encode()
WANT = {"Event": "Newchannel", "Channel": "IAX2/carrier-1", "CallerIDName": "Zoë Ünal", "Uniqueid": "1.1"}


def _feed_all(parser: AmiParser, data: bytes, cuts: list[int]) -> list[dict]:
    out: list[dict] = []
    prev = 0
    for c in sorted(set(cuts)):
        out += parser.feed(data[prev:c])
        prev = c
    return out + parser.feed(data[prev:])


def test_banner_login_response_and_events_of_a_real_capture():
    """A real capture gives the banner, the login response and every event, nothing skipped."""
    p = AmiParser()
    evs = p.feed((DATA / "01-answered.ami").read_bytes())
    assert p.banner == "Asterisk Call Manager/11.0.0"
    assert evs[0] == {"Response": "Success", "ActionID": "login-1", "Message": "Authentication accepted"}
    assert evs[1]["Event"] == "FullyBooted"
    assert len(evs) == 79 and p.skipped_frames == 0 and p.skipped_lines == 0


def test_utf8_character_split_across_two_reads_survives():
    """A name whose 'ë' is split between two reads arrives intact."""
    p = AmiParser(expect_banner=False)
    cut = EVENT.index("ë".encode()) + 1
    assert p.feed(EVENT[:cut]) == []
    assert p.feed(EVENT[cut:]) == [WANT]


def test_crlf_split_between_reads_and_lf_only_framing():
    """A CR and its LF in different reads, and LF-only streams, frame the same."""
    p = AmiParser(expect_banner=False)
    cut = EVENT.index(b"\r\n\r\n") + 1
    assert p.feed(EVENT[:cut]) == [] and p.feed(EVENT[cut:]) == [WANT]
    assert AmiParser(expect_banner=False).feed(EVENT.replace(b"\r\n", b"\n")) == [WANT]


def test_byte_at_a_time_equals_whole_stream_on_the_busy_hour():
    """Feeding the 1.2 MB busy hour in 1-byte and 64 KiB pieces gives identical events."""
    data = open_trace(DATA / "18-busy-office-hour.ami.gz")[:200_000]
    whole = AmiParser().feed(data)
    p = AmiParser()
    small = [ev for i in range(len(data)) for ev in p.feed(data[i : i + 1])]
    assert small == whole and len(whole) > 400


def test_oversized_frame_is_skipped_and_the_next_event_kept():
    """A frame above max_frame_bytes is dropped with a count; the following event survives."""
    p = AmiParser(max_frame_bytes=1024, expect_banner=False)
    big = b"Event: Huge\r\n" + b"X: " + b"y" * 5000 + b"\r\n\r\n"
    out = _feed_all(p, big + EVENT, list(range(0, len(big), 700)))
    assert out == [WANT]
    assert p.skipped_frames == 1 and p.last_problem == "frame_too_large"


def test_garbage_lines_and_frames_are_counted_not_raised():
    """Non 'Key: Value' lines and frames without Event/Response are skipped and counted."""
    p = AmiParser(expect_banner=False)
    out = p.feed(b"\x00\xffjunk\r\n\r\nhello world\r\nEvent: Hangup\r\nUniqueid: 9\r\n\r\n" + EVENT)
    assert out == [{"Event": "Hangup", "Uniqueid": "9"}, WANT]
    assert p.skipped_frames == 1 and p.skipped_lines >= 1


def test_invalid_utf8_is_replaced_not_fatal():
    """Bytes that are not UTF-8 become U+FFFD instead of breaking the frame."""
    p = AmiParser(expect_banner=False)
    (ev,) = p.feed(b"Event: X\r\nCallerIDName: Jos\xe9\r\n\r\n")
    assert ev["CallerIDName"] == "Jos\ufffd"


def test_select_skips_frames_without_decoding():
    """Frames refused by select are counted as ignored and not returned."""
    p = AmiParser(expect_banner=False, select=lambda raw: not raw.startswith(b"Event: CEL"))
    out = p.feed(b"Event: CEL\r\nEventName: X\r\n\r\n" + EVENT)
    assert out == [WANT] and p.ignored == 1


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=600), cuts=st.lists(st.integers(0, 600), max_size=12))
def test_any_bytes_split_anywhere_never_crash(data, cuts):
    """Arbitrary bytes fed in arbitrary pieces never raise and give the same events as one feed."""
    a = AmiParser(max_frame_bytes=256)
    whole = a.feed(data)
    b = AmiParser(max_frame_bytes=256)
    pieces = _feed_all(b, data, [c for c in cuts if c <= len(data)])
    assert all(isinstance(e, dict) for e in whole)
    if len(data) < 256:
        assert pieces == whole


@settings(max_examples=400, deadline=None)
@given(
    garbage=st.binary(max_size=400),
    cuts=st.lists(st.integers(0, 1000), max_size=10),
    banner=st.booleans(),
    lf_only=st.booleans(),
)
def test_well_formed_event_after_garbage_is_not_lost(garbage, cuts, banner, lf_only):
    """Whatever garbage precedes it, an event after an empty line is delivered intact (CRLF or LF-only)."""
    p = AmiParser(max_frame_bytes=300, expect_banner=banner)
    event = EVENT.replace(b"\r\n", b"\n") if lf_only else EVENT
    stream = garbage + (b"\n\n" if lf_only else b"\r\n\r\n") + event
    out = _feed_all(p, stream, [c for c in cuts if c <= len(stream)])
    assert out and out[-1] == WANT


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300), cuts=st.lists(st.integers(0, 1200), max_size=12))
def test_real_frames_around_garbage_split_anywhere_equal_one_feed(data, cuts):
    """Real frames with garbage in between give the same events however the bytes are split."""
    stream = EVENT + data + b"\r\n\r\n" + EVENT + data
    whole = AmiParser(expect_banner=False).feed(stream)
    pieces = _feed_all(AmiParser(expect_banner=False), stream, [c for c in cuts if c <= len(stream)])
    assert pieces == whole and whole[0] == WANT and WANT in whole[1:]
