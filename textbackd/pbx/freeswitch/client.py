"""Inbound event-socket client for FreeSWITCH on asyncio streams (the only FreeSWITCH code with a socket).

One session: connect to ``pbx.host:pbx.port`` (8021), wait for the
``auth/request`` banner, ``auth <password>`` (``userauth user@domain:password``
when ``pbx.username`` holds an ``@``), subscribe with ``event plain <list>``
(or ``event json``), then ask ``api show channels as json`` and hand the
answer to the tracker as a ``TEXTBACKD_CHANNELS_SNAPSHOT`` event, so calls
that began or ended while the link was down are resynchronised. Every event
goes to ``on_event(event, at)`` with ``at`` read from ``clock`` on arrival; an
exception in the handler is logged and the session goes on.

Link health: FreeSWITCH sends ``HEARTBEAT`` every 20 s (switch.conf
``event-heartbeat-interval``). When nothing at all has arrived for
``1.5 × pbx.ping_interval`` the client sends ``api status``; no answer
within ``ping_interval`` (or a ``text/disconnect-notice``, EOF, a socket
error) ends the session. ``run()`` then reconnects after a backoff that
doubles from ``reconnect_min`` to ``reconnect_max`` with jitter, and
subscribes again. A refused password (``-ERR invalid``) is logged as an error
and retried at the slow end of the backoff: the admin has to fix it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from textbackd.core.errors import PbxAuthError, PbxConnectionError, PbxError, PbxProtocolError
from textbackd.core.settings import PbxConfig
from textbackd.pbx.base import EventCallback
from textbackd.pbx.freeswitch.frames import (
    API_RESPONSE,
    AUTH_REQUEST,
    COMMAND_REPLY,
    DISCONNECT_NOTICE,
    EslParser,
    Frame,
    event_of,
)
from textbackd.pbx.freeswitch.tracker import CUSTOM_SUBCLASSES, EVENTS, SNAPSHOT_EVENT

log = structlog.get_logger(__name__)

READ_SIZE = 64 * 1024
ReplyHook = Callable[[Frame], Awaitable[None]]


def subscription(fmt: str = "plain") -> str:
    """The ``event`` command: the tracker's events, BACKGROUND_JOB for bgapi, CUSTOM subclasses last."""
    names = [*EVENTS, "BACKGROUND_JOB"]
    return f"event {fmt} {' '.join(names)} CUSTOM {' '.join(CUSTOM_SUBCLASSES)}"


