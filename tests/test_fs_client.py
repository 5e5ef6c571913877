"""The FreeSWITCH event-socket client against a local TCP server that replays real captures."""

from __future__ import annotations

import asyncio
import json
import pathlib
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from textbackd.config import Config, Secret, parse
from textbackd.core.model import Call
from textbackd.pbx.freeswitch.client import FsClient, subscription
from textbackd.pbx.freeswitch.replay_server import EslReplayServer, load_capture
from textbackd.pbx.freeswitch.tracker import FsTracker

TRACES = pathlib.Path(__file__).parent / "data" / "freeswitch" / "traces"


@pytest.fixture(scope="module")
def config() -> Config:
    return parse({"pbx": {"kind": "freeswitch", "password": "ClueCon"}, "business": {"name": "Acme Dental"}}, env={})


@pytest.fixture(scope="module")
def busy() -> list:
    return load_capture(TRACES / "05-busy.esl.gz")


@pytest.fixture(scope="module")
def busy_hour() -> list:
    return load_capture(TRACES / "18-busy-hour.esl.gz")


def labels(name: str) -> dict[str, dict[str, Any]]:
    return {c["uuid"]: c for c in json.loads((TRACES / f"{name}.expected.json").read_text())["calls"]}


class Harness:
    """A client wired to a tracker, the way the daemon wires them."""

    def __init__(
        self, config: Config, port: int, *, fail_first: bool = False, event_format: str = "plain", **pbx: Any
    ) -> None:
        pbx = {"connect_timeout": 5.0, **pbx}
        pbx_cfg = replace(config.pbx, port=port, reconnect_min=0.05, reconnect_max=0.2, **pbx)
        self.tracker = FsTracker(replace(config, pbx=pbx_cfg))
        self.calls: list[Call] = []
        self.events: list[str] = []
        self.fail_first = fail_first
        self.client = FsClient(pbx_cfg, self.on_event, event_format=event_format, rng=lambda: 0.5)
        self.task: asyncio.Task | None = None

    async def on_event(self, event: Any, at: float) -> None:
        self.events.append(event["Event-Name"])
        self.calls += self.tracker.feed(event, at)
        if self.fail_first:
            self.fail_first = False
            raise RuntimeError("handler bug after the tracker saw the event")

    async def _lingered(self) -> None:
        """As the daemon does: report a call the tracker holds back (``wake_at``) once its wait is over."""
        while True:
            await asyncio.sleep(0.05)
            wake = self.tracker.wake_at
            if wake is not None and time.time() >= wake:
                self.calls += self.tracker.expire(time.time())

    async def __aenter__(self) -> Harness:
        self.task = asyncio.create_task(self.client.run())
        self.linger = asyncio.create_task(self._lingered())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.linger.cancel()
        await self.client.close()
        assert self.task is not None
        await asyncio.wait_for(self.task, 10)


async def until(pred: Callable[[], bool], limit: float = 30.0) -> None:
    """Wait for a condition (the limit only keeps a broken test from hanging)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + limit
    while not pred():
        assert loop.time() < end, "condition not reached"
        await asyncio.sleep(0.01)


def test_subscription_lists_custom_subclasses_last() -> None:
    """The ``event`` command names the tracker's events and ends with CUSTOM and its subclasses."""
    cmd = subscription("plain")
    assert cmd.startswith("event plain CHANNEL_CREATE ")
    assert "HEARTBEAT" in cmd and "CHANNEL_HANGUP_COMPLETE" in cmd
    assert cmd.split(" CUSTOM ")[1].split() == ["vm::maintenance", "callcenter::info", "fifo::info", "menu::enter"]


async def test_session_auth_subscribe_stream_and_call(config: Config, busy: list) -> None:
    """Banner, auth, subscription, resync snapshot, then the recorded busy call comes out of the tracker."""
    async with EslReplayServer(busy) as srv, Harness(config, srv.port) as h:
        # the server streams from the subscription on: on a loaded machine the call can be over before the
        # `show channels` answer is read, so wait for both
        await until(lambda: len(h.calls) == 1 and "TEXTBACKD_CHANNELS_SNAPSHOT" in h.events)
        assert h.client.connected and h.client.reconnects == 0
        assert srv.commands[0] == "auth" and srv.commands[1] == subscription("plain")
        assert srv.commands[2] == "api show channels as json"
        assert h.events.count("TEXTBACKD_CHANNELS_SNAPSHOT") == 1
        (label,) = labels("05-busy").values()
        assert h.calls[0].id == label["uuid"] and str(h.calls[0].outcome) == "busy" and h.calls[0].missed
        assert h.client.last_event_at is not None
        assert "CHANNEL_STATE" not in h.events  # only what was subscribed arrives
    assert not h.client.connected


