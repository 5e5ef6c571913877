"""The FreeSWITCH event-socket parser on public ESL samples, real traces and hypothesis-made streams."""

from __future__ import annotations

import gzip
import json
import pathlib

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from textbackd.pbx.freeswitch.frames import (
    EslParser,
    Frame,
    PlainEvent,
    event_of,
    event_time,
    parse_header_block,
)

DATA = pathlib.Path(__file__).parent / "data" / "freeswitch"
SAMPLES = DATA / "samples"


def frames_of(data: bytes, step: int | None = None) -> list[Frame]:
    p = EslParser()
    if step is None:
        return p.feed(data)
    out: list[Frame] = []
    for i in range(0, len(data), step):
        out += p.feed(data[i : i + step])
    return out


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def plain_frame(headers: dict[str, str], inner: bytes = b"") -> bytes:
    from urllib.parse import quote

    body = "".join(f"{k}: {quote(v, safe='')}\n" for k, v in headers.items()).encode()
    if inner:
        body += f"Content-Length: {len(inner)}\n\n".encode() + inner
    else:
        body += b"\n"
    return b"Content-Length: %d\nContent-Type: text/event-plain\n\n" % len(body) + body


@pytest.fixture(scope="module")
def busy_hour_head() -> bytes:
    raw = gzip.decompress((DATA / "traces" / "01-answered.esl.gz").read_bytes())
    return raw


def test_switchio_stream_banner_replies_disconnect_and_raw_multiline_event() -> None:
    """A recorded session yields the banner, both replies, the 67-byte disconnect notice and the event."""
    frames = frames_of(sample("switchio_stream_auth_bye_disconnect_CHANNEL_CREATE.txt"))
    kinds = [f.content_type for f in frames]
    assert kinds[:4] == ["auth/request", "command/reply", "command/reply", "text/disconnect-notice"]
    assert frames[1].reply_text == "+OK accepted" and frames[1].ok
    assert frames[2].reply_text == "+OK bye"
    assert len(frames[3].body) == 67 and frames[3].body.startswith(b"Disconnected, goodbye.")
    ev = event_of(frames[4])
    assert ev is not None and ev["Event-Name"] == "CHANNEL_CREATE"
    assert ev["Event-Date-Local"] == "2015-01-28 15:00:44"  # decoded values are taken as they are
    sdp = [v for k, v in ev.items() if "sdp" in k.lower()]
    assert sdp and "\n" in sdp[0] and "m=audio" in sdp[0]  # a raw multi-line value stays one header


def test_outbound_stream_in_tcp_segments_gives_the_same_frames_as_one_read() -> None:
    """The davec82 stream (a 9366-byte event) parsed in 1460-byte segments equals the one-shot parse."""
    data = sample("davec82_outbound_stream_command_reply_then_CHANNEL_EXECUTE_COMPLETE.txt")
    one = frames_of(data)
    seg = frames_of(data, 1460)
    assert [f.headers for f in seg] == [f.headers for f in one]
    assert [f.body for f in seg] == [f.body for f in one]
    ev = event_of(one[-1])
    assert ev is not None and ev["Event-Name"] == "CHANNEL_EXECUTE_COMPLETE"


def test_background_job_inner_body_is_kept_under_body() -> None:
    """A BACKGROUND_JOB's inner Content-Length body comes out as ``_body``; typed client commands are skipped."""
    # the published page lost the last two bytes of the 920-byte body (its final blank line)
    frames = frames_of(sample("cnnotes_session_bgapi_status_BACKGROUND_JOB_plain_1.10.0.txt") + b"\n\n")
    events = [e for e in map(event_of, frames) if e is not None]
    assert [e["Event-Name"] for e in events] == ["BACKGROUND_JOB"]
    assert events[0]["Job-Command"] == "status"
    assert events[0]["_body"].startswith("UP 0 years") and len(events[0]["_body"].encode()) == 342
    replies = [f.reply_text for f in frames if f.content_type == "command/reply"]
    assert "+OK Job-UUID: fd690cce-a6f1-4e8f-8200-99b8c8dcb3e7" in replies


def test_json_event_and_api_error_response() -> None:
    """``text/event-json`` becomes a string mapping; an ``api/response`` body is its reply text, -ERR is not ok."""
    (ev_frame,) = frames_of(sample("lluv_CHANNEL_DESTROY_event_json_2017.txt"))
    ev = event_of(ev_frame)
    assert ev is not None and ev["Event-Name"] == "CHANNEL_DESTROY"
    assert event_time(ev) == pytest.approx(1501761985.066904)
    (api,) = frames_of(sample("davec82_api_response_uuid_dump_CHANNEL_DATA.txt"))
    assert api.content_type == "api/response" and len(api.body) == 6872
    assert api.reply_text.startswith("Event-Name: CHANNEL_DATA") and api.ok is False
    err = b"Content-Type: api/response\nContent-Length: 27\n\n-ERR nope Command not found!"
    (frame,) = frames_of(err[:-1] + b"\n")
    assert frame.reply_text.startswith("-ERR") and not frame.ok


