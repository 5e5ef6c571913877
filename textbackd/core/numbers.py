"""Phone numbers: E.164 normalisation and "can this number get a text?".

Pure functions over libphonenumber. The PBX gives caller IDs in every shape:
``+12125550101``, ``2125550101``, ``0012125550101``, ``anonymous``, ``101``,
``<unknown>``. ``normalize`` turns what it can into E.164 and leaves the rest
as it was; ``textable`` says why a number cannot get a text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberType

_WITHHELD = {
    "",
    "anonymous",
    "restricted",
    "private",
    "unknown",
    "<unknown>",
    "unavailable",
    "withheld",
    "blocked",
    "0000000000",
}

_JUNK = re.compile(r"[\s().\-/]")


def is_withheld(raw: str | None) -> bool:
    return raw is None or raw.strip().lower() in _WITHHELD


@lru_cache(maxsize=8192)  # pure, and the same few thousand callers come back all day (replay: 0.45 s of 3.5 s)
def normalize(raw: str | None, region: str = "US") -> str:
    """E.164 for anything libphonenumber can read as a possible number, else ``raw`` stripped.

    ``00`` and ``011`` international prefixes are understood. Short numbers
    (extensions like ``101``) and withheld IDs come back unchanged.
    """
    if raw is None:
        return ""
    s = raw.strip()
    if is_withheld(s):
        return s
    s = _JUNK.sub("", s)
    if s.startswith("tel:"):
        s = s[4:]
    if s.startswith("sip:"):
        s = s[4:].split("@", 1)[0]
    digits = s[1:] if s.startswith("+") else s
    if not digits.isdigit() or len(digits) < 6:
        return raw.strip()
    try:
        if s.startswith("+"):
            num = phonenumbers.parse(s, None)
        elif s.startswith("00"):
            num = phonenumbers.parse("+" + s[2:], None)
        else:
            num = phonenumbers.parse(s, region)
    except NumberParseException:
        return raw.strip()
    if not phonenumbers.is_possible_number(num):
        return raw.strip()
    return phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)


@dataclass(frozen=True, slots=True)
class NumberInfo:
    e164: str
    region: str | None  # ISO region of the number itself ("US", "JM" for +1 876...)
    kind: str  # "mobile", "fixed_line_or_mobile", "premium_rate", ...


_KIND_NAMES = {
    PhoneNumberType.FIXED_LINE: "fixed_line",
    PhoneNumberType.MOBILE: "mobile",
    PhoneNumberType.FIXED_LINE_OR_MOBILE: "fixed_line_or_mobile",
    PhoneNumberType.TOLL_FREE: "toll_free",
    PhoneNumberType.PREMIUM_RATE: "premium_rate",
    PhoneNumberType.SHARED_COST: "shared_cost",
    PhoneNumberType.VOIP: "voip",
    PhoneNumberType.PERSONAL_NUMBER: "personal_number",
    PhoneNumberType.PAGER: "pager",
    PhoneNumberType.UAN: "uan",
    PhoneNumberType.VOICEMAIL: "voicemail",
    PhoneNumberType.UNKNOWN: "unknown",
}


@lru_cache(maxsize=8192)
def info(number: str, region: str = "US") -> NumberInfo | None:
    """Region and type of a valid number, or None when it is not a valid number."""
    e164 = normalize(number, region)
    if not e164.startswith("+"):
        return None
    try:
        parsed = phonenumbers.parse(e164, None)
    except NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return NumberInfo(
        e164=e164,
        region=phonenumbers.region_code_for_number(parsed),
        kind=_KIND_NAMES.get(phonenumbers.number_type(parsed), "unknown"),
    )


NOT_TEXTABLE_KINDS = {"premium_rate", "shared_cost", "pager", "uan", "voicemail", "toll_free"}


def textable(number: str, region: str = "US") -> tuple[bool, str]:
    """(True, e164) or (False, reason) for a destination of a text."""
    if is_withheld(number):
        return False, "withheld_number"
    i = info(number, region)
    if i is None:
        return False, "invalid_number"
    if i.kind in NOT_TEXTABLE_KINDS:
        return False, f"number_type_{i.kind}"
    return True, i.e164


def mask(number: str, mode: str = "masked") -> str:
    """Number for logs: all but the last 4 digits hidden unless mode == "full"."""
    if mode == "full" or len(number) <= 4:
        return number
    return "*" * (len(number) - 4) + number[-4:]
