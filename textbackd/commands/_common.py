"""Helpers shared by the subcommands (not a command itself)."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from textbackd.core.errors import TextbackError

if TYPE_CHECKING:
    from textbackd import config as cfgmod


def load_config(args: argparse.Namespace) -> cfgmod.Config:
    from textbackd import config as cfgmod  # here, not at the top: `textbackd --help` imports every command
    from textbackd.core import log

    cfg = cfgmod.load(cfgmod.resolve_path(getattr(args, "config", None)))
    log.setup(args.log_level or cfg.logging.level, cfg.logging.format)
    return cfg


def parse_since(s: str | None, now: float | None = None) -> float | None:
    """'7d', '24h', '30m' back from now, or an ISO date/time."""
    if not s:
        return None
    from textbackd import config as cfgmod

    now = time.time() if now is None else now
    d = cfgmod.parse_duration(s)
    if d is not None:
        return now - d
    try:
        return datetime.fromisoformat(s).timestamp()
    except ValueError:
        raise TextbackError(f"--since {s!r}: give a span like 7d, 24h, 30m or a date like 2026-11-01") from None


def local_time(ts: float | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    return "" if ts is None else time.strftime(fmt, time.localtime(ts))


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], out=None) -> None:
    """A plain aligned table; long cells are cut to fit the terminal."""
    out = out or sys.stdout
    cells = [[("" if c is None else str(c)) for c in r] for r in rows]
    widths = [len(h) for h in headers]
    for r in cells:
        for i, c in enumerate(r):
            widths[i] = max(widths[i], len(c))
    total = shutil.get_terminal_size((160, 20)).columns
    if sum(widths) + 2 * len(widths) > total and widths:
        widths[-1] = max(10, total - sum(widths[:-1]) - 2 * len(widths))
    fmt = "  ".join(f"{{:<{w}.{w}}}" for w in widths)
    print(fmt.format(*headers).rstrip(), file=out)
    print("  ".join("-" * w for w in widths), file=out)
    for r in cells:
        print(fmt.format(*r).rstrip(), file=out)


def dump_json(objs) -> None:
    for o in objs:
        print(json.dumps(o, ensure_ascii=False))


def cli_actor() -> str:
    """Who acts from the shell, for the audit trail: ``cli:<login name>`` (``SUDO_USER`` when under sudo)."""
    import getpass
    import os

    try:
        who = os.environ.get("SUDO_USER") or getpass.getuser()
    except (KeyError, OSError):
        who = str(os.getuid())
    return f"cli:{who}"


def config_option(p: argparse.ArgumentParser) -> None:
    """``-c FILE`` also after a sub-action (``textbackd webhooks list -c FILE``), as before it."""
    p.add_argument("-c", "--config", metavar="FILE", default=argparse.SUPPRESS, help="configuration file")
