"""`textbackd run`: the daemon."""

from __future__ import annotations

import argparse
import asyncio

from textbackd.commands._common import load_config

NAME = "run"
HELP = "run the daemon: watch the PBX and text back missed callers"


def add_arguments(p: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    from textbackd.service import Daemon

    cfg = load_config(args)
    asyncio.run(Daemon(cfg).run())
    return 0
