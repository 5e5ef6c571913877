"""The AMI connection: our own asyncio-streams client over the sans-I/O ``AmiParser``.

Interface (the daemon wires it to the tracker)::

    client = AmiClient(config.pbx, on_event, select=AmiTracker.wants_frame)
    task = asyncio.create_task(client.run())   # forever: connect, login, read, reconnect
    ...
    await client.close()                       # Logoff, close, run() returns

``on_event(event, at)`` is awaited for every AMI *event* (``Response`` frames
are the client's own business), with ``at`` = ``clock()`` when the read that
completed it returned. An exception in ``on_event`` is logged with its
traceback and the session goes on. Attributes: ``connected`` (logged in and
``FullyBooted``), ``last_event_at``, ``reconnects`` (sessions after the first),
``sessions``, ``parser`` (its counters: skipped frames, ignored frames).

One session:

1. TCP connect (``pbx.connect_timeout``), ``Action: Login`` with an ``ActionID``
   and ``Events: system,call,dialplan,agent`` (only the event classes the tracker
   reads; see the README for the ``manager.conf`` user); a ``Response: Error`` is
   a ``PbxAuthError``, retried only every ``reconnect_max`` seconds.
2. Wait for ``FullyBooted`` (Asterisk sends it right after login once it is up).
3. ``Action: CoreShowChannels``: the tracker confirms the calls it holds and
   learns the ones that began while we were away; the gap since the last event
   of the previous session is logged (``ami.reconnected gap_seconds=…``).
4. Every ``pbx.ping_interval`` an ``Action: Ping`` with its own ``ActionID``;
   if the previous ping has not been answered when the next is due, the link is
   declared dead (so within two intervals) and closed.
5. On any loss: reconnect after ``min(reconnect_max, reconnect_min * 2**n)``
   seconds, half of it random (jitter), ``n`` counting failed attempts since the
   last session that stayed up.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import structlog

from textbackd.core.errors import PbxAuthError, PbxConnectionError, PbxError, PbxProtocolError
from textbackd.pbx.asterisk.frames import AmiParser
from textbackd.pbx.base import EventCallback

if TYPE_CHECKING:
    from textbackd.core.settings import PbxConfig

log = structlog.get_logger(__name__)

EVENT_CLASSES = "system,call,dialplan,agent"
READ_SIZE = 256 * 1024
STABLE_SECONDS = 10.0  # a session that lived this long resets the backoff


def _action(name: str, action_id: str, **fields: str) -> bytes:
    lines = [f"Action: {name}", f"ActionID: {action_id}"]
    lines += [f"{k}: {v}" for k, v in fields.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class AmiClient:
    def __init__(
        self,
        pbx: PbxConfig,
        on_event: EventCallback,
        *,
        clock: Callable[[], float] = time.time,
        select: Callable[[bytes], bool] | None = None,
        events: str = EVENT_CLASSES,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.pbx = pbx
        self.on_event = on_event
        self.clock = clock
        self.events = events
        self.rng = rng
        self.parser = AmiParser(select=select)
        self.connected = False
        self.last_event_at: float | None = None
        self.reconnects = 0
        self.sessions = 0
        self.handler_errors = 0
        self._closing = asyncio.Event()
        self._writer: asyncio.StreamWriter | None = None
        self._seq = 0
        self._ping_pending: str | None = None
        self._waiters: dict[str, asyncio.Future[dict[str, str]]] = {}
        self._booted: asyncio.Event | None = None

    # --- public -------------------------------------------------------------------------

    async def run(self) -> None:
        """Connect, read and reconnect until ``close()``."""
        failures = 0
        while not self._closing.is_set():
            started = time.monotonic()
            try:
                await self._session()
            except PbxAuthError as e:
                log.error("ami.login_refused", host=self.pbx.host, port=self.pbx.port, reason=str(e))
                failures = 10_000  # wait reconnect_max: the same secret will not start working quickly
            except (PbxError, OSError, asyncio.IncompleteReadError) as e:
                if self._closing.is_set():
                    break
                if time.monotonic() - started >= STABLE_SECONDS and self.connected:
                    failures = 0
                log.warning("ami.disconnected", host=self.pbx.host, port=self.pbx.port, reason=str(e) or type(e).__name__)
            except Exception:  # noqa: BLE001 - a bug in one session must not stop the daemon's PBX link
                log.exception("ami.session_failed", host=self.pbx.host, port=self.pbx.port)
            finally:
                self.connected = False
                await self._drop()
            if self._closing.is_set():
                break
            delay = self.backoff(failures)
            failures += 1
            log.info("ami.reconnect_in", seconds=round(delay, 2), attempt=failures)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._closing.wait(), delay)

    @property
    def first_attempt_over(self) -> bool:
        """The first session was refused or dropped: it is being retried."""
        return self.reconnects > 0 or (self.sessions > 0 and self._writer is None)

    def backoff(self, failures: int) -> float:
        """Delay before the next attempt: exponential, capped, the upper half random."""
        lo, hi = self.pbx.reconnect_min, self.pbx.reconnect_max
        base = min(hi, lo * (2 ** min(failures, 30)))
        return base / 2 + self.rng() * base / 2

    async def close(self) -> None:
        self._closing.set()
        w = self._writer
        if w is not None and not w.is_closing():
            with contextlib.suppress(Exception):
                w.write(_action("Logoff", self._next_id("logoff")))
                await asyncio.wait_for(w.drain(), 1.0)
        await self._drop()

    # --- one session --------------------------------------------------------------------

    def _next_id(self, what: str) -> str:
        self._seq += 1
        return f"textbackd-{what}-{self._seq}"

    async def _drop(self) -> None:
        w, self._writer = self._writer, None
        for fut in self._waiters.values():
            if not fut.done():
                fut.set_exception(PbxConnectionError("connection lost"))
        self._waiters.clear()
        if w is not None:
            w.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(w.wait_closed(), 1.0)

    async def _session(self) -> None:
        host, port = self.pbx.host, self.pbx.port
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), self.pbx.connect_timeout)
        except asyncio.TimeoutError:
            raise PbxConnectionError(f"AMI {host}:{port}: no connection within {self.pbx.connect_timeout:g} s") from None
        except OSError as e:
            raise PbxConnectionError(f"AMI {host}:{port}: {e.strerror or e}") from None
        self._writer = writer
        previous_event_at = self.last_event_at
        self._ping_pending = None
        booted = self._booted = asyncio.Event()
        self.parser.reset()
        self.sessions += 1
        if self.sessions > 1:
            self.reconnects += 1
        reading = asyncio.create_task(self._read_loop(reader))
        try:
            login_id = self._next_id("login")
            login = await self._request(
                "Login",
                login_id,
                reading,
                Username=self.pbx.username,
                Secret=self.pbx.secret.reveal(),
                Events=self.events,
            )
            if login.get("Response") != "Success":
                raise PbxAuthError(f"AMI {host}:{port}: login refused: {login.get('Message', 'no reason given')}")
            await self._until(booted.wait(), reading, max(self.pbx.connect_timeout, 30.0), "FullyBooted")
            self.connected = True
            now = self.clock()
            gap = None if previous_event_at is None else round(now - previous_event_at, 3)
            log.info(
                "ami.connected" if self.sessions == 1 else "ami.reconnected",
                host=host,
                port=port,
                banner=self.parser.banner,
                gap_seconds=gap,
                reconnects=self.reconnects,
            )
            self._send(_action("CoreShowChannels", self._next_id("resync")))
            pinging = asyncio.create_task(self._ping_loop(writer))
            try:
                done, _ = await asyncio.wait({reading, pinging}, return_when=asyncio.FIRST_COMPLETED)
                for t in done:
                    t.result()  # raises the reason the session ended
            finally:
                pinging.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await pinging
        finally:
            if not reading.done():
                reading.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reading

    async def _until(self, aw, reading: asyncio.Task, timeout: float, what: str):  # noqa: ANN001
        waiter = asyncio.ensure_future(aw)
        try:
            done, _ = await asyncio.wait({waiter, reading}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not waiter.done():
                waiter.cancel()
        if waiter in done:
            return waiter.result()
        if reading in done:
            reading.result()
            raise PbxConnectionError(f"AMI {self.pbx.host}:{self.pbx.port}: closed while waiting for {what}")
        raise PbxProtocolError(f"AMI {self.pbx.host}:{self.pbx.port}: no {what} within {timeout:g} s")

    async def _request(self, action: str, action_id: str, reading: asyncio.Task, **fields: str) -> dict[str, str]:
        fut: asyncio.Future[dict[str, str]] = asyncio.get_running_loop().create_future()
        self._waiters[action_id] = fut
        self._send(_action(action, action_id, **fields))
        return await self._until(fut, reading, self.pbx.connect_timeout, f"answer to {action}")

    def _send(self, data: bytes) -> None:
        if self._writer is None or self._writer.is_closing():
            raise PbxConnectionError("AMI link is closed")
        self._writer.write(data)

    async def _ping_loop(self, writer: asyncio.StreamWriter) -> None:
        interval = self.pbx.ping_interval
        while True:
            await asyncio.sleep(interval)
            if self._ping_pending is not None:
                log.warning("ami.ping_unanswered", interval=interval, action_id=self._ping_pending)
                writer.transport.abort()
                raise PbxConnectionError(f"AMI {self.pbx.host}:{self.pbx.port}: no answer to Ping within {interval:g} s")
            self._ping_pending = self._next_id("ping")
            # no drain(): a peer that stopped reading must not block the watchdog itself
            writer.write(_action("Ping", self._ping_pending))

    async def _read_loop(self, reader: asyncio.StreamReader) -> None:
        parser = self.parser
        clock = self.clock
        on_event = self.on_event
        while True:
            data = await reader.read(READ_SIZE)
            if not data:
                raise PbxConnectionError(f"AMI {self.pbx.host}:{self.pbx.port}: connection closed by Asterisk")
            msgs = parser.feed(data)
            if not msgs:
                continue
            at = clock()
            booted = self._booted
            for msg in msgs:
                if "Event" in msg:
                    self.last_event_at = at
                    if booted is not None and msg["Event"] == "FullyBooted":
                        booted.set()
                        booted = self._booted = None
                    try:
                        await on_event(msg, at)
                    except Exception:  # noqa: BLE001 - a handler bug must not end the session
                        self.handler_errors += 1
                        if self.handler_errors <= 10 or self.handler_errors % 1000 == 0:
                            log.exception("ami.handler_failed", ami_event=msg.get("Event"), errors=self.handler_errors)
                else:
                    self._response(msg)

    def _response(self, msg: dict[str, str]) -> None:
        aid = msg.get("ActionID", "")
        if aid and aid == self._ping_pending:
            self._ping_pending = None
            return
        fut = self._waiters.pop(aid, None)
        if fut is not None and not fut.done():
            fut.set_result(msg)
        if aid.startswith("textbackd-resync-") and msg.get("Response") == "Error":
            log.warning(
                "ami.resync_refused",
                reason=msg.get("Message", ""),
                hint="give the manager.conf user write = reporting for CoreShowChannels",
            )
