"""SMS text encodings: the GSM 03.38 default alphabet (with its extension table) and UCS-2.

``analyze(text)`` says how a text will travel: in the 7-bit default alphabet
(160 septets in one message, 153 per part when concatenated, an extension
character such as ``€`` or ``{`` costing two septets) or, as soon as one
character is outside that alphabet, in UCS-2 (70 UTF-16 code units alone, 67
per part; an emoji is a surrogate pair, two units). Parts are cut on character
boundaries only, so an escape sequence or a surrogate pair is never split.

Pure: used by the templates (length warnings) and by the PDU codec.
"""

from __future__ import annotations

from dataclasses import dataclass

# 3GPP TS 23.038 §6.2.1, code points 0x00-0x7F; 0x1B is the escape to the extension table.
GSM7_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
assert len(GSM7_BASIC) == 128

ESCAPE = 0x1B

# 3GPP TS 23.038 §6.2.1.1, default extension table (reached by ESC).
GSM7_EXTENSION = {
    "\f": 0x0A,
    "^": 0x14,
    "{": 0x28,
    "}": 0x29,
    "\\": 0x2F,
    "[": 0x3C,
    "~": 0x3D,
    "]": 0x3E,
    "|": 0x40,
    "€": 0x65,
}

_BASIC_INDEX = {ch: i for i, ch in enumerate(GSM7_BASIC) if i != ESCAPE}
_EXT_CHARS = {v: k for k, v in GSM7_EXTENSION.items()}

GSM7_SINGLE = 160
GSM7_MULTI = 153  # 160 - 7 septets for the 6-octet concatenation UDH (8-bit reference)
UCS2_SINGLE = 70
UCS2_MULTI = 67  # (140 - 6) / 2


@dataclass(frozen=True, slots=True)
class SmsInfo:
    """How a text travels: encoding, size in units, number of segments and the parts' texts."""

    encoding: str  # "gsm7" | "ucs2"
    units: int  # septets (gsm7) or UTF-16 code units (ucs2) of the whole text
    segments: int
    parts: tuple[str, ...]

    @property
    def per_segment(self) -> int:
        """The unit budget of each segment at this segment count."""
        if self.encoding == "gsm7":
            return GSM7_SINGLE if self.segments == 1 else GSM7_MULTI
        return UCS2_SINGLE if self.segments == 1 else UCS2_MULTI


def gsm7_cost(ch: str) -> int | None:
    """Septets ``ch`` takes in the default alphabet (1 or 2), None when it is not in it."""
    if ch in _BASIC_INDEX:
        return 1
    if ch in GSM7_EXTENSION:
        return 2
    return None


def is_gsm7(text: str) -> bool:
    return all(gsm7_cost(ch) is not None for ch in text)


def non_gsm7_chars(text: str) -> tuple[str, ...]:
    """The distinct characters that force UCS-2, in order of appearance (for warnings)."""
    seen: dict[str, None] = {}
    for ch in text:
        if gsm7_cost(ch) is None:
            seen.setdefault(ch, None)
    return tuple(seen)


def ucs2_cost(ch: str) -> int:
    """UTF-16 code units of one code point: 2 for a surrogate pair (emoji), else 1."""
    return 2 if ord(ch) > 0xFFFF else 1


def encode_gsm7(text: str) -> list[int]:
    """Septet values (0-127) of ``text``; ValueError for a character outside the alphabet."""
    out: list[int] = []
    for ch in text:
        i = _BASIC_INDEX.get(ch)
        if i is not None:
            out.append(i)
            continue
        e = GSM7_EXTENSION.get(ch)
        if e is None:
            raise ValueError(f"{ch!r} is not in the GSM 7-bit default alphabet")
        out.extend((ESCAPE, e))
    return out


def decode_gsm7(septets: list[int] | bytes) -> str:
    """Text of septet values. An unknown escape gives the basic character (23.038), a trailing ESC a space."""
    out: list[str] = []
    it = iter(septets)
    for s in it:
        s &= 0x7F
        if s == ESCAPE:
            nxt = next(it, None)
            if nxt is None:
                out.append(" ")
                break
            nxt &= 0x7F
            out.append(_EXT_CHARS.get(nxt, " " if nxt == ESCAPE else GSM7_BASIC[nxt]))
        else:
            out.append(GSM7_BASIC[s])
    return "".join(out)


def _split(text: str, cost, limit: int) -> tuple[str, ...]:
    parts: list[str] = []
    cur: list[str] = []
    used = 0
    for ch in text:
        c = cost(ch)
        if used + c > limit:
            parts.append("".join(cur))
            cur, used = [], 0
        cur.append(ch)
        used += c
    parts.append("".join(cur))
    return tuple(parts)


def analyze(text: str) -> SmsInfo:
    """Encoding, size and parts of ``text`` as an SMS (see the module docstring)."""
    if is_gsm7(text):
        units = sum(gsm7_cost(ch) or 0 for ch in text)
        if units <= GSM7_SINGLE:
            return SmsInfo("gsm7", units, 1, (text,))
        parts = _split(text, gsm7_cost, GSM7_MULTI)
        return SmsInfo("gsm7", units, len(parts), parts)
    units = sum(ucs2_cost(ch) for ch in text)
    if units <= UCS2_SINGLE:
        return SmsInfo("ucs2", units, 1, (text,))
    parts = _split(text, ucs2_cost, UCS2_MULTI)
    return SmsInfo("ucs2", units, len(parts), parts)
