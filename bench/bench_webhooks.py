"""What webhooks cost: the call path with 0, 1 and 3 subscribed endpoints, and one endpoint's delivery rate.

1. ``record_call`` + the text-back row for N missed calls on a file store (``synchronous=FULL``, as the daemon
   runs it), with no endpoint, one endpoint and three endpoints wanting every event: the events and their
   delivery rows are written in the same transactions, so this is the whole price on the texting path.
2. One endpoint delivering those events, signed, to an aiohttp receiver on 127.0.0.1 that verifies every
   signature with ``standardwebhooks`` (in another process), one at a time and in order: events per second and
   the p50/p99 time of one POST.

``python bench/bench_webhooks.py [--calls 2000]`` (about 30 s on 2 cores); it prints the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from textbackd import config as config_mod  # noqa: E402
from textbackd.core.model import Call, Direction, MessageState, Outcome, TextKind  # noqa: E402
from textbackd.store import webhooks as wh_q  # noqa: E402
from textbackd.store.db import Store  # noqa: E402
from textbackd.webhooks import delivery  # noqa: E402

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
RECEIVER = f"""
import sys
from aiohttp import web
from standardwebhooks.webhooks import Webhook
hook = Webhook({SECRET!r})
async def handle(request):
    hook.verify(await request.read(), dict(request.headers))
    return web.Response(status=204)
app = web.Application()
app.router.add_post("/hook", handle)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=lambda *a: print("ready", flush=True),
            access_log=None)
"""


def calls(n: int) -> list[Call]:
    t0 = datetime.now(timezone.utc) - timedelta(hours=1)
    return [Call(id=f"bench.{i}", pbx="asterisk", direction=Direction.INBOUND, outcome=Outcome.NO_ANSWER,
                 caller=f"+1212555{i % 10000:04d}", caller_raw="", caller_name="MARIA GARCIA", did="5550100",
                 started=t0, ended=t0 + timedelta(seconds=20), ring_seconds=18) for i in range(n)]


def call_path(tmp: Path, n: int, endpoints: int) -> tuple[float, Store]:
    store = Store(tmp / f"e{endpoints}.db")
    wh_q.sync_endpoints(store, [(f"ep{i}", tuple(config_mod.WEBHOOK_EVENTS)) for i in range(endpoints)])
    now = time.time()
    t = time.perf_counter()
    for c in calls(n):
        store.record_call(c, now=now)
        store.add_message(to=c.caller, kind=TextKind.TEXTBACK, state=MessageState.SCHEDULED, now=now,
                          call_id=f"asterisk:{c.id}", text="Hi Maria, this is Apex. Sorry we missed your call.")
    return n / (time.perf_counter() - t), store


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def deliver_all(store: Store, port: int) -> tuple[float, list[float], int]:
    cfg = config_mod.parse({"business": {"name": "Apex"},
                            "webhooks": [{"name": "ep0", "url": f"http://127.0.0.1:{port}/hook", "secret": SECRET}]},
                           env={})
    ep = delivery.Endpoint(store, cfg.webhooks[0])
    total = wh_q.pending_count(store, "ep0")
    times: list[float] = []
    post = delivery.post

    async def timed(*a, **kw):
        t = time.perf_counter()
        r = await post(*a, **kw)
        times.append(time.perf_counter() - t)
        return r

    delivery.post = timed
    try:
        t = time.perf_counter()
        while wh_q.pending_count(store, "ep0"):
            await ep.process()
        elapsed = time.perf_counter() - t
    finally:
        delivery.post = post
        await ep.close()
    return total / elapsed, times, total


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=2000)
    args, _ = ap.parse_known_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        stores = []
        for endpoints in (0, 1, 3):
            rate, store = call_path(tmp, args.calls, endpoints)
            stores.append(store)
            print(f"call path (record_call + text-back row, on disk), {endpoints} endpoint(s): {rate:,.0f} calls/s")
        port = free_port()
        rx = subprocess.Popen([sys.executable, "-c", RECEIVER, str(port)], stdout=subprocess.PIPE, text=True)
        try:
            assert rx.stdout is not None and "ready" in rx.stdout.readline()
            rate, times, total = asyncio.run(deliver_all(stores[1], port))
        finally:
            rx.terminate()
            rx.wait(10)
        q = statistics.quantiles(times, n=100)
        print(f"one endpoint, {total:,} events (2 per call), in order, one at a time: {rate:,.0f} events/s; "
              f"one POST p50 {q[49] * 1000:.1f} ms, p99 {q[98] * 1000:.1f} ms")
        for s in stores:
            s.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
