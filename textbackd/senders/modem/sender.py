"""``ModemSender``: texts through a GSM modem in PDU mode, implementing ``senders.Sender``.

A supervisor task keeps the device open: open → init (ESC, ``AT``, ``ATE0``,
``AT+CMEE=1``, SIM state and PIN, identification, ``AT+CMGF=0``, ``AT+CPMS``,
``AT+CNMI``, ``AT+CREG``, ``AT+CSQ``, ``AT+COPS?``) → read what is already on
the SIM (``AT+CMGL=4``) → ready. A missing or vanished device is retried with
exponential backoff (``retry_min``..``retry_max`` seconds) and reported in the
log and in ``status()``; meanwhile ``send`` raises ``SenderUnavailableError`` at
once so the outbox keeps the text (or tries the next sender).

**Each part is marked before it leaves** (issue 18). ``send`` takes the outbox's
``SendTrack``: when the ``> `` prompt of a part arrives, ``track.handing_over`` is
committed *before* the PDU and its Ctrl-Z are written, and the part is
``track.accepted`` as soon as its ``+CMGS: <mr>`` line is read. A text whose
earlier attempt (before a temporary error, or before a crash) sent some parts
resumes with ``track.progress()``: the same concatenation reference and
numbering, only the parts not yet out, so the phone joins them.

What ``send`` raises, by what actually happened:

* device down / SIM not ready / not registered before anything was written → ``SenderUnavailableError``;
* a command times out → the **recovery ladder**: ESC, then ``AT`` (still alive: the
  command is tried once more), ``ATZ`` and re-initialise, then close and reopen the
  port and back off; each step logged once (``modem_recovery``), the last recovery in
  ``status()`` (``modem-info``, ``doctor``). The text in flight is retried only when
  no PDU had gone out;
* ``+CMS ERROR`` on a part → that part did not go out: a temporary one is retried
  ``len(part_retry_delays)`` times with backoff, then ``TemporarySendError`` (the
  outbox resumes later with the same reference); a permanent one →
  ``PermanentSendError`` naming how many parts went out. The 27.005 meaning is in
  the message, ``"CMS n"`` in ``code``. ``+CMS ERROR: 302``, ``+CME ERROR: 11`` or a
  bare ``ERROR`` after ``AT+CMEE=1`` had taken (a modem that lost its settings or its
  PIN, i.e. rebooted unseen) re-initialises it once and retries;
* the PDU was handed over but no ``+CMGS`` came (timeout, or the device vanished) →
  ``UnknownSendError``: that part may be on its way; it is never sent again blindly.

Without a track (tests, tools) a part error after earlier parts went out is an
``UnknownSendError`` naming them, since nothing remembers them for a resume.

**Reboots.** ``^BOOT:`` is a periodic Huawei status line, not a reboot (chan_dongle
ignores it too): logged at debug, nothing else. A reboot shows as the port going
away, no answer to ``AT`` (the ladder), or ``RDY`` / ``^SYSSTART`` / an unsolicited
``+CPIN: READY`` while ready: the modem is re-initialised once (the other boot
lines of the same reboot are ignored for ``reboot_quiet`` seconds).

A wrong SIM PIN is entered once and never again in this process (three wrong
entries lock the SIM); the sender stays down with a reason saying so.

Receiving: ``+CMTI`` → ``AT+CMGR`` → decode → (reassemble) → ``sink.incoming`` →
``AT+CMGD``, deleting only after the sink accepted the text; ``+CDS`` (or
``+CDSI`` → ``AT+CMGR``) → ``sink.delivery_report`` with ``reference=str(TP-MR)``,
the same string ``send`` returned for that part, and the recipient.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass
from datetime import timedelta, timezone
from typing import TYPE_CHECKING, Any

import structlog

from textbackd.core import numbers
from textbackd.core.errors import (
    ModemError,
    PermanentSendError,
    SendError,
    SenderUnavailableError,
    TemporarySendError,
    UnknownSendError,
)
from textbackd.core.model import DeliveryReport, IncomingText, SendProgress, SendResult
from textbackd.senders.base import InboundSink, NullSink, SendTrack
from textbackd.senders.modem import at, pdu
from textbackd.senders.modem.at import AtEngine, AtError, AtTimeoutError, Command, Final, Stray, Urc, Write
from textbackd.senders.modem.serial_link import ModemUnavailableError, SerialLink

if TYPE_CHECKING:
    from textbackd.core.settings import Config
    from textbackd.senders.modem.config import ModemConfig as SenderConfig

log = structlog.get_logger(__name__)


class ModemPinError(ModemError):
    """The SIM needs a PIN we do not have, refused ours, or wants its PUK."""


class _HandoverRefused(ModemError):
    """The hand-over mark could not be written, so the PDU was not either."""


class _InitAgain(ModemError):
    """The ladder reset the modem (``ATZ``) in the middle of init: start init over."""


CNMI_CHOICES = ("2,1,0,1,0", "1,1,0,1,0", "2,1,0,2,0", "1,1,0,2,0", "2,1,0,0,0", "1,1,0,0,0")
# URCs that mean the modem (re)booted by itself; ^BOOT is not one of them (a Huawei status line)
BOOT_URCS = frozenset({"RDY", "SYSSTART", "CPIN"})
# errors on AT+CMGS that mean the modem lost its settings (PDU mode, the PIN): it rebooted unseen
LOST_SETTINGS = frozenset({("CMS", 302), ("CMS", 311), ("CMS", 310), ("CME", 11), ("CME", 10)})


@dataclass
class _Part:
    """The part in flight: what ``_on_data`` marks on the track at the prompt and at ``+CMGS``."""

    pdu: pdu.SubmitPdu
    track: SendTrack | None
    concat_ref: int | None
    expected_ref: str | None
    handed: bool = False
    mr: int | None = None


class ModemSender:
    kind = "modem"

    def __init__(self, sender_config: SenderConfig, config: Config) -> None:
        self.sc = sender_config
        self.name = sender_config.name
        self.device = sender_config.device
        self.region = config.business.default_region
        self.log_numbers = config.logging.log_numbers
        self.command_timeout = sender_config.command_timeout
        self.submit_timeout = max(60.0, sender_config.command_timeout * 4)  # +CMGS after the PDU
        self.retry_min = 1.0
        self.retry_max = 60.0
        self.part_retry_delays: tuple[float, ...] = (1.0, 3.0)  # a temporary +CMS ERROR on a part: 3 tries
        self.reboot_quiet = 10.0  # seconds after a reboot's re-init in which further boot lines are its own
        self.keepalive = 120.0  # an idle modem gets an AT this often, so a hang between texts is found
        self.settle_grace = 0.5  # AT+CPIN? that answered without OK (Wavecom) is taken after this
        self.validity: timedelta | None = timedelta(days=1)  # a text-back is stale after a day
        self.reassembly_max_age = 3600.0
        self.settle_time = 0.2  # after the ESC that opens init, late bytes are dropped
        # False for one-shot CLI use: leave texts on the SIM and the indication mode alone, so a
        # `textbackd send` while the daemon is stopped does not eat replies meant for the daemon.
        self.receive = True
        self.mem = "SM"  # message storage in use ("ME" when the modem has no SIM storage)
        self.state = "stopped"  # stopped | connecting | ready | down
        self.reason = ""
        self.info: dict[str, Any] = {}
        self.registration: int | None = None
        self.recoveries = 0  # ladders run (a command that got no answer)
        self.resets = 0  # of which reset the modem (ATZ answered)
        self.reboots = 0  # boots the modem announced by itself
        self.last_recovery = ""  # "AT+CPIN?: no answer → ESC, AT: no answer, ATZ: OK, re-init: OK"
        self._engine = AtEngine()
        self._link: SerialLink | None = None
        self._pending: asyncio.Future[Final] | None = None
        self._payload_written = False
        self._part: _Part | None = None
        self._last_mr: int | None = None
        self._op_lock = asyncio.Lock()
        self._urcs: asyncio.Queue[Urc] = asyncio.Queue()
        self._sink: InboundSink = NullSink()
        self._tasks: list[asyncio.Task] = []
        self._closing = False
        self._pin_refused = False
        self._in_init = False
        self._cmee = False  # AT+CMEE=1 took: errors come numbered, so a plain ERROR means lost settings
        self._reboot_pending = False
        self._reboot_quiet_until = 0.0
        self._last_answer = 0.0  # loop time of the modem's last final result
        self._ready = asyncio.Event()
        self._attempted = asyncio.Event()
        self._lost = asyncio.Event()
        self._lost_reason = ""
        self._reassembler = pdu.Reassembler(max_age=self.reassembly_max_age)
        self._group_idx: dict[tuple[str, int, int], list[int]] = {}
        self._concat_ref = random.randrange(256)
        self.inbox_checked = asyncio.Event()  # set once the texts found on the SIM at (re)connect were handled

    # -- Sender protocol ---------------------------------------------------------------

    async def start(self, sink: InboundSink) -> None:
        """Begin keeping the modem open; returns after the first attempt (which may have failed)."""
        self._sink = sink
        self._closing = False
        if not self._tasks:
            self._reassembler.max_age = self.reassembly_max_age
            self._tasks = [
                asyncio.create_task(self._supervise(), name=f"modem-{self.name}"),
                asyncio.create_task(self._urc_worker(), name=f"modem-{self.name}-urc"),
            ]
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._attempted.wait(), self.command_timeout * 12 + 5)

    def healthy(self) -> bool:
        return self.state == "ready" and self.registration in (None, 1, 5)

    def status(self) -> dict[str, Any]:
        st = {"sender": self.name, "state": self.state, "reason": self.reason, **self.info,
              "recoveries": self.recoveries, "resets": self.resets, "reboots": self.reboots}
        if self.last_recovery:
            st["last_recovery"] = self.last_recovery
        return st

    async def close(self) -> None:
        self._closing = True
        if self._pending is not None and not self._pending.done():
            self._pending.set_exception(ModemUnavailableError(f"{self.device}: sender closing"))
        tasks, self._tasks = self._tasks, []
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5.0)
        await self._close_link()
        self.state = "stopped"

    async def send(self, to: str, text: str, track: SendTrack | None = None) -> SendResult:
        dest = numbers.normalize(to, self.region)
        if not dest.lstrip("+").isdigit() or len(dest.lstrip("+")) < 3:
            raise PermanentSendError(f"{self.name}: {numbers.mask(to, self.log_numbers)!s} is not a phone number")
        await self._wait_usable()
        prior = track.progress() if track is not None else None
        if prior is not None and prior.out and prior.sender not in ("", self.name):
            raise SenderUnavailableError(f"{self.name}: this text is half-sent through {prior.sender}")
        resume = prior is not None and bool(prior.out) and prior.concat_ref is not None
        ref = prior.concat_ref if resume and prior is not None else self._next_ref()
        try:
            parts = pdu.encode_submit(
                dest, text, status_report=self.sc.status_reports, validity=self.validity, concat_ref=ref
            )
        except pdu.PduError as e:
            raise PermanentSendError(f"{self.name}: {e}") from None
        total = len(parts)
        if prior is not None and prior.out and prior.total != total:
            raise PermanentSendError(
                f"{self.name}: cannot resume: the text splits into {total} parts now, {prior.total} when it began")
        done = prior.out if prior is not None else frozenset()
        refs: dict[int, str] = dict(prior.accepted) if prior is not None else {}
        if done:
            log.info("modem_resuming", sender=self.name, to=numbers.mask(dest, self.log_numbers), total=total,
                     concat_ref=ref, out=sorted(done))
        for p in parts:
            if p.part in done:
                continue
            try:
                refs[p.part] = str(await self._submit_with_retries(p, track, ref if total > 1 else None))
            except SendError as e:
                raise self._part_failed(e, p, total, refs, prior, track) from e
        log.info(
            "modem_sent",
            sender=self.name,
            to=numbers.mask(dest, self.log_numbers),
            segments=total,
            encoding=parts[0].encoding,
            references=[refs[k] for k in sorted(refs)],
        )
        return SendResult(self.name, total, tuple(refs[k] for k in sorted(refs)), parts[0].encoding)

    def _part_failed(self, e: SendError, p: pdu.SubmitPdu, total: int, refs: dict[int, str],
                     prior: SendProgress | None, track: SendTrack | None) -> SendError:
        """The error ``send`` raises when part ``p`` failed: how many parts went out, in words."""
        doubt = set(prior.in_doubt) if prior is not None else set()
        if not refs and not doubt:
            return e
        went = f"{len(refs)} of {total} parts went out" + (f" (part {', '.join(map(str, sorted(doubt)))} in doubt)"
                                                           if doubt else "")
        msg = f"{self.name}: {went}, then part {p.part}: {e}"
        if isinstance(e, UnknownSendError):
            return UnknownSendError(msg, code=e.code)
        if isinstance(e, PermanentSendError):
            return PermanentSendError(msg, code=e.code)
        if track is None:  # nothing remembers the parts that went out: a blind retry would repeat them
            return UnknownSendError(f"{msg} (references {', '.join(refs[k] for k in sorted(refs))})", code=e.code)
        return type(e)(f"{msg}; the rest follows with the same reference", code=e.code, retry_after=e.retry_after)

    # -- sending -----------------------------------------------------------------------

    def _spawn(self, coro) -> None:
        self._tasks = [t for t in self._tasks if not t.done()]
        self._tasks.append(asyncio.create_task(coro))

    def _next_ref(self) -> int:
        self._concat_ref = (self._concat_ref + 1) % 256
        return self._concat_ref

    async def _wait_usable(self) -> None:
        if self._closing or not self._tasks:
            raise SenderUnavailableError(f"{self.name}: not started")
        if self.state == "connecting":
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._ready.wait(), self.command_timeout * 3)
        if self.state != "ready":
            raise SenderUnavailableError(f"{self.name}: modem {self.state}: {self.reason or 'not ready'}")
        if self.registration not in (None, 1, 5):
            async with self._op_lock:
                with contextlib.suppress(ModemError):
                    self.registration = at.creg_stat((await self._cmd("AT+CREG?")).lines)
            if self.registration not in (None, 1, 5):
                raise SenderUnavailableError(
                    f"{self.name}: not registered on a network ({at.REGISTRATION.get(self.registration, self.registration)})"
                )

    async def _submit_with_retries(self, p: pdu.SubmitPdu, track: SendTrack | None, ref: int | None) -> int:
        """One part, retried after a temporary ``+CMS ERROR`` (it did not go out) with backoff."""
        delays = self.part_retry_delays
        for i in range(len(delays) + 1):
            try:
                async with self._op_lock:
                    return await self._submit_part(p, track, ref)
            except TemporarySendError as e:
                if isinstance(e, SenderUnavailableError) or i == len(delays):
                    raise
                log.warning("modem_part_retry", sender=self.name, part=p.part, total=p.total, error=str(e),
                            retry_in=delays[i])
                await asyncio.sleep(delays[i])
        raise AssertionError("unreachable")

    async def _submit_part(self, p: pdu.SubmitPdu, track: SendTrack | None, ref: int | None) -> int:
        """``AT+CMGS`` for one part (callers hold ``_op_lock``); its TP-MR."""
        reinit_done = False
        for attempt in (1, 2):
            if self._link is None or not self._link.is_open or self.state != "ready":
                raise SenderUnavailableError(f"{self.name}: modem {self.state}: {self.reason or 'device closed'}")
            expected = str((self._last_mr + 1) % 256) if self._last_mr is not None else None
            self._part = cur = _Part(p, track, ref, expected)
            try:
                fin = await self._cmd(f"AT+CMGS={p.length}", p.hex)
            except _HandoverRefused as e:
                raise TemporarySendError(f"{self.name}: not sent: {e}") from None
            except ModemUnavailableError as e:
                if cur.handed or self._payload_written:
                    raise UnknownSendError(f"{self.name}: {e} after the text was handed to the modem") from None
                raise SenderUnavailableError(f"{self.name}: {e}") from None
            except AtTimeoutError as e:
                if e.after_payload or cur.handed:
                    self._spawn(self._recover_locked("AT+CMGS (no +CMGS after the PDU)"))
                    raise UnknownSendError(
                        f"{self.name}: no +CMGS answer within {self.submit_timeout:g}s after the text was handed to the modem"
                    ) from None
                log.warning("modem_no_prompt", sender=self.name, attempt=attempt)
                if attempt == 1 and await self._ladder("AT+CMGS (no prompt)"):
                    continue  # nothing went out: try once more
                raise SenderUnavailableError(f"{self.name}: modem does not answer AT+CMGS (reset tried)") from None
            finally:
                self._part = None
            if fin.error is not None:
                # a plain ERROR once AT+CMEE=1 took, or +CMS 302 / +CME 11...: the modem lost its settings
                lost = (fin.error.kind, fin.error.code) in LOST_SETTINGS or (fin.error.kind == "ERROR" and self._cmee)
                if lost and not reinit_done and attempt == 1:
                    log.warning("modem_lost_settings", sender=self.name, error=str(fin.error))
                    reinit_done = True
                    if await self._reinit("AT+CMGS: " + str(fin.error)):
                        continue
                raise _send_error(self.name, fin.error)
            mr = cur.mr if cur.mr is not None else _cmgs_mr(fin.lines)
            if mr is None:
                raise UnknownSendError(f"{self.name}: modem said OK without a +CMGS reference")
            if not cur.handed:  # cannot happen: the PDU is written only after the mark
                raise UnknownSendError(f"{self.name}: +CMGS without a hand-over")
            self._accepted(cur, mr)
            return mr
        raise AssertionError("unreachable")

    def _accepted(self, cur: _Part, mr: int) -> None:
        """``+CMGS: <mr>`` for the part in flight: on the track at once (a crash after this resumes, not doubts)."""
        first = cur.mr is None
        cur.mr = mr
        self._last_mr = mr
        if first and cur.track is not None:
            try:
                cur.track.accepted(cur.pdu.part, str(mr))
            except Exception as e:  # the part went out; a crash now leaves it in doubt, never sent twice
                log.error("modem_accept_mark_failed", sender=self.name, part=cur.pdu.part, error=str(e))

    def _hand_over(self, cur: _Part) -> bool:
        """Mark the part as leaving, on disk, before its PDU is written; False when that failed."""
        if cur.handed:
            return True
        if cur.track is not None:
            try:
                cur.track.handing_over(cur.pdu.part, cur.pdu.total, concat_ref=cur.concat_ref,
                                       expected_ref=cur.expected_ref)
            except Exception as e:
                log.error("modem_handover_mark_failed", sender=self.name, part=cur.pdu.part, error=str(e))
                return False
        cur.handed = True
        return True

    # -- the recovery ladder -------------------------------------------------------------

    async def _recover_locked(self, what: str) -> None:
        async with self._op_lock:
            await self._ladder(what)

    async def _ladder(self, what: str, *, reinit: bool = True) -> bool:
        """A command got no answer: ESC, ``AT``, ``ATZ`` + re-init, else close and reopen. Holds ``_op_lock``.

        True when the modem answers again (the caller may retry what had no answer); False when
        the port is being reopened (with backoff). With ``reinit=False`` (inside init) a
        successful ``ATZ`` raises ``_InitAgain`` and a failed one ``ModemError``.
        """
        self.recoveries += 1
        steps: list[str] = []

        def step(name: str, result: str) -> None:
            steps.append(f"{name}: {result}")
            (log.info if result == "OK" else log.warning)(
                "modem_recovery", sender=self.name, device=self.device, after=what, step=name, result=result)

        def done(outcome: str) -> None:
            self.last_recovery = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {what}: no answer → " + ", ".join(steps) + f" → {outcome}"

        link = self._link
        if link is None or not link.is_open:
            done("port closed")
            return False
        link.write(at.ESC)
        step("ESC", "sent")
        await asyncio.sleep(self.settle_time)
        self._engine.reset()
        try:
            if (await self._cmd("AT", timeout=min(2.0, self.command_timeout))).ok:
                step("AT", "OK")
                done("modem answers again")
                return True
        except AtTimeoutError:
            step("AT", "no answer")
        except ModemUnavailableError:
            done("device gone")
            return False
        try:
            fin = await self._cmd("ATZ", timeout=self.command_timeout)
        except AtTimeoutError:
            fin = None
        except ModemUnavailableError:
            done("device gone")
            return False
        if fin is not None and fin.ok:
            step("ATZ", "OK")
            self.resets += 1
            if not reinit:
                done("init again")
                raise _InitAgain(f"{self.device}: reset with ATZ after {what} got no answer")
            try:
                await self._init()
            except ModemError as e:
                step("re-init", f"failed ({e})")
            else:
                step("re-init", "OK")
                done("ready")
                return True
        else:
            step("ATZ", "no answer" if fin is None else fin.result)
        step("reopen", f"closing {self.device}, reopening with backoff")
        done("reopening")
        if not reinit:
            raise ModemError(f"{self.device}: no answer to {what}, AT or ATZ; reopening the port")
        self._declare_lost(f"modem does not answer {what}, AT or ATZ; reopening {self.device}")
        return False

    async def _reinit(self, why: str) -> bool:
        """Re-initialise a modem that answers but lost its settings (it rebooted). Holds ``_op_lock``."""
        try:
            await self._init()
        except ModemError as e:
            self._declare_lost(f"re-initialising after {why} failed: {e}")
            return False
        return True

    async def _after_reboot(self, line: str) -> None:
        async with self._op_lock:
            try:
                if self.state == "ready" and self._link is not None:
                    await self._reinit(f"the modem rebooted ({line})")
                    log.info("modem_reinitialised", sender=self.name, after=line)
            finally:
                self._reboot_pending = False
                self._reboot_quiet_until = asyncio.get_running_loop().time() + self.reboot_quiet

    def _boot_line(self, urc: Urc) -> None:
        """``RDY``/``^SYSSTART``/``+CPIN: READY`` while ready: the modem rebooted; re-init once."""
        if urc.name == "CPIN" and "READY" not in urc.line.upper():
            return
        loop = asyncio.get_running_loop()
        if self.state != "ready" or self._in_init or self._reboot_pending or loop.time() < self._reboot_quiet_until:
            log.debug("modem_boot_line_ignored", sender=self.name, urc=urc.line[:40])
            return
        self.reboots += 1
        self._reboot_pending = True
        log.warning("modem_rebooted", sender=self.name, urc=urc.line)
        self._spawn(self._after_reboot(urc.line))

    # -- the AT pipe -------------------------------------------------------------------

    async def _cmd(self, line: str, payload: str | None = None, *, timeout: float | None = None,
                   settle_on: str | None = None) -> Final:
        """Run one command; raises ``ModemUnavailableError`` or ``AtTimeoutError``. Callers hold ``_op_lock``.

        ``settle_on``: a response prefix after which a missing final result code is not waited
        for longer than ``settle_grace`` (Wavecom answers ``AT+CPIN?`` without ``OK``).
        """
        link = self._link
        if link is None or not link.is_open:
            raise ModemUnavailableError(f"{self.device}: not open")
        if self._engine.busy:  # a previous command was abandoned without abort (cancelled task)
            self._engine.abort()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Final] = loop.create_future()
        self._pending = fut
        self._payload_written = False
        link.write(self._engine.start(Command(line, payload)))
        deadline = loop.time() + (timeout if timeout is not None else self.command_timeout)
        extended = settled = False
        try:
            while True:
                wait = max(0.0, deadline - loop.time())
                if settle_on and not settled:
                    wait = min(wait, 0.1)
                try:
                    return await asyncio.wait_for(asyncio.shield(fut), wait)
                except asyncio.TimeoutError:
                    if settle_on and not settled and any(x.upper().startswith(settle_on) for x in self._engine.partial_lines):
                        settled = True
                        deadline = min(deadline, loop.time() + self.settle_grace)
                        continue
                    if loop.time() < deadline:
                        continue
                    if not extended and self._engine.phase == "payload_sent":
                        # The PDU is out: the network may take seconds to answer (+CMGS 14 s later in real logs).
                        extended = True
                        deadline = loop.time() + self.submit_timeout
                        continue
                    data, cur = self._engine.abort()
                    if data and link.is_open:
                        link.write(data)
                    raise AtTimeoutError(
                        line.split("=", 1)[0] if line.upper().startswith("AT+CPIN=") else line,
                        tuple(cur.lines) if cur else (),
                        after_payload=bool(cur and cur.phase == "payload_sent"),
                    ) from None
        finally:
            self._pending = None

    def _on_data(self, data: bytes) -> None:
        for ev in self._engine.feed(data):
            if isinstance(ev, Final):
                self._last_answer = asyncio.get_running_loop().time()
                if self._part is not None and ev.command.payload is not None:
                    mr = _cmgs_mr(ev.lines)
                    if mr is not None and self._part.handed:
                        self._accepted(self._part, mr)
                if self._pending is not None and not self._pending.done():
                    self._pending.set_result(ev)
            elif isinstance(ev, Write):
                if self._link is None or not self._link.is_open:
                    continue
                cur = self._part
                if cur is not None and not self._hand_over(cur):
                    # no mark on disk, so no PDU either: close the prompt and fail this part as temporary
                    self._engine.abort()
                    self._link.write(at.ESC)
                    if self._pending is not None and not self._pending.done():
                        self._pending.set_exception(_HandoverRefused("the store could not record the hand-over"))
                    continue
                self._link.write(ev.data)
                self._payload_written = True
            elif isinstance(ev, Urc):
                if ev.name == "CREG":
                    self.registration = at.creg_stat([ev.line])
                elif ev.name == "BOOT":
                    log.debug("modem_boot_status", sender=self.name, urc=ev.line[:60])  # Huawei's periodic line
                    continue
                elif ev.name in BOOT_URCS:
                    self._boot_line(ev)
                self._urcs.put_nowait(ev)
            elif isinstance(ev, Stray):
                if ev.line.upper().startswith("+CMGS:"):
                    log.warning("modem_late_cmgs", sender=self.name, line=ev.line)
                elif "CPIN=" not in ev.line.upper():  # a late echo of AT+CPIN="…" must not log the PIN
                    log.debug("modem_stray_line", sender=self.name, line=ev.line[:80])
        cur = self._part
        if cur is not None and cur.handed and cur.mr is None and self._engine.phase == "payload_sent":
            mr = _cmgs_mr(self._engine.partial_lines)  # +CMGS read: the part is the network's, before the OK
            if mr is not None:
                self._accepted(cur, mr)

    def _on_lost(self, reason: str) -> None:
        self._declare_lost(reason)

    def _declare_lost(self, reason: str) -> None:
        self._lost_reason = reason
        if self._pending is not None and not self._pending.done():
            self._pending.set_exception(ModemUnavailableError(reason))
        self._lost.set()
        if self.state == "ready":
            self.state = "down"
            self.reason = reason
            self._ready.clear()
            log.warning("modem_lost", sender=self.name, device=self.device, reason=reason)

    async def _close_link(self) -> None:
        link, self._link = self._link, None
        if link is not None:
            await link.close()

    # -- supervision -------------------------------------------------------------------

    async def _supervise(self) -> None:
        delay = self.retry_min
        while not self._closing:
            self.state = "connecting"
            self._lost.clear()
            try:
                self._engine.reset()
                self._link = await SerialLink.open(self.device, self.sc.baudrate, self._on_data, self._on_lost)
                async with self._op_lock:
                    await self._init()
            except (ModemError, OSError, ValueError) as e:  # ValueError: pyserial refusing a setting
                await self._close_link()
                self._set_down(str(e), delay)
                self._attempted.set()
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_max)
                continue
            delay = self.retry_min
            self.state = "ready"
            self.reason = ""
            self._ready.set()
            self._attempted.set()
            self._last_answer = asyncio.get_running_loop().time()
            log.info("modem_ready", sender=self.name, device=self.device, **_loggable(self.info))
            self.inbox_checked.clear()
            if self.receive:
                self._spawn(self._read_stored())
            else:
                self.inbox_checked.set()
            await self._lost.wait()
            self._ready.clear()
            await self._close_link()
            self._set_down(self._lost_reason or "device closed", self.retry_min)
            await asyncio.sleep(self.retry_min)

    def _set_down(self, reason: str, retry_in: float) -> None:
        """Report once per new reason (an unplugged modem must not fill the journal every minute)."""
        repeat = self.state in ("down", "connecting") and reason == self.reason
        self.state = "down"
        self.reason = reason
        self._ready.clear()
        (log.debug if repeat else log.warning)(
            "modem_down", sender=self.name, device=self.device, reason=reason, retry_in=retry_in
        )

    async def _init(self) -> None:
        """The init sequence; raises ``ModemError`` when the modem cannot send texts.

        A command that gets no answer runs the ladder (ESC, ``AT``, ``ATZ``): a modem that
        answers ``ATZ`` starts init over, once; one that does not is closed and reopened.
        """
        self._in_init = True
        try:
            for round_ in (1, 2):
                try:
                    await self._init_once()
                    return
                except _InitAgain:
                    if round_ == 2:
                        raise ModemError(f"{self.device}: hangs again after a reset with ATZ") from None
        finally:
            self._in_init = False

    async def _icmd(self, line: str, **kw: Any) -> Final:
        """An init command; no answer → the ladder (one more try when the modem answers ``AT`` again)."""
        try:
            return await self._cmd(line, **kw)
        except AtTimeoutError:
            if not await self._ladder(line, reinit=False):
                raise ModemError(f"{self.device}: {line}: no answer") from None
            return await self._cmd(line, **kw)

    async def _init_once(self) -> None:
        assert self._link is not None
        self._link.write(at.ESC + b"\r")  # leave a PDU prompt a previous process may have left open
        await asyncio.sleep(self.settle_time)
        self._engine.reset()  # whatever answered that (or was still in the pipe) is not ours
        for _ in range(3):
            try:
                if (await self._cmd("AT", timeout=min(2.0, self.command_timeout))).ok:
                    break
            except AtTimeoutError:
                continue
        else:
            if not await self._ladder("AT", reinit=False):
                raise ModemError(f"{self.device}: no answer to AT (is it a modem's AT port?)")
        await self._icmd("ATE0")
        self._cmee = (await self._icmd("AT+CMEE=1")).ok
        await self._check_sim()
        info: dict[str, Any] = {}
        for key, cmd in (("maker", "AT+CGMI"), ("model", "AT+CGMM"), ("firmware", "AT+CGMR"), ("imei", "AT+CGSN")):
            fin = await self._icmd(cmd)
            if fin.ok and fin.lines:
                val = fin.lines[0].split(":", 1)[1] if fin.lines[0].upper().startswith(cmd[2:] + ":") else fin.lines[0]
                info[key] = val.strip()
        if "imei" in info:
            info["imei_tail"] = info.pop("imei")[-4:]
        info["sim"] = "READY"
        for attempt in range(5):
            fin = await self._icmd("AT+CMGF=0")
            if fin.ok:
                break
            await asyncio.sleep(1.0)  # SIM800 refuses SMS commands until "SMS Ready"
        else:
            raise ModemError(f"{self.device}: modem refuses PDU mode (AT+CMGF=0: {fin.result})")
        self.mem = "SM"
        if not (await self._icmd('AT+CPMS="SM","SM","SM"')).ok and (await self._icmd('AT+CPMS="ME","ME","ME"')).ok:
            self.mem = "ME"  # no SIM storage (some embedded modules): the modem's own memory
        self.cnmi = ""
        for choice in CNMI_CHOICES if self.receive else ():
            if (await self._icmd(f"AT+CNMI={choice}")).ok:
                self.cnmi = choice
                break
        if not self.cnmi and self.receive:
            log.warning("modem_no_cnmi", sender=self.name, hint="new texts are only read at start")
        await self._icmd("AT+CREG=1")
        fin = await self._icmd("AT+CREG?")
        self.registration = at.creg_stat(fin.lines)
        info["registration"] = at.REGISTRATION.get(self.registration, "unknown") if self.registration is not None else "unknown"
        fin = await self._icmd("AT+CSQ")
        if fin.ok and fin.lines:
            with contextlib.suppress(ValueError, IndexError):
                info["signal_dbm"] = at.csq_dbm(int(at.values(fin.lines[0])[0]))
        await self._icmd("AT+COPS=3,0")  # operator as a long name, not the numeric MCC/MNC some default to
        fin = await self._icmd("AT+COPS?")
        if fin.ok and fin.lines:
            v = at.values(fin.lines[0])
            info["operator"] = v[2] if len(v) >= 3 else ""
        self.info = info

    async def _check_sim(self) -> None:
        pin_sent = False
        for _ in range(15):
            try:
                fin = await self._cmd("AT+CPIN?", settle_on="+CPIN:")
                lines, err = fin.lines, fin.error
            except AtTimeoutError as e:  # Wavecom answers +CPIN: READY without OK
                lines, err = e.lines, None
                if not lines:
                    if not await self._ladder("AT+CPIN?", reinit=False):
                        raise ModemError(f"{self.device}: AT+CPIN?: no answer") from None
                    continue
            if err is not None:
                if err.kind == "CME" and err.code == 14:  # SIM busy
                    await asyncio.sleep(1.0)
                    continue
                raise ModemError(f"{self.device}: SIM problem: {err}")
            state = ""
            for line in lines:
                if line.upper().startswith("+CPIN:"):
                    state = line.split(":", 1)[1].strip().upper()
            if state == "READY":
                return
            if state == "SIM PIN":
                if pin_sent:
                    await asyncio.sleep(0.5)
                    continue
                if self._pin_refused:
                    raise ModemPinError(
                        f"{self.device}: the SIM refused the configured PIN earlier; not trying again "
                        f"(three wrong PINs lock the SIM). Fix senders.{self.name}.pin and restart"
                    )
                if not self.sc.pin:
                    raise ModemPinError(f"{self.device}: the SIM asks for a PIN; set senders.{self.name}.pin")
                fin = await self._cmd(f'AT+CPIN="{self.sc.pin.reveal()}"')
                if not fin.ok:
                    self._pin_refused = True
                    raise ModemPinError(
                        f"{self.device}: the SIM refused the PIN ({fin.error}); not trying again "
                        f"(three wrong PINs lock the SIM). Fix senders.{self.name}.pin and restart"
                    )
                pin_sent = True
                await asyncio.sleep(0.2)
                continue
            if "PUK" in state:
                raise ModemPinError(f"{self.device}: the SIM is locked and needs its PUK (put it in a phone to unlock)")
            if state:
                raise ModemPinError(f"{self.device}: SIM state {state!r}")
            await asyncio.sleep(0.5)
        raise ModemError(f"{self.device}: SIM not ready")

    # -- receiving ---------------------------------------------------------------------

    async def _read_stored(self) -> None:
        try:
            async with self._op_lock:
                fin = await self._cmd("AT+CMGL=4", timeout=max(self.command_timeout, 30.0))
                if not fin.ok:
                    log.warning("modem_cmgl_failed", sender=self.name, result=fin.result)
                    return
                items: list[tuple[int, str]] = []
                lines = list(fin.lines)
                for i, line in enumerate(lines):
                    if line.upper().startswith("+CMGL:") and i + 1 < len(lines):
                        with contextlib.suppress(ValueError, IndexError):
                            items.append((int(at.values(line)[0]), lines[i + 1]))
                for idx, hexpdu in items:
                    await self._handle_pdu(hexpdu, idx)
                if items:
                    log.info("modem_sim_read", sender=self.name, messages=len(items))
        except ModemError as e:
            log.warning("modem_cmgl_failed", sender=self.name, error=str(e))
        finally:
            self.inbox_checked.set()

    async def _urc_worker(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._closing:
            try:
                urc = await asyncio.wait_for(self._urcs.get(), min(30.0, self.keepalive))
            except asyncio.TimeoutError:
                urc = None
            try:
                if urc is not None:
                    await self._handle_urc(urc)
                for asm in self._reassembler.expire(loop.time()):
                    await self._deliver(asm, self._group_idx.pop(asm.key, []))
                if urc is None:
                    await self._keepalive()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # one bad event must not stop receiving
                log.warning("modem_urc_failed", sender=self.name, urc=urc.name if urc else None, error=str(e))

    async def _handle_urc(self, urc: Urc) -> None:
        if not self.receive:
            log.debug("modem_urc_ignored", sender=self.name, urc=urc.line[:60])
        elif urc.name == "CMTI":
            args = urc.args
            if len(args) >= 2 and args[1].isdigit():
                await self._read_one(int(args[1]), args[0] or "SM")
        elif urc.name in ("CMT", "CDS") and urc.data:
            await self._handle_pdu(urc.data, None)
        elif urc.name == "CDSI":
            args = urc.args
            if len(args) >= 2 and args[1].isdigit():
                await self._read_one(int(args[1]), args[0] or "SR", report=True)
        else:  # boot lines were acted on as they arrived (_on_data)
            log.debug("modem_urc", sender=self.name, urc=urc.line[:60])

    async def _keepalive(self) -> None:
        """An idle modem gets an ``AT`` every ``keepalive`` seconds: a hang between texts runs the ladder now."""
        loop = asyncio.get_running_loop()
        if self.state != "ready" or self._op_lock.locked() or loop.time() - self._last_answer < self.keepalive:
            return
        async with self._op_lock:
            try:
                await self._cmd("AT", timeout=min(2.0, self.command_timeout))
            except AtTimeoutError:
                await self._ladder("AT (keepalive)")
            except ModemError:
                pass

    async def _read_one(self, idx: int, mem: str, *, report: bool = False) -> None:
        if self.state != "ready":
            return
        async with self._op_lock:
            switched = False
            try:
                if mem.upper() not in (self.mem, "MT"):
                    switched = (await self._cmd(f'AT+CPMS="{mem.upper()}"')).ok
                fin = await self._cmd(f"AT+CMGR={idx}")
                hexpdu = _pdu_after(fin.lines, "+CMGR:")
                if hexpdu is None and report and not switched:
                    # Quectel EC25 announces "SM" for reports stored in "SR" (chan-quectel PR 75).
                    switched = (await self._cmd('AT+CPMS="SR"')).ok
                    if switched:
                        hexpdu = _pdu_after((await self._cmd(f"AT+CMGR={idx}")).lines, "+CMGR:")
                if hexpdu is None:
                    log.warning("modem_cmgr_empty", sender=self.name, index=idx, mem=mem, result=fin.result)
                    return
                await self._handle_pdu(hexpdu, idx)
            finally:
                if switched:
                    await self._cmd(f'AT+CPMS="{self.mem}","{self.mem}","{self.mem}"')

    async def _handle_pdu(self, hexpdu: str, idx: int | None) -> None:
        """Decode one stored/announced PDU and hand it on; the SIM copy is deleted once accepted. Holds _op_lock."""
        try:
            msg = pdu.decode(hexpdu)
        except pdu.PduError as e:
            log.warning("modem_bad_pdu", sender=self.name, index=idx, error=str(e), hint="left on the SIM")
            return
        if isinstance(msg, pdu.Deliver):
            asm = self._reassembler.add(msg, asyncio.get_running_loop().time())
            if msg.concat is not None:
                key = (msg.sender, msg.concat.ref, msg.concat.total)
                if idx is not None:
                    self._group_idx.setdefault(key, []).append(idx)
                if asm is None:
                    return
                await self._deliver(asm, self._group_idx.pop(key, []))
            else:
                await self._deliver(asm, [idx] if idx is not None else [])
        elif isinstance(msg, pdu.StatusReport):
            report = DeliveryReport(
                sender=self.name,
                reference=str(msg.reference),
                delivered=msg.delivered,
                final=msg.final,
                at=msg.discharge.astimezone(timezone.utc),
                detail=msg.meaning,
                recipient=numbers.normalize(msg.recipient, self.region) if msg.recipient else "",
            )
            try:
                await self._sink.delivery_report(report)
            except Exception as e:
                log.error("modem_sink_failed", sender=self.name, what="delivery_report", error=str(e))
                return
            log.info("modem_delivery_report", sender=self.name, reference=msg.reference, delivered=msg.delivered, final=msg.final)
            if idx is not None:
                await self._delete([idx])
        else:
            log.debug("modem_stored_submit_ignored", sender=self.name, index=idx)

    async def _deliver(self, asm: pdu.Assembled, indexes: list[int]) -> None:
        text = IncomingText(
            sender=self.name,
            from_number=numbers.normalize(asm.sender, self.region),
            text=asm.text,
            received_at=asm.timestamp.astimezone(timezone.utc),
        )
        try:
            await self._sink.incoming(text)
        except Exception as e:
            log.error("modem_sink_failed", sender=self.name, what="incoming", error=str(e), hint="kept on the SIM")
            return
        log.info(
            "modem_received",
            sender=self.name,
            from_=numbers.mask(text.from_number, self.log_numbers),
            parts=asm.parts,
            complete=asm.complete,
        )
        await self._delete(indexes)

    async def _delete(self, indexes: list[int]) -> None:
        for i in indexes:
            with contextlib.suppress(ModemError):
                fin = await self._cmd(f"AT+CMGD={i}")
                if not fin.ok:
                    log.warning("modem_delete_failed", sender=self.name, index=i, result=fin.result)


def _pdu_after(lines: tuple[str, ...], prefix: str) -> str | None:
    for i, line in enumerate(lines):
        if line.upper().startswith(prefix) and i + 1 < len(lines):
            cand = lines[i + 1].strip()
            if cand and all(c in "0123456789abcdefABCDEF" for c in cand):
                return cand
    return None


def _cmgs_mr(lines: tuple[str, ...]) -> int | None:
    """The TP-MR of a ``+CMGS: <mr>[,<scts>]`` line, None without one."""
    for line in lines:
        if line.upper().startswith("+CMGS:"):
            try:
                return int(at.values(line)[0])
            except (ValueError, IndexError):
                return None
    return None


def _send_error(name: str, err: AtError) -> SendError:
    msg = f"{name}: modem refused the text: {err}"
    if err.kind == "CMS" and err.code in at.CMS_PERMANENT:
        return PermanentSendError(msg, code=err.label)
    return TemporarySendError(msg, code=err.label)


def _loggable(info: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in info.items() if k != "imei"}
