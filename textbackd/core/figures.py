"""The owner's figures, as the model holds them: what happened to the calls the office missed.

``compute(store, config, since=..., until=...)`` reads the store once and
returns a ``Report``: the figures for the whole period, per day (business time
zone, by the day the missed call ended) and per line (the number dialled).
Every figure is about the *missed calls* of the period:

* ``missed`` — inbound calls no human answered;
* ``texts`` — text-backs that went out for them (``sent`` or ``delivered``);
  ``send_rate`` = texts / missed;
* ``replied`` — texted calls whose caller texted back (STOP excepted);
  ``reply_rate`` = replied / texts;
* ``recovered`` — missed calls followed by a reply, a call from the caller that
  a human answered, or an answered call from the office to the caller;
  ``recovery_rate`` = recovered / missed;
* ``median_to_text`` — seconds from the end of the missed call to its text;
* ``median_staff_response`` — seconds from a caller's first reply to the first
  staff answer (a ``textbackd reply`` / mail text, or a call from the office);
* ``opt_outs`` — callers of the period who opted out after their missed call;
* ``failures`` — text-backs that did not go: ``failed`` (by the sender's
  reason), ``expired``, ``unknown``; ``skipped`` — why no text was tried (the
  policy's reasons).

``render(report)`` (here) gives the plain-text table the CLI prints and the summary
e-mail carries; ``Report.to_json()`` the ``--json`` form.
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any


@dataclass
class Figures:
    missed: int = 0
    texts: int = 0
    replied: int = 0
    recovered: int = 0
    opt_outs: int = 0
    followups: int = 0
    staff_texts: int = 0
    to_text: list[float] = field(default_factory=list)
    staff_response: list[float] = field(default_factory=list)
    failures: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)

    @property
    def send_rate(self) -> float | None:
        return self.texts / self.missed if self.missed else None

    @property
    def reply_rate(self) -> float | None:
        return self.replied / self.texts if self.texts else None

    @property
    def recovery_rate(self) -> float | None:
        return self.recovered / self.missed if self.missed else None

    @property
    def median_to_text(self) -> float | None:
        return statistics.median(self.to_text) if self.to_text else None

    @property
    def p95_to_text(self) -> float | None:
        """The 95th percentile of the time to text (nearest rank; issue 12's figures page)."""
        if not self.to_text:
            return None
        xs = sorted(self.to_text)
        return xs[max(0, -(-95 * len(xs) // 100) - 1)]

    @property
    def median_staff_response(self) -> float | None:
        return statistics.median(self.staff_response) if self.staff_response else None

    def to_json(self) -> dict[str, Any]:
        def r(x: float | None) -> float | None:
            return None if x is None else round(x, 4)

        return {
            "missed": self.missed,
            "texts": self.texts,
            "send_rate": r(self.send_rate),
            "replied": self.replied,
            "reply_rate": r(self.reply_rate),
            "recovered": self.recovered,
            "recovery_rate": r(self.recovery_rate),
            "median_to_text_s": r(self.median_to_text),
            "median_staff_response_s": r(self.median_staff_response),
            "opt_outs": self.opt_outs,
            "followups": self.followups,
            "staff_texts": self.staff_texts,
            "failures": dict(sorted(self.failures.items())),
            "skipped": dict(sorted(self.skipped.items())),
        }


@dataclass
class Report:
    since: float
    until: float
    line: str | None
    total: Figures
    by_day: dict[str, Figures]
    by_line: dict[str, Figures]
    by_week: dict[str, Figures] = field(default_factory=dict)  # ISO weeks "2026-W48", business time zone

    def to_json(self) -> dict[str, Any]:
        def iso(ts: float) -> str:
            return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")

        return {
            "since": iso(self.since),
            "until": iso(self.until),
            "line": self.line,
            "total": self.total.to_json(),
            "by_day": {k: v.to_json() for k, v in self.by_day.items()},
            "by_line": {k: v.to_json() for k, v in self.by_line.items()},
        }


# --------------------------------------------------------------------------------------
# rendering


def duration(seconds: float | None) -> str:
    """'45s', '12m', '3.5h', '2.0d'; '-' when unknown."""
    if seconds is None:
        return "-"
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f}m"
    if seconds < 36 * 3600:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


HEADERS = ("", "missed", "texts", "sent%", "replied", "reply%", "recovered", "recov%", "to text", "staff", "opt-outs")


def rows(report: Report) -> list[tuple[str, ...]]:
    """The table rows: the total, then each day, then each line."""

    def row(label: str, f: Figures) -> tuple[str, ...]:
        return (label, str(f.missed), str(f.texts), _pct(f.send_rate), str(f.replied), _pct(f.reply_rate),
                str(f.recovered), _pct(f.recovery_rate), duration(f.median_to_text),
                duration(f.median_staff_response), str(f.opt_outs))

    out = [row("all", report.total)]
    out += [row(day, f) for day, f in report.by_day.items()]
    out += [row(f"line {did}", f) for did, f in report.by_line.items()]
    return out


def render(report: Report, tz: Any = timezone.utc) -> str:
    """The report as plain text (fixed-width table, then failures and skip reasons)."""
    table = [HEADERS, *rows(report)]
    widths = [max(len(r[i]) for r in table) for i in range(len(HEADERS))]
    lines = [
        "Missed calls from {} to {}{}".format(
            datetime.fromtimestamp(report.since, tz=tz).strftime("%Y-%m-%d %H:%M"),
            datetime.fromtimestamp(report.until, tz=tz).strftime("%Y-%m-%d %H:%M %Z"),
            f", line {report.line}" if report.line else "",
        ),
        "",
    ]
    for i, r in enumerate(table):
        lines.append("  ".join(c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(r, widths))).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    t = report.total
    lines.append("")
    lines.append(f"follow-ups sent: {t.followups}, staff texts: {t.staff_texts}")
    if t.failures:
        lines.append("texts that did not go: " + ", ".join(f"{k} {v}" for k, v in t.failures.most_common()))
    if t.skipped:
        lines.append("no text because: " + ", ".join(f"{k} {v}" for k, v in t.skipped.most_common()))
    return "\n".join(lines) + "\n"


__all__ = ["Figures", "Report", "render", "rows", "duration", "HEADERS"]
