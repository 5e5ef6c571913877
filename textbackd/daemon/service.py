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

from textbackd.core.errors import ConfigError, StoreError
from textbackd.core.model import Call, MessageState
from textbackd.core.numbers import mask
from textbackd.core.settings import Config
from textbackd.daemon import systemd
from textbackd.daemon.conversations import Conversations
from textbackd.daemon.followups import Followups, chain_recheck
from textbackd.daemon.metrics import Metrics, health
from textbackd.daemon.notify import Notifier
from textbackd.daemon.outbox import Outbox
from textbackd.daemon.pipeline import Pipeline
from textbackd.pbx import registry as pbx_kinds
from textbackd.pbx.base import Event, EventClock, PbxClient
from textbackd.pbx.registry import make_tracker
from textbackd.senders import registry as sender_kinds
from textbackd.senders.base import Sender
from textbackd.senders.registry import build_sender
from textbackd.store.db import MessageRow, Store

log = structlog.get_logger(__name__)

CallObserver = Callable[[Call, Any], Awaitable[None] | None]
TextObserver = Callable[[MessageRow, MessageState, str], Awaitable[None] | None]


def make_client(config: Config, on_event: Callable[[Event, float], Awaitable[None]], clock: Callable[[], float]) -> PbxClient:
    return pbx_kinds.get(config.pbx.kind).make_client(config, on_event, clock)


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
        # when events happened: the PBX's own stamps when believable (pbx/base.py EventClock), else arrival
        stamp = self.tracker.event_time if config.pbx.event_clock == "pbx" else None
        self.event_clock = EventClock(stamp)
        self._clock_session = -1
        self._clock_warned = False
        self.client: PbxClient | None = None
        self.outbox: Outbox | None = None
        self.senders: list[Sender] = []
        self.listener: Any = None
        self.conversations: Conversations | None = None
        self.followups: Followups | None = None  # follow-up texts (issue 8)
        self.notifier: Notifier | None = None  # staff e-mail (issue 8)
        self.mail_in: Any = None  # staff answers by e-mail (issue 8)
        self.web: Any = None  # the front desk (issue 12): a web.WebServer when [web] is set
        self.hub: Any = None  # its live updates (web.Hub)
        self.subapps: dict[str, Any] = {}  # extra aiohttp apps the web server mounts (the API, issue 14)
        self.pbx_up_since: float | None = None
        self._reconnects_seen: list[float] = []
        self.events = 0
        self._tracker_dirty = False
        self.calls = 0
        self.last_event_at: float | None = None
        self.started_at = clock()
        # operations (issue 9): metrics, health, unwritten calls, reload
        self.metrics = Metrics()
        self.metrics.attach(self)
        self.store_ok = True
        self.outbox_depth_cached = 0
        self.unwritten: list[Call] = []  # finished calls the store refused (disk full/read-only), retried
        self.exit_code = 0
        self.last_retention_at = 0.0
        self.webhooks: list[Any] = []  # issue 14: (Endpoint, Worker) per [[webhooks]] endpoint
        self.contacts: Any = None  # issue 14: the ContactBook the pipeline looks callers up in
        self.contacts_poll = 5.0  # seconds between two looks at the contacts files
        self._contacts_sig: tuple = ()
        self.api: Any = None  # issue 14: the JSON API's state (store, config, wake_outbox)
        self.web_api: Any = None  # the same API served by the front desk's listener
        self._tasks: dict[str, asyncio.Task] = {}
        self._retrying: asyncio.Task | None = None
        self._stop = asyncio.Event()
        self._ready = asyncio.Event()
        self._tracker_at = 0.0  # the tracker time (event time) of the last event fed
        self._linger_changed = asyncio.Event()  # the tracker's ``wake_at`` may have moved

    # -- lifecycle ------------------------------------------------------------------

    async def run(self) -> None:
        cfg = self.config
        self.store = Store(cfg.store.path)
        store = self.store
        pipeline = Pipeline(store, cfg)
        self.pipeline = pipeline
        self._load_contacts("start")
        unknown = self._recover_interrupted(store)
        self.senders = list(self._senders_override) if self._senders_override is not None else [
            build_sender(s.name, cfg) for s in cfg.senders
        ]
        self.followups = Followups(store, cfg, clock=self.clock)
        self.notifier = Notifier(store, cfg, clock=self.clock)
        self.notifier.on_unknown(unknown)  # staff are told about texts that may not have gone out
        self.outbox = Outbox(
            store,
            self.senders,
            max_attempts=cfg.policy.max_attempts,
            retry_base=cfg.policy.retry_base_seconds,
            recheck=chain_recheck(pipeline.recheck, self.followups.recheck),
            observer=self._text_changed,
            clock=self.present,  # text-backs are due, and rechecked, in event time (README "Which clock decides")
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
        self._setup_webhooks()
        self._restore_tracker()
        self.client = make_client(cfg, self._on_event, self.clock)
        await self._start_listener()
        await self._start_mail_in()
        await self._start_web()
        loop = asyncio.get_running_loop()
        if self.handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stop)
            loop.add_signal_handler(signal.SIGHUP, self.reload)
        log.info("textbackd_started", pbx=cfg.pbx.kind, host=cfg.pbx.host, port=cfg.pbx.port,
                 senders=[s.name for s in self.senders], store=cfg.store.path)
        try:
            async with asyncio.TaskGroup() as tg:
                client_task = tg.create_task(self.client.run(), name="pbx")
                outbox_task = tg.create_task(self.outbox.run(), name="outbox")
                self._tasks = {"pbx": client_task, "outbox": outbox_task}
                tg.create_task(self._housekeeping(), name="housekeeping")
                tg.create_task(self.notifier.run(), name="notify")
                tg.create_task(self._announce_ready(), name="ready")
                tg.create_task(self._checkpoint_loop(), name="checkpoint")
                tg.create_task(self._linger_loop(), name="linger")
                for endpoint, worker in self.webhooks:
                    tg.create_task(worker.run(), name=f"webhook:{endpoint.name}")
                tg.create_task(self._watch_contacts(), name="contacts")
                await self._stop.wait()
                systemd.notify("STOPPING=1")
                log.info("textbackd_stopping")
                await self.client.close()
                client_task.cancel()
                self._checkpoint(force=True)  # calls in progress survive `systemctl restart`
                self.outbox.stop()
                await outbox_task
                raise _Stopped
        except* _Stopped:
            pass
        finally:
            await self._stop_web()
            if self.mail_in is not None:
                with contextlib.suppress(Exception):
                    await self.mail_in.stop()
            if self.listener is not None:
                with contextlib.suppress(Exception):
                    await self.listener.stop()
            for endpoint, worker in self.webhooks:
                worker.stop()
                with contextlib.suppress(Exception):
                    await endpoint.close()
            for s in self.senders:
                with contextlib.suppress(Exception):
                    await s.close()
            if self.handle_signals:
                for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                    loop.remove_signal_handler(sig)
            self._flush_unwritten()
            for call in self.unwritten:  # never silent: each one named, and a failing exit status
                log.error("call_lost_store_unwritable", call=call.id, outcome=str(call.outcome),
                          caller=mask(call.caller, self.config.logging.log_numbers))
                self.exit_code = 1
            store.close()
            log.info("textbackd_stopped", events=self.events, calls=self.calls, exit_code=self.exit_code)

    def stop(self) -> None:
        self._stop.set()

    @property
    def pbx_connected(self) -> bool:
        return self.client is not None and self.client.connected

    @property
    def pbx_reconnects(self) -> int:
        return self.client.reconnects if self.client is not None else 0

    async def wait_ready(self) -> None:
        await self._ready.wait()

    async def _start_listener(self) -> None:
        """Always at ``http.listen``: webhooks, ``/healthz`` and ``/metrics``.

        Without a gateway sender a port in use is logged and the daemon goes on
        (texting needs no listener then); with one it is a ConfigError.
        """
        from textbackd.daemon.listener import Listener

        needed = any(sender_kinds.get(s.kind).needs_listener for s in self.config.senders)
        listener = Listener(self.config, self.conversations, self.senders)
        listener.add_get("/healthz", self._healthz)
        listener.add_get("/metrics", self._metrics_page)
        self._mount_api(listener)
        try:
            await listener.start()
        except ConfigError as e:
            if needed:
                raise
            log.error("listener_start_failed", error=str(e), effect="no /healthz or /metrics")
            return
        self.listener = listener

    # -- events ---------------------------------------------------------------------

    def present(self) -> float:
        """Now, in the time the tracker and the text-back decisions use: the PBX's clock as the events read say."""
        return self.event_clock.present(self.clock())

    async def _on_event(self, event: Event, arrival: float) -> None:
        self.events += 1
        self.metrics.events.inc()
        self.last_event_at = arrival
        session = self.client.reconnects if self.client is not None else 0
        if session != self._clock_session:  # a new connection: its first stamped event decides again
            self._clock_session = session
            self.event_clock.new_session()
            self._clock_warned = False
        at = self.event_clock.at(event, arrival)
        if self.event_clock.distrusted is not None and not self._clock_warned:
            self._clock_warned = True
            log.warning("pbx_clock_not_used", seconds_off=round(self.event_clock.distrusted, 1),
                        effect="calls are timed by arrival")
        wake = self.tracker.wake_at
        self._tracker_at = at
        for call in self.tracker.feed(event, at):
            await self._finished(call)
        self._tracker_dirty = True
        if self.tracker.wake_at != wake:
            self._linger_changed.set()
        if abs(self.event_clock.drift) > 1.0 and self.outbox is not None and self.store is not None:
            # reading a backlog (or a capture faster than real time): a text-back due by now in event time
            # is rechecked before the next event is read, as it would have been live
            due = self.store.next_due_at()
            if due is not None and due <= self.present():
                await self.outbox.process_due()
        if self.tracker.urgent:
            self._checkpoint()

    async def _finished(self, call: Call) -> None:
        assert self.store is not None and self.outbox is not None
        self.calls += 1
        try:
            out = self.pipeline.handle_call(call, self.present())
        except StoreError as e:
            self._store_refused(call, e)
            return
        if out.new:
            self.metrics.calls.labels(str(call.direction), str(call.outcome)).inc()
            log.info(
                "call_finished", call=call.id, direction=str(call.direction), outcome=str(call.outcome),
                caller=mask(call.caller, self.config.logging.log_numbers),
                did=call.did if str(call.direction) == "inbound" else mask(call.did, self.config.logging.log_numbers),
                decision=getattr(out.decision, "reason", None) or ("text" if out.decision else None),
            )
            self.outbox.wake()
            self._aftercare_call(call, out)
            self._publish("call", call.caller)
            self.wake_webhooks()
        if self.on_call is not None:
            r = self.on_call(call, out)
            if asyncio.iscoroutine(r):
                await r

    async def _text_changed(self, m: MessageRow, state: MessageState, detail: str) -> None:
        self.wake_webhooks()
        sender = detail if state == MessageState.SENT else (m.sender or "")
        self.metrics.texts.labels(str(state), sender).inc()
        if state == MessageState.SENT:
            self.metrics.send_latency.observe(max(0.0, self.present() - m.send_at))
        if self.followups is not None:
            try:
                self.followups.on_text_state(m, state)  # schedule follow-ups once a text-back is sent
                if state is MessageState.UNKNOWN and self.notifier is not None:
                    self.notifier.on_unknown([self.store.message(m.id)] if self.store else [m])
                if state is MessageState.FAILED:
                    self._tell_staff_of_fragment(m)
            except Exception:
                log.exception("followups_failed", message=m.id)
        self._publish("text", m.to_number)
        if self.on_text is not None:
            r = self.on_text(m, state, detail)
            if asyncio.iscoroutine(r):
                await r

    # -- texts a crash left `sending` (issue 18) ---------------------------------------

    def _recover_interrupted(self, store: Store) -> list[MessageRow]:
        """Claimed but never handed over → sent again (the rest of a multipart text, with its reference);
        every part accepted → sent; a part handed over without an answer → unknown (returned, for staff)."""
        from textbackd.store.outbox import recover_interrupted

        numbers = self.config.logging.log_numbers
        rec = recover_interrupted(store, self.clock())
        for m in rec.resumed:
            log.info("text_resumed_after_restart", message=m.id, to=mask(m.to_number, numbers))
        for m in rec.sent:
            log.info("text_sent_before_restart", message=m.id, to=mask(m.to_number, numbers))
        for m in rec.unknown:
            log.warning("text_outcome_unknown_after_restart", message=m.id, to=mask(m.to_number, numbers))
        return rec.unknown

    def _tell_staff_of_fragment(self, m: MessageRow) -> None:
        """A text that failed after some of its parts went out: the caller holds a fragment; staff are told."""
        from textbackd.store.outbox import progress

        if self.store is not None and self.notifier is not None and progress(self.store, m.id) is not None:
            self.notifier.on_unknown([self.store.message(m.id)])

    # -- calls in progress survive a crash ----------------------------------------------

    def _restore_tracker(self) -> None:
        """Calls open when the last process died; the first resync closes those that ended meanwhile."""
        if self.store is None:
            return
        saved = self.store.load_tracker_state(self.config.pbx.kind)
        if saved:
            n = self.tracker.restore(saved[0])
            if n:
                log.warning("calls_restored_after_restart", calls=n, saved_at=saved[1])

    def _checkpoint(self, force: bool = False) -> None:
        if self.store is None:
            return
        if not (force or self._tracker_dirty):
            return
        self._tracker_dirty = False
        try:
            self.store.save_tracker_state(self.config.pbx.kind, self.tracker.snapshot(), now=self.clock())
        except Exception as e:  # a read-only disk is handled (and reported) by the call path
            log.warning("tracker_checkpoint_failed", error=str(e))

    async def _checkpoint_loop(self, every: float = 0.5) -> None:
        while True:
            await asyncio.sleep(every)
            self._checkpoint()
            self._watch_link()

    async def _linger_loop(self) -> None:
        """Report a call the tracker holds back for a late event (``wake_at``) as soon as its wait is over.

        The tracker's wait is in event time; the daemon waits what is left of it from the last
        event, so a call is reported when its linger ends, not at the next 30 s ``expire`` sweep.
        """
        while True:
            wake = self.tracker.wake_at
            self._linger_changed.clear()
            if wake is None:
                await self._linger_changed.wait()
                continue
            left = wake - self._tracker_at
            if left > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._linger_changed.wait(), left)
                    continue  # an event came: it may have reported the call or moved the wait
            self._tracker_at = max(self._tracker_at, wake)
            for call in self.tracker.expire(self._tracker_at):
                await self._finished(call)
            self._tracker_dirty = True

    async def _housekeeping(self) -> None:
        wd = systemd.watchdog_interval()
        tick = min(self.expire_every, wd) if wd else self.expire_every
        last_expire = self.clock()
        while True:
            await asyncio.sleep(tick)
            now = self.clock()
            if now - last_expire >= self.expire_every:
                last_expire = now
                for call in self.tracker.expire(self.present()):
                    log.warning("call_expired_without_hangup", call=call.id)
                    await self._finished(call)
            self._ops_tick(now)
            if wd and self.watchdog_healthy():
                systemd.notify(f"WATCHDOG=1\nSTATUS={self.status_line()}")
            elif wd:  # no ping: systemd restarts us after WatchdogSec
                log.error("watchdog_withheld", health=health(self, now)["checks"])
                systemd.notify(f"STATUS=UNHEALTHY: {self.status_line()}")
            else:
                systemd.notify(f"STATUS={self.status_line()}")

    def status_line(self) -> str:
        link = "PBX connected" if self.pbx_connected else "PBX not connected (retrying)"
        depth = self.outbox_depth_cached
        last = f", last event {time.strftime('%H:%M:%S', time.localtime(self.last_event_at))}" if self.last_event_at else ", no event yet"
        store = "" if self.store_ok else f", STORE NOT WRITABLE ({len(self.unwritten)} calls held in memory)"
        return f"{link}{last}, {self.calls} calls, outbox {depth}{store}"

    # -- operations (issue 9): readiness, health, reload, retention -------------------

    MAX_UNWRITTEN = 10_000

    async def _announce_ready(self) -> None:
        """READY=1 once the PBX login succeeded or failed once (then it is being retried)."""
        deadline = time.monotonic() + self.config.pbx.connect_timeout + 2
        c = self.client
        assert c is not None
        while time.monotonic() < deadline and not c.connected:
            if c.first_attempt_over:
                break  # refused or dropped: it is being retried
            await asyncio.sleep(0.05)
        if c.connected:
            status = f"ready: {self.status_line()}"
        else:
            status = f"ready: PBX login failing, retrying; {self.status_line()}"
        self._ready.set()
        systemd.notify(f"READY=1\nSTATUS={status}")
        log.info("textbackd_ready", status=status)

    def watchdog_healthy(self) -> bool:
        """Ping the watchdog only when a restart would not help: loop alive (we run on it),
        the PBX and outbox tasks still running, unwritten calls within bounds."""
        tasks_alive = all(not t.done() for t in self._tasks.values())
        return tasks_alive and len(self.unwritten) < self.MAX_UNWRITTEN

    def oldest_due_age(self, now: float) -> float:
        if self.store is None:
            return 0.0
        try:
            oldest = self.store.oldest_due(now)
        except Exception:  # noqa: BLE001
            return 0.0
        return max(0.0, now - oldest) if oldest is not None else 0.0

    def _ops_tick(self, now: float) -> None:
        """Housekeeping for operations: depth, write probe, unwritten calls, retention."""
        assert self.store is not None
        try:
            self.outbox_depth_cached = self.store.outbox_depth()
        except Exception:  # noqa: BLE001
            pass
        self._flush_unwritten()
        if self.unwritten:
            self.store_ok = False
        else:
            try:
                self.store.probe_write()
                self.store_ok = True
            except StoreError as e:
                if self.store_ok:
                    log.error("store_not_writable", error=str(e))
                self.store_ok = False
        days = self.config.store.retention_days
        if days and self.store_ok and now - self.last_retention_at >= 3600:
            from textbackd.store.retention import purge

            self.last_retention_at = now
            try:
                counts = purge(self.store, now - days * 86400, now=now)
            except StoreError as e:
                log.error("retention_failed", error=str(e))
            else:
                for table, n in counts.items():
                    if n:
                        self.metrics.retention_deleted.labels(table).inc(n)
                if any(counts.values()):
                    log.info("retention_purged", days=days, **counts)

    def _store_refused(self, call: Call, e: StoreError) -> None:
        if self.store_ok:
            log.error("store_not_writable", error=str(e))
        self.store_ok = False
        self.unwritten.append(call)
        log.error("call_held_in_memory", call=call.id, held=len(self.unwritten), error=str(e))
        if self._retrying is None or self._retrying.done():
            self._retrying = asyncio.create_task(self._retry_unwritten(), name="unwritten")
        if len(self.unwritten) >= self.MAX_UNWRITTEN:
            log.critical("too_many_unwritten_calls", held=len(self.unwritten), effect="stopping with status 1")
            self.exit_code = 1
            self.stop()

    async def _retry_unwritten(self) -> None:
        delay = 0.5
        while self.unwritten and not self._stop.is_set():
            await asyncio.sleep(delay)
            self._flush_unwritten()
            delay = min(10.0, delay * 2)

    def _flush_unwritten(self) -> None:
        """Write the calls the store refused earlier, oldest first; stop at the first failure."""
        if not self.unwritten or self.store is None or self.outbox is None:
            return
        held, self.unwritten = self.unwritten, []
        for i, call in enumerate(held):
            try:
                out = self.pipeline.handle_call(call, self.present())
            except StoreError:
                self.unwritten = held[i:]
                return
            if out.new:
                self.metrics.calls.labels(str(call.direction), str(call.outcome)).inc()
                self._aftercare_call(call, out)
        log.info("unwritten_calls_stored", count=len(held))
        self.store_ok = True
        self.outbox.wake()

    def reload(self) -> None:
        """SIGHUP: re-read the config file; apply policy, messages, lines, business, follow-ups.

        Calls in progress live in the tracker, which is not touched. A file that
        does not load is refused (file, key and reason logged) and the old
        config stays. Changes to sections that need a restart are logged.
        """
        from dataclasses import replace

        from textbackd import config as cfgmod

        old = self.config
        systemd.notify("RELOADING=1")
        try:
            new = cfgmod.load(old.source)
        except ConfigError as e:
            log.error("reload_refused", file=e.file, key=e.key, reason=e.reason, effect="keeping the running config")
            self.metrics.reloads.labels("refused").inc()
            systemd.notify(f"READY=1\nSTATUS=reload refused ({e}); {self.status_line()}")
            return
        except Exception as e:  # noqa: BLE001 - an unreadable file must not stop the daemon
            log.error("reload_refused", file=old.source, reason=str(e), effect="keeping the running config")
            self.metrics.reloads.labels("refused").inc()
            systemd.notify(f"READY=1\nSTATUS=reload refused; {self.status_line()}")
            return
        restart = [k for k in ("pbx", "store", "senders", "http", "email", "logging", "web", "webhooks")
                   if getattr(new, k) != getattr(old, k)]
        if restart:
            log.warning("reload_needs_restart", sections=restart, effect="these sections keep their running values")
        merged = replace(old, policy=new.policy, messages=new.messages, lines=new.lines,
                         business=new.business, followups=new.followups, contacts=new.contacts)
        self.config = merged
        self._load_contacts("reload")
        for part in (self.pipeline, self.conversations, self.followups, self.notifier, self.listener, self.api, self.web_api):
            if part is not None and hasattr(part, "config"):
                part.config = merged
        if self.outbox is not None:
            self.outbox.max_attempts = merged.policy.max_attempts
            self.outbox.retry_base = merged.policy.retry_base_seconds
            self.outbox.wake()
        self.metrics.reloads.labels("applied").inc()
        log.info("config_reloaded", file=old.source, restart_needed=restart or None)
        systemd.notify(f"READY=1\nSTATUS=reloaded; {self.status_line()}")

    async def _healthz(self, request: Any) -> Any:
        from aiohttp import web

        body = health(self, self.clock())
        return web.json_response(body, status=200 if body["ok"] else 503)

    async def _metrics_page(self, request: Any) -> Any:
        from aiohttp import web

        from textbackd.daemon.metrics import CONTENT_TYPE

        return web.Response(body=self.metrics.render(), headers={"Content-Type": CONTENT_TYPE})


    # -- replies, follow-ups and staff e-mail (issue 8) ---------------------------------

    async def _on_reply(self, text: Any, kw: str, call_id: str | None) -> None:
        """Conversations' hook: a text came in. Stop the follow-ups, forward it to staff."""
        self._publish("reply", text.from_number)
        self.wake_webhooks()
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
        from textbackd.daemon.mail_in import MailIn

        assert self.store is not None and self.outbox is not None
        self.mail_in = MailIn(self.store, self.config, clock=self.clock, wake_outbox=self.outbox.wake)
        try:
            await self.mail_in.start()
        except Exception as e:  # a port in use must not stop texting
            log.error("mail_in_start_failed", error=str(e))
            self.mail_in = None

    # -- the front desk (issue 12) ----------------------------------------------------

    async def _start_web(self) -> None:
        """Serve the front desk when ``[web]`` is set; a port in use is logged and texting goes on."""
        if self.config.web is None:
            return
        from textbackd.web import Hub, WebServer, make_app

        assert self.store is not None
        self.hub = Hub()
        self._mount_api_on_web()
        app = make_app(self.store, self.config, host=_WebFacts(self), hub=self.hub, clock=self.clock,
                       subapps=self.subapps)
        server = WebServer(app, self.config)
        try:
            await server.start()
        except ConfigError as e:
            log.error("web_start_failed", error=str(e), effect="no front desk; texting goes on")
            self.hub = None
            return
        self.web = server

    async def _stop_web(self) -> None:
        if self.hub is not None:
            self.hub.close()
        if self.web is not None:
            with contextlib.suppress(Exception):
                await self.web.stop()

    def _publish(self, kind: str, number: str) -> None:
        if self.hub is not None:
            self.hub.publish(kind, number)

    def _watch_link(self) -> None:
        """When the PBX link came up, and each reconnect (the Status page's "up since", "reconnects today")."""
        now = self.clock()
        if self.pbx_connected and self.pbx_up_since is None:
            self.pbx_up_since = now
        elif not self.pbx_connected:
            self.pbx_up_since = None
        while len(self._reconnects_seen) < self.pbx_reconnects:
            self._reconnects_seen.append(now)
        del self._reconnects_seen[:-1000]


    # -- webhooks out (issue 14) ---------------------------------------------------------

    def _setup_webhooks(self) -> None:
        """One endpoint queue and one worker per ``[[webhooks]]``; the store learns which endpoint wants what."""
        from textbackd.daemon.metrics import WebhookGauges
        from textbackd.daemon.worker import Worker
        from textbackd.store import webhooks as wh_q
        from textbackd.webhooks.delivery import Endpoint

        assert self.store is not None
        gone = wh_q.sync_endpoints(self.store, [(w.name, w.events) for w in self.config.webhooks])
        for name, pending in gone.items():
            log.warning("webhook_endpoint_removed", endpoint=name, pending=pending,
                        effect="no new events; what waits is kept in case it comes back")
        for wc in self.config.webhooks:
            ep = Endpoint(self.store, wc, clock=self.clock, on_result=self._webhook_result,
                          on_disabled=self._webhook_disabled)
            # retry_on=Exception: nothing an endpoint does (or a bug in delivering to it) may stop the daemon
            self.webhooks.append((ep, Worker(f"webhook_{wc.name}", ep.process, next_due=ep.next_due,
                                             clock=self.clock, poll=1.0, retry_on=(Exception,))))
        if self.config.webhooks:
            self.metrics.registry.register(WebhookGauges(self))

    def wake_webhooks(self) -> None:
        for _, worker in self.webhooks:
            worker.wake()

    def _webhook_result(self, endpoint: str, result: str) -> None:
        self.metrics.webhook_attempts.labels(endpoint, result).inc()

    def _webhook_disabled(self, endpoint: str, reason: str) -> None:
        """410 Gone: the admin hears of it by staff mail too (the log already has it)."""
        if self.notifier is not None:
            self.notifier.queue(
                "webhook_disabled", f"Webhook {endpoint} disabled: the receiver answered 410 Gone",
                f"textbackd stopped sending events to the webhook endpoint {endpoint!r}:\n\n    {reason}\n\n"
                "Events that were waiting for it will not be sent, and new events are not queued for it.\n"
                f"When the receiver is back, turn it on again with:\n\n    textbackd webhooks enable {endpoint}\n",
            )


    # -- the JSON API (issue 14) ----------------------------------------------------------

    def _mount_api(self, listener: Any) -> None:
        """``/api/v1`` on the HTTP listener (the front desk mounts the same factory when ``[web]`` is on)."""
        from textbackd.api.app import PREFIX, STATE, make_app

        assert self.store is not None and self.outbox is not None
        app = make_app(self.store, self.config, self.outbox.wake, clock=self.clock)
        self.api = app[STATE]
        listener.add_subapp(PREFIX, app)

    def _mount_api_on_web(self) -> None:
        """The same API on the front desk's listener (an aiohttp app has one parent, so a second one)."""
        from textbackd.api.app import PREFIX, STATE, make_app

        assert self.store is not None and self.outbox is not None
        app = make_app(self.store, self.config, self.outbox.wake, clock=self.clock)
        self.web_api = app[STATE]
        self.subapps.setdefault(PREFIX, app)


    # -- contacts (issue 14) ----------------------------------------------------------------

    def _load_contacts(self, why: str) -> None:
        """(Re)read every [[contacts]] source; the pipeline looks callers up in the new book from now on.
        A source that cannot be read keeps what it held (a file caught half-written forgets nobody)."""
        import re

        from textbackd.contacts.book import load, signature

        self._contacts_sig = signature(self.config)
        if not self.config.contacts and self.contacts is None:
            return
        try:
            book = load(self.config, previous=self.contacts)
        except Exception:  # noqa: BLE001 - a bug in a reader must not stop texting
            log.exception("contacts_load_failed", why=why, effect="keeping the contacts loaded before")
            return
        self.contacts = book
        self.pipeline.contacts = book.find if self.config.contacts else None
        hide = re.compile(r"\+?\d[\d\s().-]{4,}")  # a number a bad row holds stays out of the log
        for s in book.report.sources:
            if s.error:
                log.error("contacts_source_unreadable", source=s.name, error=s.error, kept_previous=s.kept_previous)
            for r in s.refused:
                log.warning("contact_row_refused", where=r.where, reason=hide.sub("<number>", r.reason))
        entries = len(book.by_number)
        log.info("contacts_loaded", why=why, contacts=book.report.contacts, known=entries,
                 duplicates=len(book.report.duplicates), refused=len(book.report.refused))

    async def _watch_contacts(self) -> None:
        """Reload the contacts when one of their files changes (mtime or size)."""
        from textbackd.contacts.book import signature

        while True:
            await asyncio.sleep(self.contacts_poll)
            if signature(self.config) != self._contacts_sig:
                self._load_contacts("file_changed")


