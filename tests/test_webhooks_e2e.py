"""Webhooks through a real `textbackd run`: a recorded missed call, the modem simulator and a receiver that verifies
every signature with `standardwebhooks`; and kill -9 in the middle of a burst of 200 missed calls loses no event."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
from collections import defaultdict

import aiohttp
import jsonschema
import pytest
from e2e import capture, query, settled, spawn_daemon, stop_daemon, wait_until, write_config
from test_faults import config as fault_config
from test_faults import overlapping_burst, run_to_end
from test_webhooks import SECRET, Receiver

from textbackd.api.openapi import document
from textbackd.pbx.asterisk.replay_server import AmiReplayServer

CALLER = "+12125550102"  # the caller of the recorded 02-voicemail-left trace


def hook(url: str, **extra) -> str:
    more = "".join(f"{k} = {json.dumps(v)}\n" for k, v in extra.items())
    return f'\n[[webhooks]]\nname = "crm"\nurl = "{url}"\nsecret = "{SECRET}"\nretry_base_seconds = 0.05\n{more}'


def cli(cfg, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "textbackd", *args, "-c", str(cfg)], capture_output=True, text=True,
                          timeout=60)


def listener_port(log) -> int:
    for line in log.read_text().splitlines():
        if '"listener_started"' in line:
            return json.loads(line)["port"]
    raise AssertionError("no listener_started in the log")


async def test_a_missed_call_its_text_and_a_reply_reach_the_crm_signed_and_in_order(tmp_path, sim):
    """The receiver gets call.missed, text.scheduled, text.sent, then reply.received, each verified and valid against
    the OpenAPI document's webhooks schemas, with the store's field names; `webhooks list`, `webhooks test` and
    /metrics report the endpoint; the CRM answers through the daemon's /api/v1 with a token and the modem sends it."""
    async with Receiver(answer=lambda n: 503 if n == 1 else 200) as rx:  # one hiccup on the way
        async with AmiReplayServer(capture("02-voicemail-left"), secret="e2e-secret", speed=0) as srv:
            cfg = write_config(tmp_path, ami_port=srv.port, device=sim.device, grace=0.5, extra=hook(rx.url))
            log = tmp_path / "daemon.log"
            proc = await spawn_daemon(cfg, log)
            try:
                await wait_until(lambda: len(sim.received) == 1, 30, what="the text-back")
                await wait_until(lambda: len(rx.accepted) >= 3, 20, what="three events")
                await sim.incoming(CALLER, "Can you come at 3?")
                await wait_until(lambda: len(rx.accepted) >= 4, 20, what="the reply event")
                token = (await asyncio.to_thread(cli, cfg, "token", "add", "crm", "--scope", "write")).stdout.strip()
                base = f"http://127.0.0.1:{listener_port(log)}"
                async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
                    async with http.post(f"{base}/api/v1/conversations/{CALLER}/messages",
                                         json={"text": "Yes, 3pm works"}, headers={"Idempotency-Key": "a1"}) as r:
                        assert r.status == 201, await r.text()
                    await wait_until(lambda: len(sim.received) == 2, 20, what="the staff text from the API")
                    async with http.get(f"{base}/metrics") as r:
                        metrics = await r.text()
                listed = await asyncio.to_thread(cli, cfg, "webhooks", "list", "--json")
                pinged = await asyncio.to_thread(cli, cfg, "webhooks", "test", "crm")
            finally:
                rc = await stop_daemon(proc)
    assert rc == 0
    assert rx.bad_signatures == 0
    types = [b["type"] for _, b in rx.accepted]
    assert types[:4] == ["call.missed", "text.scheduled", "text.sent", "reply.received"]
    assert sim.received[1].text == "Yes, 3pm works"
    schemas = document()
    for _, body in rx.accepted:
        if body["type"] != "ping":
            schema = schemas["webhooks"][body["type"]]["post"]["requestBody"]["content"]["application/json"]["schema"]
            jsonschema.validate(body, {**schema, "components": schemas["components"]})
    assert pinged.returncode == 0, pinged.stdout + pinged.stderr
    assert "ping" in types[4:]  # the staff text's own events came too
    assert types[4:].count("text.sent") == 1
    missed, scheduled, sent, reply = (b["data"] for _, b in rx.accepted[:4])
    assert (missed["caller"], missed["outcome"], missed["voicemail_left"], missed["did"]) == (CALLER, "voicemail", True, "5550100")
    assert scheduled["call_id"] == missed["id"] and scheduled["state"] == "scheduled"
    assert sent["id"] == scheduled["id"] and sent["state"] == "sent" and sent["sender"] == "modem1"
    assert sent["text"] == sim.received[0].text
    assert (reply["from_number"], reply["text"], reply["call_id"]) == (CALLER, "Can you come at 3?", missed["id"])
    retried = [i for i, _, s in rx.requests if s == 503]
    assert retried == [rx.accepted[1][0]]  # the 503'd event came again under its own id
    assert re.search(r'^textbackd_webhook_queue_depth\{endpoint="crm"\} 0\.0$', metrics, re.M)
    assert re.search(r'^textbackd_webhook_attempts_total\{endpoint="crm",result="retry"\} 1\.0$', metrics, re.M)
    row = json.loads(listed.stdout)
    assert (row["name"], row["state"], row["failing"]) == ("crm", "active", False) and row["delivered"] >= 4
    assert pinged.returncode == 0 and "answered 200 to a signed ping" in pinged.stdout
    assert SECRET not in log.read_text() and "must never log" not in log.read_text()


