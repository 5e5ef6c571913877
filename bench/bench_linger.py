"""What the FreeSWITCH voicemail linger (issue 13 section 4) adds to the time to a decision, through the real daemon.

The unmodified ``service.Daemon`` (``kind = "freeswitch"``, grace 0) is fed recorded captures over TCP by
``EslReplayServer`` at full speed. Per call: the daemon has fed the tracker the call's last event (the last
``CHANNEL_HANGUP_COMPLETE`` / ``CHANNEL_DESTROY`` of any of its legs) → the pipeline has stored and decided the
call (``on_call``), in ``time.perf_counter()`` seconds (legs that end after the decision do not count), ``--runs`` times each:

* ``02-no-answer-voicemail``: a missed call, voicemail run on the caller's own leg: must not wait at all;
* ``03-caller-cancel``: a missed call that never reached voicemail: must not wait at all;
* ``13-internal-no-answer``: voicemail through a ``loopback/voicemail-b`` leg, no message left: waits
  ``VOICEMAIL_LINGER`` for a ``leave-message`` that never comes (the worst case of the linger).

Run: ``.venv/bin/python bench/bench_linger.py [--runs 5]``. Prints figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from textbackd.config import parse  # noqa: E402
from textbackd.daemon.service import Daemon  # noqa: E402
from textbackd.pbx.freeswitch.replay_server import EslReplayServer, load_capture  # noqa: E402
from textbackd.pbx.freeswitch.tracker import VOICEMAIL_LINGER  # noqa: E402

TRACES = ROOT / "tests" / "data" / "freeswitch" / "traces"
CASES = ("02-no-answer-voicemail", "03-caller-cancel", "13-internal-no-answer")


async def one(capture: str, tmp: str) -> float:
    """Seconds from the call's last leg event fed to the tracker to the call decided."""
    async with EslReplayServer(load_capture(TRACES / f"{capture}.esl.gz"), password="pw") as srv:
        config = parse({"pbx": {"kind": "freeswitch", "port": srv.port, "password": "pw"},
                        "business": {"name": "Acme Dental", "timezone": "America/New_York"},
                        "policy": {"grace_seconds": 0},
                        "store": {"path": os.path.join(tmp, f"{capture}-{time.monotonic_ns()}.db")}}, env={})
        decided: list[float] = []
        daemon = Daemon(config, senders=[], handle_signals=False, on_call=lambda c, o: decided.append(time.perf_counter()))
        legs: list[float] = []  # perf_counter of every leg's hangup/destroy fed
        feed = daemon.tracker.feed

        def timed_feed(event, at):  # the bench's stamp: when the tracker got each leg's end
            if event.get("Event-Name") in ("CHANNEL_HANGUP_COMPLETE", "CHANNEL_DESTROY"):
                legs.append(time.perf_counter())
            return feed(event, at)

        daemon.tracker.feed = timed_feed  # type: ignore[method-assign]
        task = asyncio.create_task(daemon.run())
        end = time.perf_counter() + 30
        while not decided and time.perf_counter() < end:
            await asyncio.sleep(0.005)
        daemon.stop()
        await asyncio.wait_for(task, 20)
    if not decided:
        raise SystemExit(f"{capture}: no call decided in 30 s")
    return decided[0] - max(t for t in legs if t <= decided[0])  # the last leg event before the decision


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    args, _ = ap.parse_known_args()
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}; VOICEMAIL_LINGER = {VOICEMAIL_LINGER} s")
    with tempfile.TemporaryDirectory() as tmp:
        for capture in CASES:
            xs = [asyncio.run(one(capture, tmp)) * 1000 for _ in range(args.runs)]
            print(f"{capture:24s} last leg event → call decided: median {statistics.median(xs):8.1f} ms, "
                  f"max {max(xs):8.1f} ms ({args.runs} runs)")


if __name__ == "__main__":
    main()
