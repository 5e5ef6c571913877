"""systemd notify protocol, /healthz, /metrics and SIGHUP reload, against a real `textbackd run` process."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import sys

import aiohttp
import pytest
from e2e import capture, chain, renumber, rewrite, settled, stop_daemon, wait_until, write_config

from textbackd.pbx.asterisk.replay_server import AmiReplayServer

pytestmark = pytest.mark.slow


class NotifySocket:
    """A real AF_UNIX datagram socket standing in for systemd's $NOTIFY_SOCKET."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.setblocking(False)
        self.messages: list[dict[str, str]] = []

    def drain(self) -> list[dict[str, str]]:
        while True:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                return self.messages
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            self.messages.append(fields)

    def close(self) -> None:
        self.sock.close()


async def spawn(cfg, log, env_extra: dict[str, str]) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
    env.update(env_extra)
    with open(log, "ab") as fh:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "textbackd", "run", "-c", str(cfg), stdout=fh, stderr=fh, env=env
        )


def listener_port(log) -> int:
    for line in log.read_text().splitlines():
        if '"listener_started"' in line:
            return json.loads(line)["port"]
    return 0


async def test_ready_watchdog_and_status_reach_the_notify_socket(tmp_path, sim):
    """The daemon sends READY=1 with a STATUS naming the PBX link, then WATCHDOG=1 pings with outbox depth and last event."""
    ns = NotifySocket(str(tmp_path / "notify.sock"))
    log = tmp_path / "daemon.log"
    try:
        async with AmiReplayServer(capture("05-busy"), secret="e2e-secret", speed=0) as srv:
            cfg = write_config(tmp_path, ami_port=srv.port, device=sim.device)
            proc = await spawn(cfg, log, {"NOTIFY_SOCKET": ns.path, "WATCHDOG_USEC": "1000000"})
            try:
                await wait_until(lambda: any("READY" in m for m in ns.drain()), 30, what="READY=1")
                await wait_until(lambda: len(sim.received) == 1, 30, what="the busy caller's text")
                await wait_until(lambda: any("last event" in m.get("STATUS", "") and "WATCHDOG" in m
                                             for m in ns.drain()), 30, what="a watchdog ping naming the last event")
            finally:
                rc = await stop_daemon(proc)
                ns.drain()
    finally:
        ns.close()
    assert rc == 0, log.read_text()[-2000:]
    msgs = ns.messages
    ready = next(m for m in msgs if m.get("READY") == "1")
    assert ready["STATUS"].startswith("ready: PBX connected")
    pings = [m for m in msgs if m.get("WATCHDOG") == "1"]
    assert pings and all(re.search(r"outbox \d+", m["STATUS"]) for m in pings)
    assert msgs.index(ready) < msgs.index(pings[0])  # never a ping before READY
    assert msgs[-1].get("STOPPING") == "1"


async def test_ready_says_the_pbx_login_is_being_retried_when_refused(tmp_path, sim):
    """With a wrong AMI secret READY still comes, with a STATUS saying the login is failing and retried."""
    ns = NotifySocket(str(tmp_path / "notify.sock"))
    log = tmp_path / "daemon.log"
    try:
        async with AmiReplayServer(capture("05-busy"), secret="another-secret", speed=0) as srv:
            cfg = write_config(tmp_path, ami_port=srv.port, device=sim.device)
            proc = await spawn(cfg, log, {"NOTIFY_SOCKET": ns.path})
            try:
                await wait_until(lambda: any("READY" in m for m in ns.drain()), 30, what="READY=1")
            finally:
                rc = await stop_daemon(proc)
    finally:
        ns.close()
    assert rc == 0
    ready = next(m for m in ns.messages if m.get("READY") == "1")
    assert "PBX login failing, retrying" in ready["STATUS"]
    assert "ami.login_refused" in log.read_text()


