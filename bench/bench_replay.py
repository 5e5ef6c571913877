"""`textbackd replay` against panoramisk, decisions flat in store size, and the memory of a long replay (issue 15).

One run prints:

1. events/s of the real ``textbackd replay`` command (a subprocess, start-up included, output to /dev/null)
   with the policy's decisions (the default) and with ``--calls-only``, on a file of ~315,000 AMI events
   (the recorded busy hour repeated with renumbered ids, ``bench_ami.Stream``), and panoramisk 1.4's bare
   parse + dispatch of the same bytes in 64 KiB chunks, in memory; the ratios against the goals (>= 2x, >= 3x);
2. the per-call decision (``Pipeline.handle_call`` + the outbox's ``recheck``) p50/p99 on stores of 10,000,
   100,000 and 1,000,000 calls and texts, and the p99 ratio of the biggest to the smallest (goal < 2x);
   then ``EXPLAIN QUERY PLAN`` of every statement one decision runs (caught with a trace callback), and
   whether any scans a whole table;
3. with ``--memory``: peak RSS of a 5,000,000-event replay streamed from a file on disk, ``--calls-only`` and
   with decisions (goal < 100 MB). It takes about 2 minutes more, so it is behind the flag.

Run: ``.venv/bin/python bench/bench_replay.py [--events N] [--sizes 10000,100000,1000000] [--memory]``.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_ami import Stream, bench_panoramisk  # noqa: E402
from bench_pipeline import history_config, make_call, pct, test_numbers  # noqa: E402

from textbackd.core.model import MessageState, Outcome  # noqa: E402
from textbackd.daemon.pipeline import Pipeline  # noqa: E402
from textbackd.decide import policy  # noqa: E402
from textbackd.store import history as history_q  # noqa: E402
from textbackd.store.db import Store  # noqa: E402

BANNER = b"Asterisk Call Manager/11.0.0\r\n"
LITERAL = re.compile(r"'[^']*'|\b\d+(?:\.\d+)?\b")


def load() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def write_stream(path: Path, events: int) -> Stream:
    """The benchmark stream as a capture file (no .timing sidecar), written chunk by chunk."""
    stream = Stream(events)
    with path.open("wb") as f:
        f.write(BANNER)
        for chunk in stream.chunks():
            f.write(chunk)
    return stream


# ``python -m textbackd`` that says its peak RSS at exit: VmHWM belongs to the process image after exec, while
# getrusage's ru_maxrss of a child also counts the copy of this (big) bench process it was forked from
_HWM = ("import atexit, runpy, sys\n"
        "def hwm():\n"
        "    line = [x for x in open('/proc/self/status') if x.startswith('VmHWM:')][0]\n"
        "    sys.stderr.write('bench ' + line)\n"
        "atexit.register(hwm)\n"
        "sys.argv = ['textbackd', *sys.argv[1:]]\n"
        "runpy.run_module('textbackd', run_name='__main__')\n")


def run_replay(path: Path, *flags: str) -> tuple[float, float, int, str]:
    """(wall seconds, CPU seconds, peak RSS in KB, stderr's last line) of one ``textbackd replay`` process."""
    t = time.perf_counter()
    with open(os.devnull, "wb") as null:
        p = subprocess.Popen([sys.executable, "-c", _HWM, "replay", *flags, str(path)],
                             stdout=null, stderr=subprocess.PIPE, cwd=ROOT)
        err = p.stderr.read().decode()
        _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode:
        raise SystemExit(f"textbackd replay {' '.join(flags)} failed ({p.returncode}): {err[-2000:]}")
    lines = err.strip().splitlines()
    rss = int(lines[-1].split()[2])  # "bench VmHWM:  35412 kB"
    return wall, usage.ru_utime + usage.ru_stime, rss, lines[-2]


def speed(events: int, reps: int) -> None:
    with tempfile.TemporaryDirectory(prefix="textbackd-replay-bench-") as wd:
        path = Path(wd) / "busy-hours.ami"
        stream = write_stream(path, events)
        size = path.stat().st_size
        print(f"stream: {stream.events:,} AMI events ({stream.reps} x the recorded busy hour, ids renumbered), "
              f"{size / 1e6:,.1f} MB on disk, no .timing sidecar; {reps} rounds, each round runs the three one after "
              f"the other (other work on the machine hits them alike); medians")
        kinds = (("textbackd replay (decisions)", ()), ("textbackd replay --calls-only", ("--calls-only",)))
        runs: dict[str, list] = {k: [] for k, _ in kinds}
        pano: list[tuple[float, float]] = []
        loads = []
        for _ in range(reps):
            for label, flags in kinds:
                runs[label].append(run_replay(path, *flags))
            r = bench_panoramisk(stream)
            assert r["events"] == stream.events, r
            pano.append((r["seconds"], r["cpu"]))
            loads.append(load())
        pwall = statistics.median(w for w, _ in pano)
        pcpu = statistics.median(c for _, c in pano)
        prate = stream.events / pwall
        for (label, _), goal in zip(kinds, (2.0, 3.0)):
            wall = statistics.median(r[0] for r in runs[label])
            cpu = statistics.median(r[1] for r in runs[label])
            ratio = stream.events / wall / prate
            print(f"  {label:<46} {stream.events / wall:>9,.0f} events/s ({wall:.2f} s wall, {cpu:.2f} s CPU)  "
                  f"{ratio:.2f}x panoramisk, goal >= {goal:g}x: {'MET' if ratio >= goal else 'MISSED'} "
                  f"(by CPU time {pcpu / cpu:.2f}x)")
            print(f"      {runs[label][0][3]}")
        print(f"  {'panoramisk 1.4 data_received, 64 KiB chunks':<46} {prate:>9,.0f} events/s ({pwall:.2f} s wall, "
              f"{pcpu:.2f} s CPU), in memory, no start-up")
        print(f"  load average after each round: {', '.join(loads)}")
        empty = Path(wd) / "empty.ami"
        empty.write_bytes(b"")
        start = min(run_replay(empty)[0] for _ in range(3))
        print(f"  start-up alone (replay of an empty file, best of 3): {start * 1000:.0f} ms")


# --- textbackd --help ------------------------------------------------------------------------


def help_time(runs: int = 20) -> None:
    """Wall time of ``python -m textbackd --help`` (``runs`` processes), and what its imports cost."""
    cmd = [sys.executable, "-m", "textbackd", "--help"]
    walls = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True, cwd=ROOT)
        walls.append((time.perf_counter() - t) * 1000)
    med = statistics.median(walls)
    print(f"textbackd --help: {runs} runs, median {med:.0f} ms, min {min(walls):.0f} ms, max {max(walls):.0f} ms "
          f"(goal < 150 ms: {'MET' if med < 150 else 'MISSED'}; load {load()})")
    err = subprocess.run([sys.executable, "-X", "importtime", *cmd[1:]], capture_output=True, text=True,
                         cwd=ROOT).stderr
    rows = []
    for line in err.splitlines():
        if line.startswith("import time:") and "|" in line and "cumulative" not in line:
            own, cum, name = line[len("import time:"):].split("|")
            rows.append((int(cum), int(own), name.rstrip()))
    total = sum(o for _, o, _ in rows)
    print(f"  -X importtime: {len(rows)} modules, {total / 1000:.0f} ms of imports; the biggest (cumulative):")
    for cum, own, name in sorted(rows, reverse=True)[:8]:
        print(f"    {cum / 1000:6.1f} ms  {name.strip()}")
    heavy = [n.strip() for _, _, n in rows if n.strip().split(".")[0] in ("aiohttp", "phonenumbers", "prometheus_client",
                                                                         "structlog", "sqlite3", "asyncio")]
    print(f"  heavy modules imported by --help: {', '.join(sorted(set(heavy))) or 'none'}")


