"""FreeSWITCH loopback voicemail whose ``leave-message`` comes after the caller's leg is gone (issue 13 section 4).

The traces here are the recorded busy hour (``tests/data/freeswitch/traces/18-busy-hour.esl.gz``, call c43:
+14045550100 → Dr Frank, 5550106, stock ``Local_Extension``: ``bridge user/1009`` rings out, then
``bridge loopback/app=voicemail…`` and the caller leaves a message on ``loopback/voicemail-b``) with ONE frame
moved: the ``CUSTOM vm::maintenance`` ``leave-message`` frame of that call is cut out and put back later,
after the a-leg's ``CHANNEL_HANGUP_COMPLETE`` and after the loopback legs' hangup (or after their
``CHANNEL_DESTROY``). Every frame is otherwise byte for byte as recorded, in recorded order; the moved frame
keeps its own bytes (and so its own ``Event-Date-Timestamp``).
"""

from __future__ import annotations

import asyncio
import gzip
import json
import pathlib
import subprocess
import sys
from typing import Any

import pytest

from textbackd.config import parse
from textbackd.core.model import Outcome
from textbackd.daemon.service import Daemon
from textbackd.pbx.freeswitch.frames import EslParser, event_of, event_time
from textbackd.pbx.freeswitch.replay_server import EslReplayServer, load_capture
from textbackd.pbx.freeswitch.tracker import VOICEMAIL_LINGER, FsTracker
from textbackd.replay import replay_calls

TRACES = pathlib.Path(__file__).parent / "data" / "freeswitch" / "traces"
BUSY = TRACES / "18-busy-hour.esl.gz"
A_LEG = "cdd875aa-ab7a-4f35-9bef-627b3bfc09e5"  # c43's caller (sofia/external/+14045550100)
VM_A = "57183eea-e812-4d5b-9ec0-e59bf9101973"  # loopback/voicemail-a
VM_B = "8913eaaf-154f-4c20-b0f4-dd1be4c3ff0f"  # loopback/voicemail-b, where the voicemail app ran
CFG = parse({"business": {"name": "Acme Dental", "timezone": "America/New_York"},
             "pbx": {"kind": "freeswitch", "password": "x"}}, env={})

# where the leave-message frame is put back: right after this (event, Unique-ID) frame
AFTER = {
    "after_legs_hung_up": ("CHANNEL_HANGUP_COMPLETE", VM_B),  # every leg has hung up; destroys still to come
    "after_legs_destroyed": ("CHANNEL_DESTROY", VM_A),  # the last frame of the call
}


