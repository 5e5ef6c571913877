"""`textbackd audit`: who did what, when (texts sent, claims, handled, blocks, logins, exports...)."""

from __future__ import annotations

import argparse

from textbackd.commands._common import dump_json, load_config, local_time, parse_since, table

NAME = "audit"
HELP = "list staff actions (texts sent, claims, handled, blocks, logins) with who and when"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--since", help="only actions since, e.g. 7d, 24h, 2026-11-01")
    p.add_argument("--number", help="only actions about this number")
    p.add_argument("--actor", help='only this actor, e.g. "web:maria" or "cli:root"')
    p.add_argument("-n", "--limit", type=int, default=100)
    p.add_argument("--json", action="store_true", help="one JSON object per line")


def run(args: argparse.Namespace) -> int:
    import dataclasses
    from textbackd.core import numbers
    from textbackd.store import audit
    from textbackd.store.db import Store

    cfg = load_config(args)
    number = numbers.normalize(args.number, cfg.business.default_region) if args.number else None
    store = Store(cfg.store.path, readonly=True)
    try:
        rows = audit.rows(store, since=parse_since(args.since), number=number, actor=args.actor, limit=args.limit)
    finally:
        store.close()
    if args.json:
        dump_json(dataclasses.asdict(r) for r in rows)
        return 0
    table(["when", "who", "action", "number", "text", "detail"],
          [(local_time(r.at), r.actor, r.action, r.number or "", r.message_id or "", r.detail) for r in rows])
    return 0
