"""Reading one contacts source: a CSV file with a header row, or a vCard 3.0/4.0 file (vobject).

Each reader gives the contacts it could read and, for every row it could not, where (file and
line) and why. A bad row is skipped, never fatal: a malformed quote, a row with more fields than
the header, a contact with no name or no phone number. A number that cannot be read is left out
of its contact (and reported) while the contact's other numbers are kept. Numbers are E.164,
read with ``business.default_region`` (``(212) 555-0101`` → ``+12125550101``).
"""

from __future__ import annotations

import csv
import fnmatch
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from textbackd.core import numbers
from textbackd.core.errors import TextbackError
from textbackd.core.model import Contact
from textbackd.core.settings import ContactColumns, ContactSourceConfig


class SourceError(TextbackError):
    """The whole source could not be read (missing file, wrong encoding, no header)."""


@dataclass(frozen=True, slots=True)
class Refused:
    """A row (or one number of a row) left out, with where it is and why."""

    where: str  # "contacts.csv:7"
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


def read(src: ContactSourceConfig, region: str) -> tuple[list[Contact], list[Refused]]:
    if src.format == "csv":
        return read_csv(src, region)
    if src.format == "vcard":
        return read_vcard(src, region)
    raise SourceError(f"{src.name}: contacts format {src.format!r} is not supported")


def _text(src: ContactSourceConfig) -> str:
    try:
        return Path(src.path).read_text(encoding=src.encoding)
    except FileNotFoundError:
        raise SourceError(f"{src.path}: file not found") from None
    except PermissionError:
        raise SourceError(f"{src.path}: permission denied (is it readable by the textbackd user?)") from None
    except UnicodeDecodeError as e:
        raise SourceError(f"{src.path}: not {src.encoding} text (byte {e.start}); set encoding = \"cp1252\" "
                          "or whatever the exporting program wrote") from None
    except OSError as e:
        raise SourceError(f"{src.path}: cannot read it: {e.strerror}") from None


def _tags(cells: list[str], separator: str) -> tuple[str, ...]:
    """Tags from cells like Google's ``* myContacts ::: Vendors`` or ``vendor; plumbing``: lower case, in order."""
    seps = sorted({":::", ";", ",", separator}, key=len, reverse=True)
    split = re.compile("|".join(re.escape(x) for x in seps))
    out: list[str] = []
    for cell in cells:
        for part in split.split(cell):
            tag = part.strip().lstrip("*").strip().lower()
            if tag and tag not in out:
                out.append(tag)
    return tuple(out)


def _read_numbers(raw: list[str], region: str, where: str, refused: list[Refused]) -> tuple[str, ...]:
    """The E.164 numbers of a row; one that cannot be read is reported (when the row has others to keep)."""
    out: list[str] = []
    bad: list[str] = []
    for value in raw:
        v = value.strip()
        if not v:
            continue
        e164 = numbers.normalize(v, region)
        if not e164.startswith("+"):
            bad.append(v)
        elif e164 not in out:
            out.append(e164)
    if out:
        refused.extend(Refused(where, f"{v!r} is not a phone number (the row's other numbers are kept)") for v in bad)
    elif bad:
        refused.append(Refused(where, f"{', '.join(map(repr, bad))} is not a phone number; row skipped"))
    return tuple(out)


def _first_word(name: str) -> str:
    return name.split()[0] if name.split() else ""


# -- CSV ----------------------------------------------------------------------------------


def _columns(header: list[str], patterns: tuple[str, ...]) -> list[int]:
    """Indexes of the header cells matching any pattern (case-insensitive, ``*`` wildcard), in header order."""
    low = [h.strip().lower() for h in header]
    return [i for i, h in enumerate(low) if any(fnmatch.fnmatchcase(h, p.lower()) for p in patterns)]


def _records(lines: list[str], first: int) -> Iterator[tuple[int, list[str] | csv.Error]]:
    """(line number where the record starts, fields or the error): a malformed record is given as its error
    and reading goes on with the line after its first one, so a stray quote cannot eat the rest of the file."""
    i = first
    while i < len(lines):
        reader = csv.reader(lines[i:], strict=True)
        consumed = 0
        try:
            for row in reader:
                yield i + consumed + 1, row
                consumed = reader.line_num
        except csv.Error as e:
            yield i + consumed + 1, e
            i += consumed + 1
            continue
        return