# --- decisions flat in store size -------------------------------------------------------------

RATE = 60.0  # calls an hour in the prefilled store: a bigger store is a longer history, not a busier hour


def fill(store: Store, rows: int, pool: list[str], end: float, rng: random.Random) -> None:
    """``rows`` calls and text-backs (half each) over ``rows / 2 / RATE`` hours up to ``end``, with executemany:
    15 % answered (skip ``answered``), else 70 % sent, 20 % skipped ``duplicate``, 10 % cancelled; replies from 5 %."""
    n = rows // 2
    span = n / RATE * 3600
    calls, msgs, incoming = [], [], []
    for k in range(n):
        at = end - span + k * span / n
        num = pool[rng.randrange(len(pool))]
        cid = f"asterisk:{1_000_000_000 + k}.1"
        answered = rng.random() < 0.15
        calls.append((cid, "asterisk", "inbound", "answered" if answered else "no_answer", int(not answered), num, num,
                      "", "5550101", at - 30, at - 20 if answered else None, at, 10.0, 0, None, None, None,
                      f"PJSIP/trunk-{k:08x}", at, None))
        r = rng.random()
        state, reason, sent = (("skipped", "answered", None) if answered else ("sent", "", at + 30) if r < 0.7
                               else ("skipped", "duplicate", None) if r < 0.9 else ("cancelled", "answered_callback", None))
        msgs.append((cid, "textback", num, "Hi, this is Apex Plumbing." if state != "skipped" else "", state, reason,
                     at, at + 30, at + 30, sent))
        if rng.random() < 0.05:
            incoming.append(("modem1", num, "Yes please", at + 300))
    db = store.db
    with store.batch():
        db.executemany("INSERT INTO calls (id, pbx, direction, outcome, missed, caller, caller_raw, caller_name, did, "
                       "started, answered_at, ended, ring_seconds, voicemail_left, voicemail_box, answered_by, queue, "
                       "channel, recorded_at, carrier_name) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", calls)
        db.executemany("INSERT INTO messages (call_id, kind, to_number, text, state, reason, created, send_at, updated, "
                       "sent_at) VALUES (?,?,?,?,?,?,?,?,?,?)", msgs)
        db.executemany("INSERT INTO incoming (sender, from_number, text, received_at) VALUES (?,?,?,?)", incoming)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def decisions(store: Store, cfg, known: list[str], fresh: list[str], start: float, n: int, rng: random.Random,
              base: int, trace: list[str] | None = None) -> list[float]:
    """ms of ``handle_call`` + ``recheck`` for ``n`` missed calls 20 s apart (half from known numbers)."""
    pipe = Pipeline(store, cfg)
    out = []
    for k in range(n):
        at = start + k * 20.0
        num = known[rng.randrange(len(known))] if k % 2 else fresh[k // 2 % len(fresh)]
        call = make_call(base + k, num, at)
        if trace is not None and k == n - 2:  # a new number: a text-back, and its recheck
            store.db.set_trace_callback(trace.append)
        t = time.perf_counter()
        res = pipe.handle_call(call, at)
        m = store.message(res.message_id) if isinstance(res.decision, policy.TextDecision) else None
        reason = pipe.recheck(m, m.send_at) if m else None
        out.append((time.perf_counter() - t) * 1000)
        if trace is not None and k == n - 2:  # and what a call seen twice and a STOP check run
            pipe.handle_call(call, at)  # stored already: `decided` answers
            store.is_opted_out(num)  # the outbox's opt-out check of a non-text-back
        store.db.set_trace_callback(None)
        if m:  # what the outbox does next (not timed): the text goes, and counts in the windows
            if reason:
                store.transition(m.id, MessageState.CANCELLED, now=m.send_at, detail=reason)
            else:
                store.transition(m.id, MessageState.SENDING, now=m.send_at)
                store.transition(m.id, MessageState.SENT, now=m.send_at, sent_at=m.send_at, sender="bench")
    return out


def flatness(sizes: list[int], n: int) -> None:
    runs = 2 * len(sizes)
    nums = test_numbers(20_000 + runs * (n // 2 + 1))
    fresh_runs = iter([nums[20_000 + i * (n // 2 + 1): 20_000 + (i + 1) * (n // 2 + 1)] for i in range(runs)])
    print(f"decisions: {n:,} missed calls 20 s apart (half from numbers in the store, half new), each timed "
          f"Pipeline.handle_call + recheck; prefilled at {RATE:g} calls/h (a bigger store is a longer history)")
    results = {}
    trace: list[str] = []
    with tempfile.TemporaryDirectory(prefix="textbackd-flat-bench-") as wd:
        for size in sizes:
            pool = nums[: min(20_000, max(500, size // 20))]
            path = Path(wd) / f"store-{size}.db"
            store = Store(path)
            end = 1_800_000_000.0
            t = time.perf_counter()
            fill(store, size, pool, end, random.Random(size))
            filled = time.perf_counter() - t
            cfg = history_config(str(path))
            for label, sync in (("daemon's store (WAL, synchronous=FULL)", "FULL"), ("synchronous=OFF", "OFF")):
                store.db.execute(f"PRAGMA synchronous = {sync}")
                per = decisions(store, cfg, pool, next(fresh_runs), end + (0 if sync == "FULL" else n * 20.0 + 3600), n,
                                random.Random(1), 50_000_000 if sync == "FULL" else 60_000_000,
                                trace if size == sizes[-1] and sync == "OFF" else None)
                results[(size, label)] = per
                print(f"  {size:>9,} rows ({len(pool):,} numbers, filled in {filled:.1f} s), {label}: "
                      f"p50 {pct(per, 50):.3f} ms, p99 {pct(per, 99):.3f} ms (load {load()})")
            store.close()
        for label in ("daemon's store (WAL, synchronous=FULL)", "synchronous=OFF"):
            small, big = pct(results[(sizes[0], label)], 99), pct(results[(sizes[-1], label)], 99)
            ratio = big / small
            print(f"  p99 at {sizes[-1]:,} / p99 at {sizes[0]:,}, {label}: {ratio:.2f}x "
                  f"(goal < 2x: {'MET' if ratio < 2 else 'MISSED'})")
        # every statement of the last timed decision (on the biggest store), and its plan
        store = Store(Path(wd) / f"store-{sizes[-1]}.db")
        print("EXPLAIN QUERY PLAN of every statement one decision ran (handle_call + recheck of a text-back):")
        scans = 0
        seen = set()
        for sql in trace:
            head = " ".join(sql.split())
            shape = LITERAL.sub("?", head)
            if head.split(" ", 1)[0].upper() in ("BEGIN", "COMMIT", "ROLLBACK") or shape in seen:
                continue
            seen.add(shape)
            plan = history_q.plan(store, sql, ())
            # json_each is the JSON list of one endpoint's event types, not a table
            scans += sum(1 for line in plan if line.strip().startswith("SCAN")
                         and "CONSTANT ROW" not in line and "json_each" not in line)
            print(f"  {head[:160]}{'...' if len(head) > 160 else ''}")
            for line in plan or ["(no table read)"]:
                print(f"      {line}")
        print(f"  full-table scans: {scans} (goal: none)")
        store.close()


def memory(events: int) -> None:
    with tempfile.TemporaryDirectory(prefix="textbackd-replay-rss-") as wd:
        path = Path(wd) / "month.ami"
        t = time.perf_counter()
        stream = write_stream(path, events)
        print(f"memory: {stream.events:,} events, {path.stat().st_size / 1e9:.2f} GB on disk "
              f"(written in {time.perf_counter() - t:.0f} s), streamed by textbackd replay:")
        for flags in (("--calls-only",), ()):
            wall, _, rss, last = run_replay(path, *flags)
            print(f"  textbackd replay {' '.join(flags) or '(decisions)':<14} peak RSS {rss / 1024:.1f} MB "
                  f"(goal < 100 MB: {'MET' if rss / 1024 < 100 else 'MISSED'}), {stream.events / wall:,.0f} events/s, "
                  f"load {load()}; {last}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=315_000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--decisions", type=int, default=1000)
    ap.add_argument("--memory", action="store_true", help="also the 5,000,000-event RSS runs (about 2 min)")
    ap.add_argument("--memory-events", type=int, default=5_000_000)
    ap.add_argument("--only", choices=("speed", "help", "flat", "memory"))
    args = ap.parse_args()
    print(f"machine: {os.cpu_count()} CPUs, load average {' '.join(Path('/proc/loadavg').read_text().split()[:3])}; "
          f"Python {sys.version.split()[0]}")
    # start-up counts: byte-compile textbackd first, as the package's postinst does (debian/textbackd.postinst);
    # with PYTHONDONTWRITEBYTECODE=1 and no .pyc every run would compile ~65 modules (~90 ms)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "textbackd")], check=True)
    print("textbackd byte-compiled first (python -m compileall), as debian/textbackd.postinst does on install")
    if args.only in (None, "speed"):
        speed(args.events, args.reps)
    if args.only in (None, "help"):
        help_time()
    if args.only in (None, "flat"):
        flatness([int(s) for s in args.sizes.split(",")], args.decisions)
    if args.memory or args.only == "memory":
        memory(args.memory_events)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
