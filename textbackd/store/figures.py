"""The owner's figures: what happened to the calls the office missed.

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

``render(report)`` gives the plain-text table the CLI prints and the summary
e-mail carries; ``Report.to_json()`` the ``--json`` form.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from textbackd.core.numbers import normalize
from textbackd.core.settings import Config
from textbackd.store.db import Store

SENT = ("sent", "delivered")
FAILED = ("failed", "expired", "unknown")


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


def _failure_key(state: str, reason: str) -> str:
    if state == "expired":
        return "expired"
    if state == "unknown":
        return "outcome_unknown"
    # "modem1: CMS 38 ..." → keep the sender's words, short enough for a table
    return (reason or "failed").strip()[:60]


def compute(store: Store, config: Config, *, since: float, until: float, line: str | None = None) -> Report:
    """The figures for the missed calls that ended in ``[since, until)`` (optionally on one line)."""
    db = store.db
    region = config.business.default_region
    tz = config.business.tz
    calls = db.execute(
        "SELECT * FROM calls WHERE direction='inbound' AND missed=1 AND ended>=? AND ended<? ORDER BY ended",
        (since, until),
    ).fetchall()
    if line:
        want = normalize(line, region)
        calls = [c for c in calls if c["did"] == line or normalize(c["did"], region) == want]
    callers = sorted({c["caller"] for c in calls})
    marks = ",".join("?" * len(callers))

    def by_number(sql: str, args: tuple = ()) -> dict[str, list]:
        out: dict[str, list] = defaultdict(list)
        if callers:
            for r in db.execute(sql.format(marks=marks), (*callers, *args)):
                out[r[0]].append(r)
        return out

    # everything after ``since`` that can answer a missed call, by number
    replies = by_number(
        "SELECT from_number, received_at FROM incoming WHERE from_number IN ({marks}) AND keyword<>'stop' "
        "AND received_at>=? ORDER BY received_at", (since,))
    answered_in = by_number(
        "SELECT caller, started FROM calls WHERE caller IN ({marks}) AND direction='inbound' "
        "AND outcome='answered' AND started>=? ORDER BY started", (since,))
    office = by_number(
        "SELECT did, started, outcome FROM calls WHERE did IN ({marks}) AND direction='outbound' "
        "AND started>=? ORDER BY started", (since,))
    staff = by_number(
        "SELECT to_number, created FROM messages WHERE to_number IN ({marks}) AND kind='staff' "
        "AND state NOT IN ('skipped','cancelled') AND created>=? ORDER BY created", (since,))
    opt_outs = by_number(
        "SELECT number, at FROM opt_out_events WHERE number IN ({marks}) AND active=1 AND at>=? ORDER BY at",
        (since,))
    msgs: dict[str, list] = defaultdict(list)
    ids = [c["id"] for c in calls]
    for i in range(0, len(ids), 500):
        chunk = ids[i : i + 500]
        for m in db.execute(
            f"SELECT call_id, kind, state, reason, sent_at FROM messages WHERE call_id IN ({','.join('?' * len(chunk))})",
            chunk,
        ):
            msgs[m["call_id"]].append(m)

    total = Figures()
    by_day: dict[str, Figures] = defaultdict(Figures)
    by_line: dict[str, Figures] = defaultdict(Figures)
    opted: dict[int, set[str]] = defaultdict(set)  # id(Figures) → numbers counted
    for c in calls:
        number, ended = c["caller"], c["ended"]
        day = datetime.fromtimestamp(ended, tz=tz).date().isoformat()
        groups = (total, by_day[day], by_line[c["did"]])
        textback = next((m for m in msgs[c["id"]] if m["kind"] == "textback"), None)
        texted = textback is not None and textback["state"] in SENT
        first_reply = next((r[1] for r in replies[number] if r[1] > ended), None)
        replied = texted and first_reply is not None and first_reply >= (textback["sent_at"] or ended)
        recovered = (
            first_reply is not None
            or any(r[1] > ended for r in answered_in[number])
            or any(r[1] > ended and r[2] == "answered" for r in office[number])
        )
        response = None
        if first_reply is not None:
            answers = [r[1] for r in staff[number] if r[1] >= first_reply]
            answers += [r[1] for r in office[number] if r[1] >= first_reply]
            response = min(answers) - first_reply if answers else None
        opted_out = any(r[1] > ended for r in opt_outs[number])
        for g in groups:
            g.missed += 1
            if texted:
                g.texts += 1
                if textback["sent_at"] is not None:
                    g.to_text.append(max(0.0, textback["sent_at"] - ended))
            elif textback is not None and textback["state"] in FAILED:
                g.failures[_failure_key(textback["state"], textback["reason"])] += 1
            elif textback is not None and textback["state"] in ("skipped", "cancelled"):
                g.skipped[textback["reason"] or textback["state"]] += 1
            g.replied += replied
            g.recovered += recovered
            if response is not None:
                g.staff_response.append(response)
            if opted_out and number not in opted[id(g)]:
                opted[id(g)].add(number)
                g.opt_outs += 1
            g.followups += sum(1 for m in msgs[c["id"]] if m["kind"] == "followup" and m["state"] in SENT)
            g.staff_texts += sum(1 for m in msgs[c["id"]] if m["kind"] == "staff" and m["state"] in SENT)
    return Report(since, until, line, total, dict(sorted(by_day.items())), dict(sorted(by_line.items())))


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


__all__ = ["Figures", "Report", "compute", "render", "rows", "duration", "HEADERS"]