def read_csv(src: ContactSourceConfig, region: str) -> tuple[list[Contact], list[Refused]]:
    lines = _text(src).splitlines(keepends=True)
    name = Path(src.path).name
    try:
        header = next(csv.reader(lines[:1], strict=True))
    except (StopIteration, csv.Error):
        raise SourceError(f"{src.path}: no header row (the first line names the columns)") from None
    cols: ContactColumns = src.columns
    idx = {k: _columns(header, getattr(cols, k)) for k in ("name", "first_name", "last_name", "organization",
                                                           "numbers", "tags")}
    if not idx["numbers"]:
        raise SourceError(f"{src.path}: no column of phone numbers (looked for {', '.join(cols.numbers)}; "
                          "set [contacts.columns] numbers = [...])")
    if not (idx["name"] or idx["first_name"] or idx["last_name"] or idx["organization"]):
        raise SourceError(f"{src.path}: no column of names (looked for {', '.join(cols.name + cols.first_name)})")
    contacts: list[Contact] = []
    refused: list[Refused] = []
    for line, row in _records(lines, 1):
        where = f"{name}:{line}"
        if isinstance(row, csv.Error):
            refused.append(Refused(where, f"malformed CSV ({row}); row skipped"))
            continue
        if not any(c.strip() for c in row):
            continue
        if len(row) > len(header):
            refused.append(Refused(where, f"{len(row)} fields but the header has {len(header)}; row skipped"))
            continue
        row = row + [""] * (len(header) - len(row))
        pick = lambda k: next((row[i].strip() for i in idx[k] if row[i].strip()), "")  # noqa: E731
        first, last, org = pick("first_name"), pick("last_name"), pick("organization")
        full = pick("name") or " ".join(p for p in (first, last) if p) or org
        if not full:
            refused.append(Refused(where, "no name; row skipped"))
            continue
        raw_numbers = [part for i in idx["numbers"] for part in re.split(re.escape(cols.separator) + r"|\n", row[i])]
        nums = _read_numbers(raw_numbers, region, where, refused)
        if not nums:
            if not any(p.strip() for p in raw_numbers):
                refused.append(Refused(where, f"{full}: no phone number; row skipped"))
            continue
        first_name = first or (_first_word(full) if (pick("name") or last) else "")
        tags = _tags([row[i] for i in idx["tags"]], cols.separator)
        contacts.append(Contact(full, first_name, nums, tuple(dict.fromkeys(tags + src.tags)), where))
    return contacts, refused


# -- vCard --------------------------------------------------------------------------------


def _cards(lines: list[str]) -> Iterator[tuple[int, str | None, str]]:
    """(line of BEGIN:VCARD, the card's text or None, why not) for each card in the file."""
    start: int | None = None
    buf: list[str] = []
    for n, line in enumerate(lines, 1):
        word = line.strip().upper()
        if word == "BEGIN:VCARD":
            if start is not None:
                yield start, None, "BEGIN:VCARD without END:VCARD; card skipped"
            start, buf = n, [line]
        elif start is not None:
            buf.append(line)
            if word == "END:VCARD":
                yield start, "".join(buf), ""
                start, buf = None, []
        elif word:
            yield n, None, "a line outside any BEGIN:VCARD … END:VCARD; skipped"
    if start is not None:
        yield start, None, "BEGIN:VCARD without END:VCARD at the end of the file; card skipped"


def _tel(value: str) -> str:
    v = value.strip()
    if v.lower().startswith("tel:"):
        v = v[4:]
    return v.split(";", 1)[0]  # tel:+1-418-656-9254;ext=102


def read_vcard(src: ContactSourceConfig, region: str) -> tuple[list[Contact], list[Refused]]:
    import vobject

    text = _text(src)
    name = Path(src.path).name
    contacts: list[Contact] = []
    refused: list[Refused] = []
    for line, card_text, why in _cards(text.splitlines(keepends=True)):
        where = f"{name}:{line}"
        if card_text is None:
            refused.append(Refused(where, why))
            continue
        try:
            card = vobject.readOne(card_text, allowQP=True)
        except Exception as e:  # noqa: BLE001 - vobject raises several kinds for a malformed card
            refused.append(Refused(where, f"malformed vCard ({type(e).__name__}: {str(e).splitlines()[0][:120]}); "
                                          "card skipped"))
            continue
        c = card.contents
        fn = c["fn"][0].value.strip() if c.get("fn") and isinstance(c["fn"][0].value, str) else ""
        given = family = ""
        if c.get("n") and not isinstance(c["n"][0].value, str):
            n = c["n"][0].value
            given, family = " ".join(_as_list(n.given)).strip(), " ".join(_as_list(n.family)).strip()
        org = ""
        if c.get("org"):
            org = " ".join(_as_list(c["org"][0].value)).strip()
        full = fn or " ".join(p for p in (given, family) if p) or org
        if not full:
            refused.append(Refused(where, "no name (FN, N or ORG); card skipped"))
            continue
        tels = [_tel(t.value) for t in c.get("tel", []) if isinstance(t.value, str)]
        nums = _read_numbers(tels, region, where, refused)
        if not nums:
            if not any(t.strip() for t in tels):
                refused.append(Refused(where, f"{full}: no TEL; card skipped"))
            continue
        first_name = given or (_first_word(full) if (fn and fn != org) or family else "")
        cats = [", ".join(_as_list(p.value)) for p in c.get("categories", [])]
        tags = _tags(cats, ",")
        contacts.append(Contact(full, first_name, nums, tuple(dict.fromkeys(tags + src.tags)), where))
    return contacts, refused


def _as_list(v: object) -> list[str]:
    if isinstance(v, (list, tuple)):
        return [str(x) for x in v if str(x)]
    return [str(v)] if v else []
