"""Fuzz tests (hypothesis, fixed example counts, derandomized so CI time is bounded): bad input never crashes a parser or a webhook."""

from __future__ import annotations

import asyncio
import json

import aiohttp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_listener import Sink, free_port

from textbackd import config as config_mod
from textbackd.daemon.listener import Listener
from textbackd.pbx.asterisk.frames import AmiParser
from textbackd.senders.gateway import dlr_token
from textbackd.senders.modem import at

FUZZ = settings(max_examples=300, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SECRET = "fuzz-secret-1234"

key = st.text(st.characters(min_codepoint=65, max_codepoint=122, exclude_characters=":[\\]^`"), min_size=1, max_size=12)
value = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=40).map(str.strip)


def splits(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    out, last = [], 0
    for p in points + [len(data)]:
        out.append(data[last:p])
        last = p
    return out


@FUZZ
@given(st.binary(max_size=600), st.lists(st.integers(0, 600), max_size=8))
def test_ami_parser_survives_any_bytes_in_any_split(data, cuts):
    """Arbitrary bytes, cut anywhere, never raise in the AMI parser and only ever yield str→str frames."""
    p = AmiParser(max_frame_bytes=256)
    for chunk in splits(b"Asterisk Call Manager/11.0.0\r\n" + data, cuts):
        for frame in p.feed(chunk):
            assert all(isinstance(k, str) and isinstance(v, str) for k, v in frame.items())


@FUZZ
@given(st.lists(st.dictionaries(key, value, min_size=1, max_size=5), min_size=1, max_size=5),
       st.lists(st.integers(0, 2000), max_size=10))
def test_ami_parser_returns_well_formed_frames_whatever_the_split(frames, cuts):
    """Well-formed frames cut at random points come out as the same frames, in order."""
    wire = b"Asterisk Call Manager/11.0.0\r\n"
    wanted = []
    for i, f in enumerate(frames):
        f = {"Event": f"Fuzz{i}", **{k: v for k, v in f.items() if k.lower() != "event"}}
        wanted.append(f)
        wire += "".join(f"{k}: {v}\r\n" for k, v in f.items()).encode() + b"\r\n"
    got = []
    p = AmiParser()
    for chunk in splits(wire, cuts):
        got += p.feed(chunk)
    assert [g.get("Event") for g in got] == [w["Event"] for w in wanted]
    for g, w in zip(got, wanted):
        for k, v in w.items():
            assert g.get(k) == v


@FUZZ
@given(st.binary(max_size=400), st.lists(st.integers(0, 400), max_size=6),
       st.sampled_from(["AT+CSQ", "AT+CREG?", "AT+CMGS=23", "AT+CMGL=4", "ATE0", "AT+COPS?"]))
def test_modem_response_parser_survives_any_bytes(data, cuts, line):
    """Whatever bytes a modem sends while a command is in flight, the AT engine yields only its own event types."""
    eng = at.AtEngine()
    payload = "0011000B911232550501F00000AA0BC8329BFD06" if line.startswith("AT+CMGS") else None
    eng.start(at.Command(line, payload=payload) if payload else at.Command(line))
    for chunk in splits(data, cuts):
        for ev in eng.feed(chunk):
            assert isinstance(ev, (at.Final, at.Urc, at.Write, at.Stray))


@FUZZ
@given(st.text(max_size=60))
def test_modem_value_parsers_never_crash(line):
    """The +CSQ / +CREG / value helpers answer with their documented types for any line, or raise ValueError."""
    vals = at.values(line)
    assert isinstance(vals, list) and all(isinstance(v, str) for v in vals)
    try:
        stat = at.creg_stat([line])
    except ValueError:
        stat = None
    assert stat is None or isinstance(stat, int)
    dbm = at.csq_dbm(len(line) % 100)
    assert dbm is None or -113 <= dbm <= -51  # 27.007: 0 → -113 dBm … 31 → -51 dBm


# --- webhooks -------------------------------------------------------------------------------


ROUTES = [
    ("GET", "/kannel/kan/incoming/{secret}"), ("POST", "/kannel/kan/incoming/{secret}"),
    ("POST", "/kannel/kan/incoming"), ("GET", "/kannel/kan/dlr"),
    ("POST", "/twilio/tw/incoming"), ("POST", "/twilio/tw/status"),
    ("GET", "/http/gen/incoming/{secret}"), ("POST", "/http/gen/incoming/{secret}"),
    ("POST", "/http/gen/dlr/{secret}"), ("POST", "/http/gen/dlr"), ("GET", "/kannel/nobody/incoming/{secret}"),
]
FIELDS = ["from", "to", "text", "id", "status", "charset", "coding", "ref", "sig", "type", "From", "Body",
          "MessageSid", "MessageStatus", "message", "sender"]


def test_webhook_handlers_answer_every_request_with_a_clean_status():
    """Random routes, secrets, fields, bodies and content types: every answer is 2xx or a clear 4xx, never 500."""
    cfg = config_mod.parse({
        "business": {"name": "Fuzz Dental"},
        "senders": [
            {"name": "kan", "kind": "kannel", "url": "http://127.0.0.1:13013/cgi-bin/sendsms", "username": "u"},
            {"name": "tw", "kind": "twilio", "account_sid": "AC1", "auth_token": "tok", "from": "+12125550100"},
            {"name": "gen", "kind": "http", "url": "http://127.0.0.1:9/send", "body": {"to": "{to}", "msg": "{text}"}},
        ],
        "http": {"listen": f"127.0.0.1:{free_port()}", "secret": SECRET, "max_body_bytes": 2048},
    })
    sink = Sink()
    loop = asyncio.new_event_loop()
    listener = Listener(cfg, sink)
    loop.run_until_complete(listener.start())
    session = loop.run_until_complete(_session())
    statuses: list[int] = []

    @settings(max_examples=300, derandomize=True, deadline=None)
    @given(
        route=st.sampled_from(ROUTES),
        good_secret=st.booleans(),
        fields=st.dictionaries(st.sampled_from(FIELDS), st.text(max_size=30), max_size=6),
        extra=st.binary(max_size=3000),
        ctype=st.sampled_from(["application/x-www-form-urlencoded", "application/json", "text/plain", ""]),
        as_json=st.booleans(),
    )
    def one(route, good_secret, fields, extra, ctype, as_json):
        method, path = route
        secret = SECRET if good_secret else "wrong"
        url = f"http://127.0.0.1:{listener.port}" + path.format(secret=secret)
        headers = {"X-Textbackd-Secret": secret}
        if ctype:
            headers["Content-Type"] = ctype
        if path.endswith("/dlr") and "kannel" in path and good_secret and "ref" in fields:
            fields["sig"] = dlr_token(SECRET, "kan", fields["ref"])
        if method == "GET":
            body = None
        elif as_json and ctype == "application/json":
            body = json.dumps(fields).encode()
        else:
            body = extra if not fields else "&".join(f"{k}={v}" for k, v in fields.items()).encode()
        params = fields if method == "GET" else None
        status = loop.run_until_complete(_call(session, method, url, headers, body, params))
        statuses.append(status)
        assert status in (200, 204, 400, 403, 404, 405, 413, 415), status

    try:
        one()
    finally:
        loop.run_until_complete(session.close())
        loop.run_until_complete(listener.stop())
        loop.close()
    assert 200 in statuses and 403 in statuses and 400 in statuses  # the fuzz reached past the checks
    assert sink.texts  # and some texts got through to the sink


async def _session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession()


async def _call(session, method, url, headers, body, params) -> int:
    async with session.request(method, url, headers=headers, data=body, params=params) as r:
        await r.read()
        return r.status
