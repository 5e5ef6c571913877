"""Helpers for end-to-end tests: a real `textbackd run` process against real parts.

The PBX is `AmiReplayServer` replaying recorded Asterisk captures over TCP on
127.0.0.1; the modem is `ModemSimulator` on a pseudo-terminal (in the test's
event loop, opened by the daemon process through its /dev/pts path); the store
is a temporary SQLite file the test reads after (or while) the daemon runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import sys
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from textbackd.pbx.asterisk.replay_server import Block, load_capture

DATA = Path(__file__).parent / "data"
ASTERISK = DATA / "asterisk"


def capture(name: str) -> list[Block]:
    ami = ASTERISK / f"{name}.ami"
    if not ami.exists():
        ami = ASTERISK / f"{name}.ami.gz"
    timing = ASTERISK / f"{name}.timing"
    if not timing.exists():
        timing = ASTERISK / f"{name}.timing.gz"
    return load_capture(ami, timing)


def labels(name: str) -> list[dict]:
    return json.loads((ASTERISK / f"{name}.expected.json").read_text())["calls"]


def chain(*captures: list[Block], gap: float = 1.0) -> list[Block]:
    """Captures one after the other on one timeline."""
    out: list[Block] = []
    offset = 0.0
    for blocks in captures:
        first = blocks[0].at
        out += [replace(b, at=b.at - first + offset) for b in blocks]
        offset = out[-1].at + gap
    return out


def rewrite(blocks: list[Block], old: str, new: str) -> list[Block]:
    """The same capture with one caller number replaced (same length keeps frames intact)."""
    assert len(old) == len(new)
    return [replace(b, data=b.data.replace(old.encode(), new.encode())) for b in blocks]


def renumber(blocks: list[Block], n: int) -> list[Block]:
    """The same capture as another call: the epoch part of every Uniqueid/Linkedid replaced (same length)."""
    import re

    stamps = sorted({m.group(1) for b in blocks for m in re.finditer(rb"(?:Uniqueid|Linkedid|UniqueID|LinkedID): (\d+)\.", b.data)})
    out = blocks
    for i, old in enumerate(stamps):
        new = str(10 ** (len(old) - 1) + n * 10 + i).encode()[: len(old)]
        out = [replace(b, data=b.data.replace(old, new)) for b in out]
    return out


def write_config(
    tmp: Path, *, ami_port: int, device: str, grace: float = 1.0, extra: str = "", kind: str = "asterisk"
) -> Path:
    """A daemon config for the e2e tests; `ami_port` is the PBX port (AMI or event socket)."""
    login = 'username = "textbackd"\nsecret = "e2e-secret"' if kind == "asterisk" else 'password = "e2e-secret"' 
    today = datetime.now(ZoneInfo("America/New_York")).date().isoformat()
    cfg = tmp / "textbackd.toml"
    cfg.write_text(
        f"""
[pbx]
kind = "{kind}"
host = "127.0.0.1"
port = {ami_port}
{login}
ping_interval = 5
reconnect_min = 0.2
reconnect_max = 1

[business]
name = "Apex Plumbing"
timezone = "America/New_York"
booking_link = "apex.example/book"
[business.hours]
mon = "00:00-24:00"
tue = "00:00-24:00"
wed = "00:00-24:00"
thu = "00:00-24:00"
fri = "00:00-24:00"
sat = "00:00-24:00"
sun = "00:00-24:00"

[store]
path = "{tmp / 'textbackd.db'}"

[[senders]]
name = "modem1"
kind = "modem"
device = "{device}"
command_timeout = 5

[policy]
grace_seconds = {grace}
quiet_hours = "send"

[[lines]]
did = "5550500"
name = "Apex Plumbing Brooklyn"
[lines.hours]
mon = "09:00-17:00"
holidays = ["{today}"]

[logging]
level = "info"
format = "json"

[http]
listen = "127.0.0.1:0"  # /healthz and /metrics on a free port: parallel tests never clash
{extra}
"""
    )
    return cfg


async def spawn_daemon(cfg: Path, log: Path) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
    fh = open(log, "ab")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "textbackd", "run", "-c", str(cfg), stdout=fh, stderr=fh, env=env
    )
    fh.close()
    return proc


async def stop_daemon(proc: asyncio.subprocess.Process, timeout: float = 20) -> int:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
    with contextlib.suppress(TimeoutError):
        return await asyncio.wait_for(proc.wait(), timeout)
    proc.kill()
    return await proc.wait()


def query(db: Path, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    con.row_factory = sqlite3.Row
    try:
        return con.execute(sql, args).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        con.close()


async def wait_until(pred, timeout: float, step: float = 0.2, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        await asyncio.sleep(step)
    raise AssertionError(f"timed out waiting for {what}")


def settled(db: Path) -> bool:
    """No text left scheduled or being sent."""
    rows = query(db, "SELECT COUNT(*) AS n FROM messages WHERE state IN ('scheduled','sending')")
    return bool(rows) and rows[0]["n"] == 0
