"""`textbackd replay`: run a recorded PBX stream through the daemon's own parser, tracker and policy.

Prints one JSON object per finished call on stdout (``Call.to_json()`` plus what the daemon would have
done), one per line, in the order the calls finished; a one-line summary and any warnings (skipped
frames, missing timing) go to stderr. ``--summary`` prints the totals instead of the calls, ``--compare``
what another configuration would have done differently; ``--progress`` reports on stderr as it reads.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from textbackd.core.errors import TextbackError

NAME = "replay"
HELP = "replay a recorded AMI/ESL capture and print the calls it contains as JSON lines"
DESCRIPTION = (
    "Replay a raw PBX capture (Asterisk AMI bytes or FreeSWITCH ESL bytes; .gz accepted) through the "
    "same parser, call tracker and policy the daemon uses, and print one JSON object per finished call. "
    "Without -c a built-in default configuration is used (inbound contexts, region US)."
)
PROGRESS_AUTO_BYTES = 50_000_000  # a bigger file shows progress by default when stderr is a terminal


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--pbx",
        metavar="KIND",
        default=None,
        help="protocol of the capture: asterisk or freeswitch (default: pbx.kind of the configuration, else asterisk)",
    )
    p.add_argument(
        "--start",
        metavar="TIME",
        help="replay as if the capture began at TIME (ISO 8601, e.g. 2026-11-24T19:30-05:00); "
        "business hours and quiet hours are judged at the shifted times",
    )
    p.add_argument(
        "--calls-only", action="store_true", help="print the reconstructed calls without the policy's decisions"
    )
    p.add_argument(
        "--summary", action="store_true",
        help="print the totals and the reasons calls were not texted, grouped, instead of one line per call",
    )
    p.add_argument(
        "--compare", metavar="OTHER.toml",
        help="also replay with OTHER.toml's policy; print each call it would treat differently, then both totals",
    )
    p.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, default=None,
        help="bytes read, calls, rate and time left on stderr (default: on when stderr is a terminal and "
        "the file is over 50 MB)",
    )
    p.add_argument("file", metavar="FILE", help="raw capture (e.g. 01-answered.ami or busy.ami.gz)")


def run(args: argparse.Namespace) -> int:
    from textbackd import config as cfgmod
    from textbackd.core import log as logmod
    from textbackd.pbx import registry as pbx_kinds

    if args.pbx and args.pbx not in pbx_kinds.names():
        raise TextbackError(f"--pbx {args.pbx!r}: choose one of {', '.join(pbx_kinds.names())}")
    if args.compare and args.calls_only:
        raise TextbackError("--compare compares decisions: leave out --calls-only")
    cfg = _config(cfgmod, args.config, args.pbx)
    logmod.setup(args.log_level or ("warning" if not args.config else cfg.logging.level), cfg.logging.format, sys.stderr)
    progress = _Progress.maybe(args.file, args.progress)
    try:
        if args.compare:
            other = _config(cfgmod, args.compare, args.pbx or cfg.pbx.kind)
            return _compare(args, cfg, other, progress)
        return _replay(args, cfg, progress)
    except BrokenPipeError:  # `textbackd replay x.ami | head`
        return 0
    finally:
        if progress:
            progress.done()


def _config(cfgmod, path: str | None, pbx: str | None):
    from dataclasses import replace

    cfg = cfgmod.load(path) if path else cfgmod.parse({"business": {"name": "replay"}})
    return replace(cfg, pbx=replace(cfg.pbx, kind=pbx)) if pbx else cfg


def _results(args: argparse.Namespace, cfg, calls_only: bool = False):
    from textbackd.replay import replay_calls, replay_decisions

    start = _parse_start(args.start)
    if calls_only:
        return ((c, None) for c in replay_calls(args.file, cfg, cfg.pbx.kind, start=start))
    return replay_decisions(args.file, cfg, cfg.pbx.kind, start=start, contacts=_contacts(cfg))


def _replay(args: argparse.Namespace, cfg, progress: _Progress | None) -> int:
    from textbackd.replay import Totals

    totals = Totals()
    out = sys.stdout
    for call, action in _results(args, cfg, args.calls_only):
        totals.add(call, action)
        if not args.summary:
            obj = call.to_json()
            if action is not None:
                obj.update(action)
            out.write(json.dumps(obj, ensure_ascii=False) + "\n")
        if progress:
            progress.tick(totals.calls)
    if args.summary:
        timing = [] if args.calls_only else totals.time_to_text()
        width = max((len(k) for k, _ in [*totals.rows(), *timing]), default=0)
        for label, n in totals.rows():
            out.write(f"{label:<{width}}  {n:>8,}\n")
        if timing:
            out.write("\n")
        for label, figure in timing:
            out.write(f"{label:<{width}}  {figure:>8}\n")
    out.flush()
    if progress:
        progress.done()
    tail = "" if args.calls_only else f", {totals.texted} texted"
    print(f"replay: {totals.calls} calls, {totals.missed} missed{tail}", file=sys.stderr)
    return 0


def _compare(args: argparse.Namespace, cfg, other, progress: _Progress | None) -> int:
    """Both replays side by side, call by call (matched by call id, in the order the calls finished)."""
    from textbackd.replay import Totals

    mine, theirs = Totals(), Totals()
    pending: dict[str, tuple] = {}  # a call one replay finished and the other not yet (another tracker config)
    out = sys.stdout
    differ = 0
    a_it = _results(args, cfg)
    b_it = _results(args, other)
    sentinel = object()

    def show(call, a: str, b: str) -> None:
        nonlocal differ
        differ += 1
        out.write(f"{call.ended.isoformat(timespec='seconds')}  {call.id}  {call.caller or call.caller_raw}  "
                  f"{call.outcome}: {a}  ->  {b}\n")

    while True:
        a = next(a_it, sentinel)
        b = next(b_it, sentinel)
        if a is sentinel and b is sentinel:
            break
        for side, item in (("a", a), ("b", b)):
            if item is sentinel:
                continue
            call, action = item
            o = (mine if side == "a" else theirs).add(call, action)
            if progress and side == "a":
                progress.tick(mine.calls)
            seen = pending.pop(call.id, None)
            if seen is None:
                pending[call.id] = (side, call, o)
            elif seen[0] != side:
                oa, ob = (seen[2], o) if seen[0] == "a" else (o, seen[2])
                if oa != ob:
                    show(call, oa, ob)
    for side, call, o in pending.values():  # calls only one tracker config reconstructed
        if side == "a":
            show(call, o, "(no such call)")
        else:
            show(call, "(no such call)", o)
    if progress:
        progress.done()
    keys = set(mine.outcomes) | set(theirs.outcomes)
    ra, rb = dict(mine.rows(keys)), dict(theirs.rows(keys))
    labels = [k for k, _ in mine.rows(keys)]
    name_a = os.path.basename(args.config) if args.config else "built-in config"
    name_b = os.path.basename(args.compare)
    ta, tb = mine.time_to_text(), theirs.time_to_text()
    width = max(len(k) for k in [*labels, *(k for k, _ in ta), ""])
    out.write(f"\n{'':<{width}}  {name_a:>16}  {name_b:>16}\n")
    for k in labels:
        out.write(f"{k:<{width}}  {ra.get(k, 0):>16,}  {rb.get(k, 0):>16,}\n")
    out.write("\n")
    for (k, fa), (_, fb) in zip(ta, tb, strict=True):
        out.write(f"{k:<{width}}  {fa:>16}  {fb:>16}\n")
    out.flush()
    print(f"replay: {mine.calls} calls, {differ} treated differently by {name_b}", file=sys.stderr)
    return 0


class _Progress:
    """One line on stderr: bytes read, calls so far, rate and time left (redrawn in place on a terminal)."""

    def __init__(self, path: str, size: int) -> None:
        self.path, self.size = path, size
        self.t0 = self.last = time.monotonic()
        self.calls = 0
        self.tty = sys.stderr.isatty()
        self.shown = False

    @classmethod
    def maybe(cls, path: str, wanted: bool | None) -> _Progress | None:
        try:
            size = os.path.getsize(path)
        except OSError:
            return None  # the replay itself says what is wrong with the file
        if wanted is None:
            wanted = sys.stderr.isatty() and size > PROGRESS_AUTO_BYTES
        return cls(path, size) if wanted else None

    def tick(self, calls: int) -> None:
        self.calls = calls
        now = time.monotonic()
        if now - self.last >= (0.25 if self.tty else 2.0):
            self.last = now
            self._show(now)

    def done(self) -> None:
        if self.shown is None:
            return
        self._show(time.monotonic(), final=True)
        self.shown = None

    def _show(self, now: float, final: bool = False) -> None:
        from textbackd.pbx.base import bytes_read

        done = self.size if final else min(bytes_read.get(self.path, 0), self.size)
        secs = max(now - self.t0, 1e-6)
        rate = done / secs
        left = (self.size - done) / rate if rate > 0 and not final else 0.0
        pct = 100.0 * done / self.size if self.size else 100.0
        line = (f"replay: {done / 1e6:,.1f} of {self.size / 1e6:,.1f} MB ({pct:.0f}%), {self.calls:,} calls, "
                f"{rate / 1e6:,.1f} MB/s, {self.calls / secs:,.0f} calls/s, "
                + (f"done in {secs:.1f} s" if final else f"ETA {left:.0f} s"))
        end = "\n" if final or not self.tty else ""
        sys.stderr.write(("\r\x1b[K" if self.tty else "") + line + end)
        sys.stderr.flush()
        self.shown = True


def _parse_start(value: str | None) -> float | None:
    if not value:
        return None
    from datetime import datetime

    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise TextbackError(f"--start {value!r}: give an ISO 8601 time like 2026-11-24T19:30-05:00") from None
    if dt.tzinfo is None:
        raise TextbackError(f"--start {value!r}: add the UTC offset (e.g. -05:00) or Z")
    return dt.timestamp()


def _contacts(cfg):
    """The config's [[contacts]] (issue 14), with what was refused on stderr; None without any."""
    if not cfg.contacts:
        return None
    from textbackd.contacts.book import load

    book = load(cfg)
    for s in book.report.sources:
        if s.error:
            print(f"replay: contacts {s.name}: {s.error}", file=sys.stderr)
        for r in s.refused:
            print(f"replay: contacts: refused {r}", file=sys.stderr)
    return book.find
