"""``[[contacts]]``: where the address book comes from (a CSV or vCard file) and how a CSV's columns map."""

from __future__ import annotations

import re
from pathlib import Path

from textbackd.core.settings import ContactColumns, ContactSourceConfig, Section

_FORMATS = ("csv", "vcard")
_D = ContactColumns()


def _names(sec: Section, k: str, default: tuple[str, ...]) -> tuple[str, ...]:
    """A column key: one header name or a list of them."""
    if sec.has(k) and isinstance(sec.data[k], str):
        return (sec.str(k),)
    return sec.strs(k, default)


def parse_contacts(root: Section) -> tuple[ContactSourceConfig, ...]:
    out: list[ContactSourceConfig] = []
    labels: set[str] = set()
    for sec in root.tables("contacts"):
        path = sec.str("path", required=True).strip()
        fmt = sec.str("format", "", choices=("", *_FORMATS))
        if not fmt:
            if path.lower().endswith((".vcf", ".vcard")):
                fmt = "vcard"
            elif path.lower().endswith(".csv"):
                fmt = "csv"
            else:
                raise sec.error("format", 'say "csv" or "vcard" (it cannot be told from the file name)')
        label = sec.str("name") or Path(path).name
        if not re.fullmatch(r"[\w.@+-]+", label):
            raise sec.error("name", f"{label!r} may only use letters, digits, '_', '.', '-', '@', '+'")
        if label in labels:
            raise sec.error("name", f"{label!r} names another contacts source (set name = ...)")
        labels.add(label)
        columns = _D
        if sec.has("columns"):
            if fmt != "csv":
                raise sec.error("columns", "only for format = \"csv\"")
            c = sec.table("columns")
            columns = ContactColumns(
                name=_names(c, "name", _D.name),
                first_name=_names(c, "first_name", _D.first_name),
                last_name=_names(c, "last_name", _D.last_name),
                organization=_names(c, "organization", _D.organization),
                numbers=_names(c, "numbers", _D.numbers),
                tags=_names(c, "tags", _D.tags),
                separator=c.str("separator", _D.separator),
            )
            if not columns.numbers:
                raise c.error("numbers", "name at least one column that holds phone numbers")
            c.done()
        encoding = sec.str("encoding", "utf-8-sig")
        try:
            "".encode(encoding)
        except LookupError:
            raise sec.error("encoding", f"{encoding!r} is not a text encoding Python knows (utf-8, cp1252...)") from None
        tags = tuple(t.strip().lower() for t in sec.strs("tags") if t.strip())
        src = ContactSourceConfig(
            name=label,
            format=fmt,
            path=path,
            encoding=encoding,
            columns=columns,
            tags=tags,
        )
        sec.done()
        out.append(src)
    return tuple(out)
