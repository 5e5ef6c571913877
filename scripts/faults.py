"""Crash and modem faults through the real daemon: a recorded busy hour with kills at chosen moments.

The recorded Asterisk busy hour (``tests/data/asterisk/18-busy-office-hour``, 46 calls, 30 missed from 28
numbers) is replayed over TCP at ``--speed`` (10x: about 33 s) into a real ``textbackd run`` subprocess, texting
through a simulated Huawei E3372 on a pty. The PBX keeps going while the daemon is dead (``resume``: the new
session lists the live channels on ``CoreShowChannels``), and each killed daemon is started again 2 s later.
Per kill it prints what the modem had and what the store says, then, per scenario, whether every missed
caller got exactly one text (whole, for a long one) and how many ``ATZ`` the modem got. The scenarios are
the "done when" of issue 18:

* ``boot``: the modem sends ``^BOOT`` every 3 s, no kill: one text each, at most one ``ATZ``;
* ``cmgs``: three SIGKILLs while the modem has ``AT+CMGS=`` but not its PDU: one text each;
* ``parts``: a ~400-character template (three parts) and three SIGKILLs between parts: every text whole
  (all parts, one reference), none twice;
* ``random``: six SIGKILLs at random moments (``--seed``; 0.5-5 s after each start, with a network that takes
  0.4 s to answer ``+CMGS``, so some land mid-send): nothing lost, nothing doubled; then the network's status
  reports settle any text left ``unknown``.

Run: ``./scripts/dev faults [--scenario boot|cmgs|parts|random|all] [--speed 10] [--seed 18]``. Exit status
1 when a scenario fails its bar. It is not part of the test suite (it takes minutes); ``tests/test_kill_steps.py``
is the short version that is.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from e2e import capture, labels, query, settled, spawn_daemon, stop_daemon, wait_until, write_config  # noqa: E402

from textbackd.pbx.asterisk.replay_server import AmiReplayServer  # noqa: E402
from textbackd.senders.modem.simulator import ModemSimulator  # noqa: E402

HOUR = "18-busy-office-hour"
LONG = ("Hi, this is Apex Plumbing. Sorry we missed your call. Reply here, or book a visit at apex.example/book "
        "any time; we answer texts from 7am to 9pm, and an engineer can usually be with you the same day. ") * 3
LONG = LONG[:400]
SCENARIOS = ("boot", "cmgs", "parts", "random")


def missed_callers() -> set[str]:
    return {c["caller"] for c in labels(HOUR) if c["missed"]}


@dataclass
class Run:
    name: str
    tmp: Path
    sim: ModemSimulator
    srv: AmiReplayServer
    cfg: Path
    proc: asyncio.subprocess.Process | None = None
    kills: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def db(self) -> Path:
        return self.tmp / "textbackd.db"

    async def start(self) -> None:
        self.proc = await spawn_daemon(self.cfg, self.tmp / "daemon.log")

    async def kill(self, moment: str) -> None:
        """SIGKILL now; print what the modem had and what the store says; start again 2 s later."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        await self.proc.wait()
        self.kills += 1
        t = time.monotonic() - self.started
        flight = query(self.db, "SELECT id, to_number, state FROM messages WHERE kind='textback' AND state='sending'")
        print(f"  kill {self.kills} at {t:5.1f} s ({moment}); texts the modem took so far: {len(self.sim.received)}")
        print(f"    the modem had: {self.modem_had()}")
        for m in flight:
            print(f"    the store says: text {m['id']} to {m['to_number']} sending; {self.parts_words(m['id'])}")
        if not flight:
            print("    the store says: no text in flight")
        self.sim.resume()  # the modem goes on without its host
        await asyncio.sleep(2.0)
        await self.start()
        for m in flight:
            await wait_until(lambda mid=m["id"]: self.state(mid) not in ("sending", "scheduled"), 60,
                             what=f"text {m['id']} settled after the restart")
            r = query(self.db, "SELECT state, reason FROM messages WHERE id=?", (m["id"],))[0]
            why = query(self.db, "SELECT detail FROM message_events WHERE message_id=? AND detail LIKE 'interrupted%' "
                        "ORDER BY id DESC LIMIT 1", (m["id"],))
            got = self.copies(m["to_number"])
            print(f"    after the restart: {why[0]['detail'] if why else 'recovered'}; now {r['state']}"
                  f"{(' (' + r['reason'] + ')') if r['reason'] else ''}; the phone got it {got}")

    def modem_had(self) -> str:
        if self.sim.paused_at == "cmgs_command":
            return f"{self.sim.commands[-1]} without its PDU"
        if self.sim.paused_at == "between_parts":
            last = self.sim.taken[-2] if len(self.sim.taken) > 1 else None
            return (f"part {self.sim.taken[-1].part}/{self.sim.taken[-1].total} taken (TP-MR {self.sim.taken[-1].mr}), "
                    f"then {self.sim.commands[-1]} for the next part without its PDU") if last or self.sim.taken else "?"
        return f"last commands {self.sim.commands[-3:]}" + (f", {len(self.sim.unread)} bytes unread" if self.sim.unread else "")

    def parts_words(self, mid: int) -> str:
        rows = query(self.db, "SELECT part, total, state, ref FROM message_parts WHERE message_id=? AND copy=0 "
                     "ORDER BY part", (mid,))
        if not rows:
            return "no part handed over"
        return ", ".join(f"part {r['part']}/{r['total']} {r['state']}" + (f" (ref {r['ref']})" if r["ref"] else "")
                         for r in rows)

    def state(self, mid: int) -> str:
        rows = query(self.db, "SELECT state FROM messages WHERE id=?", (mid,))
        return rows[0]["state"] if rows else ""

    def copies(self, to: str) -> str:
        taken = [t for t in self.sim.taken if t.to == to]
        if not taken:
            return "0 times"
        groups = Counter((t.concat_ref, t.part) for t in taken)
        if all(t.total == 1 for t in taken):
            return f"{len(taken)} time(s)"
        refs = {t.concat_ref for t in taken}
        dup = sum(n - 1 for n in groups.values())
        return f"parts {sorted(p for _, p in groups)} under {len(refs)} reference(s){', ' + str(dup) + ' twice' if dup else ''}"


