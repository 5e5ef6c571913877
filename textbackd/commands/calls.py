"""`textbackd calls`: recent calls from the store."""

from __future__ import annotations

import argparse

from textbackd.commands._common import dump_json, load_config, local_time, parse_since, table

NAME = "calls"
HELP = "list recent calls and what was decided for each"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--since", help="only calls since, e.g. 7d, 24h, 2026-11-01")
    p.add_argument("--number", help="only calls from or to this number")
    p.add_argument("--missed", action="store_true", help="only missed inbound calls")
    p.add_argument("-n", "--limit", type=int, default=50)
    p.add_argument("--json", action="store_true", help="one JSON object per line")


def run(args: argparse.Namespace) -> int:
    from textbackd.store.db import Store

    cfg = load_config(args)
    store = Store(cfg.store.path, readonly=True)
    rows = store.calls(limit=args.limit, since=parse_since(args.since), number=args.number, missed=args.missed)
    decisions = {}
    for r in rows:
        m = store.textback_of(r.id)
        decisions[r.id] = (m.state + (f" ({m.reason})" if m.reason else "")) if m else ""
    if args.json:
        dump_json({**_row(r), "text": decisions[r.id]} for r in rows)
        return 0
    table(
        ["ended", "direction", "caller", "name", "line", "outcome", "ring s", "text"],
        [
            (
                local_time(r.ended),
                r.direction,
                r.caller,
                r.caller_name,
                r.did,
                r.outcome + (" +vm" if r.voicemail_left else ""),
                f"{r.ring_seconds:.0f}",
                decisions[r.id],
            )
            for r in rows
        ],
    )
    return 0


def _row(r) -> dict:
    """A stored call as ``--json`` prints it (as before: 0/1 for the flags, like the table's columns)."""
    d = r.to_json()
    d["missed"], d["voicemail_left"] = int(r.missed), int(r.voicemail_left)
    return d
