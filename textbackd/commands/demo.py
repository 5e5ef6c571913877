"""`textbackd demo`: see textbackd work with nothing to configure."""

from __future__ import annotations

import argparse


NAME = "demo"
HELP = "run the real daemon against a built-in PBX replaying a recorded busy hour and a simulated modem"
USES_CONFIG = False


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--speed", type=float, default=20.0, help="replay speed (default 20x: the hour's 5.5 minutes in ~17 s)")
    p.add_argument("--grace", type=float, default=3.0, help="grace seconds before a text goes out (default 3)")
    p.add_argument("--keep", metavar="DIR", help="keep the store and config in DIR instead of a temporary folder")
    p.add_argument("--web", action="store_true",
                   help="keep the daemon and its front desk (printed URL and login) running after the hour, until Ctrl-C")


def run(args: argparse.Namespace) -> int:
    import asyncio
    from textbackd.core import log

    from textbackd.demo import run_demo

    log.setup(args.log_level or "warning", "console")
    tally = asyncio.run(run_demo(speed=args.speed, grace=args.grace, keep=args.keep, web=args.web))
    sent = tally.final_states["textback:sent"] + tally.final_states["textback:delivered"]
    return 0 if sent > 0 else 1
