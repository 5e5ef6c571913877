"""`textbackd replay`: run a recorded PBX stream through the daemon's own parser and tracker.

Prints one JSON object per finished call on stdout (``Call.to_json()``), one
per line, in the order the calls finished; a one-line summary and any
warnings (skipped frames, missing timing) go to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace

from textbackd import config as cfgmod
from textbackd.core import log as logmod
from textbackd.core.errors import TextbackError
from textbackd.pbx import registry as pbx_kinds

NAME = "replay"
HELP = "replay a recorded AMI/ESL capture and print the calls it contains as JSON lines"
DESCRIPTION = (
    "Replay a raw PBX capture (Asterisk AMI bytes or FreeSWITCH ESL bytes; .gz accepted) through the "
    "same parser and call tracker the daemon uses, and print one JSON object per finished call. "
    "Without -c a built-in default configuration is used (inbound contexts, region US)."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--pbx",
        choices=pbx_kinds.names(),
        default=None,
        help="protocol of the capture (default: pbx.kind of the configuration, else asterisk)",
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
    p.add_argument("file", metavar="FILE", help="raw capture (e.g. 01-answered.ami or busy.ami.gz)")


def run(args: argparse.Namespace) -> int:
    if args.config:
        cfg = cfgmod.load(args.config)
    else:
        cfg = cfgmod.parse({"business": {"name": "replay"}})
    if args.pbx:
        cfg = replace(cfg, pbx=replace(cfg.pbx, kind=args.pbx))
    logmod.setup(args.log_level or ("warning" if not args.config else cfg.logging.level), cfg.logging.format, sys.stderr)
    try:
        from textbackd.replay import replay_calls, replay_decisions

        start = _parse_start(args.start)
        n = missed = texts = 0
        out = sys.stdout
        if args.calls_only:
            results = ((c, None) for c in replay_calls(args.file, cfg, cfg.pbx.kind, start=start))
        else:
            results = replay_decisions(args.file, cfg, cfg.pbx.kind, start=start, contacts=_contacts(cfg))
        for call, action in results:
            obj = call.to_json()
            if action is not None:
                obj.update(action)
                texts += bool(action.get("sent"))
            out.write(json.dumps(obj, ensure_ascii=False) + "\n")
            n += 1
            missed += call.missed
    except BrokenPipeError:  # `textbackd replay x.ami | head`
        return 0
    out.flush()
    tail = "" if args.calls_only else f", {texts} texted"
    print(f"replay: {n} calls, {missed} missed{tail}", file=sys.stderr)
    return 0


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