def _frames(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of every ESL message of a capture, by its outer ``Content-Length`` framing."""
    out, i = [], 0
    while i < len(data):
        j = data.index(b"\n\n", i)
        head = data[i:j]
        n = 0
        for line in head.split(b"\n"):
            if line.startswith(b"Content-Length: "):
                n = int(line[16:])
        out.append((i, j + 2 + n))
        i = j + 2 + n
    return out


def _header(frame: bytes, key: bytes) -> bytes:
    k = b"\n" + key + b": "
    at = frame.find(k)
    return b"" if at < 0 else frame[at + len(k) : frame.index(b"\n", at + len(k))]


def rearranged(where: str) -> bytes:
    """The recorded busy hour with c43's ``leave-message`` frame moved after ``AFTER[where]``."""
    data = gzip.decompress(BUSY.read_bytes())
    spans = _frames(data)
    pieces = [data[s:e] for s, e in spans]
    (vm,) = [i for i, p in enumerate(pieces) if b"VM-Action: leave-message" in p and _header(p, b"VM-UUID") == VM_B.encode()]
    name, uuid = AFTER[where]
    (anchor,) = [i for i, p in enumerate(pieces)
                 if _header(p, b"Event-Name") == name.encode() and _header(p, b"Unique-ID") == uuid.encode()]
    (a_hup,) = [i for i, p in enumerate(pieces)
                if _header(p, b"Event-Name") == b"CHANNEL_HANGUP_COMPLETE" and _header(p, b"Unique-ID") == A_LEG.encode()]
    assert vm < a_hup < anchor  # as recorded, the message came before the caller's leg was gone
    moved = pieces[vm]
    out = pieces[:vm] + pieces[vm + 1 : anchor + 1] + [moved] + pieces[anchor + 1 :]
    assert sorted(out) == sorted(pieces) and len(b"".join(out)) == len(data)  # the same bytes, one frame moved
    return b"".join(out)


def _events(data: bytes) -> list[tuple[dict, float]]:
    parser, out, last = EslParser(), [], 0.0
    for frame in parser.feed(data):
        ev = event_of(frame)
        if ev is not None:
            last = event_time(ev) or last
            out.append((ev, last))
    return out


@pytest.mark.parametrize("where", sorted(AFTER))
def test_replay_keeps_a_voicemail_left_after_the_caller_hung_up(tmp_path: pathlib.Path, where: str) -> None:
    """Through ``replay.replay_calls``: c43 is still ``voicemail`` with ``voicemail_left`` when the message comes late."""
    path = tmp_path / "late-vm.esl"
    path.write_bytes(rearranged(where))
    calls = list(replay_calls(path, CFG))
    (c43,) = [c for c in calls if c.id == A_LEG]
    assert (c43.outcome, c43.voicemail_left, c43.voicemail_box, c43.missed) == (Outcome.VOICEMAIL, True, "1009", True)
    assert "voicemail_after_hangup" in c43.notes
    assert len(calls) == 46  # and every other call of the hour as before


def test_textbackd_replay_prints_the_late_voicemail(tmp_path: pathlib.Path) -> None:
    """The ``textbackd replay`` command on the rearranged capture prints c43 with ``voicemail_left: true``."""
    path = tmp_path / "late-vm.esl"
    path.write_bytes(rearranged("after_legs_destroyed"))
    r = subprocess.run([sys.executable, "-m", "textbackd", "replay", "--pbx", "freeswitch", str(path)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    (c43,) = [c for c in map(json.loads, r.stdout.splitlines()) if c["id"] == A_LEG]
    assert (c43["outcome"], c43["voicemail_left"], c43["missed"]) == ("voicemail", True, True)


def test_the_linger_is_bounded_and_only_for_loopback_voicemail() -> None:
    """Without a message, a loopback-voicemail call is reported ``VOICEMAIL_LINGER`` s of event time after its last leg;
    a call that did not reach a loopback voicemail leg is reported by the event that ended it."""
    evs = _events(gzip.decompress(BUSY.read_bytes()))
    t = FsTracker(CFG)
    reported: dict[str, tuple[float, float]] = {}  # call id → (event time it was reported at, its hangup)
    for ev, at in evs:
        for c in t.feed(ev, at):
            reported[c.id] = (at, c.ended.timestamp())
    for c in t.flush(evs[-1][1]):
        reported[c.id] = (float("inf"), c.ended.timestamp())
    expected = {c["uuid"]: c for c in json.loads((TRACES / "18-busy-hour.expected.json").read_text())["calls"]}
    lingered = {u for u, (at, ended) in reported.items() if at - ended > 1.0}
    # the only calls held back: loopback voicemail (Dr Frank's 5550106 and internal calls) with no message
    assert lingered and all(expected[u]["did"] in ("5550106", "1002", "1009") or expected[u]["direction"] == "internal"
                            for u in lingered)
    assert all(not expected[u]["voicemail_left"] for u in lingered)
    for u in lingered:
        at, ended = reported[u]
        assert at == float("inf") or ended + VOICEMAIL_LINGER <= at  # not before the linger is over
    assert len(reported) == 46


def test_a_lingering_call_survives_a_restart_and_flush_reports_it() -> None:
    """A call lingering for its message is in ``snapshot()``; restored, it still takes the late message, and ``flush`` closes it."""
    evs = _events(rearranged("after_legs_destroyed"))
    (vm_at,) = [i for i, (ev, _) in enumerate(evs) if ev.get("VM-Action") == "leave-message" and ev.get("VM-UUID") == VM_B]
    t = FsTracker(CFG)
    for ev, at in evs[:vm_at]:
        t.feed(ev, at)
    saved = json.loads(json.dumps(t.snapshot()))
    (mine,) = [d for d in saved if d["uuid"] == A_LEG]
    assert mine["linger_until"] is not None
    fresh = FsTracker(CFG)
    assert fresh.restore(saved) == len(saved) and fresh.wake_at is not None
    out = fresh.feed(*evs[vm_at])
    (c43,) = [c for c in out if c.id == A_LEG]
    assert c43.voicemail_left and c43.outcome is Outcome.VOICEMAIL
    again = FsTracker(CFG)
    again.restore(saved)
    (flushed,) = [c for c in again.flush(evs[vm_at - 1][1]) if c.id == A_LEG]
    assert flushed.outcome is Outcome.VOICEMAIL and not flushed.voicemail_left


async def test_daemon_on_tcp_gets_the_late_voicemail(tmp_path: pathlib.Path) -> None:
    """``textbackd run``'s daemon, fed the rearranged capture over TCP by the ESL replay server, stores c43 with its message."""
    path = tmp_path / "late-vm.esl"
    path.write_bytes(rearranged("after_legs_destroyed"))
    async with EslReplayServer(load_capture(path), password="s3cret-pw") as srv:
        config = parse({"pbx": {"kind": "freeswitch", "port": srv.port, "password": "s3cret-pw"},
                        "business": {"name": "Acme Dental", "timezone": "America/New_York"},
                        "store": {"path": str(tmp_path / "t.db")}}, env={})
        seen: list[Any] = []
        daemon = Daemon(config, clock=lambda: 1_795_396_000.0, senders=[], handle_signals=False,
                        on_call=lambda call, out: seen.append(out))
        task = asyncio.create_task(daemon.run())
        loop = asyncio.get_running_loop()
        end = loop.time() + 60
        while len(seen) < 46:  # the last lingering calls are reported by the daemon's linger timer
            assert loop.time() < end and not task.done(), "the daemon did not report every call"
            await asyncio.sleep(0.05)
        daemon.stop()
        await asyncio.wait_for(task, 20)
    (c43,) = [o.call for o in seen if o.call.id == A_LEG]
    assert c43.voicemail_left and c43.outcome is Outcome.VOICEMAIL
