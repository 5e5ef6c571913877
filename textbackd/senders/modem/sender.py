"""``ModemSender``: texts through a GSM modem in PDU mode, implementing ``senders.Sender``.

A supervisor task keeps the device open: open → init (ESC, ``AT``, ``ATE0``,
``AT+CMEE=1``, SIM state and PIN, identification, ``AT+CMGF=0``, ``AT+CPMS``,
``AT+CNMI``, ``AT+CREG``, ``AT+CSQ``, ``AT+COPS?``) → read what is already on
the SIM (``AT+CMGL=4``) → ready. A missing or vanished device is retried with
exponential backoff (``retry_min``..``retry_max`` seconds) and reported in the
log and in ``status()``; meanwhile ``send`` raises ``SenderUnavailableError`` at
once so the outbox keeps the text (or tries the next sender).

What ``send`` raises, by what actually happened:

* device down / SIM not ready / not registered before anything was written → ``SenderUnavailableError``;
* the modem never showed the ``> `` prompt (hung) → ESC, ``ATZ`` + re-init and one retry;
  still nothing → ``SenderUnavailableError`` (nothing was sent);
* ``+CMS ERROR`` → ``PermanentSendError`` (invalid number, barred, bad PDU…) or
  ``TemporarySendError`` (network out of order, no service, memory full…), code ``"CMS n"``;
* the PDU was handed over but no ``+CMGS`` came (timeout, or the device vanished) →
  ``UnknownSendError``: the text may be on its way, the outbox must not resend it blindly;
* a later part fails after earlier parts were accepted → ``UnknownSendError`` naming the
  references that went out (a resend would duplicate them on the phone).

A wrong SIM PIN is entered once and never again in this process (three wrong
entries lock the SIM); the sender stays down with a reason saying so.

Receiving: ``+CMTI`` → ``AT+CMGR`` → decode → (reassemble) → ``sink.incoming`` →
``AT+CMGD``, deleting only after the sink accepted the text; ``+CDS`` (or
``+CDSI`` → ``AT+CMGR``) → ``sink.delivery_report`` with ``reference=str(TP-MR)``,
the same string ``send`` returned for that part.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
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
from textbackd.core.model import DeliveryReport, IncomingText, SendResult
from textbackd.senders.base import InboundSink, NullSink
from textbackd.senders.modem import at, pdu
from textbackd.senders.modem.at import AtEngine, AtError, AtTimeoutError, Command, Final, Stray, Urc, Write
from textbackd.senders.modem.serial_link import ModemUnavailableError, SerialLink

if TYPE_CHECKING:
    from textbackd.core.settings import Config
    from textbackd.senders.modem.config import ModemConfig as SenderConfig

log = structlog.get_logger(__name__)


class ModemPinError(ModemError):
    """The SIM needs a PIN we do not have, refused ours, or wants its PUK."""


CNMI_CHOICES = ("2,1,0,1,0", "1,1,0,1,0", "2,1,0,2,0", "1,1,0,2,0", "2,1,0,0,0", "1,1,0,0,0")


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
        self._engine = AtEngine()
        self._link: SerialLink | None = None
        self._pending: asyncio.Future[Final] | None = None
        self._payload_written = False
        self._op_lock = asyncio.Lock()
        self._urcs: asyncio.Queue[Urc] = asyncio.Queue()
        self._sink: InboundSink = NullSink()
        self._tasks: list[asyncio.Task] = []
        self._closing = False
        self._pin_refused = False
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
            await asyncio.wait_for(self._attempted.wait(), self.command_timeout * 6 + 5)

    def healthy(self) -> bool:
        return self.state == "ready" and self.registration in (None, 1, 5)

    def status(self) -> dict[str, Any]:
        return {"sender": self.name, "state": self.state, "reason": self.reason, **self.info}

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

    async def send(self, to: str, text: str) -> SendResult:
        dest = numbers.normalize(to, self.region)
        if not dest.lstrip("+").isdigit() or len(dest.lstrip("+")) < 3:
            raise PermanentSendError(f"{self.name}: {numbers.mask(to, self.log_numbers)!s} is not a phone number")
        await self._wait_usable()
        try:
            parts = pdu.encode_submit(
                dest, text, status_report=self.sc.status_reports, validity=self.validity, concat_ref=self._next_ref()
            )
        except pdu.PduError as e:
            raise PermanentSendError(f"{self.name}: {e}") from None
        refs: list[int] = []
        async with self._op_lock:
            for p in parts:
                try:
                    refs.append(await self._submit_part(p))
                except SendError as e:
                    if refs:
                        raise UnknownSendError(
                            f"{self.name}: {len(refs)} of {len(parts)} parts went out "
                            f"(references {', '.join(map(str, refs))}), then: {e}",
                            code=e.code,
                        ) from e
                    raise
        log.info(
            "modem_sent",
            sender=self.name,
            to=numbers.mask(dest, self.log_numbers),
            segments=len(parts),
            encoding=parts[0].encoding,
            references=refs,
        )
        return SendResult(self.name, len(parts), tuple(str(r) for r in refs), parts[0].encoding)

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

    async def _submit_part(self, p: pdu.SubmitPdu) -> int:
        for attempt in (1, 2):
            if self._link is None or not self._link.is_open or self.state != "ready":
                raise SenderUnavailableError(f"{self.name}: modem {self.state}: {self.reason or 'device closed'}")
            try:
                fin = await self._cmd(f"AT+CMGS={p.length}", p.hex)
            except ModemUnavailableError as e:
                if self._payload_written:
                    raise UnknownSendError(f"{self.name}: {e} after the text was handed to the modem") from None
                raise SenderUnavailableError(f"{self.name}: {e}") from None
            except AtTimeoutError as e:
                if e.after_payload:
                    self._schedule_recovery()
                    raise UnknownSendError(
                        f"{self.name}: no +CMGS answer within {self.submit_timeout:g}s after the text was handed to the modem"
                    ) from None
                log.warning("modem_no_prompt", sender=self.name, attempt=attempt)
                if attempt == 1 and await self._recover():
                    continue
                raise SenderUnavailableError(f"{self.name}: modem does not answer AT+CMGS (reset tried)") from None
            if fin.error is not None:
                raise _send_error(self.name, fin.error)
            for line in fin.lines:
                if line.upper().startswith("+CMGS:"):
                    try:
                        return int(at.values(line)[0])
                    except ValueError:
                        break
            raise UnknownSendError(f"{self.name}: modem said OK without a +CMGS reference")
        raise AssertionError("unreachable")

    def _schedule_recovery(self) -> None:
        """After a hang with the PDU out: reset the modem for the next send (we hold the lock; do it now)."""
        self._spawn(self._recover_locked())

    async def _recover_locked(self) -> None:
        async with self._op_lock:
            await self._recover()

    async def _recover(self) -> bool:
        """ATZ and re-initialise a modem that stopped answering; on failure reopen the device."""
        log.warning("modem_reset", sender=self.name, device=self.device)
        try:
            await self._cmd("ATZ")
            await self._init()
            return True
        except ModemError as e:
            self._declare_lost(f"modem does not answer after ATZ ({e}); reopening {self.device}")
            return False

    # -- the AT pipe -------------------------------------------------------------------

    async def _cmd(self, line: str, payload: str | None = None, *, timeout: float | None = None) -> Final:
        """Run one command; raises ``ModemUnavailableError`` or ``AtTimeoutError``. Callers hold ``_op_lock``."""
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
        extended = False
        try:
            while True:
                try:
                    return await asyncio.wait_for(asyncio.shield(fut), max(0.0, deadline - loop.time()))
                except asyncio.TimeoutError:
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
                if self._pending is not None and not self._pending.done():
                    self._pending.set_result(ev)
            elif isinstance(ev, Write):
                if self._link is not None and self._link.is_open:
                    self._link.write(ev.data)
                    self._payload_written = True
            elif isinstance(ev, Urc):
                if ev.name == "CREG":
                    self.registration = at.creg_stat([ev.line])
                self._urcs.put_nowait(ev)
            elif isinstance(ev, Stray):
                if ev.line.upper().startswith("+CMGS:"):
                    log.warning("modem_late_cmgs", sender=self.name, line=ev.line)
                elif "CPIN=" not in ev.line.upper():  # a late echo of AT+CPIN="…" must not log the PIN
                    log.debug("modem_stray_line", sender=self.name, line=ev.line[:80])

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
        """The init sequence; raises ``ModemError`` when the modem cannot send texts."""
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
            raise ModemError(f"{self.device}: no answer to AT (is it a modem's AT port?)")
        await self._cmd("ATE0")
        await self._cmd("AT+CMEE=1")
        await self._check_sim()
        info: dict[str, Any] = {}
        for key, cmd in (("maker", "AT+CGMI"), ("model", "AT+CGMM"), ("firmware", "AT+CGMR"), ("imei", "AT+CGSN")):
            fin = await self._cmd(cmd)
            if fin.ok and fin.lines:
                val = fin.lines[0].split(":", 1)[1] if fin.lines[0].upper().startswith(cmd[2:] + ":") else fin.lines[0]
                info[key] = val.strip()
        if "imei" in info:
            info["imei_tail"] = info.pop("imei")[-4:]
        info["sim"] = "READY"
        for attempt in range(5):
            fin = await self._cmd("AT+CMGF=0")
            if fin.ok:
                break
            await asyncio.sleep(1.0)  # SIM800 refuses SMS commands until "SMS Ready"
        else:
            raise ModemError(f"{self.device}: modem refuses PDU mode (AT+CMGF=0: {fin.result})")
        self.mem = "SM"
        if not (await self._cmd('AT+CPMS="SM","SM","SM"')).ok and (await self._cmd('AT+CPMS="ME","ME","ME"')).ok:
            self.mem = "ME"  # no SIM storage (some embedded modules): the modem's own memory
        self.cnmi = ""
        for choice in CNMI_CHOICES if self.receive else ():
            if (await self._cmd(f"AT+CNMI={choice}")).ok:
                self.cnmi = choice
                break
        if not self.cnmi and self.receive:
            log.warning("modem_no_cnmi", sender=self.name, hint="new texts are only read at start")
        await self._cmd("AT+CREG=1")
        fin = await self._cmd("AT+CREG?")
        self.registration = at.creg_stat(fin.lines)
        info["registration"] = at.REGISTRATION.get(self.registration, "unknown") if self.registration is not None else "unknown"
        fin = await self._cmd("AT+CSQ")
        if fin.ok and fin.lines:
            with contextlib.suppress(ValueError, IndexError):
                info["signal_dbm"] = at.csq_dbm(int(at.values(fin.lines[0])[0]))
        await self._cmd("AT+COPS=3,0")  # operator as a long name, not the numeric MCC/MNC some default to
        fin = await self._cmd("AT+COPS?")
        if fin.ok and fin.lines:
            v = at.values(fin.lines[0])
            info["operator"] = v[2] if len(v) >= 3 else ""
        self.info = info

    async def _check_sim(self) -> None:
        pin_sent = False
        for _ in range(15):
            try:
                fin = await self._cmd("AT+CPIN?")
                lines, err = fin.lines, fin.error
            except AtTimeoutError as e:  # Wavecom answers +CPIN: READY without OK
                lines, err = e.lines, None
                if not lines:
                    raise
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
                urc = await asyncio.wait_for(self._urcs.get(), 30.0)
            except asyncio.TimeoutError:
                urc = None
            try:
                if urc is not None:
                    await self._handle_urc(urc)
                for asm in self._reassembler.expire(loop.time()):
                    await self._deliver(asm, self._group_idx.pop(asm.key, []))
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
        elif urc.name in ("RDY", "BOOT", "SYSSTART"):
            log.warning("modem_rebooted", sender=self.name, urc=urc.line)
            if self.state == "ready":
                self._spawn(self._recover_locked())
        else:
            log.debug("modem_urc", sender=self.name, urc=urc.line[:60])

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


def _send_error(name: str, err: AtError) -> SendError:
    msg = f"{name}: modem refused the text: {err}"
    if err.kind == "CMS" and err.code in at.CMS_PERMANENT:
        return PermanentSendError(msg, code=err.label)
    return TemporarySendError(msg, code=err.label)


def _loggable(info: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in info.items() if k != "imei"}
