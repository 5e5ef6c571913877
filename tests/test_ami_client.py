"""The AMI client against a TCP server on 127.0.0.1 that speaks AMI from real recorded traces."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from textbackd import config
from textbackd.config import PbxConfig, Secret
from textbackd.core.model import Outcome
from textbackd.pbx.asterisk.client import AmiClient
from textbackd.pbx.asterisk.frames import AmiParser
from textbackd.pbx.asterisk.tracker import AmiTracker, wants_frame
from textbackd.replay import open_trace

DATA = Path(__file__).parent / "data" / "asterisk"
CFG = config.parse({"business": {"name": "test"}})
BANNER = b"Asterisk Call Manager/11.0.0\r\n"
GUARD = 60.0  # only a guard against a hung test, never a speed assertion


def _frame(ev: dict) -> bytes:
    return ("".join(f"{k}: {v}\r\n" for k, v in ev.items()) + "\r\n").encode()


def _recorded(name: str, replace: tuple[bytes, bytes] | None = None) -> list[dict]:
    """The events of a trace after FullyBooted (what a live session would carry)."""
    data = open_trace(DATA / name)
    if replace:
        data = data.replace(*replace)
    evs = AmiParser().feed(data + b"\r\n\r\n")
    return [e for e in evs if "Event" in e and e["Event"] != "FullyBooted"]


def _live_channels(events: list[dict]) -> list[dict]:
    """What CoreShowChannels would list after ``events``: each channel alive, in its last known state."""
    chans: dict[str, dict] = {}
    for e in events:
        uid = e.get("Uniqueid")
        if not uid or "Linkedid" not in e:
            continue
        if e["Event"] == "Hangup":
            chans.pop(uid, None)
            continue
        if e["Event"] == "Newchannel" or uid in chans:
            c = chans.setdefault(uid, {"Event": "CoreShowChannel"})
            for k in ("Channel", "Uniqueid", "Linkedid", "ChannelState", "ChannelStateDesc", "CallerIDNum",
                      "CallerIDName", "Context", "Exten"):
                if k in e:
                    c[k] = e[k]
            if e["Event"] == "Newexten":
                c["Application"], c["ApplicationData"] = e.get("Application", ""), e.get("AppData", "")
            c["Duration"] = "00:00:05"
    return list(chans.values())


@dataclass
class Script:
    events: list[dict]
    channels: list[dict] = field(default_factory=list)
    drop: bool = True  # abort the connection after the events
    answer_pings: bool = True
    byte_at_a_time: bool = False
    refuse_login: bool = False


class FakeAsterisk:
    """Banner, Login response, FullyBooted, CoreShowChannels answer, then recorded events."""

    def __init__(self, scripts: list[Script]) -> None:
        self.scripts = scripts
        self.actions: list[tuple[int, str]] = []
        self.sessions = 0
        self.server: asyncio.base_events.Server | None = None

    async def __aenter__(self) -> FakeAsterisk:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()

    @property
    def port(self) -> int:
        return self.server.sockets[0].getsockname()[1]

    def count(self, action: str) -> int:
        return sum(1 for _, a in self.actions if a == action)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        idx = self.sessions
        self.sessions += 1
        script = self.scripts[min(idx, len(self.scripts) - 1)]
        writer.write(BANNER)
        resynced = asyncio.Event()
        parser = AmiParser(expect_banner=False)

        async def serve_actions() -> None:
            while data := await reader.read(4096):
                for a in parser.feed(data):
                    name, aid = a.get("Action", ""), a.get("ActionID", "")
                    self.actions.append((idx, name))
                    if name == "Login":
                        if script.refuse_login or a.get("Secret") != "s3cret":
                            writer.write(_frame({"Response": "Error", "ActionID": aid, "Message": "Authentication failed"}))
                        else:
                            writer.write(_frame({"Response": "Success", "ActionID": aid, "Message": "Authentication accepted"}))
                            writer.write(_frame({"Event": "FullyBooted", "Privilege": "system,all", "Status": "Fully Booted"}))
                    elif name == "Ping" and script.answer_pings:
                        writer.write(_frame({"Response": "Success", "ActionID": aid, "Ping": "Pong", "Timestamp": "1.0"}))
                    elif name == "CoreShowChannels":
                        writer.write(_frame({"Response": "Success", "ActionID": aid, "EventList": "start"}))
                        for c in script.channels:
                            writer.write(_frame({**c, "ActionID": aid}))
                        writer.write(_frame({"Event": "CoreShowChannelsComplete", "ActionID": aid,
                                             "EventList": "Complete", "ListItems": str(len(script.channels))}))
                        resynced.set()
                    elif name == "Logoff":
                        writer.write(_frame({"Response": "Goodbye", "ActionID": aid}))
                    await writer.drain()

        actions = asyncio.create_task(serve_actions())
        try:
            await asyncio.wait_for(resynced.wait(), GUARD)
            stream = b"".join(_frame(e) for e in script.events)
            if script.byte_at_a_time:
                for i in range(len(stream)):
                    writer.write(stream[i : i + 1])
                    await writer.drain()
                    if stream[i] >= 0xC0:  # first byte of a multi-byte character: let the client read it alone
                        await asyncio.sleep(0.02)
            else:
                for i in range(0, len(stream), 8192):
                    writer.write(stream[i : i + 8192])
                    await writer.drain()
            if script.drop:
                writer.transport.abort()
            else:
                await actions
        except (ConnectionError, asyncio.TimeoutError):
            pass
        finally:
            actions.cancel()
            writer.close()


def _pbx(port: int, **kw) -> PbxConfig:
    return PbxConfig(host="127.0.0.1", port=port, secret=Secret("s3cret"), reconnect_min=0.05, reconnect_max=0.2,
                     connect_timeout=5.0, **kw)


class Collector:
    def __init__(self, want: int) -> None:
        self.tracker = AmiTracker(CFG)
        self.calls: list = []
        self.want = want
        self.done = asyncio.Event()

    async def __call__(self, event, at: float) -> None:
        self.calls += self.tracker.feed(event, at)
        if len(self.calls) >= self.want:
            self.done.set()


async def _run_until(client: AmiClient, done: asyncio.Event) -> None:
    task = asyncio.create_task(client.run())
    try:
        await asyncio.wait_for(done.wait(), GUARD)
    finally:
        await client.close()
        await asyncio.wait_for(task, GUARD)


def _labels(name: str) -> dict[str, dict]:
    return {c["linkedid"]: c for c in json.loads((DATA / name).read_text())["calls"]}


def _matches(call, lab: dict) -> bool:
    return (
        str(call.direction) == lab["direction"]
        and call.caller == lab["caller"]
        and call.missed is lab["missed"]
        and call.voicemail_left is lab["voicemail_left"]
        and (lab["direction"] != "inbound" or (call.did == lab["did"] and str(call.outcome) == lab["reason"]))
    )


async def test_dropped_connection_reconnects_resyncs_and_loses_no_call():
    """The busy hour cut by a dropped connection gives all 46 labelled calls exactly, after one reconnect."""
    events = _recorded("18-busy-office-hour.ami.gz")
    cut = len(events) // 2
    scripts = [Script(events[:cut]), Script(events[cut:], channels=_live_channels(events[:cut]), drop=False)]
    labels = _labels("18-busy-office-hour.expected.json")
    async with FakeAsterisk(scripts) as srv:
        got = Collector(len(labels))
        client = AmiClient(_pbx(srv.port), got, select=wants_frame)
        await _run_until(client, got.done)
    assert client.reconnects == 1 and srv.count("Login") == 2 and srv.count("CoreShowChannels") == 2
    assert sorted(c.id for c in got.calls) == sorted(labels)
    assert [c.id for c in got.calls if not _matches(c, labels[c.id])] == []
    assert len(_live_channels(events[:cut])) > 0  # the cut really fell inside calls


async def test_calls_ending_during_a_gap_are_reported_not_lost():
    """Events lost while disconnected: calls that ended in the gap come out as unknown, the others exactly."""
    events = _recorded("18-busy-office-hour.ami.gz")
    cut, cut2 = len(events) // 3, len(events) // 3 + 300
    scripts = [Script(events[:cut]), Script(events[cut2:], channels=_live_channels(events[:cut2]), drop=False)]
    labels = _labels("18-busy-office-hour.expected.json")
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    for i, e in enumerate(events):
        if "Linkedid" in e:
            first.setdefault(e["Linkedid"], i)
            last[e["Linkedid"]] = i
    clean = {lid for lid in labels if last[lid] < cut or first[lid] >= cut2}
    ended_in_gap = {lid for lid in labels if first[lid] < cut and cut <= last[lid] < cut2}
    async with FakeAsterisk(scripts) as srv:
        got = Collector(len(labels))
        client = AmiClient(_pbx(srv.port), got, select=wants_frame)
        task = asyncio.create_task(client.run())
        while srv.sessions < 2 or got.tracker.open_calls or len(got.calls) < len(clean):
            await asyncio.sleep(0.05)
            if task.done():
                break
        await client.close()
        await asyncio.wait_for(task, GUARD)
    ids = [c.id for c in got.calls]
    assert len(ids) == len(set(ids))
    by_id = {c.id: c for c in got.calls}
    assert clean <= set(by_id) and ended_in_gap <= set(by_id)
    assert all(_matches(by_id[lid], labels[lid]) for lid in clean)
    assert ended_in_gap and all("ended_during_gap" in by_id[lid].notes for lid in ended_in_gap)
    assert all(by_id[lid].outcome in (Outcome.UNKNOWN, Outcome.ANSWERED) for lid in ended_in_gap)


async def test_one_byte_at_a_time_keeps_accented_names():
    """A server writing one byte per write gives the same call, with 'Zoë Ünal' intact."""
    events = _recorded("01-answered.ami", replace=(b"John Smith", "Zoë Ünal".encode()))
    async with FakeAsterisk([Script(events, drop=False, byte_at_a_time=True)]) as srv:
        got = Collector(1)
        client = AmiClient(_pbx(srv.port), got)
        await _run_until(client, got.done)
    (call,) = got.calls
    assert call.caller_name == "Zoë Ünal"
    assert (call.outcome, call.caller, call.answered_by) == (Outcome.ANSWERED, "+12125550101", "101")
    assert client.parser.skipped_frames == 0 and client.reconnects == 0


async def test_unanswered_pings_declare_the_link_dead_and_reconnect():
    """A server that stops answering Ping is dropped and a new session is opened."""
    events = _recorded("05-busy.ami")
    scripts = [Script([], drop=False, answer_pings=False), Script(events, drop=False)]
    async with FakeAsterisk(scripts) as srv:
        got = Collector(1)
        client = AmiClient(_pbx(srv.port, ping_interval=0.1), got)
        await _run_until(client, got.done)
    assert client.reconnects >= 1
    assert any(idx == 0 and a == "Ping" for idx, a in srv.actions)
    assert got.calls[0].outcome is Outcome.BUSY


async def test_handler_exception_does_not_end_the_session():
    """An exception in on_event is logged and the following events still arrive on the same session."""
    events = _recorded("03-caller-cancel.ami")
    got = Collector(1)
    seen = []

    async def flaky(event, at):
        seen.append(event["Event"])
        if len(seen) == 3:
            raise RuntimeError("bug in a handler")
        await got(event, at)

    async with FakeAsterisk([Script(events, drop=False)]) as srv:
        client = AmiClient(_pbx(srv.port), flaky)
        await _run_until(client, got.done)
    assert client.handler_errors == 1 and client.reconnects == 0
    assert got.calls[0].outcome is Outcome.CALLER_CANCEL


async def test_refused_login_is_not_retried_quickly():
    """A refused login waits reconnect_max before trying again and never reports connected."""
    async with FakeAsterisk([Script([], refuse_login=True, drop=False)]) as srv:
        client = AmiClient(_pbx(srv.port), Collector(1))
        task = asyncio.create_task(client.run())
        while srv.count("Login") < 1:
            await asyncio.sleep(0.01)
        await client.close()
        await asyncio.wait_for(task, GUARD)
    assert not client.connected and client.last_event_at is None


@pytest.mark.parametrize("failures", [0, 1, 3, 10])
def test_backoff_is_exponential_capped_and_jittered(failures):
    """The delay doubles per failure up to reconnect_max, with the upper half random."""
    pbx = PbxConfig(reconnect_min=1.0, reconnect_max=60.0)
    low = AmiClient(pbx, Collector(1), rng=lambda: 0.0).backoff(failures)
    high = AmiClient(pbx, Collector(1), rng=lambda: 1.0).backoff(failures)
    base = min(60.0, 2.0**failures)
    assert (low, high) == (base / 2, base)
