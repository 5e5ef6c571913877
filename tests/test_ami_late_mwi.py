"""Asterisk analogue of the late FreeSWITCH voicemail (issue 13 section 4): ``MessageWaiting`` after the last Hangup.

The capture is the recorded ``tests/data/asterisk/02-voicemail-left`` (+12125550102 → 5550100, rings 101,
then ``VoiceMail(101@default,u)`` and a 7 s message) with ONE block moved: its ``Event: MessageWaiting``
block is cut out and put back right after the caller channel's final ``Event: Hangup``. Every block is
otherwise byte for byte as recorded, in recorded order; the ``.timing`` sidecar is rewritten for the new
byte offsets, each block keeping its recorded arrival second (the moved one takes the Hangup's).
"""

from __future__ import annotations

import asyncio
import json
import pathlib
from typing import Any

from textbackd.config import parse
from textbackd.core.model import Outcome
from textbackd.daemon.service import Daemon
from textbackd.pbx.asterisk.replay_server import AmiReplayServer, load_capture
from textbackd.replay import replay_calls

DATA = pathlib.Path(__file__).parent / "data" / "asterisk"
CAPTURE = "02-voicemail-left"
CFG = parse({"business": {"name": "Acme", "timezone": "America/New_York"}, "pbx": {"secret": "x"}}, env={})


def rearranged(out: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """``(ami, timing)`` of the capture with its MessageWaiting block moved after the final Hangup."""
    data = (DATA / f"{CAPTURE}.ami").read_bytes()
    head, rows = [], []
    for line in (DATA / f"{CAPTURE}.timing").read_text().splitlines():
        cols = line.split("\t")
        if line.startswith("#") or len(cols) < 5 or cols[1] != "<":
            head.append(line)
        else:
            rows.append((cols[0], int(cols[2]), int(cols[3])))
    blocks = [(secs, data[off : off + n]) for secs, off, n in sorted(rows, key=lambda r: r[1])]
    assert b"".join(b for _, b in blocks) == data  # the sidecar covers the capture exactly
    (mwi,) = [i for i, (_, b) in enumerate(blocks) if b.startswith(b"Event: MessageWaiting")]
    hangups = [i for i, (_, b) in enumerate(blocks) if b.startswith(b"Event: Hangup\r\n")]
    last = hangups[-1]
    assert b"Linkedid: 1795395463.2" in blocks[mwi][1] and mwi < last  # recorded: the flag came before the Hangup
    moved = (blocks[last][0], blocks[mwi][1])
    order = blocks[:mwi] + blocks[mwi + 1 : last + 1] + [moved] + blocks[last + 1 :]
    ami, timing = out / f"{CAPTURE}.ami", out / f"{CAPTURE}.timing"
    ami.write_bytes(b"".join(b for _, b in order))
    assert sorted(b for _, b in order) == sorted(b for _, b in blocks)
    lines, off = list(head), 0
    for secs, b in order:
        first = b.split(b"\r\n", 1)[0].decode()
        lines.append(f"{secs}\t<\t{off}\t{len(b)}\t{first}")
        off += len(b)
    timing.write_text("\n".join(lines) + "\n")
    return ami, timing


def test_replay_keeps_voicemail_left_when_message_waiting_comes_after_the_hangup(tmp_path: pathlib.Path) -> None:
    """Through ``replay.replay_calls``: the call is still ``voicemail`` with ``voicemail_left`` and box 101."""
    ami, _ = rearranged(tmp_path)
    (call,) = list(replay_calls(ami, CFG, "asterisk"))
    expected = json.loads((DATA / f"{CAPTURE}.expected.json").read_text())["calls"][0]
    assert (call.outcome, call.voicemail_left, call.voicemail_box) == (Outcome.VOICEMAIL, True, expected["voicemail_box"])
    assert call.missed is expected["missed"]


async def test_daemon_on_tcp_keeps_voicemail_left_with_a_late_message_waiting(tmp_path: pathlib.Path) -> None:
    """The daemon, fed the rearranged capture over TCP by the AMI replay server, stores the call with its message."""
    ami, timing = rearranged(tmp_path)
    async with AmiReplayServer(load_capture(ami, timing), secret="s3cret") as srv:
        config = parse({"pbx": {"port": srv.port, "secret": "s3cret"},
                        "business": {"name": "Acme", "timezone": "America/New_York"},
                        "store": {"path": str(tmp_path / "t.db")}}, env={})
        seen: list[Any] = []
        daemon = Daemon(config, clock=lambda: 1_795_395_470.0, senders=[], handle_signals=False,
                        on_call=lambda call, out: seen.append(out))
        task = asyncio.create_task(daemon.run())
        loop = asyncio.get_running_loop()
        end = loop.time() + 30
        while not seen:
            assert loop.time() < end and not task.done(), "the daemon did not report the call"
            await asyncio.sleep(0.05)
        daemon.stop()
        await asyncio.wait_for(task, 20)
    (out,) = seen
    assert out.call.voicemail_left and out.call.outcome is Outcome.VOICEMAIL
