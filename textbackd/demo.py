"""``textbackd demo``: the real daemon against a built-in PBX and a simulated modem.

Inside one process it starts:

* an AMI server replaying a recorded busy office hour from a real Asterisk 22
  (46 calls over about 5.5 minutes, shipped as package data), at ``speed``x;
* a GSM modem simulator on a pseudo-terminal, which acknowledges every text with
  a delivery report, and on which a few callers answer (one of them with STOP);
* a temporary SQLite store,

and runs the unmodified ``Daemon`` (AMI client → tracker → policy → outbox →
modem sender over AT commands) against them. It prints each call, decision
and text as it happens, then a summary table.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from textbackd import config as cfgmod
from textbackd.core.model import Call, Direction, MessageState
from textbackd.daemon.pipeline import Outcome as PipelineOutcome
from textbackd.daemon.service import Daemon
from textbackd.decide import policy
from textbackd.pbx.asterisk.replay_server import AmiReplayServer, builtin_busy_hour
from textbackd.senders.modem.simulator import ModemSimulator
from textbackd.store.db import MessageRow, Store

# Callers who answer the text, by the order their text went out: (n-th text, reply).
REPLIES = {2: "Yes please, can someone come tomorrow morning?", 5: "STOP"}

WEEK_OPEN = {d: "00:00-24:00" for d in cfgmod.WEEKDAYS}


def demo_config(workdir: Path, ami_port: int, modem_device: str, grace: float) -> cfgmod.Config:
    """The demo's configuration: what an admin would write in textbackd.toml."""
    return cfgmod.parse(
        {
            "pbx": {"kind": "asterisk", "host": "127.0.0.1", "port": ami_port, "username": "textbackd",
                    "secret": "demo-secret", "ping_interval": 5, "reconnect_min": 0.2, "reconnect_max": 2},
            "business": {
                "name": "Apex Plumbing",
                "timezone": "America/New_York",
                "default_region": "US",
                "booking_link": "apex.example/book",
                "contact": "(212) 555-0100",
                "hours": WEEK_OPEN,
            },
            "store": {"path": str(workdir / "textbackd.db")},
            "http": {"listen": "127.0.0.1:0"},  # any free port: never clash with a running textbackd
            "senders": [{"name": "modem1", "kind": "modem", "device": modem_device, "command_timeout": 5}],
            "policy": {"grace_seconds": grace, "quiet_hours": "send"},
            # the recorded branch office (DID 5550500) was closed: it is closed today for a holiday,
            # so its callers get the after-hours wording with the next opening
            "lines": [{"did": "5550500", "name": "Apex Plumbing Brooklyn",
                       "hours": {**{d: "09:00-17:00" for d in ("mon", "tue", "wed", "thu", "fri")},
                                 "holidays": [_today_in("America/New_York")]}}],
            "logging": {"level": "warning"},
            "web": {"listen": "127.0.0.1:0"},  # the front desk on any free port (issue 12)
        },
        file="<demo>",
        env={},
    )


def _today_in(tz: str) -> str:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    return datetime.now(ZoneInfo(tz)).date().isoformat()


@dataclass
class Tally:
    calls: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)
    texts: Counter = field(default_factory=Counter)
    missed: int = 0
    sent_order: int = 0
    replies: int = 0
    text_delays: list[float] = field(default_factory=list)
    final_states: Counter = field(default_factory=Counter)  # kind:state of every row in the store at the end


class DemoPrinter:
    def __init__(self, out: TextIO, t0: float) -> None:
        self.out = out
        self.t0 = t0

    def line(self, tag: str, text: str) -> None:
        el = time.monotonic() - self.t0
        print(f"{el:6.1f}s  {tag:<6} {text}", file=self.out, flush=True)


def _who(call: Call) -> str:
    name = f" ({call.caller_name})" if call.caller_name and not call.caller_name.startswith("<") else ""
    return f"{call.caller}{name}"


