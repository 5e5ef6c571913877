"""SIGKILL of a real `textbackd run` at each step of one send, then `textbackd run` again (issue 18).

Each scenario: a replaying AMI server sends one missed (busy) call, the daemon texts it through the modem
simulator on a pty, the simulator pauses at the chosen step so the kill lands exactly there, the daemon is
killed with SIGKILL, the simulator goes on (a modem does not stop because its host died), and a new daemon
starts a second later. The steps: *claimed* (the row is `sending`, the modem busy reading a reply),
*AT+CMGS= written* (no prompt yet), *prompt seen* (the daemon's hand-over mark on disk and its PDU written,
not yet read by the modem), *PDU written* (the modem took it, no +CMGS yet), *+CMGS read* (its OK not yet)
and *marked sent*; for a three-part text the middle steps
are those of part 2. What the rules give: never handed over → sent once; every part accepted → sent; a part
in doubt → never sent again, the parts never handed over still go (the text arrives whole), and the text is
`unknown` until the network's status reports settle it (`delivered`). The six scenarios of a text shape run
at once, each with its own daemon, simulator, PBX and store.
"""

from __future__ import annotations

import asyncio
import os
import signal
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from e2e import capture, query, rewrite, settled, spawn_daemon, stop_daemon, wait_until, write_config

from textbackd.pbx.asterisk.replay_server import AmiReplayServer, Block
from textbackd.senders.modem.simulator import ModemSimulator

pytestmark = pytest.mark.slow

LONG = ("Hi, this is Apex Plumbing. Sorry we missed your call; reply here or book online any time. " * 5)[:400]
STEPS = ("claimed", "cmgs_command", "prompt", "pdu", "cmgs", "sent")
IN_DOUBT = ("prompt", "pdu")  # the modem has the part, the daemon never heard back


@dataclass
class Outcome:
    step: str
    state_after_restart: str = ""
    state_after_reports: str = ""
    parts: list[tuple[int | None, int]] = field(default_factory=list)  # (concat ref, part) the phone got
    history: list[str] = field(default_factory=list)
    log: str = ""


def one_call(caller: str, lead_in: float) -> list:
    """The recorded busy call, from ``caller``, starting ``lead_in`` seconds after the daemon logs in (the replay
    paces from its first block: an event no tracker uses opens the stream)."""
    call = rewrite(capture("05-busy"), "+12125550105", caller)
    t0 = call[0].at
    quiet = Block(0.0, b"Event: DeviceStateChange\r\nPrivilege: call,all\r\nDevice: PJSIP/101\r\nState: NOT_INUSE\r\n\r\n")
    return [quiet] + [replace(b, at=b.at - t0 + lead_in) for b in call]


def config(tmp: Path, port: int, device: str, long: bool, command_timeout: int = 5) -> Path:
    extra = f'\n[messages]\nmissed = "{LONG}"\n' if long else ""
    cfg = write_config(tmp, ami_port=port, device=device, grace=0, extra=extra)
    cfg.write_text(cfg.read_text().replace("command_timeout = 5\n", f"command_timeout = {command_timeout}\n"))
    return cfg


