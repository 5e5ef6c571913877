"""Soak: 24 simulated hours of a busy office through the real daemon, at accelerated time.

A stream of about 2,000 calls (30 % missed: busy, caller hang-up, voicemail,
unavailable, ring group and queue abandons; the rest answered directly, by a
ring group or a queue) is built from the recorded Asterisk captures, each call
renumbered (its own Uniqueids) and given a caller from +1 212 555 0100..0199,
spread over 86,400 recorded seconds and replayed by ``AmiReplayServer`` at a
speed that fits the day into about two minutes. ``textbackd run`` is a real
subprocess with the modem simulator on a pty; ``/metrics`` and ``/healthz`` are
scraped at every sample, as a monitor would.

The daemon's RSS (``/proc/PID/status`` VmRSS) and open file descriptors
(``/proc/PID/fd``) are sampled every second; start (after 5 % of the day),
middle and end are printed with the peak. Bars: RSS at the end within 10 %
(or 5 MB) of the middle, and the same number of descriptors: no leak.

Policy limits are lifted (the daemon's clock is real time, so a day's texts
land within minutes; the hourly caps would otherwise skip most of them).

Run: ``.venv/bin/python bench/bench_soak.py [--calls 2000] [--minutes 2]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from e2e import capture, query, renumber, rewrite, spawn_daemon, stop_daemon, write_config  # noqa: E402

from textbackd.pbx.asterisk.replay_server import AmiReplayServer, Block  # noqa: E402
from textbackd.senders.modem.simulator import ModemSimulator  # noqa: E402

MISSED = {  # capture → its recorded caller
    "05-busy": "+12125550105",
    "03-caller-cancel": "+12125550103",
    "02-voicemail-left": "+12125550102",
    "06-unavailable": "+12125550106",
    "08-ringgroup-noanswer": "+12125550108",
    "09-queue-abandon": "+12125550109",
}
ANSWERED = {"01-answered": "+12125550101", "07-ringgroup-answered": "+12125550107", "10-queue-answered": "+12125550110"}
DAY = 86400.0


def day_stream(n_calls: int, missed_share: float, seed: int = 7) -> tuple[list[Block], int]:
    rng = random.Random(seed)
    caps = {name: capture(name) for name in {**MISSED, **ANSWERED}}
    for name, caller in {**MISSED, **ANSWERED}.items():
        assert caller.encode() in b"".join(b.data for b in caps[name]), f"{name}: caller {caller} not in capture"
    n_missed = round(n_calls * missed_share)
    kinds = [True] * n_missed + [False] * (n_calls - n_missed)
    rng.shuffle(kinds)
    starts = sorted(rng.uniform(0, DAY - 600) for _ in range(n_calls))
    out: list[Block] = []
    for i, (missed, start) in enumerate(zip(kinds, starts)):
        pool = MISSED if missed else ANSWERED
        name = rng.choice(sorted(pool))
        blocks = rewrite(caps[name], pool[name], f"+121255501{rng.randrange(100):02d}")
        blocks = renumber(blocks, i + 1)
        t0 = blocks[0].at
        out += [replace(b, at=start + b.at - t0) for b in blocks]
    out.sort(key=lambda b: b.at)  # calls overlap as in a real office; each call's own order is kept
    return out, n_missed


def sample(pid: int) -> tuple[float, int]:
    rss_kb = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss_kb = int(line.split()[1])
    return rss_kb / 1024, len(os.listdir(f"/proc/{pid}/fd"))


async def scrape(port: int) -> tuple[int, int]:
    import aiohttp

    async with aiohttp.ClientSession() as s:
        async with s.get(f"http://127.0.0.1:{port}/metrics") as r:
            await r.read()
            m = r.status
        async with s.get(f"http://127.0.0.1:{port}/healthz") as r:
            await r.read()
            return m, r.status


async def main(args: argparse.Namespace) -> int:
    t_build = time.perf_counter()
    blocks, n_missed = day_stream(args.calls, 0.30)
    print(f"stream: {args.calls} calls ({n_missed} missed), {len(blocks)} AMI events over "
          f"{blocks[-1].at / 3600:.1f} recorded hours, built in {time.perf_counter() - t_build:.1f} s", flush=True)
    speed = blocks[-1].at / (args.minutes * 60)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        sim = ModemSimulator(link=str(tmp / "modem0"))
        await sim.start()
        log = tmp / "daemon.log"
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            http_port = probe.getsockname()[1]
        async with AmiReplayServer(blocks, secret="e2e-secret", speed=speed) as srv:
            cfg = write_config(tmp, ami_port=srv.port, device=sim.device, grace=0)
            cfg.write_text(cfg.read_text().replace(
                "[policy]\n",
                "[policy]\nmax_per_prefix_per_hour = 1000000\nmax_per_hour = 1000000\n"
                "max_per_number_per_day = 1000000\ndedupe_hours = 0\n",
            ).replace('level = "info"', 'level = "warning"').replace("127.0.0.1:0", f"127.0.0.1:{http_port}"))
            proc = await spawn_daemon(cfg, log)
            samples: list[tuple[float, float, int, float]] = []  # (t, rss MB, fds, replay position share)
            scrapes = bad = 0
            t0 = time.perf_counter()
            try:
                while not srv.finished.is_set():
                    await asyncio.sleep(1.0)
                    if proc.returncode is not None:
                        print("daemon exited early:", log.read_text()[-2000:])
                        return 1
                    rss, fds = sample(proc.pid)
                    samples.append((time.perf_counter() - t0, rss, fds, srv.position / len(blocks)))
                    m, _h = await scrape(http_port)
                    scrapes += 1
                    bad += m != 200
                await asyncio.sleep(3.0)  # the last calls settle and their texts go out
                rss, fds = sample(proc.pid)
                samples.append((time.perf_counter() - t0, rss, fds, 1.0))
            finally:
                rc = await stop_daemon(proc)
        await sim.stop()
        db = tmp / "textbackd.db"
        n_calls = query(db, "SELECT COUNT(*) AS n FROM calls")[0]["n"]
        states = {r["state"]: r["n"] for r in query(
            db, "SELECT state, COUNT(*) AS n FROM messages WHERE kind='textback' GROUP BY state")}
        reasons = {r["reason"]: r["n"] for r in query(
            db, "SELECT m.reason, COUNT(*) AS n FROM messages m JOIN calls c ON c.id = m.call_id "
                "WHERE c.missed = 1 AND m.state = 'skipped' GROUP BY m.reason")}
    wall = samples[-1][0]
    warm = next(s for s in samples if s[3] >= 0.05)
    mid = min(samples, key=lambda s: abs(s[3] - 0.5))
    end = samples[-1]
    peak = max(s[1] for s in samples)
    print(f"replayed 24 simulated hours in {wall:.0f} s wall (speed x{speed:.0f}); daemon exit {rc}")
    print(f"calls stored {n_calls}/{args.calls}; text-backs by state: {json.dumps(states, sort_keys=True)}; "
          f"texts the modem took: {len(sim.received)}; missed calls not texted, by reason: {reasons or 'none'}")
    print(f"/metrics + /healthz scraped {scrapes} times ({bad} non-200 /metrics)")
    print(f"{'':8}{'sim. hour':>10}{'RSS MB':>9}{'fds':>6}")
    for label, s in (("start", warm), ("mid", mid), ("end", end)):
        print(f"{label:8}{s[3] * 24:>10.1f}{s[1]:>9.1f}{s[2]:>6d}")
    print(f"peak RSS {peak:.1f} MB over {len(samples)} samples")
    flat_rss = end[1] - mid[1] <= max(5.0, 0.10 * mid[1])
    flat_fds = end[2] <= mid[2]
    print(f"RSS flat at the end: {'yes' if flat_rss else 'NO'} ({end[1] - mid[1]:+.1f} MB mid→end); "
          f"descriptors flat: {'yes' if flat_fds else 'NO'} ({end[2] - mid[2]:+d} mid→end)")
    ok = rc == 0 and n_calls == args.calls and flat_rss and flat_fds
    return 0 if ok else 1


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--minutes", type=float, default=2.0, help="wall time for the 24 simulated hours")
    raise SystemExit(asyncio.run(main(ap.parse_args())))
