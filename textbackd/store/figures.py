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

from collections import defaultdict
from datetime import datetime

from textbackd.core.figures import HEADERS, Figures, Report, duration, render, rows  # noqa: F401,E402 - the API
from textbackd.core.model import NOT_COUNTED_STATES, MessageState, TextKind
from textbackd.core.model import SENT_STATES as SENT
from textbackd.core.numbers import normalize
from textbackd.core.settings import Config
from textbackd.store.db import Store

FAILED = (MessageState.FAILED, MessageState.EXPIRED, MessageState.UNKNOWN)


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
        "SELECT to_number, created FROM messages WHERE to_number IN ({marks}) AND kind=? "
        "AND state NOT IN (?,?) AND created>=? ORDER BY created", (TextKind.STAFF, *NOT_COUNTED_STATES, since))
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
    by_week: dict[str, Figures] = defaultdict(Figures)
    opted: dict[int, set[str]] = defaultdict(set)  # id(Figures) → numbers counted
    for c in calls:
        number, ended = c["caller"], c["ended"]
        local = datetime.fromtimestamp(ended, tz=tz).date()
        day = local.isoformat()
        week = "{}-W{:02d}".format(*local.isocalendar()[:2])
        groups = (total, by_day[day], by_line[c["did"]], by_week[week])
        textback = next((m for m in msgs[c["id"]] if m["kind"] == TextKind.TEXTBACK), None)
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
            elif textback is not None and textback["state"] in NOT_COUNTED_STATES:
                g.skipped[textback["reason"] or textback["state"]] += 1
            g.replied += replied
            g.recovered += recovered
            if response is not None:
                g.staff_response.append(response)
            if opted_out and number not in opted[id(g)]:
                opted[id(g)].add(number)
                g.opt_outs += 1
            g.followups += sum(1 for m in msgs[c["id"]] if m["kind"] == TextKind.FOLLOWUP and m["state"] in SENT)
            g.staff_texts += sum(1 for m in msgs[c["id"]] if m["kind"] == TextKind.STAFF and m["state"] in SENT)
    return Report(since, until, line, total, dict(sorted(by_day.items())), dict(sorted(by_line.items())),
                  dict(sorted(by_week.items())))


__all__ = ["Figures", "Report", "compute", "render", "rows", "duration", "HEADERS"]