async def test_every_byte_in_its_own_segment(config: Config, busy: list) -> None:
    """Frames written one byte at a time (bodies split at every byte) give the same call."""
    async with EslReplayServer(busy, split=1) as srv, Harness(config, srv.port) as h:
        await until(lambda: len(h.calls) == 1)
        assert str(h.calls[0].outcome) == "busy"
        assert h.client._session is not None and h.client._session.parser.stats.skipped == 0


async def test_disconnect_then_second_session_resumes_and_resyncs(config: Config, busy_hour: list) -> None:
    """The busy hour in event json, cut after 300 events: the client reconnects, resubscribes, and all 46 calls come out right."""
    want = labels("18-busy-hour")
    async with EslReplayServer(busy_hour, drop_after=300) as srv, Harness(config, srv.port, event_format="json") as h:
        await until(lambda: len(h.calls) == len(want) and "TEXTBACKD_CHANNELS_SNAPSHOT" in h.events)
        assert srv.sessions == 2 and srv.logins == 2 and h.client.reconnects == 1
        assert srv.commands.count(subscription("json")) == 2
        assert srv.commands[-3:] == ["auth", subscription("json"), "api show channels as json"]
    got = {c.id: c for c in h.calls}
    assert set(got) == set(want)
    for uuid, lab in want.items():
        assert got[uuid].missed == lab["missed"], lab["call_id"]
        if lab["direction"] == "inbound":
            assert str(got[uuid].outcome) == lab["reason"], lab["call_id"]


async def test_dead_link_is_detected_and_replaced(config: Config, busy: list) -> None:
    """A server that goes silent (no HEARTBEAT, no replies) is probed with ``api status`` and left for a new session."""
    async with EslReplayServer(busy, silent_after=3) as srv, Harness(config, srv.port, ping_interval=0.2) as h:
        await until(lambda: len(h.calls) == 1)
        assert "api status" in srv.commands
        assert srv.sessions >= 2 and h.client.reconnects >= 1
        assert str(h.calls[0].outcome) == "busy"


async def test_wrong_password_is_refused_and_retried_without_crashing(config: Config, busy: list) -> None:
    """A refused password never connects, never raises out of ``run()``, and is retried."""
    async with EslReplayServer(busy, password="other") as srv, Harness(config, srv.port) as h:
        h.client.config = replace(h.client.config, reconnect_max=0.1)
        await until(lambda: srv.sessions >= 2)
        assert srv.logins == 0 and not h.client.connected and h.events == []


async def test_handler_exception_does_not_end_the_session(config: Config, busy: list) -> None:
    """An exception in the event handler is logged; the session and the following events go on."""
    async with EslReplayServer(busy) as srv, Harness(config, srv.port, fail_first=True) as h:
        await until(lambda: len(h.calls) == 1)
        assert h.client.handler_errors == 1 and srv.sessions == 1


async def test_api_and_bgapi_replies(config: Config, busy: list) -> None:
    """``api`` returns the api/response body and ``bgapi`` the BACKGROUND_JOB result."""
    async with EslReplayServer(busy) as srv, Harness(config, srv.port) as h:
        await until(lambda: h.client.connected and len(h.calls) == 1)
        assert "is ready" in await h.client.api("status")
        assert (await h.client.api("nonsense")).startswith("-ERR")
        assert await h.client.bgapi("originate user/1001 &park()") == "+OK\n"
        assert h.client._session is not None and h.client._session.jobs == {}


async def test_close_while_waiting_for_the_banner_returns_promptly(config: Config) -> None:
    """A socket that never sends the banner does not keep ``run()`` alive after ``close()``."""
    accepted = asyncio.Event()

    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.set()
        await reader.read()  # until the client goes away
        writer.close()

    server = await asyncio.start_server(mute, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        h = Harness(config, port, connect_timeout=30.0)
        task = asyncio.create_task(h.client.run())
        await asyncio.wait_for(accepted.wait(), 10)
        await h.client.close()
        await asyncio.wait_for(task, 10)
        assert not h.client.connected and h.client.sessions == 1
    finally:
        server.close()


async def test_connection_refused_is_retried(config: Config) -> None:
    """Nothing listening: ``run()`` keeps retrying with backoff until closed."""
    srv = EslReplayServer([])
    await srv.start()
    port = srv.port
    await srv.stop()
    async with Harness(config, port) as h:
        await until(lambda: h.client.reconnects >= 2)
        assert not h.client.connected


def test_secret_is_not_in_the_client_repr(config: Config) -> None:
    """The configured password never shows in the config the client holds."""
    cfg = replace(config.pbx, secret=Secret("ClueCon"))
    assert "ClueCon" not in repr(cfg)
