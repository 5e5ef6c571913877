"""`textbackd doctor`: check every part of the setup, one line each, with a fix for what fails."""

from __future__ import annotations

import argparse


NAME = "doctor"
HELP = "check the config, PBX link, senders, e-mail, store and clock; say how to fix what fails"
DESCRIPTION = (
    "Checks each part the daemon needs and prints one line per check (OK / FAIL / SKIP), with a fix "
    "under each failure. Exit status 0 only when every check passed. Nothing is sent. Stop the daemon "
    "first when it uses a modem (the serial port can have one user)."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--timeout", type=float, default=5.0, metavar="SECONDS",
                   help="per network check, and how long to wait for PBX events (default 5)")


def run(args: argparse.Namespace) -> int:
    import asyncio
    from textbackd import config as cfgmod
    from textbackd import doctor

    from textbackd.core import log

    log.setup("critical", "console")  # the checks speak for themselves; the sender's own logs would be noise
    path = cfgmod.resolve_path(args.config)
    results = asyncio.run(doctor.check_all(path, timeout=args.timeout, emit=lambda r: print(r.line(), flush=True)))
    code = doctor.exit_code(results)
    failed = sum(1 for r in results if r.ok is False)
    print("all checks passed" if code == 0 else f"{failed} check(s) failed")
    return code