@pytest.mark.slow
async def test_kill_9_during_a_burst_of_200_missed_calls_loses_no_call_missed_event(tmp_path, sim):
    """200 missed calls (about 80 ringing at once) with a webhook; the daemon is killed with SIGKILL mid-burst and
    restarted: every stored missed call reaches the receiver, under one webhook-id, and no event is invented."""
    blocks, callers = overlapping_burst(200, every=0.1, stretch=8)
    db = tmp_path / "textbackd.db"
    log = tmp_path / "daemon.log"
    async with Receiver() as rx:
        cfg = fault_config(tmp_path, 0, sim.device)
        cfg.write_text(cfg.read_text() + hook(rx.url, events=["call.missed"]))
        async with AmiReplayServer(blocks, secret="e2e-secret", speed=1, resume=True) as srv:
            cfg.write_text(cfg.read_text().replace("port = 0\n", f"port = {srv.port}\n", 1))
            proc = await spawn_daemon(cfg, log)
            await wait_until(lambda: len(rx.accepted) >= 40, 60, what="40 events delivered")
            os.kill(proc.pid, signal.SIGKILL)
            await proc.wait()
            proc = await spawn_daemon(cfg, log)
            srv.speed = 0
            try:
                await run_to_end(srv, db, 200, lambda: True, "all 200 calls decided", timeout=90)
                await wait_until(lambda: not query(db, "SELECT 1 FROM webhook_deliveries WHERE state='pending'"), 60,
                                 what="the webhook queue drained")
            finally:
                rc = await stop_daemon(proc)
    assert rc == 0 and srv.sessions >= 2
    assert rx.bad_signatures == 0
    stored = {r["id"] for r in query(db, "SELECT id FROM calls WHERE missed = 1")}
    assert len(stored) == 200 and settled(db)
    ids_of_call: dict[str, set[str]] = defaultdict(set)
    for msg_id, body in rx.accepted:
        ids_of_call[body["data"]["id"]].add(msg_id)
    assert set(ids_of_call) == stored  # every missed call told, nothing invented
    assert [c for c, ids in ids_of_call.items() if len(ids) != 1] == []  # a duplicate only ever under the same id
    assert {b["data"]["caller"] for _, b in rx.accepted} == set(callers)
