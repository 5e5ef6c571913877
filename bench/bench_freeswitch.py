"""FreeSWITCH parser + tracker throughput on a ≥1,000,000-event stream built from the recorded busy hour.

    python bench/bench_freeswitch.py [--events 1000000] [--json-events 250000]

The stream is the real ``18-busy-hour`` capture (46 calls, 3,703 events,
17 MB of ``event plain ALL``) repeated with every UUID renumbered per
repetition (the first 8 hex digits of each UUID become the repetition
number), so every repetition is 46 new calls. It is generated piece by piece
and fed to ``EslParser`` in 64 KiB reads, exactly as the client and
``replay`` do: frames → ``event_of`` → ``event_time`` → ``FsTracker.feed``.
Prints events/s, MB/s, calls, and the process's peak RSS. The ``event json``
capture of the same hour is measured the same way with fewer events (JSON
decoding dominates). Expect about a minute on one core.
"""

from __future__ import annotations

import argparse
import gzip
import pathlib
import re
import resource
import sys
import time
from collections.abc import Iterator

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import structlog  # noqa: E402

from textbackd.config import parse  # noqa: E402
from textbackd.pbx.freeswitch.frames import EslParser, event_of, event_time  # noqa: E402
from textbackd.pbx.freeswitch.tracker import FsTracker  # noqa: E402

TRACES = ROOT / "tests" / "data" / "freeswitch" / "traces"
UUID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
CHUNK = 64 * 1024
CALLS_PER_REP = 46


def template(name: str) -> tuple[list[bytes], int]:
    """The capture's event frames, cut at every UUID (minus its first 8 digits), and the event count."""
    raw = gzip.decompress((TRACES / name).read_bytes())
    frames = [f for f in EslParser().feed(raw) if f.content_type.startswith("text/event-")]
    body = b"".join(
        b"Content-Length: %d\nContent-Type: %s\n\n" % (len(f.body), f.content_type.encode()) + f.body for f in frames
    )
    segments: list[bytes] = []
    pos = 0
    for m in UUID.finditer(body):
        segments.append(body[pos : m.start()])
        pos = m.start() + 8
    segments.append(body[pos:])
    return segments, len(frames)


def stream(segments: list[bytes], reps: int) -> Iterator[bytes]:
    for rep in range(reps):
        data = (b"%08x" % (0x10000000 + rep)).join(segments)
        for i in range(0, len(data), CHUNK):
            yield data[i : i + CHUNK]


def run(name: str, want_events: int) -> dict[str, float]:
    segments, per_rep = template(name)
    reps = -(-want_events // per_rep)
    config = parse({"pbx": {"kind": "freeswitch", "password": "x"}, "business": {"name": "Bench"}}, env={})
    tracker = FsTracker(config)
    parser = EslParser()
    events = calls = 0
    nbytes = 0
    last = 0.0
    t0 = time.perf_counter()
    for chunk in stream(segments, reps):
        nbytes += len(chunk)
        for frame in parser.feed(chunk):
            ev = event_of(frame)
            if ev is None:
                continue
            events += 1
            last = event_time(ev) or last
            calls += len(tracker.feed(ev, last))
    calls += len(tracker.flush(last))
    dt = time.perf_counter() - t0
    if calls != reps * CALLS_PER_REP:
        raise SystemExit(f"{name}: {calls} calls, expected {reps * CALLS_PER_REP}")
    return {"events": events, "calls": calls, "seconds": dt, "mb": nbytes / 1e6, "skipped": parser.stats.skipped}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--json-events", type=int, default=250_000)
    args = ap.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    print("FreeSWITCH event socket: parser + tracker (one core, Python %d.%d)" % sys.version_info[:2])
    for label, name, n in (
        ("event plain", "18-busy-hour.esl.gz", args.events),
        ("event json ", "18-busy-hour.json.esl.gz", args.json_events),
    ):
        if n <= 0:
            continue
        r = run(name, n)
        print(
            f"  {label}: {r['events']:>9,.0f} events  {r['mb']:>7,.0f} MB  {r['calls']:>7,.0f} calls  "
            f"{r['seconds']:6.1f} s  {r['events'] / r['seconds']:>8,.0f} events/s  "
            f"{r['mb'] / r['seconds']:6.1f} MB/s  skipped={r['skipped']:.0f}"
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  peak RSS: {peak:.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
