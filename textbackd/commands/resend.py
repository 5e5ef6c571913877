"""`textbackd resend MESSAGE_ID`: send a text whose outcome is unknown (or that failed) again, on purpose."""

from __future__ import annotations

import argparse
import time

from textbackd.commands._common import cli_actor, load_config
from textbackd.core.errors import StoreError

NAME = "resend"
HELP = "send an unknown or failed text again, on purpose (the caller may get a second copy)"
DESCRIPTION = (
    "Queue text MESSAGE_ID (see `textbackd messages --state unknown`) to be sent again by the running daemon. "
    "Only a text whose outcome is unknown, or that failed, can be resent; the caller may get it twice. "
    "The resend is recorded in the text's history."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("message_id", metavar="MESSAGE_ID", type=int, help="the text's id (the `id` of `messages --json`)")


def run(args: argparse.Namespace) -> int:
    from textbackd.staff.actions import resend
    from textbackd.store.db import Store

    cfg = load_config(args)
    store = Store(cfg.store.path)
    try:
        try:
            before = store.message(args.message_id)
        except StoreError:
            before = None  # resend says so
        m = resend(store, cfg, args.message_id, now=time.time(), source="cli", actor=cli_actor())
    finally:
        store.close()
    why = f" (it was {before.state}: {before.reason})" if before is not None and before.reason else ""
    print(f"text {m.id} to {m.to_number} is queued again{why}; the caller may get a second copy. "
          "The running daemon sends it within a few seconds.")
    return 0