class _WebFacts:
    """What the front desk may know of the daemon (``web.Host``)."""

    def __init__(self, daemon: Daemon) -> None:
        self.d = daemon

    def health(self) -> dict[str, Any]:
        return health(self.d, self.d.clock())

    def pbx_facts(self) -> dict[str, Any]:
        from datetime import datetime

        d, cfg = self.d, self.d.config
        tz = cfg.business.tz
        today = datetime.fromtimestamp(d.clock(), tz).date()
        return {"kind": cfg.pbx.kind, "address": f"{cfg.pbx.host}:{cfg.pbx.port}", "connected": d.pbx_connected,
                "up_since": d.pbx_up_since, "last_event_at": d.last_event_at,
                "reconnects_today": sum(1 for t in d._reconnects_seen if datetime.fromtimestamp(t, tz).date() == today)}

    def sender_facts(self) -> list[dict[str, Any]]:
        out = []
        for s in self.d.senders:
            try:
                st, ok = s.status(), bool(s.healthy())
            except Exception:  # noqa: BLE001 - a broken sender is an unhealthy one with no facts
                st, ok = {}, False
            out.append({"name": s.name, "kind": s.kind, "healthy": ok, "status": st})
        return out

    def wake_outbox(self) -> None:
        if self.d.outbox is not None:
            self.d.outbox.wake()


class _Stopped(Exception):
    pass