async def test_healthz_and_metrics_on_the_listener(tmp_path, sim):
    """/healthz answers 200 with the parts when all is well, /metrics counts events, calls and sent texts."""
    log = tmp_path / "daemon.log"
    async with AmiReplayServer(capture("05-busy"), secret="e2e-secret", speed=0) as srv:
        cfg = write_config(tmp_path, ami_port=srv.port, device=sim.device)
        proc = await spawn(cfg, log, {})
        try:
            await wait_until(lambda: len(sim.received) == 1 and settled(tmp_path / "textbackd.db"), 30, what="text")
            await wait_until(lambda: listener_port(log), 10, what="listener port")
            base = f"http://127.0.0.1:{listener_port(log)}"
            async with aiohttp.ClientSession() as http:
                async with http.get(base + "/healthz") as r:
                    status, body = r.status, await r.json()
                async with http.get(base + "/metrics") as r:
                    metrics = await r.text()
                    ctype = r.headers["Content-Type"]
                await sim.unplug()  # the only sender gone: unhealthy
                await asyncio.sleep(0.5)
                async with http.get(base + "/healthz") as r:
                    status2, body2 = r.status, await r.json()
                await sim.replug()
        finally:
            rc = await stop_daemon(proc)
    assert rc == 0
    assert status == 200 and body["ok"] is True
    assert body["pbx"]["connected"] is True and body["senders"]["modem1"]["healthy"] is True
    assert body["outbox"]["depth"] == 0
    assert ctype.startswith("text/plain")
    assert re.search(r"^textbackd_pbx_events_total [1-9]", metrics, re.M)
    assert 'textbackd_calls_total{direction="inbound",outcome="busy"} 1.0' in metrics
    assert 'textbackd_texts_total{sender="modem1",state="sent"} 1.0' in metrics
    assert "textbackd_send_latency_seconds_count 1.0" in metrics
    assert re.search(r'^textbackd_modem_signal_dbm\{sender="modem1"\} -\d+', metrics, re.M)
    assert "textbackd_pbx_reconnects_total 0.0" in metrics
    assert status2 == 503 and body2["checks"]["a_sender_healthy"] is False
    assert "2125550105" not in log.read_text()  # log_numbers = "masked" (the default): never a full number


async def test_sighup_reloads_templates_and_refuses_a_bad_file(tmp_path, sim):
    """SIGHUP applies a new missed-call wording to later calls; a broken file is refused with its key and the old config kept."""
    log = tmp_path / "daemon.log"
    first = capture("05-busy")
    second = renumber(rewrite(capture("05-busy"), "+12125550105", "+12125550106"), 1)
    third = renumber(rewrite(capture("05-busy"), "+12125550105", "+12125550107"), 2)
    db = tmp_path / "textbackd.db"
    async with AmiReplayServer(first, secret="e2e-secret", speed=0) as srv:
        cfg = write_config(tmp_path, ami_port=srv.port, device=sim.device)
        good = cfg.read_text()
        proc = await spawn(cfg, log, {})
        try:
            await wait_until(lambda: len(sim.received) == 1, 30, what="first text")
            cfg.write_text(good.replace("[policy]", '[messages]\nmissed = "Reloaded wording from {business}."\n\n[policy]'))
            proc.send_signal(signal.SIGHUP)
            await wait_until(lambda: "config_reloaded" in log.read_text(), 10, what="reload")
            srv.blocks = srv.blocks + chain(second)  # the PBX goes on: a new call after the reload
            srv.position = len(first)
            srv.finished.clear()
            cfg.write_text(good.replace("grace_seconds = 1", "grace_seconds = -5"))
            proc.send_signal(signal.SIGHUP)
            await wait_until(lambda: "reload_refused" in log.read_text(), 10, what="refusal")
            # reconnect the stream by dropping the session; the client resumes where it was
            for w in list(srv._writers):
                w.close()
            await wait_until(lambda: len(sim.received) == 2, 30, what="text after reload")
            srv.blocks = srv.blocks + chain(third)
            for w in list(srv._writers):
                w.close()
            await wait_until(lambda: len(sim.received) == 3 and settled(db), 30, what="text after refusal")
        finally:
            rc = await stop_daemon(proc)
    assert rc == 0, log.read_text()[-2000:]
    assert sim.received[0].text.startswith("Hi, this is Apex Plumbing. Sorry we missed your call.")
    assert sim.received[1].text == "Reloaded wording from Apex Plumbing."
    assert sim.received[2].text == "Reloaded wording from Apex Plumbing."  # the refused file changed nothing
    refused = next(json.loads(line) for line in log.read_text().splitlines() if '"reload_refused"' in line)
    assert refused["key"] == "policy.grace_seconds" and refused["file"] == str(cfg)
