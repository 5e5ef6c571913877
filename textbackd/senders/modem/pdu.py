"""SMS PDU codec (3GPP TS 23.040 / 23.038), pure functions.

* ``encode_submit(to, text, ...)`` → one ``SubmitPdu`` per part: SMS-SUBMIT with
  the GSM 7-bit default alphabet (extension table included) or UCS-2, a
  concatenation UDH (IEI 0x00, 8-bit reference) when the text needs more than
  one segment (fill bits so the text starts on a septet boundary), optional
  status-report request and validity period. ``hex`` is what follows the
  ``> `` prompt, ``length`` what ``AT+CMGS=<length>`` wants (TPDU octets, SMSC
  field excluded).
* ``decode(hex)`` → ``Deliver`` | ``StatusReport`` | ``Submit`` (the last for
  sent messages stored on the SIM, and for the simulator). Malformed input —
  real modems return some (odd lengths, non-hex characters) — raises
  ``PduError``, never anything else.
* ``Reassembler`` joins concatenated SMS-DELIVER parts; time is passed in.
* ``encode_deliver`` / ``encode_status_report`` build what a network would
  send; the modem simulator uses them.
"""

from __future__ import annotations

import binascii
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from textbackd.core import sms


class PduError(ValueError):
    """The PDU cannot be decoded (truncated, not hex, unsupported)."""


# --------------------------------------------------------------------------------------
# building blocks


def pack7(septets: list[int], fill_bits: int = 0) -> bytes:
    """Pack septets LSB-first, after ``fill_bits`` zero bits (UDH alignment)."""
    acc = 0
    nbits = fill_bits
    out = bytearray()
    for s in septets:
        acc |= (s & 0x7F) << nbits
        nbits += 7
        while nbits >= 8:
            out.append(acc & 0xFF)
            acc >>= 8
            nbits -= 8
    if nbits:
        out.append(acc & 0xFF)
    return bytes(out)


def unpack7(data: bytes, count: int, fill_bits: int = 0) -> list[int]:
    """``count`` septets from ``data``, skipping ``fill_bits`` leading bits."""
    value = int.from_bytes(data, "little")
    total = len(data) * 8
    out = []
    for i in range(count):
        pos = fill_bits + 7 * i
        if pos + 7 > total:
            raise PduError("user data shorter than its length says")
        out.append((value >> pos) & 0x7F)
    return out


def _semi_octets(digits: str) -> bytes:
    if len(digits) % 2:
        digits += "F"
    return bytes(int(digits[i + 1] + digits[i], 16) for i in range(0, len(digits), 2))


def _digits(data: bytes, count: int) -> str:
    out = []
    for b in data:
        out.append("0123456789*#abc"[b & 0x0F] if (b & 0x0F) != 0x0F else "")
        out.append("0123456789*#abc"[b >> 4] if (b >> 4) != 0x0F else "")
    return "".join(out)[:count]


TOA_INTERNATIONAL = 0x91
TOA_UNKNOWN = 0x81
TOA_NATIONAL = 0xA1
TOA_ALPHANUMERIC = 0xD0


def encode_address(number: str, toa: int | None = None) -> bytes:
    """TP-DA/TP-OA: digit count, type of address, semi-octets. ``+`` means international.

    Other digit strings go as TON "unknown" (0x81, the number as dialled) unless ``toa`` says otherwise.
    """
    n = number.strip().replace(" ", "").replace("-", "")
    if n.startswith("+"):
        digits, t = n[1:], TOA_INTERNATIONAL
    else:
        digits, t = n, TOA_UNKNOWN
    if toa is not None:
        t = toa
    if not digits or not all(c in "0123456789*#" for c in digits) or len(digits) > 20:
        raise PduError(f"not a phone number: {number!r}")
    return bytes((len(digits), t)) + _semi_octets(digits.replace("*", "A").replace("#", "B"))


def encode_smsc(number: str | None, toa: int | None = None) -> bytes:
    """The SMSC field: ``00`` (use the SIM's SMSC) when ``number`` is empty."""
    if not number:
        return b"\x00"
    a = encode_address(number, toa)
    return bytes((len(a) - 1,)) + a[1:]