def verdict(run: Run, long: bool, want: set[str], boot_bar: bool = False) -> bool:
    """Every missed caller got exactly one text (whole, one reference), nobody else got one; print the counts."""
    by_to: dict[str, list] = defaultdict(list)
    for t in run.sim.taken:
        by_to[t.to].append(t)
    lost, doubled, fragments = [], [], []
    for caller in sorted(want):
        got = by_to.get(caller, [])
        if not got:
            lost.append(caller)
            continue
        total = got[0].total
        keys = Counter((t.concat_ref, t.part) for t in got)
        if len({t.concat_ref for t in got}) > 1 or any(n > 1 for n in keys.values()) or (total == 1 and len(got) > 1):
            doubled.append(caller)
        elif sorted(p for _, p in keys) != list(range(1, total + 1)):
            fragments.append(caller)
    strangers = sorted(set(by_to) - want)
    states = Counter(r["state"] for r in query(run.db, "SELECT state FROM messages WHERE kind='textback'"))
    atz = sum(c.upper() == "ATZ" for c in run.sim.commands)
    parts = Counter(t.total for t in run.sim.taken)
    print(f"  missed callers: {len(want)}; texted once{' and whole' if long else ''}: "
          f"{len(want) - len(lost) - len(doubled) - len(fragments)}; lost: {lost or 0}; twice: {doubled or 0}; "
          f"fragments: {fragments or 0}; texts to anyone else: {strangers or 0}")
    print(f"  the modem took {len(run.sim.taken)} part(s) ({dict(parts)} by text length), got {atz} ATZ, "
          f"{run.sim.opens} port opens; the store: {dict(states)}")
    ok = not (lost or doubled or fragments or strangers)
    if boot_bar:
        ok = ok and atz <= 1
    print(f"  {'PASS' if ok else 'FAIL'}")
    return ok