def test_connect_reply_text_is_url_decoded() -> None:
    """The outbound ``connect`` reply's ``Reply-Text: %2BOK%0A`` reads as ``+OK``."""
    (frame,) = frames_of(sample("davec82_outbound_connect_reply_CHANNEL_DATA_socket_async_full.txt"))
    assert frame.content_type == "command/reply" and frame.reply_text == "+OK"


def test_every_public_sample_parses_without_raising_in_any_segmentation() -> None:
    """Every public sample, whole or in 7-byte pieces, parses to the same frames without an exception."""
    for path in sorted(SAMPLES.glob("*.txt")):
        data = path.read_bytes()
        one = frames_of(data)
        assert [(f.headers, f.body) for f in frames_of(data, 7)] == [(f.headers, f.body) for f in one], path.name
        for f in one:
            event_of(f)


def test_real_trace_values_are_url_decoded_and_lengths_counted_in_bytes(busy_hour_head: bytes) -> None:
    """Real FS 1.10 events decode ``%3A``/``%20``/``%2B`` and every frame ends exactly where the next begins."""
    p = EslParser()
    frames = p.feed(busy_hour_head)
    assert p.stats.skipped == 0 and p.buffered == 0
    events = [e for e in map(event_of, frames) if e is not None]
    first = events[0]
    assert first["Event-Date-Local"] == "2026-11-23 01:00:01"
    assert first["Channel-Name"] == "sofia/external/+16465550100@127.0.0.1"
    assert frames[-1].content_type == "text/disconnect-notice"


def test_content_length_counts_utf8_bytes_not_characters() -> None:
    """A JSON event with multi-byte characters, split inside a character, is framed by bytes."""
    body = json.dumps({"Event-Name": "CHANNEL_CREATE", "Caller-Caller-ID-Name": "José Ñúñez 電話"}, ensure_ascii=False)
    raw = body.encode()
    frame = b"Content-Length: %d\nContent-Type: text/event-json\n\n" % len(raw) + raw
    data = frame + plain_frame({"Event-Name": "HEARTBEAT"})
    for step in (1, 2, 3, 5):
        events = [event_of(f) for f in frames_of(data, step)]
        assert [e["Event-Name"] for e in events if e] == ["CHANNEL_CREATE", "HEARTBEAT"]
        assert events[0] is not None and events[0]["Caller-Caller-ID-Name"] == "José Ñúñez 電話"


def test_malformed_frames_are_skipped_and_parsing_goes_on() -> None:
    """A bad Content-Length, a headerless block and an oversized body are skipped; the next events survive."""
    p = EslParser(max_body_bytes=1000)
    data = (
        b"Content-Length: banana\nContent-Type: text/event-plain\n\n"
        + b"\x00\x01 not a header at all\n\n"
        + b"Content-Length: 5000\nContent-Type: text/event-plain\n\n"
        + b"x" * 5000
        + plain_frame({"Event-Name": "CHANNEL_ANSWER", "Unique-ID": "u1"})
    )
    out = []
    for i in range(0, len(data), 100):
        out += p.feed(data[i : i + 100])
    events = [e for e in map(event_of, out) if e is not None]
    assert [e["Unique-ID"] for e in events] == ["u1"]
    assert p.stats.reasons == {"bad_content_length": 1, "no_headers": 1, "body_too_large": 1}


def test_header_block_without_end_is_dropped_at_the_limit() -> None:
    """Bytes that never end a header block are thrown away once over the limit, not buffered forever."""
    p = EslParser(max_header_bytes=1024)
    for _ in range(10):
        p.feed(b"y" * 500 + b"\n")
    assert p.buffered <= 1024 + 501
    assert p.stats.reasons.get("header_block_too_large", 0) >= 1
    (frame,) = p.feed(b"\n\n" + b"Content-Type: auth/request\n\n")
    assert frame.content_type == "auth/request"


def test_crlf_frames_and_header_order() -> None:
    """CRLF line ends and Content-Type before Content-Length are accepted."""
    data = b"Content-Type: api/response\r\nContent-Length: 3\r\n\r\n+OK" + b"Content-Type: auth/request\n\n"
    frames = frames_of(data)
    assert [f.content_type for f in frames] == ["api/response", "auth/request"]
    assert frames[0].body == b"+OK"


def test_plain_event_lookup_matches_a_full_parse() -> None:
    """Looking headers up lazily gives what parsing the whole block gives, and a missing one is a KeyError."""
    head = "Event-Name: CUSTOM\nEvent-Subclass: vm%3A%3Amaintenance\nVM-Caller-ID-Name: Jos%C3%A9\nEmpty:\nX: a: b"
    ev = PlainEvent(head)
    assert ev["Event-Subclass"] == "vm::maintenance"
    assert ev["VM-Caller-ID-Name"] == "José"
    assert ev["X"] == "a: b"
    assert "Nope" not in ev and ev.get("Nope") is None
    with pytest.raises(KeyError):
        ev["Nope"]
    assert ev.to_dict() == parse_header_block(head)
    assert ev.to_dict()["Empty"] == ""