class _Session:
    """One connected socket: frames in, replies matched to commands in order."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.parser = EslParser()
        # futures of the commands sent, in order, each with an optional hook run by the reader at the reply
        self.pending: deque[tuple[asyncio.Future[Frame], ReplyHook | None]] = deque()
        self.jobs: dict[str, asyncio.Future[str]] = {}
        self.banner: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        self.last_rx = asyncio.get_running_loop().time()
        self.lock = asyncio.Lock()

    async def command(self, line: str, timeout: float, on_reply: ReplyHook | None = None) -> Frame:
        fut: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        async with self.lock:
            self.pending.append((fut, on_reply))
            self.writer.write(line.encode() + b"\n\n")
            await self.writer.drain()
        try:
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise PbxConnectionError(f"no reply to {line.split(' ', 1)[0]!r} within {timeout:g}s") from None

    def fail(self, exc: BaseException) -> None:
        for fut in (*(f for f, _ in self.pending), *self.jobs.values(), self.banner):
            if not fut.done():
                fut.set_exception(exc)
                fut.exception()  # retrieved: nobody may be waiting any more
        self.pending.clear()
        self.jobs.clear()


class FsClient:
    """``FsClient(config.pbx, on_event)``; ``await run()`` until ``await close()``."""

    def __init__(
        self,
        pbx_config: PbxConfig,
        on_event: EventCallback,
        *,
        clock: Callable[[], float] = time.time,
        event_format: str = "plain",
        rng: Callable[[], float] = random.random,
    ) -> None:
        if event_format not in ("plain", "json"):
            raise ValueError("event_format is 'plain' or 'json'")
        self.config = pbx_config
        self.on_event = on_event
        self.clock = clock
        self.event_format = event_format
        self.rng = rng
        self.connected = False
        self.last_event_at: float | None = None
        self.reconnects = 0
        self.sessions = 0
        self.events = 0
        self.handler_errors = 0
        self.parser: EslParser | None = None  # the current session's parser (its stats: frames, skipped)
        self._session: _Session | None = None
        self._closing = False
        self._established = False
        self._wake = asyncio.Event()  # cuts a reconnect wait short
        self._closed = asyncio.Event()  # ends a running session

    # ------------------------------------------------------------------ public

    async def run(self) -> None:
        """Connect, stream events, reconnect with backoff; returns only after ``close()``."""
        delay = self.config.reconnect_min
        while not self._closing:
            self._established = False
            try:
                await self._run_session()
            except PbxAuthError as e:
                log.error("pbx_auth_failed", host=self.config.host, port=self.config.port, error=str(e))
                delay = self.config.reconnect_max
            except PbxError as e:
                log.warning("pbx_link_lost", host=self.config.host, port=self.config.port, error=str(e))
            except Exception as e:  # never let the PBX link die for good
                log.exception("pbx_session_crashed", error=str(e))
            finally:
                self.connected = False
                self._session = None
            if self._closing:
                break
            if self._established:
                delay = self.config.reconnect_min
            wait = delay * (0.5 + 0.5 * self.rng())
            log.info("pbx_reconnecting", in_seconds=round(wait, 2))
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)
            if self._closing:
                break
            self.reconnects += 1
            delay = min(self.config.reconnect_max, max(delay * 2, self.config.reconnect_min))

    @property
    def first_attempt_over(self) -> bool:
        """The first session was refused or dropped: it is being retried."""
        return self.reconnects > 0 or (self.sessions > 0 and self._session is None)

    async def close(self) -> None:
        self._closing = True
        self._wake.set()
        self._closed.set()
        s = self._session
        if s is not None:
            with contextlib.suppress(Exception):
                s.writer.write(b"exit\n\n")
            s.writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(s.writer.wait_closed(), 2.0)

    async def api(self, command: str, timeout: float | None = None) -> str:
        """Run ``api <command>`` on the connected session and return its output."""
        s = self._need_session()
        frame = await s.command(f"api {command}", timeout or self.config.connect_timeout)
        return frame.reply_text

    async def bgapi(self, command: str, timeout: float | None = None) -> str:
        """Run ``bgapi <command>``; returns the BACKGROUND_JOB result body."""
        s = self._need_session()
        job = ""

        async def expect(reply: Frame) -> None:  # run by the reader, before the BACKGROUND_JOB can arrive
            nonlocal job
            if reply.ok:
                job = reply.headers.get("Job-UUID") or reply.reply_text.rsplit(" ", 1)[-1]
                s.jobs[job] = asyncio.get_running_loop().create_future()

        reply = await s.command(f"bgapi {command}", timeout or self.config.connect_timeout, on_reply=expect)
        if not reply.ok or job not in s.jobs:
            raise PbxProtocolError(f"bgapi refused: {reply.reply_text[:80]}")
        fut = s.jobs[job]
        try:
            return await asyncio.wait_for(fut, timeout or self.config.connect_timeout)
        finally:
            s.jobs.pop(job, None)

    # ------------------------------------------------------------------ session

    def _need_session(self) -> _Session:
        if self._session is None or not self.connected:
            raise PbxConnectionError("not connected to FreeSWITCH")
        return self._session

    async def _run_session(self) -> None:
        cfg = self.config
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(cfg.host, cfg.port), cfg.connect_timeout
            )
        except TimeoutError:
            raise PbxConnectionError(f"{cfg.host}:{cfg.port}: connect timed out") from None
        except OSError as e:
            raise PbxConnectionError(f"{cfg.host}:{cfg.port}: {e.strerror or e}") from None
        if self._closing:
            writer.close()
            return
        s = _Session(reader, writer)
        self._session = s
        self.parser = s.parser
        self.sessions += 1
        reading = asyncio.create_task(self._read_loop(s), name="esl-read")
        watchdog = asyncio.create_task(self._watchdog(s), name="esl-watchdog")
        snapshot: asyncio.Task[None] | None = None
        closing: asyncio.Task[bool] | None = None
        try:
            await self._login(s)
            self._established = True
            self.connected = True
            gap = None if self.last_event_at is None else round(self.clock() - self.last_event_at, 1)
            log.info(
                "pbx_connected", host=cfg.host, port=cfg.port, session=self.sessions, format=self.event_format, gap_seconds=gap
            )
            snapshot = asyncio.create_task(self._snapshot(s), name="esl-snapshot")
            closing = asyncio.create_task(self._closed.wait(), name="esl-closing")
            tasks = {reading, watchdog, snapshot, closing}
            while True:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                if closing in done:
                    return
                for t in done:
                    t.result()  # raises the reason the session ended
                    if t is not snapshot:
                        raise PbxConnectionError("session ended")
                tasks.discard(snapshot)
        finally:
            tasks = {reading, watchdog} | {t for t in (snapshot, closing) if t is not None}
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
            s.fail(PbxConnectionError("session closed"))
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _login(self, s: _Session) -> None:
        cfg = self.config
        t = cfg.connect_timeout
        try:
            banner = await asyncio.wait_for(s.banner, t)
        except TimeoutError:
            raise PbxProtocolError("no auth/request banner: is this the event socket?") from None
        del banner
        password = cfg.secret.reveal()
        if "@" in cfg.username:
            reply = await s.command(f"userauth {cfg.username}:{password}", t)
        else:
            reply = await s.command(f"auth {password}", t)
        if not reply.ok:
            raise PbxAuthError(f"{cfg.host}:{cfg.port} refused the event socket password ({reply.reply_text[:40]})")
        reply = await s.command(subscription(self.event_format), t)
        if not reply.ok:
            raise PbxProtocolError(f"event subscription refused: {reply.reply_text[:80]}")

    async def _snapshot(self, s: _Session) -> None:
        started = self.clock()

        async def deliver(frame: Frame) -> None:
            body = frame.body.decode("utf-8", "replace")
            if body.startswith("-ERR"):
                log.warning("pbx_resync_refused", reply=body[:80])
                return
            event = {"Event-Name": SNAPSHOT_EVENT, "Session-Start": f"{started:.6f}", "_body": body}
            await self._deliver(event, self.clock())

        await s.command("api show channels as json", self.config.connect_timeout, on_reply=deliver)

    async def _read_loop(self, s: _Session) -> None:
        try:
            await self._read_frames(s)
        except PbxError as e:
            s.fail(e)  # a command waiting for its reply learns at once that the link is gone
            raise
        except Exception as e:
            s.fail(PbxConnectionError(f"reader failed: {e!r}"))
            raise

    async def _read_frames(self, s: _Session) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                data = await s.reader.read(READ_SIZE)
            except OSError as e:
                raise PbxConnectionError(f"read failed: {e.strerror or e}") from None
            if not data:
                raise PbxConnectionError("FreeSWITCH closed the connection")
            s.last_rx = loop.time()
            for frame in s.parser.feed(data):
                await self._frame(s, frame)

    async def _frame(self, s: _Session, frame: Frame) -> None:
        ct = frame.content_type
        if ct in (COMMAND_REPLY, API_RESPONSE):
            if s.pending:
                fut, hook = s.pending.popleft()
                if hook is not None:
                    await hook(frame)  # in stream order: before the events that follow the reply
                if not fut.done():
                    fut.set_result(frame)
            else:
                log.debug("esl_unexpected_reply", content_type=ct)
            return
        if ct == AUTH_REQUEST:
            if not s.banner.done():
                s.banner.set_result(frame)
            return
        if ct == DISCONNECT_NOTICE:
            raise PbxConnectionError("FreeSWITCH sent a disconnect notice")
        event = event_of(frame)
        if event is None:
            return
        if event.get("Event-Name") == "BACKGROUND_JOB":  # ours, or another ESL client's (they are broadcast)
            fut = s.jobs.get(event.get("Job-UUID", ""))
            if fut is not None and not fut.done():
                fut.set_result(event.get("_body", ""))
        await self._deliver(event, self.clock())

    async def _deliver(self, event: Any, at: float) -> None:
        self.events += 1
        self.last_event_at = at
        try:
            await self.on_event(event, at)
        except Exception as e:  # a bad handler must not end the session
            self.handler_errors += 1
            log.exception("pbx_event_handler_failed", event_name=event.get("Event-Name"), error=str(e))

    async def _watchdog(self, s: _Session) -> None:
        loop = asyncio.get_running_loop()
        interval = self.config.ping_interval
        while True:
            await asyncio.sleep(interval / 2)
            if not self.connected:
                continue
            if loop.time() - s.last_rx < interval * 1.5:
                continue
            log.info("pbx_link_quiet", seconds=round(loop.time() - s.last_rx, 1))
            await s.command("api status", interval)  # raises PbxConnectionError when nobody answers