async def scenario(name: str, speed: float, seed: int, base: Path) -> bool:
    tmp = base / name
    tmp.mkdir(parents=True)
    sim = ModemSimulator(link=str(tmp / "ttyUSB-huawei"), profile="huawei")
    await sim.start()
    long = name == "parts"
    try:
        async with AmiReplayServer(capture(HOUR), secret="e2e-secret", speed=speed, resume=True) as srv:
            extra = f'\n[messages]\nmissed = "{LONG}"\n' if long else ""
            cfg = write_config(tmp, ami_port=srv.port, device=sim.device, grace=1, extra=extra)
            run = Run(name, tmp, sim, srv, cfg)
            print(f"== {name}: the busy hour at {speed:g}x, {len(missed_callers())} missed callers")
            if name == "boot":
                sim.boot_every(3.0)
            await run.start()
            try:
                if name in ("cmgs", "parts"):
                    step = "cmgs_command" if name == "cmgs" else "between_parts"
                    for n, skip in ((4, 0), (12, 1 if long else 0), (20, 0)):
                        await wait_until(lambda n=n: len(sim.received) >= n, 120, what=f"{n} texts")
                        sim.pause_at(step, skip=skip)
                        await asyncio.wait_for(sim.paused.wait(), 60)
                        await asyncio.sleep(0.3)
                        await run.kill(f"the modem holds AT+CMGS= without its PDU" if name == "cmgs"
                                       else "between two parts of a text")
                elif name == "random":
                    # the network takes 0.4 s to answer +CMGS (real ones take 0.5-3 s), so a kill can land mid-send
                    sim.cmgs_delay = 0.4
                    rng = random.Random(seed)
                    for _ in range(6):  # 0.5-5 s after each (re)start of the daemon's PBX session
                        sessions = srv.sessions
                        await wait_until(lambda s=sessions: srv.sessions > s or srv.finished.is_set(), 60,
                                         what="the daemon's PBX session")
                        await asyncio.sleep(rng.uniform(0.5, 5.0))
                        await run.kill("a random moment")
                await asyncio.wait_for(srv.finished.wait(), 400 / speed + 120)
                await wait_until(lambda: settled(run.db), 120, what="the outbox drained")
                await asyncio.sleep(2.0)  # nothing more may come
                if name == "random":
                    unknown = query(run.db, "SELECT COUNT(*) AS n FROM messages WHERE state='unknown'")[0]["n"]
                    for t in sim.taken:  # the network reports every part it delivered
                        await sim.status_report(t.mr)
                    await asyncio.sleep(3.0)
                    left = query(run.db, "SELECT COUNT(*) AS n FROM messages WHERE state='unknown'")[0]["n"]
                    print(f"  texts unknown after the kills: {unknown}; after the network's status reports: {left}")
            finally:
                if run.proc is not None:
                    await stop_daemon(run.proc)
            return verdict(run, long, missed_callers(), boot_bar=name == "boot")
    finally:
        sim.boot_every(0)
        await sim.stop()


async def amain(args: argparse.Namespace) -> int:
    names = SCENARIOS if args.scenario == "all" else (args.scenario,)
    base = Path(tempfile.mkdtemp(prefix="textbackd-faults-"))
    results = {}
    for name in names:
        t = time.monotonic()
        results[name] = await scenario(name, args.speed, args.seed, base)
        print(f"   ({time.monotonic() - t:.0f} s; logs and store in {base / name})\n")
    print("summary: " + json.dumps({k: "pass" if v else "FAIL" for k, v in results.items()}))
    return 0 if all(results.values()) else 1


def main() -> int:
    ap = argparse.ArgumentParser(prog="./scripts/dev faults", description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenario", default="all", choices=(*SCENARIOS, "all"))
    ap.add_argument("--speed", type=float, default=10.0, help="replay speed of the recorded hour (default 10)")
    ap.add_argument("--seed", type=int, default=18, help="where the random kills land")
    return asyncio.run(amain(ap.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