async def scenario(tmp: Path, step: str, caller: str, long: bool) -> Outcome:
    tmp.mkdir()
    out = Outcome(step)
    db, log = tmp / "textbackd.db", tmp / "daemon.log"
    sim = ModemSimulator(link=str(tmp / "modem0"))
    await sim.start()
    skip = 1 if long else 0  # part 2's step for the three-part text
    if step == "claimed":
        sim.pause_at("command:AT+CMGR")  # the modem busy reading a reply: the claimed text waits for it
    elif step != "sent":
        sim.pause_at(step, skip=skip)
    try:
        # claimed: the call comes well after the modem started reading the reply (which it then holds up to
        # command_timeout), so the text is claimed while the modem is busy, even on a loaded machine
        lead_in, timeout = (5.0, 20) if step == "claimed" else (1.5, 5)
        async with AmiReplayServer(one_call(caller, lead_in), secret="e2e-secret", speed=1, resume=True) as srv:
            cfg = config(tmp, srv.port, sim.device, long, timeout)
            proc = await spawn_daemon(cfg, log)
            try:
                await wait_until(lambda: srv.sessions >= 1, 30, what="the daemon's AMI login")
                if step == "claimed":
                    await sim.incoming("+12125550198", "Is this the plumber?")
                    await wait_until(lambda: sim.paused.is_set(), 30, what="the modem reading the reply")
                    await wait_until(lambda: query(db, "SELECT 1 FROM messages WHERE state='sending'"), 30,
                                     what="the text claimed")
                elif step == "sent":
                    await wait_until(lambda: query(db, "SELECT 1 FROM messages WHERE state='sent'"), 30,
                                     what="the text marked sent")
                else:
                    await asyncio.wait_for(sim.paused.wait(), 30)
                    if step == "prompt":  # the daemon saw the prompt: its mark is on disk once the PDU is written
                        await wait_until(lambda: b"\x1a" in sim.unread, 30, step=0.02, what="the PDU written")
                    await asyncio.sleep(0.2)  # what the daemon does with what it got (a +CMGS: its part accepted)
                os.kill(proc.pid, signal.SIGKILL)
                await proc.wait()
            except BaseException:
                proc.kill()
                await proc.wait()
                raise
            sim.resume()  # the modem goes on without its host
            await asyncio.sleep(1.0)
            proc = await spawn_daemon(cfg, log)
            try:
                await wait_until(lambda: settled(db) and srv.sessions >= 2, 40, what="the outbox settled after the restart")
                await asyncio.sleep(1.0)  # nothing more may come
                out.state_after_restart = query(db, "SELECT state FROM messages WHERE kind='textback'")[0]["state"]
                if out.state_after_restart == "unknown":  # the network reports each part it delivered
                    for t in [t for t in sim.taken if t.to == caller]:
                        await sim.status_report(t.mr)
                    await wait_until(lambda: query(db, "SELECT 1 FROM messages WHERE state='delivered'"), 20,
                                     what="the reports matched")
                out.state_after_reports = query(db, "SELECT state FROM messages WHERE kind='textback'")[0]["state"]
            finally:
                await stop_daemon(proc)
    finally:
        out.parts = [(t.concat_ref, t.part) for t in sim.taken if t.to == caller]
        out.history = [r["detail"] for r in query(
            db, "SELECT e.detail FROM message_events e JOIN messages m ON m.id = e.message_id "
                "WHERE m.kind = 'textback' ORDER BY e.id")]
        out.log = log.read_text()[-3000:] if log.exists() else ""
        await sim.stop()
    return out


async def run_all(tmp_path: Path, long: bool, first_caller: int) -> dict[str, Outcome]:
    results = await asyncio.gather(
        *(scenario(tmp_path / step, step, f"+121255501{first_caller + i:02d}", long) for i, step in enumerate(STEPS)),
        return_exceptions=True,
    )
    failed = {s: r for s, r in zip(STEPS, results, strict=True) if isinstance(r, BaseException)}
    if failed:
        raise AssertionError("; ".join(f"{s}: {type(e).__name__}: {e}" for s, e in failed.items())) from next(
            iter(failed.values()))
    return dict(zip(STEPS, results, strict=True))


def check(outcomes: dict[str, Outcome], total: int) -> None:
    wrong = []
    for step, o in outcomes.items():
        want_state = "unknown" if step in IN_DOUBT else "sent"
        refs = {ref for ref, _ in o.parts}
        whole = sorted(p for _, p in o.parts) == list(range(1, total + 1)) and len(refs) == 1
        if not whole:
            wrong.append(f"{step}: the phone got {o.parts}, not parts 1..{total} once with one reference")
        if o.state_after_restart != want_state:
            wrong.append(f"{step}: {o.state_after_restart} after the restart, not {want_state}: {o.history}")
        if step in IN_DOUBT and o.state_after_reports != "delivered":
            wrong.append(f"{step}: {o.state_after_reports} after every part was reported delivered")
    assert not wrong, "\n".join(wrong) + "\n" + "\n".join(f"--- {s}\n{o.log}" for s, o in outcomes.items())


async def test_kill_at_each_step_of_a_one_part_text(tmp_path):
    """A one-part text killed at each step is sent exactly once: resent when the PDU never went out, `sent` when its
    +CMGS was read, `unknown` (then `delivered` by its report, never resent) when the modem had it without answering."""
    outcomes = await run_all(tmp_path, long=False, first_caller=50)
    check(outcomes, total=1)
    assert "interrupted before it was handed over: sending it again" in outcomes["cmgs_command"].history


async def test_kill_at_each_step_of_a_three_part_text(tmp_path):
    """A three-part text killed at each step of its part 2 arrives whole, each part once with one reference: the parts
    not yet handed over follow after the restart; a part the modem had without answering is never sent again."""
    outcomes = await run_all(tmp_path, long=True, first_caller=60)
    check(outcomes, total=3)
    assert any("sending the rest (parts 2, 3) with the same reference" in d for d in outcomes["cmgs_command"].history)
