"""The daemon with ``kind = "freeswitch"``: event socket → tracker → pipeline → store, end to end."""

from __future__ import annotations

import asyncio
import pathlib
from typing import Any

from textbackd.config import parse
from textbackd.core.model import Direction
from textbackd.daemon.service import Daemon
from textbackd.decide.policy import TextDecision
from textbackd.pbx.freeswitch.replay_server import EslReplayServer, load_capture

TRACES = pathlib.Path(__file__).parent / "data" / "freeswitch" / "traces"
NOW = 1_795_396_000.0  # the capture's own day, so every call is fresh for the policy


async def test_daemon_on_freeswitch_handles_the_busy_hour(tmp_path: pathlib.Path) -> None:
    """Every call of the recorded busy hour reaches the pipeline once; only missed inbound calls get a text."""
    blocks = load_capture(TRACES / "18-busy-hour.esl.gz")
    async with EslReplayServer(blocks, password="s3cret-pw") as srv:
        config = parse(
            {
                "pbx": {"kind": "freeswitch", "port": srv.port, "password": "s3cret-pw"},
                "business": {"name": "Acme Dental", "timezone": "America/New_York"},
                "store": {"path": str(tmp_path / "t.db")},
            },
            env={},
        )
        seen: list[Any] = []
        daemon = Daemon(config, clock=lambda: NOW, senders=[], on_call=lambda call, out: seen.append(out), handle_signals=False)
        task = asyncio.create_task(daemon.run())
        loop = asyncio.get_running_loop()
        end = loop.time() + 60
        while len(seen) < 46:
            assert loop.time() < end and not task.done(), "the daemon did not finish the busy hour"
            await asyncio.sleep(0.02)
        daemon.stop()
        await asyncio.wait_for(task, 20)
    assert srv.logins == 1
    assert len({o.call.id for o in seen}) == 46 and all(o.new for o in seen)
    assert sum(o.call.missed for o in seen) == 27
    texted = [o for o in seen if isinstance(o.decision, TextDecision)]
    assert len(texted) >= 10 and all(o.call.missed and o.message_id is not None for o in texted)
    assert {o.decision.reason for o in seen if o.call.missed is False and o.call.direction is Direction.INBOUND} == {"answered"}
