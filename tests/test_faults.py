"""Fault tests: a real `textbackd run` against failing parts, counting texts lost or sent twice (both must be 0).

Every scenario replays missed calls built from the recorded busy-signal capture,
each renumbered as its own call from its own test number (+1 212 555 01xx), and
then checks: every missed caller got exactly one text, or (when the daemon could
not know whether a send left: modem pulled mid-send, gateway timed out after the
request) the text is recorded as ``unknown`` and was not sent again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from e2e import capture, chain, query, renumber, rewrite, settled, spawn_daemon, stop_daemon, wait_until, write_config
from pytest_httpserver import HTTPServer
from werkzeug import Response

from textbackd.pbx.asterisk.replay_server import AmiReplayServer, Block

pytestmark = pytest.mark.slow

BUSY_CALLER = "+12125550105"


def caller(i: int) -> str:
    return f"+121255501{i % 100:02d}"


def burst(n: int, *, first: int = 0, gap: float = 0.2) -> tuple[list[Block], list[str]]:
    """``n`` missed (busy) calls one after the other, from callers first..first+n-1 (mod 100)."""
    base = capture("05-busy")
    calls = [renumber(rewrite(base, BUSY_CALLER, caller(first + i)), first + i) for i in range(n)]
    return chain(*calls, gap=gap), [caller(first + i) for i in range(n)]


def overlapping_burst(n: int, *, every: float, stretch: float) -> tuple[list[Block], list[str]]:
    """``n`` missed calls starting ``every`` recorded seconds apart, each call's own events ``stretch`` times slower,
    so many ring at once as in a real rush (and no whole call fits in the moment a killed process had not read)."""
    base = capture("05-busy")
    t0 = base[0].at
    out: list[Block] = []
    callers = []
    for i in range(n):
        blocks = renumber(rewrite(base, BUSY_CALLER, caller(i)), i)
        out += [replace(b, at=i * every + (b.at - t0) * stretch) for b in blocks]
        callers.append(caller(i))
    out.sort(key=lambda b: b.at)  # stable: each call keeps its own order
    return out, callers


def config(tmp_path: Path, port: int, device: str, *, senders: str | None = None) -> Path:
    cfg = write_config(tmp_path, ami_port=port, device=device or "/dev/null", grace=0)
    text = cfg.read_text().replace(
        "[policy]\n",
        "[policy]\nmax_per_prefix_per_hour = 10000\nmax_per_hour = 10000\nmax_per_number_per_day = 10\n"
        "retry_base_seconds = 0.3\nmax_attempts = 20\n",
    )
    if senders is not None:
        start = text.index("[[senders]]")
        end = text.index("[policy]")
        text = text[:start] + senders + "\n" + text[end:]
    cfg.write_text(text)
    return cfg


def texts(db: Path) -> dict[str, list[str]]:
    """to_number → states of its text-backs."""
    out: dict[str, list[str]] = {}
    for r in query(db, "SELECT to_number, state FROM messages WHERE kind='textback'"):
        out.setdefault(r["to_number"], []).append(r["state"])
    return out


def no_loss_no_duplicate(received: list[str], db: Path, callers: list[str]) -> None:
    """Each caller got exactly one text, or one recorded as unknown (and never a second one)."""
    got = Counter(received)
    assert [n for n, c in got.items() if c > 1] == [], "sent twice"
    states = texts(db)
    unknown = {n for n, s in states.items() if "unknown" in s}
    lost = [n for n in set(callers) if n not in got and n not in unknown]
    assert lost == [], f"lost: {lost} states={[states.get(n) for n in lost]}"
    assert not (unknown & set(got)) or all(states[n].count("unknown") == 1 for n in unknown)


def calls_recorded(db: Path) -> int:
    rows = query(db, "SELECT COUNT(*) AS n FROM calls c JOIN messages m ON m.call_id = c.id AND m.kind='textback'")
    return rows[0]["n"] if rows else 0


async def run_to_end(srv: AmiReplayServer, db: Path, n_calls: int, done, what: str, timeout: float = 60) -> None:
    await asyncio.wait_for(srv.finished.wait(), timeout)
    await wait_until(lambda: calls_recorded(db) >= n_calls and settled(db) and done(), timeout, what=what)
    await asyncio.sleep(1.0)  # nothing more may come


async def test_ami_link_dropped_mid_call_comes_back(tmp_path, sim):
    """The AMI server drops the link in the middle of a call and the daemon reconnects: nothing lost, nothing twice."""
    blocks, callers = burst(10, first=10)
    db = tmp_path / "textbackd.db"
    # speed > 0: the daemon keeps up, so the abort drops no event it was sent (an event lost inside a dropped
    # TCP connection is lost with a real Asterisk too; only calls still up at reconnect can be recovered)
    async with AmiReplayServer(blocks, secret="e2e-secret", speed=20, drop_after=len(blocks) // 2 + 7) as srv:
        proc = await spawn_daemon(config(tmp_path, srv.port, sim.device), tmp_path / "daemon.log")
        try:
            await run_to_end(srv, db, 10, lambda: len(sim.received) >= 10, "10 texts")
        finally:
            rc = await stop_daemon(proc)
    assert rc == 0
    assert srv.sessions >= 2
    no_loss_no_duplicate([m.to for m in sim.received], db, callers)
    assert calls_recorded(db) == 10


async def test_ami_refuses_the_login_for_a_while(tmp_path, sim):
    """The PBX refuses the login for a few attempts, then accepts it: every missed call still gets its one text."""
    blocks, callers = burst(5, first=20)
    db = tmp_path / "textbackd.db"
    log = tmp_path / "daemon.log"
    async with AmiReplayServer(blocks, secret="not-yet", speed=0) as srv:
        proc = await spawn_daemon(config(tmp_path, srv.port, sim.device), log)
        try:
            await wait_until(lambda: log.read_text().count("ami.login_refused") >= 2, 30, what="two refusals")
            srv.secret = "e2e-secret"
            await run_to_end(srv, db, 5, lambda: len(sim.received) >= 5, "5 texts")
        finally:
            rc = await stop_daemon(proc)
    assert rc == 0
    no_loss_no_duplicate([m.to for m in sim.received], db, callers)


async def test_ami_server_restarts_with_calls_in_progress(tmp_path, sim):
    """The AMI server goes away mid-stream (calls in progress) and a new one comes up on the same port later."""
    blocks, callers = burst(10, first=30)
    db = tmp_path / "textbackd.db"
    srv = AmiReplayServer(blocks, secret="e2e-secret", speed=40)
    await srv.start()
    proc = await spawn_daemon(config(tmp_path, srv.port, sim.device), tmp_path / "daemon.log")
    try:
        await wait_until(lambda: srv.position > len(blocks) // 3, 30, what="a third of the stream")
        position = srv.position
        await srv.stop()
        await asyncio.sleep(1.5)  # the daemon finds nobody listening, and retries
        srv2 = AmiReplayServer(blocks, secret="e2e-secret", speed=0, port=srv.port)
        srv2.position = position  # the PBX kept its calls: the new session lists them and goes on
        async with srv2:
            await run_to_end(srv2, db, 10, lambda: len(sim.received) >= 10, "10 texts")
    finally:
        rc = await stop_daemon(proc)
    assert rc == 0
    no_loss_no_duplicate([m.to for m in sim.received], db, callers)
    assert calls_recorded(db) == 10


async def test_modem_pulled_mid_send_then_plugged_back(tmp_path, sim):
    """The modem vanishes while a PDU is on its way and comes back: that text is 'unknown' (not resent), the rest go once."""
    blocks, callers = burst(6, first=40, gap=1.0)
    db = tmp_path / "textbackd.db"
    sim.unplug_on_pdu = True
    async with AmiReplayServer(blocks, secret="e2e-secret", speed=4) as srv:
        proc = await spawn_daemon(config(tmp_path, srv.port, sim.device), tmp_path / "daemon.log")
        try:
            await wait_until(lambda: not sim.plugged, 30, what="the modem pulled")
            await asyncio.sleep(1.0)
            await sim.replug()
            await run_to_end(srv, db, 6, lambda: len(sim.received) + 1 >= 6, "the other texts")
        finally:
            rc = await stop_daemon(proc)
    assert rc == 0
    states = texts(db)
    assert sum(s.count("unknown") for s in states.values()) == 1
    no_loss_no_duplicate([m.to for m in sim.received], db, callers)


async def test_modem_answers_cms_error_for_a_while(tmp_path, sim):
    """+CMS ERROR 38 (network out of order) six times: the modem tries each text three times, the outbox retries the
    two it gave up on, and each text goes exactly once."""
    blocks, callers = burst(5, first=50)
    db = tmp_path / "textbackd.db"
    for _ in range(6):
        sim.fail_next_send(38)
    async with AmiReplayServer(blocks, secret="e2e-secret", speed=0) as srv:
        proc = await spawn_daemon(config(tmp_path, srv.port, sim.device), tmp_path / "daemon.log")
        try:
            await run_to_end(srv, db, 5, lambda: len(sim.received) >= 5, "5 texts")
        finally:
            rc = await stop_daemon(proc)
    assert rc == 0
    no_loss_no_duplicate([m.to for m in sim.received], db, callers)
    retried = query(db, "SELECT COUNT(*) AS n FROM message_events WHERE state='scheduled' AND detail LIKE 'retry%'")
    assert retried[0]["n"] == 2  # six refusals: three tries of each of two texts
    assert all(s == ["sent"] for s in texts(db).values())


class FlakyGateway:
    """Answers 500, 429 (Retry-After: 1), times out once (after taking the text), then accepts."""

    def __init__(self, script: list[str]) -> None:
        self.script = script
        self.accepted: list[str] = []  # texts the gateway took (it would deliver them)
        self.lock = threading.Lock()
        self.requests = 0

    def __call__(self, request) -> Response:
        with self.lock:
            self.requests += 1
            step = self.script.pop(0) if self.script else "ok"
        to = request.form.get("to", "")
        if step == "500":
            return Response("internal error", status=500)
        if step == "429":
            return Response("slow down", status=429, headers={"Retry-After": "1"})
        with self.lock:
            self.accepted.append(to)
        if step == "timeout":
            time.sleep(2.5)  # past the sender's timeout, after taking the text
        return Response('{"id": "m%d"}' % self.requests, status=200, content_type="application/json")


@pytest.fixture
def threaded_httpserver():
    server = HTTPServer(threaded=True)  # a slow answer must not hold up the next request
    server.start()
    yield server
    server.clear()
    server.stop()


async def test_gateway_500s_429s_and_a_timeout(tmp_path, threaded_httpserver: HTTPServer):
    """A gateway that fails with 500 and 429 and once times out: refused sends are retried, the timed-out one is 'unknown'."""
    httpserver = threaded_httpserver
    gw = FlakyGateway(["500", "500", "429", "ok", "timeout", "500", "429"])
    httpserver.expect_request("/send", method="POST").respond_with_handler(gw)
    senders = f"""[[senders]]