def _outcome(call: Call) -> str:
    s = str(call.outcome).replace("_", " ")
    if call.voicemail_left:
        s += ", message left"
    return s


async def run_demo(*, speed: float = 20.0, grace: float = 3.0, out: TextIO = sys.stdout, keep: str | None = None,
                   web: bool = False) -> Tally:
    """``web``: keep the daemon and its front desk running after the hour, until Ctrl-C."""
    tally = Tally()
    with contextlib.ExitStack() as stack:
        workdir = Path(keep) if keep else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="textbackd-demo-")))
        workdir.mkdir(parents=True, exist_ok=True)
        sim = ModemSimulator(link=str(workdir / "modem0"))
        await sim.start()
        server = AmiReplayServer(builtin_busy_hour(), username="textbackd", secret="demo-secret", speed=speed)
        await server.start()
        cfg = demo_config(workdir, server.port, sim.device, grace)
        if keep:  # enough config for `textbackd calls/messages/stats -c DIR/textbackd.toml` afterwards
            (workdir / "textbackd.toml").write_text(
                f'[business]\nname = "{cfg.business.name}"\ntimezone = "{cfg.business.timezone}"\n'
                f'[store]\npath = "{cfg.store.path}"\n'
            )
        p = DemoPrinter(out, time.monotonic())
        print(
            f"textbackd demo: a recorded busy hour at {speed:g}x from a built-in Asterisk (AMI on 127.0.0.1:{server.port}),\n"
            f"a simulated GSM modem on {sim.device}, store {cfg.store.path}, grace {grace:g}s.\n",
            file=out,
            flush=True,
        )
        pending: set[asyncio.Task] = set()

        def later(coro) -> None:
            t = asyncio.create_task(coro)
            pending.add(t)
            t.add_done_callback(pending.discard)

        async def on_call(call: Call, outcome: PipelineOutcome) -> None:
            tally.calls[str(call.direction)] += 1
            if not outcome.new:
                return
            if call.direction is not Direction.INBOUND:
                p.line("call", f"{call.direction} call {call.caller} → {call.did}: not a customer, ignored")
                return
            d = outcome.decision
            if not call.missed:
                p.line("call", f"{_who(call)} → {call.did}: answered by {call.answered_by or 'staff'}")
                return
            tally.missed += 1
            if isinstance(d, policy.TextDecision):
                wait = max(0.0, d.send_at.timestamp() - time.time())
                p.line("MISSED", f"{_who(call)} → {call.did}: {_outcome(call)} → text in {wait:.0f}s ({d.template})")
            elif isinstance(d, policy.SkipDecision):
                tally.skipped[d.reason] += 1
                p.line("MISSED", f"{_who(call)} → {call.did}: {_outcome(call)} → no text: {d.reason}")

        async def on_text(m: MessageRow, state: MessageState, detail: str) -> None:
            if state is MessageState.SENDING:
                return
            tally.texts[f"{m.kind}:{state}"] += 1
            if state is MessageState.SENT:
                fresh = daemon.store.message(m.id)
                if m.kind == "textback":
                    tally.sent_order += 1
                    call = daemon.store.get_call(m.call_id) if m.call_id else None
                    if call is not None:
                        tally.text_delays.append(fresh.sent_at - call.ended)
                p.line("TEXT", f"→ {m.to_number} via {fresh.sender}, {fresh.segments} segment(s): {m.text}")
                for ref in fresh.refs:
                    later(_deliver(sim, int(ref)))
                reply = REPLIES.get(tally.sent_order) if m.kind == "textback" else None
                if reply:
                    later(_reply(sim, m.to_number, reply, p, tally))
            elif state is MessageState.CANCELLED:
                p.line("cancel", f"text to {m.to_number} cancelled: {detail}")
            elif state in (MessageState.FAILED, MessageState.UNKNOWN, MessageState.EXPIRED):
                p.line(str(state), f"text to {m.to_number}: {detail}")

        daemon = Daemon(cfg, on_call=on_call, on_text=on_text)
        task = asyncio.create_task(daemon.run())
        try:
            await daemon.wait_ready()
            _front_desk(daemon, out)
            await server.finished.wait()
            # let the last calls end, the grace pass, and the texts (and replies) go out
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                await asyncio.sleep(0.5)
                if daemon.tracker.open_calls == 0 and daemon.store.outbox_depth() == 0 and not pending:
                    break
            await asyncio.sleep(0.5)
            if web and daemon.web is not None:
                print(f"\nThe busy hour is over. The front desk stays at {daemon.web.url} until you press Ctrl-C.",
                      file=out, flush=True)
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.Event().wait()
        finally:
            daemon.stop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 15)
            for t in list(pending):
                t.cancel()
            await server.stop()
            await sim.stop()
            final = Store(cfg.store.path, readonly=True)
            try:
                tally.final_states = Counter(
                    {f"{kind}:{state}": n for (kind, state), n in final.state_counts().items()}
                )
            finally:
                final.close()
        _summary(tally, cfg, out, sim)
    return tally


