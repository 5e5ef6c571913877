"""`textbackd forget NUMBER`: erase a number's calls, texts, replies and staff e-mails (erasure request).

An active opt-out is kept as the single row ``number, active, changed_at,
source=forgotten`` so STOP still holds (see ``textbackd.retention``).
Safe while the daemon runs (SQLite locking); texts still queued for the
number are deleted too, so nothing is sent to it afterwards.
"""

from __future__ import annotations

import argparse
import sys
import time

from textbackd.commands._common import cli_actor, load_config
from textbackd.core.errors import TextbackError

NAME = "forget"
HELP = "erase everything stored about a phone number (erasure request; an opt-out is kept)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("number", help="the phone number, e.g. +12125550101")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")


def run(args: argparse.Namespace) -> int:
    from textbackd.commands.export import target
    from textbackd.core.model import AuditAction
    from textbackd.core.numbers import mask
    from textbackd.store import audit
    from textbackd.store.db import Store
    from textbackd.store.retention import forget

    cfg = load_config(args)
    number = target(cfg, args.number)
    if not args.yes:
        if not sys.stdin.isatty():
            raise TextbackError("not a terminal: add --yes to erase without asking")
        answer = input(f"Erase every call, text, reply and e-mail of {number}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing erased")
            return 1
    store = Store(cfg.store.path)
    try:
        now = time.time()
        with store.tx():
            counts = forget(store, number, now=now)
            audit.record(store, at=now, actor=cli_actor(), action=AuditAction.FORGET,
                         detail=f"erased {mask(number, 'masked')}")
    finally:
        store.close()
    kept = " (its opt-out is kept so STOP still holds)" if counts.pop("opt_out_kept") else ""
    print(f"{number}: erased " + ", ".join(f"{n} {k}" for k, n in counts.items()) + kept)
    return 0