name = "gw"
kind = "http"
url = "{httpserver.url_for('/send')}"
timeout = 1
message_id_path = "id"
body = {{ to = "{{to}}", text = "{{text}}" }}
"""
    blocks, callers = burst(6, first=60)
    db = tmp_path / "textbackd.db"
    async with AmiReplayServer(blocks, secret="e2e-secret", speed=0) as srv:
        proc = await spawn_daemon(config(tmp_path, srv.port, "", senders=senders), tmp_path / "daemon.log")
        try:
            await run_to_end(srv, db, 6, lambda: len(gw.accepted) >= 6, "6 texts taken")
        finally:
            rc = await stop_daemon(proc)
    assert rc == 0
    no_loss_no_duplicate(gw.accepted, db, callers)
    states = texts(db)
    assert sum(s.count("unknown") for s in states.values()) == 1  # the timed-out one: never resent blindly
    assert gw.requests == 6 + 5  # each of the five refusals was retried


async def test_sigterm_then_kill_9_during_a_burst_of_200_missed_calls(tmp_path, sim):
    """200 missed calls (100 callers, each twice): SIGTERM, restart, kill -9, restart; every call decided once, no double text."""
    blocks, callers = overlapping_burst(200, every=0.1, stretch=8)  # ~80 calls ringing at once, 10 new a second
    db = tmp_path / "textbackd.db"
    cfg = config(tmp_path, 0, sim.device)
    log = tmp_path / "daemon.log"
    async with AmiReplayServer(blocks, secret="e2e-secret", speed=1, resume=True) as srv:
        cfg.write_text(cfg.read_text().replace("port = 0\n", f"port = {srv.port}\n", 1))
        proc = await spawn_daemon(cfg, log)
        await wait_until(lambda: len(sim.received) >= 20, 60, what="20 texts")
        assert await stop_daemon(proc) == 0  # SIGTERM: a clean stop
        proc = await spawn_daemon(cfg, log)
        await wait_until(lambda: srv.sessions >= 2, 30, what="the second session")
        await wait_until(lambda: len(sim.received) >= 50, 60, what="50 texts")
        os.kill(proc.pid, signal.SIGKILL)
        await proc.wait()
        proc = await spawn_daemon(cfg, log)
        srv.speed = 0
        try:
            await run_to_end(srv, db, 200, lambda: True, "all 200 calls decided", timeout=90)
        finally:
            rc = await stop_daemon(proc)
    assert rc == 0
    assert srv.sessions >= 3  # the stream really went through both interruptions
    assert calls_recorded(db) == 200  # every call stored with its decision
    no_loss_no_duplicate([m.to for m in sim.received], db, callers)
    skipped = query(db, "SELECT COUNT(*) AS n FROM messages WHERE kind='textback' AND state='skipped'")
    assert skipped[0]["n"] == 100  # each caller's second miss is a duplicate


def _can_mount() -> bool:
    return os.geteuid() == 0 and subprocess.run(["mount", "--version"], capture_output=True).returncode == 0


@contextlib.contextmanager
def tmpfs(path: Path, size: str, *, ro: bool = False):
    path.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (",ro" if ro else "")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "none", str(path)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


@pytest.mark.skipif(not _can_mount(), reason="needs root to mount a small tmpfs")
async def test_store_disk_full_holds_calls_in_memory_and_writes_them_later(tmp_path, sim):
    """The store's disk fills up mid-burst: the daemon keeps running, holds the calls, and writes and texts them once space is back."""
    blocks, callers = burst(12, first=70, gap=0.5)
    with tmpfs(tmp_path / "disk", "4m") as disk:
        db = disk / "textbackd.db"
        log = tmp_path / "daemon.log"
        cfg = config(tmp_path, 0, sim.device)
        async with AmiReplayServer(blocks, secret="e2e-secret", speed=5) as srv:
            cfg.write_text(cfg.read_text().replace(str(tmp_path / "textbackd.db"), str(db))
                           .replace("port = 0\n", f"port = {srv.port}\n", 1))
            proc = await spawn_daemon(cfg, log)
            try:
                await wait_until(lambda: len(sim.received) >= 2, 30, what="two texts")
                filler = disk / "filler"
                with open(filler, "wb") as f, contextlib.suppress(OSError):
                    while True:
                        f.write(b"\0" * 65536)
                        f.flush()
                await wait_until(lambda: "call_held_in_memory" in log.read_text(), 30, what="a call held in memory")
                assert proc.returncode is None  # still running
                await asyncio.sleep(1.0)
                filler.unlink()
                await run_to_end(srv, db, 12, lambda: len(sim.received) >= 12, "12 texts")
            finally:
                rc = await stop_daemon(proc)
    assert rc == 0
    assert "unwritten_calls_stored" in log.read_text()
    assert Counter(m.to for m in sim.received) == Counter(callers)  # all texted, none twice


