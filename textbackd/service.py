"""Wiring: builds every part from the config and runs them in one asyncio TaskGroup.

    PBX client ──(event, at)──► tracker ──Call──► Pipeline (policy + store) ──► Outbox ──► senders
                                                                                  ▲
    senders / HTTP listener ──► Conversations (replies, STOP, delivery reports) ──┘

This is the only module that knows all the parts. Everything it starts is
stopped in reverse order on SIGTERM: the PBX link first (no new calls), then the
outbox after its send in flight, then senders, then the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import structlog

from textbackd import systemd
from textbackd.config import Config
from textbackd.conversations import Conversations
from textbackd.followups import Followups, chain_recheck
from textbackd.model import Call, MessageState
from textbackd.notify import Notifier
from textbackd.numbers import mask
from textbackd.outbox import Outbox
from textbackd.pbx import Event, make_tracker
from textbackd.pipeline import Pipeline
from textbackd.senders import Sender, build_sender
from textbackd.store import MessageRow, Store

log = structlog.get_logger(__name__)

CallObserver = Callable[[Call, Any], Awaitable[None] | None]
TextObserver = Callable[[MessageRow, MessageState, str], Awaitable[None] | None]


def make_client(config: Config, on_event: Callable[[Event, float], Awaitable[None]], clock: Callable[[], float]):
    if config.pbx.kind == "asterisk":
        from textbackd.ami.client import AmiClient
        from textbackd.ami.tracker import AmiTracker

        # frames the tracker can never use (most VarSet/Newexten/CEL) are dropped undecoded
        return AmiClient(config.pbx, on_event, clock=clock, select=AmiTracker.wants_frame)
    from textbackd.freeswitch.client import FsClient

    return FsClient(config.pbx, on_event, clock=clock)


class Daemon:
    """One running textbackd. ``run()`` returns after ``stop()`` (or SIGTERM) once all parts are closed."""

    def __init__(
        self,
        config: Config,
        *,
        clock: Callable[[], float] = time.time,
        senders: Sequence[Sender] | None = None,
        on_call: CallObserver | None = None,
        on_text: TextObserver | None = None,
        handle_signals: bool = True,
        expire_every: float = 30.0,
    ) -> None:
        self.config = config
        self.clock = clock
        self._senders_override = senders
        self.on_call = on_call
        self.on_text = on_text
        self.handle_signals = handle_signals
        self.expire_every = expire_every
        self.store: Store | None = None
        self.tracker = make_tracker(config)
        self.client: Any = None
        self.outbox: Outbox | None = None
        self.senders: list[Sender] = []
        self.listener: Any = None
        self.conversations: Conversations | None = None
        self.followups: Followups | None = None  # follow-up texts (issue 8)
        self.notifier: Notifier | None = None  # staff e-mail (issue 8)
        self.mail_in: Any = None  # staff answers by e-mail (issue 8)
        self.events = 0
        self.calls = 0
        self.last_event_at: float | None = None
        self.started_at = clock()
        self._stop = asyncio.Event()
        self._ready = asyncio.Event()

    # -- lifecycle ------------------------------------------------------------------

    async def run(self) -> None:
        cfg = self.config
        self.store = Store(cfg.store.path)
        store = self.store
        pipeline = Pipeline(store, cfg)
        self.pipeline = pipeline
        for m in store.recover_interrupted(self.clock()):
            log.warning("text_outcome_unknown_after_restart", message=m.id, to=mask(m.to_number, cfg.logging.log_numbers))
        self.senders = list(self._senders_override) if self._senders_override is not None else [
            build_sender(s.name, cfg) for s in cfg.senders
        ]
        self.followups = Followups(store, cfg, clock=self.clock)
        self.notifier = Notifier(store, cfg, clock=self.clock)
        self.outbox = Outbox(
            store,
            self.senders,
            max_attempts=cfg.policy.max_attempts,
            retry_base=cfg.policy.retry_base_seconds,
            recheck=chain_recheck(pipeline.recheck, self.followups.recheck),
            observer=self._text_changed,
            clock=self.clock,
            log_numbers=cfg.logging.log_numbers,
        )
        self.followups.wake_outbox = self.outbox.wake
        self.followups.sweep()  # follow-ups a crash left unscheduled
        self.conversations = Conversations(
            store, cfg, wake_outbox=self.outbox.wake, clock=self.clock, on_reply=self._on_reply
        )
        for s in self.senders:
            try:
                await s.start(self.conversations)
            except Exception as e:  # a missing modem must not stop the daemon: texts wait in the outbox
                log.error("sender_start_failed", sender=s.name, error=str(e))
        self.client = make_client(cfg, self._on_event, self.clock)
        await self._start_listener()
        await self._start_mail_in()
        loop = asyncio.get_running_loop()
        if self.handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stop)
        log.info("textbackd_started", pbx=cfg.pbx.kind, host=cfg.pbx.host, port=cfg.pbx.port,
                 senders=[s.name for s in self.senders], store=cfg.store.path)
        try:
            async with asyncio.TaskGroup() as tg:
                client_task = tg.create_task(self.client.run(), name="pbx")
                outbox_task = tg.create_task(self.outbox.run(), name="outbox")
                tg.create_task(self._housekeeping(), name="housekeeping")
                tg.create_task(self.notifier.run(), name="notify")
                self._ready.set()
                systemd.notify("READY=1\nSTATUS=connecting to the PBX")
                await self._stop.wait()
                systemd.notify("STOPPING=1")
                log.info("textbackd_stopping")
                await self.client.close()
                client_task.cancel()
                self.outbox.stop()
                await outbox_task
                raise _Stopped
        except* _Stopped:
            pass
        finally:
            if self.mail_in is not None:
                with contextlib.suppress(Exception):
                    await self.mail_in.stop()
            if self.listener is not None:
                with contextlib.suppress(Exception):
                    await self.listener.stop()
            for s in self.senders:
                with contextlib.suppress(Exception):
                    await s.close()
            if self.handle_signals:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)
            store.close()
            log.info("textbackd_stopped", events=self.events, calls=self.calls)

    def stop(self) -> None:
        self._stop.set()

    async def wait_ready(self) -> None:
        await self._ready.wait()

    async def _start_listener(self) -> None:
        kinds = {s.kind for s in self.config.senders}
        if not (kinds & {"kannel", "twilio", "http"}):
            return
        from textbackd.listener import Listener

        self.listener = Listener(self.config, self.conversations, self.senders)
        await self.listener.start()

    # -- events ---------------------------------------------------------------------

    async def _on_event(self, event: Event, at: float) -> None:
        self.events += 1
        self.last_event_at = at
        for call in self.tracker.feed(event, at):
            await self._finished(call)

    async def _finished(self, call: Call) -> None:
        assert self.store is not None and self.outbox is not None
        self.calls += 1
        out = self.pipeline.handle_call(call, self.clock())
        if out.new:
            log.info(
                "call_finished", call=call.id, direction=str(call.direction), outcome=str(call.outcome),
                caller=mask(call.caller, self.config.logging.log_numbers), did=call.did,
                decision=getattr(out.decision, "reason", None) or ("text" if out.decision else None),
            )
            self.outbox.wake()
            self._aftercare_call(call, out)
        if self.on_call is not None:
            r = self.on_call(call, out)
            if asyncio.iscoroutine(r):
                await r

    async def _text_changed(self, m: MessageRow, state: MessageState, detail: str) -> None:
        if self.followups is not None:
            try:
                self.followups.on_text_state(m, state)  # schedule follow-ups once a text-back is sent
            except Exception:
                log.exception("followups_failed", message=m.id)
        if self.on_text is not None:
            r = self.on_text(m, state, detail)
            if asyncio.iscoroutine(r):
                await r

    async def _housekeeping(self) -> None:
        wd = systemd.watchdog_interval()
        tick = min(self.expire_every, wd) if wd else self.expire_every
        last_expire = self.clock()
        while True:
            await asyncio.sleep(tick)
            now = self.clock()
            if now - last_expire >= self.expire_every:
                last_expire = now
                for call in self.tracker.expire(now):
                    log.warning("call_expired_without_hangup", call=call.id)
                    await self._finished(call)
            if wd:
                systemd.notify(f"WATCHDOG=1\nSTATUS={self.status_line()}")

    def status_line(self) -> str:
        link = "PBX connected" if getattr(self.client, "connected", False) else "PBX not connected"
        depth = self.store.outbox_depth() if self.store else 0
        last = f", last event {time.strftime('%H:%M:%S', time.localtime(self.last_event_at))}" if self.last_event_at else ""
        return f"{link}{last}, {self.calls} calls, outbox {depth}"


    # -- replies, follow-ups and staff e-mail (issue 8) ---------------------------------

    async def _on_reply(self, text: Any, kw: str, call_id: str | None) -> None:
        """Conversations' hook: a text came in. Stop the follow-ups, forward it to staff."""
        try:
            if self.followups is not None:
                self.followups.on_reply(text.from_number, kw)
            if self.notifier is not None:
                self.notifier.on_reply(text, kw, call_id)
        except Exception:  # staff mail and follow-ups must never break receiving texts
            log.exception("reply_aftercare_failed")

    def _aftercare_call(self, call: Call, out: Any) -> None:
        """A new finished call: a call with the number stops its follow-ups; staff may want a mail."""
        try:
            if self.followups is not None:
                self.followups.on_call(call)
            if self.notifier is not None:
                self.notifier.on_call(call, out)
        except Exception:
            log.exception("call_aftercare_failed", call=call.id)

    async def _start_mail_in(self) -> None:
        if not (self.config.email.enabled and self.config.email.receive_listen):
            return
        from textbackd.mail_in import MailIn

        assert self.store is not None and self.outbox is not None
        self.mail_in = MailIn(self.store, self.config, clock=self.clock, wake_outbox=self.outbox.wake)
        try:
            await self.mail_in.start()
        except Exception as e:  # a port in use must not stop texting
            log.error("mail_in_start_failed", error=str(e))
            self.mail_in = None


class _Stopped(Exception):
    pass
