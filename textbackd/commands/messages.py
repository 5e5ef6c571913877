"""`textbackd messages`: recent texts and their states."""

from __future__ import annotations

import argparse

from textbackd.commands._common import dump_json, load_config, local_time, parse_since, table

NAME = "messages"
HELP = "list recent texts (sent, scheduled, skipped...) with their state history"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--since", help="only texts since, e.g. 7d, 24h, 2026-11-01")
    p.add_argument("--number", help="only texts to this number")
    p.add_argument("--state", action="append", default=[], help="only this state (repeatable)")
    p.add_argument("-n", "--limit", type=int, default=50)
    p.add_argument("--json", action="store_true", help="one JSON object per line, with the state history and parts")


def run(args: argparse.Namespace) -> int:
    import dataclasses
    from textbackd.store import outbox as outbox_q
    from textbackd.store.db import Store

    cfg = load_config(args)
    store = Store(cfg.store.path, readonly=True)
    rows = store.messages(limit=args.limit, since=parse_since(args.since), number=args.number, states=args.state)
    if args.json:
        out = []
        for m in rows:
            d = {k: getattr(m, k) for k in m.__dataclass_fields__}
            d["state"] = str(m.state)
            d["refs"] = list(m.refs)
            d["history"] = [dataclasses.asdict(e) for e in store.message_events(m.id)]
            d["parts"] = outbox_q.parts_json(store, m.id)  # each part as its sender took it (issue 18)
            out.append(d)
        dump_json(out)
        return 0
    table(
        ["created", "to", "kind", "state", "sender", "seg", "reason / text"],
        [
            (local_time(m.created), m.to_number, m.kind, str(m.state), m.sender, m.segments or "", m.reason or m.text)
            for m in rows
        ],
    )
    return 0
