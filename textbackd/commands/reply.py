"""`textbackd reply NUMBER TEXT`: a staff member sends the next text of a conversation."""

from __future__ import annotations

import argparse
import time

from textbackd.commands._common import cli_actor, load_config

NAME = "reply"
HELP = "send a text to a caller from the server (queued for the running daemon's outbox)"
DESCRIPTION = (
    "Queue a staff text to NUMBER. The running daemon sends it within a few seconds through the "
    "configured senders; numbers that opted out (STOP) are refused."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("number", metavar="NUMBER", help="the caller's number, e.g. +12125550123 or (212) 555-0123")
    p.add_argument("text", metavar="TEXT", nargs="+", help="the text (quote it, or give several words)")


def run(args: argparse.Namespace) -> int:
    from textbackd.staff.actions import queue_staff_text
    from textbackd.store.db import Store

    cfg = load_config(args)
    store = Store(cfg.store.path)
    try:
        mid = queue_staff_text(store, cfg, args.number, " ".join(args.text), now=time.time(), source="cli",
                               actor=cli_actor())
        m = store.message(mid)
    finally:
        store.close()
    print(f"queued text {mid} to {m.to_number} ({m.segments} SMS part{'s' if m.segments != 1 else ''}); "
          "the running daemon sends it within a few seconds")
    return 0