# ---------------------------------------------------------------------------- properties

_EVENTS = [
    plain_frame({"Event-Name": "CHANNEL_CREATE", "Unique-ID": "a", "Caller-Caller-ID-Number": "+12125550100"}),
    plain_frame({"Event-Name": "BACKGROUND_JOB", "Job-UUID": "j"}, inner=b"+OK done\nline two\n"),
    b"Content-Type: command/reply\nReply-Text: +OK accepted\n\n",
    plain_frame({"Event-Name": "HEARTBEAT", "Event-Info": "System Ready", "Up-Time": "0 years, 1 day"}),
]
_STREAM = b"Content-Type: auth/request\n\n" + b"".join(_EVENTS)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400), st.lists(st.integers(min_value=1, max_value=64), max_size=30))
def test_any_bytes_split_anywhere_never_raise(garbage: bytes, cuts: list[int]) -> None:
    """Arbitrary bytes around a real stream, cut anywhere, never make the parser raise."""
    data = garbage + _STREAM + garbage
    p = EslParser(max_header_bytes=256, max_body_bytes=512)
    pos = 0
    for n in cuts:
        for f in p.feed(data[pos : pos + n]):
            event_of(f)
        pos += n
    for f in p.feed(data[pos:]):
        event_of(f)
    p.close()
    assert p.stats.bytes == len(data)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.lists(st.integers(min_value=1, max_value=97), min_size=1, max_size=40))
def test_well_formed_events_after_garbage_are_not_lost(garbage: bytes, cuts: list[int]) -> None:
    """Garbage ended by a blank line, then well-formed frames: every frame comes out, whatever the cuts."""
    assume(b"content-length" not in garbage.lower())
    data = garbage + b"\n\n" + _STREAM
    p = EslParser()
    out: list[Frame] = []
    pos = 0
    i = 0
    while pos < len(data):
        n = cuts[i % len(cuts)]
        out += p.feed(data[pos : pos + n])
        pos += n
        i += 1
    wanted = frames_of(_STREAM)
    got = [(f.headers, f.body) for f in out]
    assert got[-len(wanted) :] == [(f.headers, f.body) for f in wanted]
    names = [e["Event-Name"] for e in map(event_of, out) if e is not None]
    assert names[-3:] == ["CHANNEL_CREATE", "BACKGROUND_JOB", "HEARTBEAT"]


@settings(max_examples=30, deadline=None)
@given(st.integers(min_value=1, max_value=4096))
def test_real_trace_in_any_chunk_size_equals_one_shot(busy_hour_head: bytes, step: int) -> None:
    """The real 01-answered capture fed in any fixed chunk size frames exactly like one read."""
    one = frames_of(busy_hour_head)
    assert [(f.headers, f.body) for f in frames_of(busy_hour_head, step)] == [(f.headers, f.body) for f in one]


def test_recorded_recv_segmentation_frames_like_one_read() -> None:
    """05-busy fed in the exact recv() chunks FreeSWITCH's socket delivered gives the one-read frames."""
    data = gzip.decompress((DATA / "traces" / "05-busy.esl.gz").read_bytes())
    chunks = [
        (int(off), int(length))
        for off, length in (line.split("\t")[1:3] for line in (DATA / "traces" / "05-busy.chunks").read_text().splitlines() if line and not line.startswith("#"))
    ]
    assert sum(n for _, n in chunks) == len(data)
    p = EslParser()
    got: list[Frame] = []
    for off, n in chunks:
        got += p.feed(data[off : off + n])
    assert [(f.headers, f.body) for f in got] == [(f.headers, f.body) for f in frames_of(data)]
    assert p.stats.skipped == 0 and p.buffered == 0


def test_a_json_array_variable_reads_joined_and_the_rest_stays_as_recorded() -> None:
    """FreeSWITCH writes a multi-valued variable as a JSON array (``variable_DP_MATCH`` in the recorded busy hour):
    it reads as its values joined with ``|``, every string value of the event is untouched."""
    data = gzip.decompress((DATA / "traces" / "18-busy-hour.json.esl.gz").read_bytes())
    seen = 0
    for frame in EslParser().feed(data):
        if frame.content_type != "text/event-json":
            continue
        raw = json.loads(frame.body)
        arrays = {k: v for k, v in raw.items() if isinstance(v, list)}
        if not arrays:
            continue
        ev = event_of(frame)
        assert ev is not None
        assert {k: ev[k] for k in arrays} == {k: "|".join(v) for k, v in arrays.items()}
        assert {k: v for k, v in ev.items() if k not in arrays} == {k: v for k, v in raw.items() if k not in arrays}
        seen += 1
    assert seen > 100
