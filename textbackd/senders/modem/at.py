"""A sans-I/O AT command engine: bytes in, events out. No asyncio, no clock.

``AtEngine`` keeps one command in flight. ``start(cmd)`` returns the bytes to
write; ``feed(data)`` returns events:

* ``Final`` — the command ended: its intermediate lines and the final result
  code (``OK``, ``ERROR``, ``+CME ERROR: n``, ``+CMS ERROR: n`` — numeric or
  verbose —, vendor ``COMMAND NOT SUPPORT``, V0 numeric ``0``/``4``);
* ``Write`` — bytes the I/O layer must write now (the PDU and Ctrl-Z once the
  ``> `` prompt of ``AT+CMGS`` arrived, with or without its space, late or
  glued to the echoed PDU);
* ``Urc`` — an unsolicited result code (``+CMTI``, ``+CDS`` with its PDU
  line, ``+CDSI``, ``RING``, ``+CREG``, ``^RSSI``, ``^BOOT``, SIM800 ``SMS
  Ready``...), recognised wherever it arrives, also between the lines of a
  response;
* ``Stray`` — a line nobody asked for (a late answer to a command that timed out).

The traps of python-gsmmodem avoided here: only a whole line that *is* a final
result code ends a response (a line merely containing ``ERROR`` does not); URCs
are never swallowed into a response (a prefix that the running command itself
answers with, e.g. ``+CREG:`` for ``AT+CREG?``, is a response line); the echo
of a command and of a PDU is dropped whether or not ``ATE0`` took; and
``abort()`` (the caller's timeout) returns ESC when the modem is waiting for a
PDU, so a half-open ``AT+CMGS`` never eats the next command.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from textbackd.core.errors import ModemError

CTRL_Z = b"\x1a"
ESC = b"\x1b"

# --------------------------------------------------------------------------------------
# error codes

# 3GPP TS 27.005 §3.2.5 <err> values (0-127: 24.011 RP causes, 128-255: 23.040 TP-FCS).
CMS_ERRORS: dict[int, str] = {
    1: "unassigned (unallocated) number",
    8: "operator determined barring",
    10: "call barred",
    21: "short message transfer rejected",
    27: "destination out of service",
    28: "unidentified subscriber",
    29: "facility rejected",
    30: "unknown subscriber",
    38: "network out of order",
    41: "temporary failure",
    42: "congestion",
    47: "resources unavailable, unspecified",
    50: "requested facility not subscribed",
    69: "requested facility not implemented",
    81: "invalid short message transfer reference value",
    95: "invalid message, unspecified",
    96: "invalid mandatory information",
    97: "message type non-existent or not implemented",
    98: "message not compatible with short message protocol state",
    99: "information element non-existent or not implemented",
    111: "protocol error, unspecified",
    127: "interworking, unspecified",
    128: "telematic interworking not supported",
    129: "short message type 0 not supported",
    130: "cannot replace short message",
    143: "unspecified TP-PID error",
    144: "data coding scheme (alphabet) not supported",
    145: "message class not supported",
    159: "unspecified TP-DCS error",
    160: "command cannot be actioned",
    161: "command unsupported",
    175: "unspecified TP-Command error",
    176: "TPDU not supported",
    192: "SC busy",
    193: "no SC subscription",
    194: "SC system failure",
    195: "invalid SME address",
    196: "destination SME barred",
    197: "SM rejected-duplicate SM",
    198: "TP-VPF not supported",
    199: "TP-VP not supported",
    208: "SIM SMS storage full",
    209: "no SMS storage capability in SIM",
    210: "error in MS",
    211: "memory capacity exceeded",
    212: "SIM application toolkit busy",
    213: "SIM data download error",
    255: "unspecified error cause",
    300: "ME failure",
    301: "SMS service of ME reserved",
    302: "operation not allowed",
    303: "operation not supported",
    304: "invalid PDU mode parameter",
    305: "invalid text mode parameter",
    310: "SIM not inserted",
    311: "SIM PIN required",
    312: "PH-SIM PIN required",
    313: "SIM failure",
    314: "SIM busy",
    315: "SIM wrong",
    316: "SIM PUK required",
    317: "SIM PIN2 required",
    318: "SIM PUK2 required",
    320: "memory failure",
    321: "invalid memory index",
    322: "memory full",
    330: "SMSC address unknown",
    331: "no network service",
    332: "network timeout",
    340: "no +CNMA acknowledgement expected",
    500: "unknown error",
}

# Codes after which this number or this text will never go through (any modem, any time).
CMS_PERMANENT = frozenset({1, 10, 21, 28, 29, 30, 96, 97, 98, 99, 111, 144, 145, 159, 176, 195, 196, 197, 304, 305})

# 3GPP TS 27.007 §9.2 <err> values seen on SMS modems.
CME_ERRORS: dict[int, str] = {
    0: "phone failure",
    3: "operation not allowed",
    4: "operation not supported",
    5: "PH-SIM PIN required",
    10: "SIM not inserted",
    11: "SIM PIN required",
    12: "SIM PUK required",
    13: "SIM failure",
    14: "SIM busy",
    15: "SIM wrong",
    16: "incorrect password",
    17: "SIM PIN2 required",
    18: "SIM PUK2 required",
    20: "memory full",
    21: "invalid index",
    22: "not found",
    23: "memory failure",
    30: "no network service",
    31: "network timeout",
    32: "network not allowed - emergency calls only",
    100: "unknown",
    515: "device busy",  # Wavecom, vendor range
}

_CMS_BY_TEXT = {v.lower(): k for k, v in CMS_ERRORS.items()}
_CME_BY_TEXT = {v.lower(): k for k, v in CME_ERRORS.items()}


@dataclass(frozen=True, slots=True)
class AtError:
    """A failed final result code: kind "ERROR" | "CME" | "CMS" | "VENDOR", code when known."""

    kind: str
    code: int | None
    text: str

    @property
    def meaning(self) -> str:
        if self.kind == "CMS" and self.code in CMS_ERRORS:
            return CMS_ERRORS[self.code]
        if self.kind == "CME" and self.code in CME_ERRORS:
            return CME_ERRORS[self.code]
        return self.text or self.kind

    @property
    def label(self) -> str:
        """``"CMS 38"``, ``"CME 16"``, ``"ERROR"`` — the ``SendError.code``."""
        if self.code is not None:
            return f"{self.kind} {self.code}"
        return self.kind if self.kind != "VENDOR" else self.text

    def __str__(self) -> str:
        if self.kind in ("CMS", "CME"):
            return f"+{self.kind} ERROR: {self.code if self.code is not None else '?'} ({self.meaning})"
        return self.text


def parse_error(line: str) -> AtError | None:
    """The ``AtError`` of a final result line, None for ``OK`` or a non-final line."""
    s = line.strip()
    for kind, table in (("CME", _CME_BY_TEXT), ("CMS", _CMS_BY_TEXT)):
        prefix = f"+{kind} ERROR:"
        if s.upper().startswith(prefix):
            rest = s[len(prefix) :].strip()
            m = re.match(r"^(\d+)", rest)
            if m:
                return AtError(kind, int(m.group(1)), rest)
            return AtError(kind, table.get(rest.lower()), rest)
    if s in ("ERROR", "4"):
        return AtError("ERROR", None, "ERROR")
    if s in _VENDOR_FINAL_ERRORS:
        return AtError("VENDOR", None, s)
    return None


class AtCommandError(ModemError):
    """A command ended with an error result code."""

    def __init__(self, command: str, error: AtError) -> None:
        super().__init__(f"{command}: {error}")
        self.command = command
        self.error = error


class AtTimeoutError(ModemError):
    """A command got no final result code in time."""

    def __init__(self, command: str, lines: tuple[str, ...] = (), *, after_payload: bool = False) -> None:
        super().__init__(f"{command}: no answer")
        self.command = command
        self.lines = lines
        self.after_payload = after_payload


# --------------------------------------------------------------------------------------
# line classes

_OK_FINALS = frozenset({"OK", "0"})
_VENDOR_FINAL_ERRORS = frozenset({"COMMAND NOT SUPPORT", "TOO MANY PARAMETERS", "NO CARRIER", "BUSY", "NO ANSWER", "NO DIALTONE"})

# Unsolicited result codes by prefix → name. Longest prefixes first matter only for
# shared stems, so the list is checked in order.
_URC_PREFIXES: tuple[tuple[str, str], ...] = (
    ("+CMTI:", "CMTI"),
    ("+CDSI:", "CDSI"),
    ("+CDS:", "CDS"),
    ("+CMT:", "CMT"),
    ("+CBM:", "CBM"),
    ("+CREG:", "CREG"),
    ("+CGREG:", "CGREG"),
    ("+CEREG:", "CEREG"),
    ("+CRING:", "RING"),
    ("+CLIP:", "CLIP"),
    ("+CUSD:", "CUSD"),
    ("+CIEV:", "CIEV"),
    ("+CPIN:", "CPIN"),
    ("+CFUN:", "CFUN"),
    ("+QIND:", "QIND"),
    ("+QUSIM:", "QUSIM"),
    ("+WIND:", "WIND"),
    ("+ZDONR", "ZDONR"),
    ("+ZPASR", "ZPASR"),
    ("+ZPAS", "ZPAS"),
    ("+ZUSIMR", "ZUSIMR"),
    ("+PACSP", "PACSP"),
    ("+STIN", "STIN"),
    ("+CSQN", "CSQN"),
    ("^RSSI:", "RSSI"),
    ("^HCSQ:", "HCSQ"),
    ("^BOOT:", "BOOT"),
    ("^MODE:", "MODE"),
    ("^SRVST:", "SRVST"),
    ("^SIMST:", "SIMST"),
    ("^SYSSTART", "SYSSTART"),
    ("^DSFLOWRPT:", "DSFLOWRPT"),
    ("^CEND:", "CEND"),
    ("^ORIG:", "ORIG"),
    ("^CONF:", "CONF"),
    ("^CONN:", "CONN"),
    ("^STIN:", "STIN"),
    ("^NDISSTAT:", "NDISSTAT"),
    ("RING", "RING"),
    ("NO CARRIER", "NO_CARRIER"),
    ("Call Ready", "CALL_READY"),
    ("SMS Ready", "SMS_READY"),
    ("RDY", "RDY"),
    ("POWERED DOWN", "POWERED_DOWN"),
    ("NORMAL POWER DOWN", "POWERED_DOWN"),
    ("UNDER-VOLTAGE", "UNDER_VOLTAGE"),
)
# URCs followed by one more line (the PDU, or text-mode body).
_TWO_LINE_URCS = frozenset({"CMT", "CDS", "CBM"})
_HEX = re.compile(r"^[0-9A-Fa-f]+$")


def _prefix_of(command: str) -> str | None:
    """``AT+CREG?`` → ``+CREG:``; ``AT^SYSINFO`` → ``^SYSINFO:``."""
    m = re.match(r"^AT([+^$][A-Za-z0-9]+)", command.strip(), re.I)
    return (m.group(1).upper() + ":") if m else None


# --------------------------------------------------------------------------------------
# events


@dataclass(frozen=True, slots=True)
class Command:
    line: str  # "AT+CMGS=23"
    payload: str | None = None  # written after the "> " prompt, then Ctrl-Z


@dataclass(frozen=True, slots=True)
class Final:
    command: Command
    lines: tuple[str, ...]
    result: str  # the final line as received
    error: AtError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def raise_for_error(self) -> Final:
        if self.error is not None:
            raise AtCommandError(self.command.line, self.error)
        return self


@dataclass(frozen=True, slots=True)
class Write:
    data: bytes


@dataclass(frozen=True, slots=True)
class Urc:
    name: str  # "CMTI", "CDS", "RING", "RSSI"...
    line: str
    data: str | None = None  # the second line of +CMT/+CDS/+CBM (the PDU)

    @property
    def args(self) -> list[str]:
        """The comma-separated values after the colon, quotes removed."""
        if ":" not in self.line:
            return []
        return [a.strip().strip('"') for a in self.line.split(":", 1)[1].split(",")]


@dataclass(frozen=True, slots=True)
class Stray:
    line: str


Event = Final | Write | Urc | Stray


# --------------------------------------------------------------------------------------
# the engine


@dataclass
class _InFlight:
    command: Command
    prefix: str | None
    lines: list[str] = field(default_factory=list)
    phase: str = "response"  # "response" | "await_prompt" | "payload_sent"
    echo_seen: bool = False


MAX_LINE = 8192  # no AT line is longer (a +CMGR PDU line is under 400 hex digits): more is noise, dropped


class AtEngine:
    def __init__(self) -> None:
        self.dropped_bytes = 0  # noise dropped because it ran past MAX_LINE without a line end
        self._buf = b""
        self._cur: _InFlight | None = None
        self._pending_urc: str | None = None  # a two-line URC waiting for its data line
        self._pending_line = ""

    @property
    def busy(self) -> bool:
        return self._cur is not None

    @property
    def current(self) -> Command | None:
        return self._cur.command if self._cur else None

    @property
    def phase(self) -> str:
        return self._cur.phase if self._cur else "idle"

    @property
    def partial_lines(self) -> tuple[str, ...]:
        """The response lines the command in flight has had so far (``+CMGS: 17`` before its ``OK``)."""
        return tuple(self._cur.lines) if self._cur else ()

    def start(self, command: Command) -> bytes:
        """Bytes to write for ``command``. One command at a time."""
        if self._cur is not None:
            raise RuntimeError(f"{self._cur.command.line} still in flight")
        phase = "await_prompt" if command.payload is not None else "response"
        self._cur = _InFlight(command, _prefix_of(command.line), phase=phase)
        return command.line.encode("ascii") + b"\r"

    def abort(self) -> tuple[bytes, _InFlight | None]:
        """The caller gave up waiting: bytes to write (ESC while a PDU was expected) and what was in flight."""
        cur, self._cur = self._cur, None
        if cur is not None and cur.phase == "await_prompt":
            return ESC, cur
        return b"", cur

    def reset(self) -> None:
        """Forget everything (the device was reopened); the dropped-bytes count is kept."""
        dropped = self.dropped_bytes
        self.__init__()
        self.dropped_bytes = dropped

    # -- input -------------------------------------------------------------------------

    def feed(self, data: bytes) -> list[Event]:
        self._buf += data
        out: list[Event] = []
        while True:
            if self._cur is not None and self._cur.phase == "await_prompt":
                stripped = self._buf.lstrip(b"\r\n")
                if stripped.startswith(b">"):
                    # The prompt: "> ", ">" or "> <echo>". What follows it on the line (the echoed
                    # PDU, possibly arriving in later reads) is dropped as echo once the line is whole.
                    rest = stripped[1:]
                    self._buf = rest[1:] if rest.startswith(b" ") else rest
                    self._cur.phase = "payload_sent"
                    out.append(Write(self._cur.command.payload.encode("ascii") + CTRL_Z))
                    continue
            nl = _line_end(self._buf)
            if nl is None:
                if len(self._buf) > MAX_LINE:  # a babbling device must not grow the buffer forever
                    dropped, self._buf = len(self._buf), b""
                    self.dropped_bytes += dropped
                    out.append(Stray(f"<{dropped} bytes without a line end dropped>"))
                return out
            raw, self._buf = self._buf[:nl], self._buf[nl:]
            line = raw.strip(b"\r\n").decode("utf-8", "replace").strip()
            if line:
                self._line(line, out)

    def _line(self, line: str, out: list[Event]) -> None:
        if self._pending_urc is not None:
            name, first = self._pending_urc, self._pending_line
            self._pending_urc = None
            out.append(Urc(name, first, line))
            return
        cur = self._cur
        if cur is not None and self._is_echo(cur, line):
            return
        upper = line.upper()
        if cur is not None and cur.prefix and upper.startswith(cur.prefix):
            cur.lines.append(line)
            return
        urc = self._urc_name(line, cur)
        if urc is not None:
            if urc in _TWO_LINE_URCS:
                self._pending_urc, self._pending_line = urc, line
            else:
                out.append(Urc(urc, line))
            return
        if cur is None:
            out.append(Stray(line))
            return
        if line in _OK_FINALS:
            self._finish(line, None, out)
            return
        err = parse_error(line)
        if err is not None:
            self._finish(line, err, out)
            return
        if cur.phase == "await_prompt" and line.startswith(">"):
            return  # handled in feed; a ">" arriving after a full line
        cur.lines.append(line)

    def _finish(self, line: str, err: AtError | None, out: list[Event]) -> None:
        cur = self._cur
        assert cur is not None
        self._cur = None
        out.append(Final(cur.command, tuple(cur.lines), line, err))

    def _is_echo(self, cur: _InFlight, line: str) -> bool:
        if not cur.lines and line.upper() == cur.command.line.upper():
            cur.echo_seen = True
            return True
        if cur.phase == "payload_sent" and cur.command.payload:
            body = line.lstrip("> ").rstrip("\x1a").strip()
            if not body or (_HEX.match(body) and body.upper() in cur.command.payload.upper()):
                return True  # the echoed PDU, whole or in pieces, or its lone Ctrl-Z
        return False

    @staticmethod
    def _urc_name(line: str, cur: _InFlight | None) -> str | None:
        for prefix, name in _URC_PREFIXES:
            if line.startswith(prefix):
                if name == "NO_CARRIER" and cur is not None and cur.command.line.upper().startswith(("ATD", "ATA")):
                    return None
                return name
        return None


def _line_end(buf: bytes) -> int | None:
    """Index just after the first line terminator (CR, LF, CRLF or CRCRLF), None without one."""
    for i, b in enumerate(buf):
        if b in (0x0D, 0x0A):
            j = i + 1
            while j < len(buf) and buf[j] in (0x0D, 0x0A) and j - i < 3:
                j += 1
            return j
    return None


# --------------------------------------------------------------------------------------
# response parsers shared by the sender and modem-info


def values(line: str) -> list[str]:
    """``+CSQ: 21,99`` → ``["21", "99"]`` (quotes stripped)."""
    body = line.split(":", 1)[1] if ":" in line else line
    return [v.strip().strip('"') for v in body.split(",")]


def csq_dbm(rssi: int) -> int | None:
    """27.007 +CSQ <rssi> → dBm (None for 99, unknown)."""
    if rssi == 99 or rssi < 0 or rssi > 31:
        return None
    return -113 + 2 * rssi


REGISTRATION = {
    0: "not registered, not searching",
    1: "registered, home network",
    2: "searching",
    3: "registration denied",
    4: "unknown",
    5: "registered, roaming",
}


def creg_stat(lines: tuple[str, ...] | list[str]) -> int | None:
    """The <stat> of a ``+CREG: <n>,<stat>[,...]`` answer (or a ``+CREG: <stat>`` URC)."""
    for line in lines:
        if line.upper().startswith("+CREG:"):
            v = values(line)
            try:
                return int(v[1] if len(v) >= 2 and v[1].isdigit() else v[0])
            except (ValueError, IndexError):
                return None
    return None
