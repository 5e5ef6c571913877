"""Which clock the daemon judges by (issue 13 "Also"): the PBX's event time when believable, else arrival.

The capture is two real FreeSWITCH captures of one continuous PBX run, back to back as recorded:
``03-caller-cancel`` (+16465550102 hangs up while 1001 rings: a missed call, ended at PBX time …684.6) and
``07-ring-group-answered`` (captured a minute later: the ring group answers at …752.2), with 07's caller number
rewritten digit for digit (``6465550106`` → ``6465550102``, same length, so every ``Content-Length`` holds) so
that 07 is the missed caller calling back 68 s later. Streamed at full speed, the two calls arrive within a
fraction of a second.
"""

from __future__ import annotations

import asyncio
import gzip
import pathlib
import time
from typing import Any

import pytest
from pytest_httpserver import HTTPServer

from textbackd.config import parse
from textbackd.core.model import MessageState
from textbackd.daemon.service import Daemon
from textbackd.pbx.base import PBX_CLOCK_SKEW, EventClock
from textbackd.pbx.freeswitch.frames import event_time
from textbackd.pbx.freeswitch.replay_server import EslReplayServer, load_capture

TRACES = pathlib.Path(__file__).parent / "data" / "freeswitch" / "traces"
MISSED_ENDED = 1795395684.608917  # 03's a-leg CHANNEL_HANGUP_COMPLETE, Event-Date-Timestamp
GRACE = 10.0


def call_back_capture(path: pathlib.Path) -> pathlib.Path:
    missed = gzip.decompress((TRACES / "03-caller-cancel.esl.gz").read_bytes())
    answered = gzip.decompress((TRACES / "07-ring-group-answered.esl.gz").read_bytes())
    assert b"6465550102" not in answered
    path.write_bytes(missed + answered.replace(b"6465550106", b"6465550102"))
    return path


async def run_capture(tmp_path: pathlib.Path, httpserver: HTTPServer, event_clock: str) -> list[tuple[str, str]]:
    """Stream the capture at full speed to the daemon; the text-back's states and details, in order."""
    httpserver.expect_request("/send", method="POST").respond_with_data("queued", status=202)
    blocks = load_capture(call_back_capture(tmp_path / "callback.esl"))
    first = event_time(blocks[0].headers)
    assert first is not None
    shift = first - time.time()  # the daemon's clock: the capture's first event arrives as it happens
    states: list[tuple[str, str]] = []
    async with EslReplayServer(blocks, password="pw") as srv:
        config = parse({
            "pbx": {"kind": "freeswitch", "port": srv.port, "password": "pw", "event_clock": event_clock},
            "business": {"name": "Acme Dental", "timezone": "America/New_York"},
            "policy": {"grace_seconds": GRACE},
            "store": {"path": str(tmp_path / f"{event_clock}.db")},
            "http": {"listen": "127.0.0.1:0"},
            "senders": [{"name": "gw", "kind": "http", "url": httpserver.url_for("/send"), "from": "+12125550100",
                         "body": {"to": "{to}", "text": "{text}"}}],
        }, env={})
        daemon = Daemon(config, clock=lambda: time.time() + shift, handle_signals=False,
                        on_text=lambda m, state, detail: states.append((str(state), detail)))
        task = asyncio.create_task(daemon.run())
        loop = asyncio.get_running_loop()
        end = loop.time() + GRACE + 20
        while not any(s in ("sent", "cancelled") for s, _ in states):
            assert loop.time() < end and not task.done(), f"no verdict on the text: {states}"
            await asyncio.sleep(0.05)
        daemon.stop()
        await asyncio.wait_for(task, 20)
    return states


async def test_a_call_back_after_the_grace_in_event_time_does_not_cancel(tmp_path: pathlib.Path,
                                                                         httpserver: HTTPServer) -> None:
    """PBX time: the call-back came 68 s after the missed call, past the 10 s grace, so the text goes out."""
    states = await run_capture(tmp_path, httpserver, "pbx")
    assert ("cancelled", "answered_callback") not in states
    assert [s for s, _ in states if s in ("sent", "cancelled")] == ["sent"]
    (req, _resp), *_ = httpserver.log
    assert req.form["to"] == "+16465550102"


async def test_by_arrival_the_same_call_back_cancels(tmp_path: pathlib.Path, httpserver: HTTPServer) -> None:
    """``event_clock = "arrival"``: both calls arrive within a second, so the call-back falls inside the grace and cancels."""
    states = await run_capture(tmp_path, httpserver, "arrival")
    assert ("cancelled", "answered_callback") in states and not httpserver.log


def test_a_pbx_clock_far_off_is_not_used() -> None:
    """A session whose first stamped event is minutes off our clock is timed by arrival; one within the skew by the PBX."""
    ev = {"Event-Name": "HEARTBEAT", "Event-Date-Timestamp": "1795395674068903"}
    t = 1795395674.068903
    off = EventClock(event_time)
    assert off.at(ev, t + 600) == t + 600 and off.trusted is False and off.distrusted == pytest.approx(600)
    assert off.at({"Event-Date-Timestamp": "1795395700000000"}, t + 601) == t + 601  # the whole session
    good = EventClock(event_time)
    assert good.at(ev, t + PBX_CLOCK_SKEW / 2) == t and good.trusted
    assert good.drift == 0.0  # a constant difference between the clocks is not a backlog
    late = {"Event-Date-Timestamp": "1795395700000000"}
    assert good.at(late, t + 300) == 1795395700.0  # read 4 minutes late (a backlog): still the PBX's time
    assert good.present(t + 300) == pytest.approx(1795395700.0)
    assert good.drift == pytest.approx(-271.6, abs=0.1)  # reading behind the PBX: what the daemon catches up on
    assert good.at({"Event-Name": "TEXTBACKD_CHANNELS_SNAPSHOT"}, t + 301) == pytest.approx(1795395701.0)
    good.new_session()
    assert good.trusted is None and good.at(ev, t + 3600) == t + 3600  # a new connection decides again
