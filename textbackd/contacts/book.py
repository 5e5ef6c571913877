"""The office's address book: every ``[[contacts]]`` source read into one lookup by E.164 number.

``load(config)`` reads each source in order (``readers.py``) and returns a ``ContactBook`` and a
``LoadReport``. A number in two contacts belongs to the first (sources in config order, rows in
file order); the other is reported as a duplicate. A source that cannot be read at all is
reported; on a reload it keeps what it held before (``previous``), so a file caught half-written
does not make the office forget everyone.

The daemon hands ``book.find`` to the pipeline (the policy gets the ``Contact`` as data), reloads
on SIGHUP and when a file changes (``signature``). ``textbackd contacts check|find`` print the
same report.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from textbackd.contacts.readers import Refused, SourceError, read
from textbackd.core.model import Contact
from textbackd.core.settings import Config, ContactSourceConfig


@dataclass(frozen=True, slots=True)
class SourceReport:
    name: str
    where: str  # the path or URL
    contacts: int
    numbers: int
    refused: tuple[Refused, ...] = ()
    error: str = ""  # the whole source could not be read
    kept_previous: bool = False  # ... and the contacts loaded before were kept


@dataclass(frozen=True, slots=True)
class Duplicate:
    number: str
    kept: Contact
    dropped: Contact


@dataclass(frozen=True, slots=True)
class LoadReport:
    sources: tuple[SourceReport, ...] = ()
    duplicates: tuple[Duplicate, ...] = ()

    @property
    def contacts(self) -> int:
        return sum(s.contacts for s in self.sources)

    @property
    def refused(self) -> tuple[Refused, ...]:
        return tuple(r for s in self.sources for r in s.refused)


@dataclass
class ContactBook:
    by_number: dict[str, Contact] = field(default_factory=dict)
    by_source: dict[str, list[Contact]] = field(default_factory=dict)
    report: LoadReport = field(default_factory=LoadReport)

    def find(self, number: str) -> Contact | None:
        """The contact one of whose numbers is ``number`` (E.164), or None."""
        return self.by_number.get(number)

    def __len__(self) -> int:
        return sum(len(v) for v in self.by_source.values())


def _where(src: ContactSourceConfig) -> str:
    return src.path or src.url


def load(config: Config, previous: ContactBook | None = None) -> ContactBook:
    region = config.business.default_region
    book = ContactBook()
    reports: list[SourceReport] = []
    duplicates: list[Duplicate] = []
    for src in config.contacts:
        kept = False
        try:
            contacts, refused = read(src, region)
            error = ""
        except SourceError as e:
            contacts, refused, error = [], [], str(e)
            if previous is not None and previous.by_source.get(src.name):
                contacts, kept = previous.by_source[src.name], True
        book.by_source[src.name] = contacts
        n_numbers = 0
        for c in contacts:
            for number in c.numbers:
                n_numbers += 1
                have = book.by_number.get(number)
                if have is None:
                    book.by_number[number] = c
                elif have is not c:
                    duplicates.append(Duplicate(number, have, c))
        reports.append(SourceReport(src.name, _where(src), len(contacts), n_numbers, tuple(refused), error, kept))
    book.report = LoadReport(tuple(reports), tuple(duplicates))
    return book


def signature(config: Config) -> tuple:
    """What changes when a contacts file changes (mtime and size of each file; missing files count too)."""
    out = []
    for src in config.contacts:
        if not src.path:
            continue
        try:
            st = os.stat(src.path)
            out.append((src.path, st.st_mtime_ns, st.st_size))
        except OSError:
            out.append((src.path, None, None))
    return tuple(out)


def describe(report: LoadReport) -> list[str]:
    """The report for people (``textbackd contacts check``, the log after a reload)."""
    lines = []
    for s in report.sources:
        if s.error:
            lines.append(f"{s.name}: {s.error}" + (f" (kept the {s.contacts} contacts loaded before)" if s.kept_previous
                                                   else ""))
            continue
        lines.append(f"{s.name}: {s.contacts} contacts, {s.numbers} numbers, {len(s.refused)} refused ({s.where})")
        lines.extend(f"  refused {r}" for r in s.refused)
    for d in report.duplicates:
        lines.append(f"duplicate {d.number}: {d.kept.name} ({d.kept.source}) kept, {d.dropped.name} "
                     f"({d.dropped.source}) ignored for it")
    total_numbers = sum(s.numbers for s in report.sources)
    lines.append(f"in all: {report.contacts} contacts, {total_numbers} numbers, {len(report.duplicates)} duplicate "
                 f"number(s), {len(report.refused)} refused")
    return lines
