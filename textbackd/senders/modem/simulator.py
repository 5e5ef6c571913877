"""A fake GSM modem on a pseudo-terminal, for tests and ``textbackd demo``.

It behaves like the Huawei E3372 / SIM800 / Quectel EC25 transcripts in
``tests/data/modem``: echo on until ``ATE0`` (and again after ``ATZ``),
``\\r\\n``-framed answers, the ``> `` prompt of ``AT+CMGS`` (SIM800 style without
the leading CRLF), SIM PIN handling (three wrong PINs → PUK), PDU-mode SMS
storage (``CMGR``/``CMGL``/``CMGD``/``CPMS``), ``+CMTI``/``+CMT`` and
``+CDS``/``+CDSI`` per ``AT+CNMI``, and faults on demand: ``+CMS ERROR`` for the
next send or for part *k* of a linked text, URCs injected inside the next response,
slow answers, silence (a hung modem), a hang after *k* commands that only ``ATZ``
(or only reopening the port) ends, Huawei's periodic ``^BOOT`` line, a reboot with
the profile's own boot lines, and unplugging (the pty disappears; ``replug`` makes a
new one behind the same ``link`` symlink). A Wavecom-like profile answers
``AT+CPIN?`` without a final ``OK``.

**Pausing at a step of a send**, so a test can kill the daemon exactly there
(``pause_at(step, skip=n)``, then ``await sim.paused.wait()`` ... ``resume()``):
``"cmgs_command"`` (``AT+CMGS=<len>`` read, no prompt yet), ``"prompt"`` (the ``> ``
written; what the daemon writes next, its PDU, is buffered in ``unread`` and not acted
on), ``"pdu"`` (the PDU read and taken, no ``+CMGS`` yet), ``"cmgs"`` (``+CMGS: <mr>``
written, its ``OK`` not yet), or ``"command:<PREFIX>"`` (a command read and not
answered), or ``"between_parts"`` (an ``AT+CMGS=<len>`` right after a part of a linked
text that was not its last: the kill between parts). While paused the simulator acts on
nothing it reads and holds what it would answer.

The port being opened is seen through the pty's packet mode: every open by pyserial
flushes the input queue, which the master side reads as a ``TIOCPKT_FLUSHREAD``
packet (``opens`` counts them).

In-process (same asyncio loop as the daemon)::

    sim = ModemSimulator(link="/run/textbackd/sim0")    # link optional
    await sim.start()           # sim.device is the path to configure (link or /dev/pts/N)
    sim.received                # [ReceivedSms(to, text, parts, references, pdus, status_report)]
    await sim.incoming("+12125550101", "Yes please")    # a reply (split/concatenated when long)
    await sim.status_report(reference=5)                # a delivery report for +CMGS: 5
    sim.fail_next_send(38); sim.inject_urc('+CMTI: "SM",9'); sim.silent = True
    await sim.unplug(); await sim.replug(); await sim.stop()

As a program: ``python -m textbackd.senders.modem.simulator [--link PATH] [--control SOCK]
[--profile huawei|sim800|quectel|wavecom] [--pin 1234]`` prints one JSON line
``{"device": ..., "pty": ..., "control": ...}`` and serves the control socket: a
Unix stream socket taking JSON lines — ``{"cmd": "incoming", "from": "+1...",
"text": "..."}``, ``{"cmd": "status_report", "reference": 5, "status": 0}``,
``{"cmd": "received"}``, ``{"cmd": "fail_next_send", "cms": 38}``,
``{"cmd": "silent", "on": true}``, ``{"cmd": "unplug"}``, ``{"cmd": "replug"}``,
``{"cmd": "inject_urc", "line": "^RSSI:9"}``, ``{"cmd": "fail_part", "part": 2, "cms": 500,
"times": 1}``, ``{"cmd": "hang_after", "commands": 3, "until": "atz"|"reopen"}``,
``{"cmd": "boot_every", "seconds": 3}`` (0 stops it), ``{"cmd": "reboot"}``,
``{"cmd": "pause_at", "step": "pdu", "skip": 0}``, ``{"cmd": "wait_paused", "timeout": 30}``,
``{"cmd": "resume"}``, ``{"cmd": "log"}`` (every command line and every part taken) —
and answering one JSON line each.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import os
import re
import struct
import sys
import termios
import tty
from dataclasses import dataclass, field
from datetime import datetime, timezone

import structlog

from textbackd.senders.modem import pdu as pdu_mod

log = structlog.get_logger(__name__)

PROFILES = {
    "huawei": {"maker": "huawei", "model": "E3372", "revision": "21.180.01.00.00", "prompt": b"\r\n> ", "noise": "^RSSI:17",
               "boot": ("^SYSSTART",)},
    "sim800": {"maker": "SIMCOM_Ltd", "model": "SIMCOM_SIM800L", "revision": "Revision:1418B04SIM800L24", "prompt": b"> ", "noise": "+CREG: 1",
               "boot": ("RDY", "+CFUN: 1", "+CPIN: READY", "Call Ready", "SMS Ready")},  # seeed-gprs-sim900-39
    "quectel": {"maker": "Quectel", "model": "EC25", "revision": "EC25EFAR06A08M4G", "prompt": b"\r\n> ", "noise": '+QIND: "csq",21,99',
                "boot": ("RDY", "+CPIN: READY", '+QIND: "SMS DONE"')},
    # python-gsmmodem's WavecomMultiband900E1800 (tests/data/modem/python-gsmmodem_fakemodem_WavecomMultiband900E1800.json):
    # identification with spaces around it, no AT+CGMR, AT+CPIN? answered WITHOUT a final OK, and nothing said at
    # boot unless +WIND indications are switched on (a reboot only shows as lost settings: PDU mode, the PIN)
    "wavecom": {"maker": " WAVECOM MODEM", "model": " MULTIBAND  900E  1800 ", "revision": None, "prompt": b"\r\n> ",
                "noise": "+WIND: 4", "boot": (), "cpin_without_ok": True},
}
STEPS = ("cmgs_command", "prompt", "pdu", "cmgs", "between_parts")
TIOCPKT = getattr(termios, "TIOCPKT", 0x5420)
TIOCPKT_FLUSHREAD = 0x01


@dataclass
class ReceivedSms:
    """One text the simulator received (all its parts), decoded by our codec; ``pdus`` as written by the sender."""

    to: str
    text: str
    parts: tuple[str, ...]
    references: tuple[int, ...]
    pdus: tuple[str, ...]
    status_report: bool


@dataclass(frozen=True)
class TakenPart:
    """One PDU the simulator took (answered ``+CMGS``): what a phone would get, part by part."""

    to: str
    text: str
    concat_ref: int | None  # None for a one-part text
    part: int
    total: int
    mr: int


@dataclass
class _Stored:
    stat: int  # 0 unread, 1 read, 2 unsent, 3 sent
    pdu: str


@dataclass
class _PartialSend:
    parts: dict[int, tuple[str, int, str]] = field(default_factory=dict)  # seq -> (text, mr, pdu)


class ModemSimulator:
    def __init__(
        self,
        *,
        link: str | None = None,
        profile: str = "huawei",
        pin: str | None = None,
        imei: str = "867654030012345",
        operator: str = "Textback Mobile",
        rssi: int = 21,
        start_mr: int = 1,
    ) -> None:
        if profile not in PROFILES:
            raise ValueError(f"unknown profile {profile!r} ({', '.join(PROFILES)})")
        self.link = link
        self.profile = profile
        self.p = PROFILES[profile]
        self.pin = pin
        self.imei = imei
        self.operator = operator
        self.rssi = rssi
        self.mr = start_mr
        self.received: list[ReceivedSms] = []
        self.commands: list[str] = []  # every command line received, for tests
        self.silent = False  # a hung modem: reads everything, answers nothing
        self.delay = 0.0  # seconds before each answer
        self.cmgs_delay = 0.0  # extra seconds before +CMGS (networks take seconds)
        self.storage: dict[int, _Stored] = {}
        self.sr_storage: dict[int, _Stored] = {}
        self.pdu_log: list[str] = []  # every PDU written after a prompt, in order
        self._fail_sends: list[int] = []
        self._urcs_next: list[str] = []
        self._partials: dict[tuple[str, int], _PartialSend] = {}
        self._master: int | None = None
        self._slave: int | None = None
        self._pty: str | None = None
        self._buf = b""
        self._pdu_len: int | None = None  # in PDU entry after AT+CMGS=<len>
        self._concat_ref = 200
        self._reset_settings()
        self._pin_ok = pin is None
        self._pin_tries = 3
        self._loop: asyncio.AbstractEventLoop | None = None
        self.unplug_on_pdu = False  # pull the device when the next PDU arrives (before answering)
        self.unplug_on_command: str | None = None  # pull the device when a command starting with this arrives
        self.ignore_next = 0  # swallow the next N command lines without any answer (a modem hanging briefly)
        self.ds_supported = (0, 1, 2)  # AT+CNMI <ds> values accepted
        self.taken: list[TakenPart] = []  # every part answered with +CMGS, in order
        self.opens = 0  # times the port was opened (pyserial's open flushes the input: TIOCPKT_FLUSHREAD)
        self.hung = False  # hanging (hang_after): reads everything, answers nothing
        self._hang_in: int | None = None  # commands still answered before the hang starts
        self._hang_until = "atz"  # what ends the hang: "atz" or "reopen"
        self._fail_parts: dict[int, list[int]] = {}  # part number → CMS errors for its next sends
        self._pause_step: str | None = None
        self._pause_skip = 0
        self._paused = False
        self._held: list[bytes] = []
        self.paused = asyncio.Event()  # set while paused at a step (pause_at)
        self.paused_at: str | None = None
        self._boot_timer: asyncio.TimerHandle | None = None

    def _reset_settings(self) -> None:
        self.echo = True
        self.cmee = 0
        self.cmgf = 1
        self.cnmi = (0, 0, 0, 0, 0)
        self.creg_n = 0

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def device(self) -> str:
        """What to configure as ``device``: the link when given, else the pty path."""
        return self.link or self._pty or ""

    @property
    def pty_path(self) -> str | None:
        return self._pty

    @property
    def plugged(self) -> bool:
        return self._master is not None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._open_pty()

    async def stop(self) -> None:
        self._close_pty()

    async def unplug(self) -> None:
        """The USB modem is pulled: the pty closes and the device path disappears."""
        self._close_pty()

    async def replug(self) -> None:
        """Plugged back: a fresh pty (new /dev/pts number) behind the same link, settings reset."""
        self._close_pty()
        self._reset_settings()
        self._pin_ok = self.pin is None
        self.hung = False
        self._open_pty()
        for line in self.p["boot"]:
            self._urc(line)

    def _open_pty(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        fcntl.ioctl(master, TIOCPKT, struct.pack("i", 1))  # see an open of the port (module docstring)
        self._master, self._slave = master, slave
        self._pty = os.ttyname(slave)
        self._buf = b""
        self._pdu_len = None
        if self.link:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.link)
            os.symlink(self._pty, self.link)
        assert self._loop is not None
        self._loop.add_reader(master, self._readable)

    def _close_pty(self) -> None:
        if self._master is None:
            return
        assert self._loop is not None
        self._loop.remove_reader(self._master)
        if self._boot_timer is not None:
            self._boot_timer.cancel()
            self._boot_timer = None
        if self.link:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.link)
        for fd in (self._master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._master = self._slave = None

    # -- control API -------------------------------------------------------------------

    def urc(self, line: str, data: str | None = None) -> None:
        """Send an unsolicited line now (between responses)."""
        self._urc(line, data)

    async def reboot(self) -> None:
        """The modem resets itself (power glitch, firmware watchdog): echo back on, SIM locked again, the
        profile's boot lines (``^SYSSTART``; ``RDY`` … ``SMS Ready``; nothing at all for Wavecom)."""
        self._reset_settings()
        self._pin_ok = self.pin is None
        self._pdu_len = None
        self.hung = False
        for line in self.p["boot"]:
            self._urc(line)

    def fail_next_send(self, cms: int) -> None:
        """The next AT+CMGS answers ``+CMS ERROR: <cms>`` (queue several for several sends)."""
        self._fail_sends.append(cms)

    def fail_part(self, part: int, cms: int, times: int = 1) -> None:
        """The next ``times`` PDUs of part ``part`` (1 for a one-part text) answer ``+CMS ERROR: <cms>``."""
        self._fail_parts.setdefault(part, []).extend([cms] * times)

    def hang_after(self, commands: int, *, until: str = "atz") -> None:
        """Answer ``commands`` more command lines, then nothing (no echo either) until ``ATZ`` arrives
        (``until="atz"``, answered ``OK``) or the port is opened again (``until="reopen"``)."""
        if until not in ("atz", "reopen"):
            raise ValueError("until: 'atz' or 'reopen'")
        self._hang_in, self._hang_until = commands, until
        if commands <= 0:
            self._hang_in, self.hung = None, True

    def boot_every(self, seconds: float, line: str = "^BOOT:12345,0,0,0,72") -> None:
        """Huawei E-series firmware's periodic ``^BOOT:`` status line every ``seconds`` (0: stop). Not a reboot."""
        if self._boot_timer is not None:
            self._boot_timer.cancel()
            self._boot_timer = None
        if seconds <= 0 or self._loop is None:
            return

        def tick() -> None:
            self._urc(line)
            self._boot_timer = self._loop.call_later(seconds, tick) if self._loop else None

        self._boot_timer = self._loop.call_later(seconds, tick)

    def pause_at(self, step: str, *, skip: int = 0) -> None:
        """Stop at the ``skip + 1``-th next ``step`` (see the module docstring) until ``resume()``."""
        if step not in STEPS and not step.startswith("command:"):
            raise ValueError(f"step: one of {', '.join(STEPS)} or command:<PREFIX>")
        self._pause_step, self._pause_skip = step, skip
        self.paused.clear()

    def resume(self) -> None:
        """Go on after a pause: say what was held, read what waited."""
        self._pause_step = None
        if not self._paused:
            return
        self._paused = False
        self.paused_at = None
        self.paused.clear()
        held, self._held = self._held, []
        for data in held:
            self._write(data)
        if self._master is not None:
            self._process()

    def _at_step(self, step: str) -> bool:
        """True (and now paused) when ``step`` is where ``pause_at`` asked to stop."""
        want = self._pause_step
        if want is None or not (step == want or (want.startswith("command:") and step.upper().startswith(
                "COMMAND:" + want.split(":", 1)[1].upper()))):
            return False
        if self._pause_skip > 0:
            self._pause_skip -= 1
            return False
        self._pause_step = None
        self._paused = True
        self.paused_at = step
        self.paused.set()
        return True

    def inject_urc(self, line: str) -> None:
        """Put ``line`` in the middle of the next response (after its first line)."""
        self._urcs_next.append(line)

    async def incoming(self, sender: str, text: str, *, when: datetime | None = None) -> list[int]:
        """A text from ``sender`` arrives: stored (and +CMTI) or delivered (+CMT) per AT+CNMI."""
        when = when or datetime.now(timezone.utc).replace(microsecond=0)
        self._concat_ref = (self._concat_ref + 1) % 256
        idxs = []
        for hexpdu in pdu_mod.encode_deliver(sender, text, when, concat_ref=self._concat_ref):
            if self.cnmi[1] in (2, 3):
                self._urc(f"+CMT: ,{pdu_mod.tpdu_length(hexpdu)}", hexpdu)
                continue
            idx = self._store(self.storage, hexpdu, 0)
            idxs.append(idx)
            if self.cnmi[1] == 1:
                self._urc(f'+CMTI: "SM",{idx}')
        return idxs

    async def status_report(self, reference: int, status: int = 0, *, recipient: str = "+12125550101") -> None:
        """A status report for ``reference`` (+CDS with ds=1, stored and +CDSI with ds=2)."""
        now = datetime.now(timezone.utc).replace(microsecond=0)
        for t in self.taken:  # the last part that got this TP-MR (they wrap at 256)
            if t.mr == reference:
                recipient = t.to
        hexpdu = pdu_mod.encode_status_report(reference, recipient, now, now, status)
        if self.cnmi[3] == 1:
            self._urc(f"+CDS: {pdu_mod.tpdu_length(hexpdu)}", hexpdu)
        elif self.cnmi[3] == 2:
            idx = self._store(self.sr_storage, hexpdu, 0)
            self._urc(f'+CDSI: "SR",{idx}')

    @staticmethod
    def _store(where: dict[int, _Stored], hexpdu: str, stat: int) -> int:
        idx = 0
        while idx in where:
            idx += 1
        where[idx] = _Stored(stat, hexpdu)
        return idx

    # -- I/O ---------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        if self._master is None:
            return
        if self._paused:
            self._held.append(data)
            return
        try:
            os.write(self._master, data)
        except OSError:
            pass

    def _say(self, data: bytes) -> None:
        if self.delay and self._loop is not None:
            self._loop.call_later(self.delay, self._write, data)
        else:
            self._write(data)

    def _urc(self, line: str, data: str | None = None) -> None:
        body = f"\r\n{line}\r\n" + (f"{data}\r\n" if data is not None else "")
        self._write(body.encode())

    def _readable(self) -> None:
        try:
            data = os.read(self._master, 4096)
        except OSError:
            data = b""
        if not data:
            return
        status, data = data[0], data[1:]  # packet mode: a status byte, then the data (when status is 0)
        if status & TIOCPKT_FLUSHREAD:
            self._opened()
        if not data:
            return
        self._buf += data
        if not self._paused:
            self._process()

    @property
    def unread(self) -> bytes:
        """What the daemon wrote that the simulator has not acted on yet (while paused: the PDU after a prompt)."""
        return self._buf

    def _opened(self) -> None:
        """The daemon opened the port (again)."""
        self.opens += 1
        if self.hung and self._hang_until == "reopen":
            self.hung = False
            log.debug("simulator_hang_ended", by="reopen")

    def _process(self) -> None:
        while self._master is not None and not self._paused:
            if self._pdu_len is not None:
                m = re.search(rb"[\x1a\x1b]", self._buf)
                if not m:
                    return
                body, term = self._buf[: m.start()], self._buf[m.start() : m.end()]
                self._buf = self._buf[m.end() :]
                if self.echo and not (self.silent or self.hung):
                    self._write(body)
                length, self._pdu_len = self._pdu_len, None
                if self.silent or self.hung:
                    continue
                if term == b"\x1b":
                    self._say(b"\r\nOK\r\n")
                    continue
                self._on_pdu(body.decode("ascii", "replace").strip(), length)
                continue
            idx = self._buf.find(b"\r")
            if idx < 0:
                return
            raw, self._buf = self._buf[:idx], self._buf[idx + 1 :].lstrip(b"\n")
            line = raw.replace(b"\x1b", b"").decode("ascii", "replace").strip()  # ESC outside PDU entry: ignored
            if not line:
                continue
            self.commands.append(line)
            if self.unplug_on_command and line.upper().startswith(self.unplug_on_command.upper()):
                self.unplug_on_command = None
                self._close_pty()
                return
            if self.silent:
                continue
            if self.ignore_next > 0:
                self.ignore_next -= 1
                continue
            if self._hang_in is not None:
                if self._hang_in <= 0:
                    self._hang_in, self.hung = None, True
                else:
                    self._hang_in -= 1
            if self.hung:
                if self._hang_until == "atz" and line.upper() in ("ATZ", "ATZ0"):
                    self.hung = False  # the reset is heard: answered below, settings back to defaults
                else:
                    continue
            if self.echo:
                self._write(raw + b"\r")
            if self._at_step("command:" + line):
                self._command(line)  # answered into the held output, said at resume
                return
            self._command(line)
            if self._paused:
                return

    # -- commands ----------------------------------------------------------------------

    def _respond(self, lines: list[str], final: str = "OK") -> None:
        out = []
        for i, line in enumerate(lines):
            out.append(f"\r\n{line}\r\n")
            if i == 0 and self._urcs_next:
                out.extend(f"\r\n{u}\r\n" for u in self._urcs_next)
                self._urcs_next.clear()
        if self._urcs_next:
            out.extend(f"\r\n{u}\r\n" for u in self._urcs_next)
            self._urcs_next.clear()
        out.append(f"\r\n{final}\r\n")
        self._say("".join(out).encode())

    def _cme(self, code: int) -> None:
        self._respond([], f"+CME ERROR: {code}" if self.cmee else "ERROR")

    def _cms(self, code: int) -> None:
        self._respond([], f"+CMS ERROR: {code}" if self.cmee else "ERROR")

    def _command(self, line: str) -> None:  # noqa: C901 - a dispatcher
        u = line.upper()
        if not u.startswith("AT"):
            self._respond([], "ERROR")
            return
        cmd = u[2:]
        if cmd == "":
            self._respond([])
        elif cmd in ("E0", "E1"):
            self.echo = cmd == "E1"
            self._respond([])
        elif cmd in ("Z", "&F", "Z0"):
            self._reset_settings()
            self._respond([])
        elif cmd.startswith("+CMEE="):
            self.cmee = int(cmd[6:] or 0)
            self._respond([])
        elif cmd in ("+CGMI", "+GMI"):
            self._respond([self.p["maker"]])
        elif cmd in ("+CGMM", "+GMM"):
            self._respond([self.p["model"]])
        elif cmd in ("+CGMR", "+GMR"):
            if self.p["revision"] is None:
                self._respond([], "ERROR")
            else:
                self._respond([self.p["revision"]])
        elif cmd in ("+CGSN", "+GSN"):
            self._respond([self.imei])
        elif cmd == "I":
            self._respond([f"Manufacturer: {self.p['maker']}", f"Model: {self.p['model']}", f"Revision: {self.p['revision']}", f"IMEI: {self.imei}"])
        elif cmd == "+CPIN?":
            state = "SIM PUK" if self._pin_tries <= 0 else "READY" if self._pin_ok else "SIM PIN"
            if self.p.get("cpin_without_ok"):
                self._say(f"\r\n+CPIN: {state}\r\n".encode())  # Wavecom: no final result code
            else:
                self._respond([f"+CPIN: {state}"])
        elif cmd.startswith("+CPIN="):
            given = line.split("=", 1)[1].strip().strip('"')
            if self._pin_ok:
                self._cme(3)
            elif self._pin_tries <= 0:
                self._cme(12)
            elif given == self.pin:
                self._pin_ok = True
                self._respond([])
                self._urc("+CPIN: READY")
            else:
                self._pin_tries -= 1
                self._cme(16 if self._pin_tries else 12)
        elif not self._pin_ok and cmd.startswith(("+CMG", "+CPMS", "+CNMI", "+COPS", "+CSQ")):
            self._cme(11)
        elif cmd.startswith("+CREG="):
            self.creg_n = int(cmd[6:] or 0)
            self._respond([])
        elif cmd == "+CREG?":
            self._respond([f"+CREG: {self.creg_n},1"])
        elif cmd == "+CSQ":
            self._respond([f"+CSQ: {self.rssi},99"])
        elif cmd == "+COPS?":
            self._respond([f'+COPS: 0,0,"{self.operator}",7'])
        elif cmd.startswith("+CMGF="):
            self.cmgf = int(cmd[6:] or 0)
            self._respond([])
        elif cmd.startswith("+CPMS"):
            n = len(self.storage)
            if cmd.endswith("?"):
                self._respond([f'+CPMS: "SM",{n},30,"SM",{n},30,"SM",{n},30'])
            else:
                self._respond([f"+CPMS: {n},30,{n},30,{n},30"])
        elif cmd.startswith("+CNMI="):
            try:
                vals = tuple(int(x or 0) for x in cmd[6:].split(","))
            except ValueError:
                self._cms(303)
                return
            vals = (vals + (0, 0, 0, 0, 0))[:5]
            if vals[3] not in self.ds_supported or (self.profile == "sim800" and vals[3] == 2):
                self._cms(303)  # SIM800L cannot do ds=2 (python-gsmmodem#60)
                return
            self.cnmi = vals
            self._respond([])
        elif cmd.startswith("+CSCA?"):
            self._respond(['+CSCA: "+12125550100",145'])
        elif cmd.startswith("+CMGS="):
            if self.cmgf != 0:
                self._cms(302)  # we only simulate PDU mode sends
                return
            try:
                self._pdu_len = int(cmd[6:])
            except ValueError:
                self._cms(304)
                return
            last = self.taken[-1] if self.taken else None
            between = last is not None and last.part < last.total
            if self._at_step("cmgs_command") or (between and self._at_step("between_parts")):
                self._say(self.p["prompt"])  # held until resume
                return
            self._say(self.p["prompt"])
            self._at_step("prompt")
        elif cmd.startswith("+CMGR="):
            self._read(int(cmd[6:]))
        elif cmd.startswith("+CMGD="):
            idx = int(cmd[6:].split(",")[0])
            if idx in self.storage:
                del self.storage[idx]
                self._respond([])
            elif idx in self.sr_storage:
                del self.sr_storage[idx]
                self._respond([])
            else:
                self._cms(321)
        elif cmd.startswith("+CMGL="):
            want = int(cmd[6:] or 4)
            lines = []
            for idx in sorted(self.storage):
                s = self.storage[idx]
                if want == 4 or want == s.stat:
                    lines += [f"+CMGL: {idx},{s.stat},,{pdu_mod.tpdu_length(s.pdu)}", s.pdu]
                    if s.stat == 0:
                        s.stat = 1
            self._respond(lines)
        elif cmd.startswith(("+CSMS", "+CSCS", "+CVHU", "^CURC", "+CLIP", "+CRC", "+CSDH", "+CFUN", "+COPS=")):
            self._respond([])
        else:
            self._respond([], "COMMAND NOT SUPPORT" if self.profile == "huawei" else "ERROR")

    def _read(self, idx: int) -> None:
        s = self.storage.get(idx) or self.sr_storage.get(idx)
        if s is None:
            self._cms(321)
            return
        self._respond([f"+CMGR: {s.stat},,{pdu_mod.tpdu_length(s.pdu)}", s.pdu])
        if s.stat == 0:
            s.stat = 1

    def _on_pdu(self, hexpdu: str, length: int) -> None:
        self.pdu_log.append(hexpdu)
        if self.unplug_on_pdu:
            self.unplug_on_pdu = False
            self._close_pty()
            return
        try:
            msg = pdu_mod.decode(hexpdu)
            if not isinstance(msg, pdu_mod.Submit) or pdu_mod.tpdu_length(hexpdu) != length:
                raise pdu_mod.PduError("not an SMS-SUBMIT of the announced length")
        except (pdu_mod.PduError, ValueError):
            self._cms(304)
            return
        seq = msg.concat.seq if msg.concat is not None else 1
        if self._fail_sends:
            self._cms(self._fail_sends.pop(0))
            return
        if self._fail_parts.get(seq):
            self._cms(self._fail_parts[seq].pop(0))
            return
        mr = self.mr
        self.mr = (self.mr + 1) % 256
        self._record(msg, mr, hexpdu)
        self.taken.append(TakenPart(msg.recipient, msg.text, msg.concat.ref if msg.concat else None, seq,
                                    msg.concat.total if msg.concat else 1, mr))
        if self._at_step("pdu"):
            self._respond([f"+CMGS: {mr}"])  # held until resume
            return
        if self.cmgs_delay and self._loop is not None:
            self._loop.call_later(self.cmgs_delay, self._respond, [f"+CMGS: {mr}"])
        elif self._pause_step == "cmgs":
            self._write(f"\r\n+CMGS: {mr}\r\n".encode())
            if self._at_step("cmgs"):
                self._write(b"\r\nOK\r\n")  # held until resume
            else:
                self._write(b"\r\nOK\r\n")
        else:
            self._respond([f"+CMGS: {mr}"])

    def _record(self, msg: pdu_mod.Submit, mr: int, hexpdu: str) -> None:
        if msg.concat is None:
            self.received.append(ReceivedSms(msg.recipient, msg.text, (msg.text,), (mr,), (hexpdu,), msg.status_report))
            return
        key = (msg.recipient, msg.concat.ref)
        part = self._partials.setdefault(key, _PartialSend())
        part.parts[msg.concat.seq] = (msg.text, mr, hexpdu)
        if len(part.parts) == msg.concat.total:
            del self._partials[key]
            seqs = sorted(part.parts)
            texts = tuple(part.parts[s][0] for s in seqs)
            self.received.append(
                ReceivedSms(
                    msg.recipient,
                    pdu_mod._fix_surrogates("".join(texts)),
                    texts,
                    tuple(part.parts[s][1] for s in seqs),
                    tuple(part.parts[s][2] for s in seqs),
                    msg.status_report,
                )
            )


