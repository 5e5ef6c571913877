"""`textbackd export NUMBER`: everything stored about one number (an access request)."""

from __future__ import annotations

import argparse
import json

from textbackd.commands._common import load_config, local_time
from textbackd.core.errors import TextbackError

NAME = "export"
HELP = "print everything stored about a phone number (access request)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("number", help="the phone number, e.g. +12125550101 or (212) 555-0101")
    p.add_argument("--json", action="store_true", help="one JSON document (for the person who asked)")


def target(cfg, raw: str) -> str:
    from textbackd.core.numbers import normalize

    number = normalize(raw, cfg.business.default_region)
    if not number.lstrip("+").isdigit():
        raise TextbackError(f"{raw!r} is not a phone number")
    return number


def run(args: argparse.Namespace) -> int:
    from textbackd.store.db import Store
    from textbackd.store.retention import export

    cfg = load_config(args)
    number = target(cfg, args.number)
    store = Store(cfg.store.path, readonly=True)
    try:
        data = export(store, number)
    finally:
        store.close()
    if args.json:
        print(json.dumps(data, ensure_ascii=False, indent=2))
        return 0
    print(f"number: {number}")
    print(f"calls: {len(data['calls'])}")
    for c in data["calls"]:
        print(f"  {local_time(c['started'])}  {c['direction']:<8} {c['outcome']:<14} line {c['did'] or '-'}")
    print(f"texts sent to it: {len(data['texts'])}")
    for m in data["texts"]:
        print(f"  {local_time(m['created'])}  {m['kind']:<9} {m['state']:<10} {m['text']!r}")
    print(f"replies from it: {len(data['replies'])}")
    for r in data["replies"]:
        print(f"  {local_time(r['received_at'])}  {r['text']!r}")
    opt = data["opt_out"]
    print("opt-out: " + ("none" if not opt else f"{'active' if opt['active'] else 'inactive'} since "
                         f"{local_time(opt['changed_at'])} ({opt['source']})"))
    print(f"staff e-mails naming it: {len(data['emails'])}")
    for e in data["emails"]:
        print(f"  {local_time(e['created'])}  {e['subject']!r}")
    print(f"staff actions about it: {len(data['staff_actions'])}")
    for a in data["staff_actions"]:
        print(f"  {local_time(a['at'])}  {a['actor']:<16} {a['action']:<10} {a['detail']}")
    return 0
