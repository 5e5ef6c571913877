"""`textbackd run`: the daemon."""

from __future__ import annotations

import argparse

from textbackd.commands._common import load_config

NAME = "run"
HELP = "run the daemon: watch the PBX and text back missed callers"


def add_arguments(p: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    import asyncio

    from textbackd.daemon.service import Daemon

    cfg = load_config(args)
    daemon = Daemon(cfg)
    asyncio.run(daemon.run())
    return daemon.exit_code  # 1 when calls could not be stored (read-only disk): systemd restarts us