# --------------------------------------------------------------------------------------
# subprocess mode


async def _serve_control(sim: ModemSimulator, path: str) -> asyncio.AbstractServer:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            try:
                req = json.loads(line)
                cmd = req.get("cmd")
                res: dict = {"ok": True}
                if cmd == "incoming":
                    res["indexes"] = await sim.incoming(req["from"], req["text"])
                elif cmd == "status_report":
                    await sim.status_report(int(req["reference"]), int(req.get("status", 0)))
                elif cmd == "received":
                    res["received"] = [
                        {"to": r.to, "text": r.text, "parts": list(r.parts), "references": list(r.references), "pdus": list(r.pdus)}
                        for r in sim.received
                    ]
                elif cmd == "fail_next_send":
                    sim.fail_next_send(int(req["cms"]))
                elif cmd == "silent":
                    sim.silent = bool(req.get("on", True))
                elif cmd == "unplug":
                    await sim.unplug()
                elif cmd == "replug":
                    await sim.replug()
                    res["pty"] = sim.pty_path
                elif cmd == "inject_urc":
                    sim.inject_urc(str(req["line"]))
                elif cmd == "fail_part":
                    sim.fail_part(int(req["part"]), int(req["cms"]), int(req.get("times", 1)))
                elif cmd == "hang_after":
                    sim.hang_after(int(req["commands"]), until=str(req.get("until", "atz")))
                elif cmd == "boot_every":
                    sim.boot_every(float(req["seconds"]))
                elif cmd == "reboot":
                    await sim.reboot()
                elif cmd == "pause_at":
                    sim.pause_at(str(req["step"]), skip=int(req.get("skip", 0)))
                elif cmd == "wait_paused":
                    await asyncio.wait_for(sim.paused.wait(), float(req.get("timeout", 30)))
                    res["paused_at"] = sim.paused_at
                elif cmd == "resume":
                    sim.resume()
                elif cmd == "log":
                    res["commands"] = list(sim.commands)
                    res["taken"] = [t.__dict__ for t in sim.taken]
                else:
                    res = {"ok": False, "error": f"unknown cmd {cmd!r}"}
            except (ValueError, KeyError, TypeError, TimeoutError) as e:
                res = {"ok": False, "error": str(e)}
            writer.write((json.dumps(res) + "\n").encode())
            await writer.drain()
        writer.close()

    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    return await asyncio.start_unix_server(handle, path)


async def _amain(args: argparse.Namespace) -> None:
    sim = ModemSimulator(link=args.link, profile=args.profile, pin=args.pin)
    await sim.start()
    server = await _serve_control(sim, args.control) if args.control else None
    print(json.dumps({"device": sim.device, "pty": sim.pty_path, "control": args.control}), flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        if server:
            server.close()
        await sim.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m textbackd.senders.modem.simulator", description="A fake GSM modem on a pty.")
    ap.add_argument("--link", help="symlink to create to the pty (stable device path across unplug/replug)")
    ap.add_argument("--control", help="Unix socket for JSON-lines control commands")
    ap.add_argument("--profile", default="huawei", choices=sorted(PROFILES))
    ap.add_argument("--pin", default=None, help="SIM PIN the fake SIM asks for")
    args = ap.parse_args(argv)
    try:
        asyncio.run(_amain(args))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
