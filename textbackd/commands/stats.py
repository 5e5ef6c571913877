"""`textbackd stats`: the owner's figures (missed calls, texts, replies, recoveries) per day and per line."""

from __future__ import annotations

import argparse
import json
import time

from textbackd.commands._common import load_config, parse_since

NAME = "stats"
HELP = "missed calls, texts, replies and recoveries, per day and per line"
DESCRIPTION = (
    "Figures about the missed calls of a period: texts sent and send rate, reply rate, recovery rate "
    "(replied, called back or answered later), median time from missed call to text, median staff "
    "response time, opt-outs, and why texts failed or were not sent. Days are in the business time zone."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--since", default="7d", help="period start: a span like 7d, 24h, or a date (default 7d)")
    p.add_argument("--until", default=None, help="period end: a span back from now or a date (default now)")
    p.add_argument("--line", metavar="DID", help="only calls to this business number")
    p.add_argument("--json", action="store_true", help="one JSON object with the total, by_day and by_line")


def run(args: argparse.Namespace) -> int:
    from textbackd.store import figures as stats
    from textbackd.store.db import Store

    cfg = load_config(args)
    now = time.time()
    since = parse_since(args.since, now)
    until = parse_since(args.until, now) if args.until else now
    store = Store(cfg.store.path, readonly=True)
    try:
        report = stats.compute(store, cfg, since=since, until=until, line=args.line)
    finally:
        store.close()
    if args.json:
        print(json.dumps(report.to_json(), ensure_ascii=False, indent=2))
    else:
        print(stats.render(report, cfg.business.tz), end="")
    return 0