@pytest.mark.skipif(not _can_mount(), reason="needs root to mount a read-only tmpfs")
async def test_read_only_store_at_start_exits_non_zero_with_the_reason(tmp_path):
    """A store on a read-only disk at start: `textbackd run` exits 1 with the path and reason (systemd restarts it)."""
    with tmpfs(tmp_path / "ro", "1m", ro=True) as ro:
        cfg = config(tmp_path, 9, "")
        cfg.write_text(cfg.read_text().replace(str(tmp_path / "textbackd.db"), str(ro / "textbackd.db")))
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "textbackd", "run", "-c", str(cfg),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1
    assert str(ro / "textbackd.db") in err.decode() and "database" in err.decode()


class _Inbox:
    def __init__(self) -> None:
        self.subjects: list[str] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        from email import message_from_bytes

        self.subjects.append(message_from_bytes(envelope.content)["Subject"])
        return "250 OK"


async def test_smtp_down_for_an_hour_of_simulated_time(tmp_path):
    """Staff mails queued while SMTP is down for a simulated hour are all sent, each once, when it comes back."""
    import socket

    from textbackd import config as cfgmod
    from textbackd.daemon.notify import Notifier
    from textbackd.store.db import Store

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = cfgmod.parse({
        "pbx": {}, "business": {"name": "Apex Plumbing"}, "store": {"path": str(tmp_path / "t.db")},
        "email": {"host": "127.0.0.1", "port": port, "starttls": False, "from": "tb@apex.example",
                  "to": ["desk@apex.example"]},
    })
    store = Store(tmp_path / "t.db")
    now = [1_800_000_000.0]
    notifier = Notifier(store, cfg, clock=lambda: now[0], smtp_timeout=2)
    queued = []
    for minute in range(60):  # one mail every 5 minutes, a try every simulated minute, SMTP down
        if minute % 5 == 0:
            subject = f"reply {minute}"
            notifier.queue("reply", subject, "body")
            queued.append(subject)
        assert await notifier.send_due() == 0
        now[0] += 60
    inbox = _Inbox()
    ctl = Controller(inbox, hostname="127.0.0.1", port=port)
    ctl.start()
    try:
        for _ in range(120):  # up to two more simulated hours: backoff is at most an hour
            await notifier.send_due()
            now[0] += 60
    finally:
        ctl.stop()
    assert sorted(inbox.subjects) == sorted(queued)  # none lost, none twice
    assert {r["state"] for r in store.db.execute("SELECT state FROM emails")} == {"sent"}