def _front_desk(daemon: Daemon, out: TextIO) -> None:
    """A one-time admin login for this demo's front desk, printed with its URL."""
    import secrets

    from textbackd.staff import accounts

    if daemon.web is None or daemon.store is None:
        return
    password = secrets.token_urlsafe(12)
    accounts.add_user(daemon.store, "demo", "admin", password, actor="demo", now=time.time())
    print(f"front desk: {daemon.web.url}  sign in as demo / {password} (this login lives only as long as the demo)\n",
          file=out, flush=True)


async def _deliver(sim: ModemSimulator, ref: int) -> None:
    await asyncio.sleep(0.3)
    await sim.status_report(reference=ref, status=0)


async def _reply(sim: ModemSimulator, number: str, text: str, p: DemoPrinter, tally: Tally) -> None:
    await asyncio.sleep(1.0)
    tally.replies += 1
    p.line("REPLY", f"← {number}: {text}")
    await sim.incoming(number, text)


def _summary(t: Tally, cfg: cfgmod.Config, out: TextIO, sim: ModemSimulator) -> None:
    st = t.final_states
    sent = st["textback:sent"] + st["textback:delivered"]
    rows = [
        ("calls seen", sum(t.calls.values())),
        ("  inbound / internal / outbound", f"{t.calls['inbound']} / {t.calls['internal']} / {t.calls['outbound']}"),
        ("missed inbound calls", t.missed),
        ("text-backs sent", sent),
        ("  confirmed delivered by the network", st["textback:delivered"]),
        ("  cancelled before sending", st["textback:cancelled"]),
        ("missed calls not texted", sum(t.skipped.values())),
    ]
    rows += [(f"  {reason}", n) for reason, n in t.skipped.most_common()]
    rows += [
        ("replies received", t.replies),
        ("STOP confirmations sent", st["confirm:sent"] + st["confirm:delivered"]),
        ("texts the modem received (all kinds)", len(sim.received)),
    ]
    if t.text_delays:
        delays = sorted(t.text_delays)
        rows.append(("median missed call → text", f"{delays[len(delays) // 2]:.1f}s (grace {cfg.policy.grace_seconds:g}s)"))
    width = max(len(r[0]) for r in rows)
    print("\nsummary", file=out)
    print("-" * (width + 12), file=out)
    for k, v in rows:
        print(f"{k:<{width}}  {v}", file=out)
    print(
        "\nEverything above went through the real daemon: AMI client, call tracker, policy, SQLite outbox and the\n"
        "modem driver speaking AT commands in PDU mode. Run `textbackd demo --keep DIR` to keep the store and\n"
        "inspect it with `textbackd calls -c DIR/textbackd.toml`, or read README.md to point textbackd at your own PBX.",
        file=out,
    )