def decode_address(buf: bytes, pos: int) -> tuple[str, int, int]:
    """(number, toa, next position) of a TP-OA/DA/RA at ``pos``."""
    try:
        ndigits, toa = buf[pos], buf[pos + 1]
    except IndexError:
        raise PduError("address truncated") from None
    nbytes = (ndigits + 1) // 2
    raw = buf[pos + 2 : pos + 2 + nbytes]
    if len(raw) < nbytes:
        raise PduError("address truncated")
    if (toa & 0x70) == 0x50:  # alphanumeric, GSM 7-bit packed
        text = sms.decode_gsm7(unpack7(raw, ndigits * 4 // 7))
        return text, toa, pos + 2 + nbytes
    digits = _digits(raw, ndigits)
    if (toa & 0x70) == 0x10 and digits:
        digits = "+" + digits
    return digits, toa, pos + 2 + nbytes


def _decode_smsc(buf: bytes) -> tuple[str, int]:
    if not buf:
        raise PduError("empty PDU")
    n = buf[0]
    if n == 0:
        return "", 1
    if len(buf) < 1 + n:
        raise PduError("SMSC field truncated")
    toa = buf[1]
    digits = _digits(buf[2 : 1 + n], (n - 1) * 2)
    if (toa & 0x70) == 0x10:
        digits = "+" + digits
    return digits, 1 + n


def decode_timestamp(b: bytes) -> datetime:
    """TP-SCTS / TP-DT: seven semi-octet fields, time zone in quarter hours."""
    if len(b) < 7:
        raise PduError("timestamp truncated")

    def sw(x: int) -> int:
        lo, hi = x & 0x0F, x >> 4
        if lo > 9 or hi > 9:
            raise PduError("timestamp is not decimal")
        return lo * 10 + hi

    tzb = b[6]
    q = (tzb & 0x07) * 10 + (tzb >> 4)
    if tzb & 0x08:
        q = -q
    try:
        return datetime(
            2000 + sw(b[0]), sw(b[1]), sw(b[2]), sw(b[3]), sw(b[4]), sw(b[5]),
            tzinfo=timezone(timedelta(minutes=15 * q)),
        )
    except ValueError as e:
        raise PduError(f"bad timestamp: {e}") from None


def encode_timestamp(ts: datetime) -> bytes:
    ts = ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)
    q = int((ts.utcoffset() or timedelta()).total_seconds() // 900)
    fields = [ts.year % 100, ts.month, ts.day, ts.hour, ts.minute, ts.second]
    out = bytes(((v % 10) << 4) | (v // 10) for v in fields)
    aq = abs(q)
    tz = ((aq % 10) << 4) | (aq // 10) | (0x08 if q < 0 else 0)
    return out + bytes((tz,))


def relative_validity(period: timedelta) -> int:
    """TP-VP relative format (23.040 §9.2.3.12.1), rounded up to the next step."""
    minutes = max(5, int(-(-period.total_seconds() // 60)))
    if minutes <= 720:
        return -(-minutes // 5) - 1
    if minutes <= 1440:
        return 143 + -(-(minutes - 720) // 30)
    days = -(-minutes // 1440)
    if days <= 30:
        return 166 + days
    return min(255, 192 + -(-days // 7))


# --------------------------------------------------------------------------------------
# data coding scheme


def dcs_alphabet(dcs: int) -> str:
    """"gsm7" | "8bit" | "ucs2" for a TP-DCS (23.038 §4); compressed or reserved → PduError."""
    group = dcs >> 4
    if group <= 0x07:  # general data coding (00xx) and automatic deletion (01xx)
        if dcs & 0x20:
            raise PduError("compressed user data is not supported")
        return ("gsm7", "8bit", "ucs2", "gsm7")[(dcs >> 2) & 0x03]
    if group in (0x0C, 0x0D):
        return "gsm7"
    if group == 0x0E:
        return "ucs2"
    if group == 0x0F:
        return "8bit" if dcs & 0x04 else "gsm7"
    return "8bit"


# --------------------------------------------------------------------------------------
# SMS-SUBMIT


@dataclass(frozen=True, slots=True)
class SubmitPdu:
    hex: str  # SMSC field + TPDU, upper-case hex, what is written after the prompt
    length: int  # TPDU octets, for AT+CMGS=<length>
    text: str  # this part's text
    part: int  # 1-based
    total: int
    encoding: str


def encode_submit(
    to: str,
    text: str,
    *,
    status_report: bool = False,
    validity: timedelta | datetime | None = None,
    smsc: str | None = None,
    concat_ref: int = 0,
    reject_duplicates: bool = False,
    message_ref: int = 0,
    toa: int | None = None,
) -> list[SubmitPdu]:
    """SMS-SUBMIT PDUs for ``text`` to ``to`` (one per part; see the module docstring)."""
    info = sms.analyze(text)
    da = encode_address(to, toa)
    smsc_b = encode_smsc(smsc, toa)
    total = info.segments
    if total > 255:
        raise PduError("text too long: more than 255 parts")
    out = []
    for i, part in enumerate(info.parts, start=1):
        fo = 0x01
        if reject_duplicates:
            fo |= 0x04
        vp = b""
        if isinstance(validity, timedelta):
            fo |= 0x10
            vp = bytes((relative_validity(validity),))
        elif isinstance(validity, datetime):
            fo |= 0x18
            vp = encode_timestamp(validity)
        if status_report:
            fo |= 0x20
        udh = b""
        if total > 1:
            fo |= 0x40
            udh = bytes((0x05, 0x00, 0x03, concat_ref & 0xFF, total, i))
        if info.encoding == "gsm7":
            dcs = 0x00
            septets = sms.encode_gsm7(part)
            fill = (7 - (len(udh) * 8) % 7) % 7 if udh else 0
            ud = udh + pack7(septets, fill)
            udl = (len(udh) * 8 + fill) // 7 + len(septets)
        else:
            dcs = 0x08
            body = part.encode("utf-16-be")
            ud = udh + body
            udl = len(ud)
        tpdu = bytes((fo, message_ref & 0xFF)) + da + bytes((0x00, dcs)) + vp + bytes((udl,)) + ud
        if len(ud) > 140:
            raise PduError("user data over 140 octets")  # cannot happen with sms.analyze's parts
        out.append(SubmitPdu((smsc_b + tpdu).hex().upper(), len(tpdu), part, i, total, info.encoding))
    return out


# --------------------------------------------------------------------------------------
# decoding


@dataclass(frozen=True, slots=True)
class Concat:
    ref: int
    total: int
    seq: int


@dataclass(frozen=True, slots=True)
class Deliver:
    """An SMS-DELIVER: a text from a phone."""

    smsc: str
    sender: str  # "+E164", national digits, or alphanumeric
    sender_toa: int
    timestamp: datetime
    text: str  # this PDU's text (one part when concat is set)
    encoding: str
    concat: Concat | None = None
    pid: int = 0
    dcs: int = 0


@dataclass(frozen=True, slots=True)
class StatusReport:
    """An SMS-STATUS-REPORT about a message we sent, by its TP-MR."""

    smsc: str
    reference: int
    recipient: str
    timestamp: datetime  # when the SC received our message
    discharge: datetime  # when the status was reached
    status: int

    @property
    def delivered(self) -> bool:
        return self.status < 0x20

    @property
    def final(self) -> bool:
        """False while the SC is still trying (0x20-0x3F)."""
        return not 0x20 <= self.status < 0x40

    @property
    def meaning(self) -> str:
        return status_meaning(self.status)


@dataclass(frozen=True, slots=True)
class Submit:
    """An SMS-SUBMIT read back (SIM storage, simulator)."""

    smsc: str
    reference: int
    recipient: str
    recipient_toa: int
    text: str
    encoding: str
    status_report: bool
    concat: Concat | None = None
    validity: int | None = None


_STATUS = {
    0x00: "short message received by the SME",
    0x01: "forwarded by the SC to the SME but the SC is unable to confirm delivery",
    0x02: "short message replaced by the SC",
    0x20: "congestion (still trying)",
    0x21: "SME busy (still trying)",
    0x22: "no response from SME (still trying)",
    0x23: "service rejected (still trying)",
    0x24: "quality of service not available (still trying)",
    0x25: "error in SME (still trying)",
    0x40: "remote procedure error",
    0x41: "incompatible destination",
    0x42: "connection rejected by SME",
    0x43: "not obtainable",
    0x44: "quality of service not available",
    0x45: "no interworking available",
    0x46: "SM validity period expired",
    0x47: "SM deleted by originating SME",
    0x48: "SM deleted by SC administration",
    0x49: "SM does not exist",
    0x60: "congestion (SC gave up)",
    0x61: "SME busy (SC gave up)",
    0x62: "no response from SME (SC gave up)",
    0x63: "service rejected (SC gave up)",
    0x64: "quality of service not available (SC gave up)",
    0x65: "error in SME (SC gave up)",
}


def status_meaning(st: int) -> str:
    """TP-ST in words (23.040 §9.2.3.15)."""
    if st in _STATUS:
        return _STATUS[st]
    if st < 0x20:
        return f"delivered (status 0x{st:02X})"
    if st < 0x40:
        return f"temporary error, SC still trying (status 0x{st:02X})"
    return f"permanent error (status 0x{st:02X})"


def _fix_surrogates(s: str) -> str:
    return s.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def _user_data(buf: bytes, pos: int, dcs: int, udhi: bool) -> tuple[str, str, Concat | None]:
    alphabet = dcs_alphabet(dcs)
    try:
        udl = buf[pos]
    except IndexError:
        raise PduError("user data length missing") from None
    ud = buf[pos + 1 :]
    concat = None
    hdr_len = 0
    if udhi:
        if not ud:
            raise PduError("user data header missing")
        hdr_len = ud[0] + 1
        if hdr_len > len(ud):
            raise PduError("user data header truncated")
        i = 1
        while i + 1 < hdr_len:
            iei, ln = ud[i], ud[i + 1]
            val = ud[i + 2 : i + 2 + ln]
            if iei == 0x00 and ln == 3:
                concat = Concat(val[0], val[1], val[2])
            elif iei == 0x08 and ln == 4:
                concat = Concat((val[0] << 8) | val[1], val[2], val[3])
            i += 2 + ln
        if concat is not None and (concat.total == 0 or concat.seq == 0 or concat.seq > concat.total):
            concat = None  # a malformed concatenation element: treat the part as a whole text
    if alphabet == "gsm7":
        if udl > 160:
            raise PduError(f"user data length {udl} over 160 septets")
        hdr_bits = hdr_len * 8
        hdr_septets = -(-hdr_bits // 7)
        count = udl - hdr_septets
        if count < 0:
            raise PduError("user data length shorter than its header")
        # Real modems return PDUs cut short (gammu at-sms/41): keep the septets that are there.
        septets = unpack7(ud, min(udl, len(ud) * 8 // 7))[hdr_septets:]
        return sms.decode_gsm7(septets), "gsm7", concat
    body = ud[hdr_len:udl]  # a too-long UDL (seen on real modems) just takes what is there
    if alphabet == "ucs2":
        if len(body) % 2:
            body = body[:-1]
        return body.decode("utf-16-be", "surrogatepass"), "ucs2", concat
    return body.decode("latin-1"), "8bit", concat


def decode(pdu_hex: str) -> Deliver | StatusReport | Submit:
    """Decode a PDU as a modem gives it (SMSC field first). Raises ``PduError``."""
    s = pdu_hex.strip().strip('"')  # some modems quote it (gammu at-sms/04)
    try:
        buf = binascii.unhexlify(s)
    except (binascii.Error, ValueError):
        raise PduError("PDU is not hexadecimal") from None
    try:
        smsc, pos = _decode_smsc(buf)
        fo = buf[pos]
        pos += 1
        mti = fo & 0x03
        udhi = bool(fo & 0x40)
        if mti == 0x00:
            sender, toa, pos = decode_address(buf, pos)
            pid, dcs = buf[pos], buf[pos + 1]
            ts = decode_timestamp(buf[pos + 2 : pos + 9])
            text, enc, concat = _user_data(buf, pos + 9, dcs, udhi)
            if concat is None:
                text = _fix_surrogates(text)
            return Deliver(smsc, sender, toa, ts, text, enc, concat, pid, dcs)
        if mti == 0x02:
            mr = buf[pos]
            ra, _toa, pos = decode_address(buf, pos + 1)
            scts = decode_timestamp(buf[pos : pos + 7])
            dt = decode_timestamp(buf[pos + 7 : pos + 14])
            if pos + 14 >= len(buf):
                raise PduError("status missing")
            return StatusReport(smsc, mr, ra, scts, dt, buf[pos + 14])
        if mti == 0x01:
            mr = buf[pos]
            da, toa, pos = decode_address(buf, pos + 1)
            _pid, dcs = buf[pos], buf[pos + 1]
            pos += 2
            vpf = (fo >> 3) & 0x03
            vp = None
            if vpf == 2:
                vp = buf[pos]
                pos += 1
            elif vpf in (1, 3):
                pos += 7
            text, enc, concat = _user_data(buf, pos, dcs, udhi)
            if concat is None:
                text = _fix_surrogates(text)
            return Submit(smsc, mr, da, toa, text, enc, bool(fo & 0x20), concat, vp)
    except IndexError:
        raise PduError("PDU truncated") from None
    raise PduError(f"unsupported message type {mti}")


# --------------------------------------------------------------------------------------
# SMS-DELIVER / STATUS-REPORT encoding (what a network sends: the simulator uses these)


def encode_deliver(
    sender: str,
    text: str,
    timestamp: datetime,
    *,
    smsc: str = "+12125550100",
    concat_ref: int = 0,
) -> list[str]:
    """SMS-DELIVER PDUs (hex, SMSC field first) for ``text`` from ``sender``."""
    info = sms.analyze(text)
    out = []
    for i, part in enumerate(info.parts, start=1):
        fo = 0x04  # MTI deliver, no more messages to send
        udh = b""
        if info.segments > 1:
            fo |= 0x40
            udh = bytes((0x05, 0x00, 0x03, concat_ref & 0xFF, info.segments, i))
        if info.encoding == "gsm7":
            septets = sms.encode_gsm7(part)
            fill = (7 - (len(udh) * 8) % 7) % 7 if udh else 0
            ud = udh + pack7(septets, fill)
            udl = (len(udh) * 8 + fill) // 7 + len(septets)
            dcs = 0x00
        else:
            ud = udh + part.encode("utf-16-be")
            udl = len(ud)
            dcs = 0x08
        tpdu = bytes((fo,)) + encode_address(sender) + bytes((0x00, dcs)) + encode_timestamp(timestamp)
        tpdu += bytes((udl,)) + ud
        out.append((encode_smsc(smsc) + tpdu).hex().upper())
    return out


def encode_status_report(
    reference: int,
    recipient: str,
    submitted: datetime,
    discharged: datetime,
    status: int = 0,
    *,
    smsc: str = "+12125550100",
) -> str:
    """An SMS-STATUS-REPORT PDU (hex, SMSC field first)."""
    tpdu = bytes((0x06, reference & 0xFF)) + encode_address(recipient)
    tpdu += encode_timestamp(submitted) + encode_timestamp(discharged) + bytes((status,))
    return (encode_smsc(smsc) + tpdu).hex().upper()


def tpdu_length(pdu_hex: str) -> int:
    """Octets after the SMSC field (what +CMGS/+CMGR/+CDS announce)."""
    b = bytes.fromhex(pdu_hex)
    return len(b) - 1 - b[0]


# --------------------------------------------------------------------------------------
# reassembly


@dataclass(frozen=True, slots=True)
class Assembled:
    sender: str
    text: str
    timestamp: datetime
    parts: int
    complete: bool
    ref: int = -1  # concatenation reference (-1 for a single-part text)
    total: int = 1

    @property
    def key(self) -> tuple[str, int, int]:
        return (self.sender, self.ref, self.total)


@dataclass
class _Group:
    first_seen: float
    timestamp: datetime
    total: int
    parts: dict[int, str] = field(default_factory=dict)


class Reassembler:
    """Joins concatenated parts by (sender, reference, total); time comes from the caller.

    ``add`` returns the whole text once every part is in; ``expire(now)``
    gives up on groups older than ``max_age`` seconds and returns what arrived
    (with ``complete=False``) so a reply is never lost for one missing part.
    """

    def __init__(self, max_age: float = 24 * 3600.0) -> None:
        self.max_age = max_age
        self._groups: dict[tuple[str, int, int], _Group] = {}

    def __len__(self) -> int:
        return len(self._groups)

    def add(self, msg: Deliver, now: float) -> Assembled | None:
        if msg.concat is None:
            return Assembled(msg.sender, msg.text, msg.timestamp, 1, True)
        key = (msg.sender, msg.concat.ref, msg.concat.total)
        g = self._groups.setdefault(key, _Group(now, msg.timestamp, msg.concat.total))
        g.parts[msg.concat.seq] = msg.text
        g.timestamp = min(g.timestamp, msg.timestamp)
        if len(g.parts) < g.total:
            return None
        del self._groups[key]
        return self._join(key, g, True)

    def expire(self, now: float) -> list[Assembled]:
        out = []
        for key, g in list(self._groups.items()):
            if now - g.first_seen >= self.max_age:
                del self._groups[key]
                out.append(self._join(key, g, False))
        return out

    @staticmethod
    def _join(key: tuple[str, int, int], g: _Group, complete: bool) -> Assembled:
        text = _fix_surrogates("".join(g.parts[k] for k in sorted(g.parts)))
        return Assembled(key[0], text, g.timestamp, len(g.parts), complete, key[1], key[2])
