"""Replay a recorded PBX byte stream through the same parser and tracker the daemon uses.

Each PBX kind provides ``read_events(path)`` (``PbxKind`` in ``pbx/base.py``), which
yields ``(event, arrival_epoch_seconds)`` from a capture file (``.gz`` transparently).
This module feeds the tracker and returns the finished calls in the order they finished.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from itertools import islice
from pathlib import Path

from textbackd.core.figures import Figures, duration
from textbackd.core.model import Call, Contact
from textbackd.core.settings import Config
from textbackd.pbx import registry as pbx_kinds
from textbackd.pbx.base import open_trace
from textbackd.pbx.registry import make_tracker

__all__ = ["open_trace", "replay_calls", "replay_decisions"]


def replay_calls(
    path: str | Path, config: Config, pbx: str | None = None, *, start: float | None = None
) -> Iterator[Call]:
    """The calls of a capture in the order they finished.

    ``start`` (epoch seconds) moves the whole capture in time so its first event
    happens then, e.g. to see how business hours would treat it.
    """
    kind = pbx or config.pbx.kind
    source = pbx_kinds.get(kind)
    if kind != config.pbx.kind:
        from dataclasses import replace

        config = replace(config, pbx=replace(config.pbx, kind=kind))
    tracker = make_tracker(config)
    last = 0.0
    offset: float | None = None
    for event, at in source.read_events(path):
        if start is not None:
            if offset is None:
                offset = start - at
            at += offset
        last = max(last, at)
        yield from tracker.feed(event, at)
        # expiry is driven by event time, exactly as the daemon drives it by its clock
    yield from tracker.flush(last)


BATCH = 500  # calls per transaction of the replay's scratch store
SPOOL_AT = 5_000  # calls waiting in memory for a text's fate (~1.5 KB each); more wait on the scratch store's disk


def replay_decisions(
    path: str | Path, config: Config, pbx: str | None = None, *, start: float | None = None,
    contacts: Callable[[str], Contact | None] | None = None,
) -> Iterator[tuple[Call, dict]]:
    """Each call with what the daemon would have done, in the order the calls finished.

    The daemon's own ``Pipeline`` runs on a scratch store (``Store.scratch()``: a temporary file, never
    synced, written in batches of ``BATCH`` calls), at the time each call ended, and the outbox is
    simulated in event time: a scheduled text is rechecked at its send time (a call-back answered within
    the grace cancels it) and then counts as sent for later decisions (dedupe, caps). The dict is
    ``pipeline.as_action`` plus, for texts, ``sent`` (true) or ``cancelled`` (the recheck's reason). With
    ``contacts`` (the address book's lookup) a known caller's call carries the contact's name, as the store would.
    """
    from textbackd.core.model import MessageState
    from textbackd.daemon.pipeline import Pipeline, as_action
    from textbackd.store.db import Store
    from textbackd.store.spool import Spool

    store = Store.scratch()
    pipe = Pipeline(store, config, contacts)
    spool = Spool(store)
    # entries [call, action, settled, message id, spool seq]: in memory up to SPOOL_AT, then on the spool, in the
    # order the calls finished; a text's entry is in ``texts`` until its fate is known
    waiting: deque[list] = deque()
    texts: dict[int, list] = {}
    next_due = float("inf")  # only this replay writes the store: no text is due before this

    def deliver(until: float) -> None:
        nonlocal next_due
        if until < next_due:
            return
        while due := store.due_messages(until, limit=1000):
            for m in due:
                reason = pipe.recheck(m, m.send_at)
                entry = texts.pop(m.id, None)
                if reason:
                    store.transition(m.id, MessageState.CANCELLED, now=m.send_at, detail=reason)
                    if entry:
                        entry[1]["cancelled"] = reason
                else:
                    store.transition(m.id, MessageState.SENDING, now=m.send_at)
                    store.transition(m.id, MessageState.SENT, now=m.send_at, sent_at=m.send_at, sender="replay")
                    if entry:
                        entry[1]["sent"] = True
                if entry:
                    entry[2] = True
                    if entry[4] is not None:
                        spool.replace(entry[4], entry)
        nxt = store.next_due_at()
        next_due = float("inf") if nxt is None else nxt

    def park(entry: list) -> None:
        if spool.size or len(waiting) >= SPOOL_AT:
            entry[4] = spool.push(entry)
        else:
            waiting.append(entry)

    def ready() -> Iterator[tuple[Call, dict]]:
        while True:
            while waiting and waiting[0][2]:
                call, action, *_ = waiting.popleft()
                yield call, action
            if waiting or not spool.size:
                return
            for entry in spool.take(SPOOL_AT):
                entry[4] = None
                if not entry[2]:
                    texts[entry[3]] = entry
                waiting.append(entry)

    calls = replay_calls(path, config, pbx, start=start)
    try:
        more = True
        while more:
            more = False
            with store.batch():
                for call in islice(calls, BATCH):
                    more = True
                    now = call.ended.timestamp()
                    deliver(now)
                    yield from ready()
                    out = pipe.handle_call(call, now)
                    action = as_action(out.decision)
                    entry = [out.call, action, True, out.message_id, None]
                    if action.get("action") == "text" and out.message_id is not None:
                        entry[2] = False
                        texts[out.message_id] = entry
                        next_due = min(next_due, out.decision.send_at.timestamp())
                    park(entry)
                    yield from ready()
        with store.batch():
            deliver(float("inf"))
            yield from ready()
    finally:
        store.close()


def outcome_of(action: dict | None) -> str:
    """One word (and its reason) for what a call led to: ``texted``, ``cancelled: <reason>``,
    ``not texted: <reason>``, ``none`` (already decided), ``calls only`` (no decision asked)."""
    if action is None:
        return "calls only"
    kind = action.get("action")
    if kind == "text":
        if action.get("cancelled"):
            return f"cancelled: {action['cancelled']}"
        return "texted" if action.get("sent") else "scheduled"
    if kind == "skip":
        return f"not texted: {action.get('reason') or 'unknown'}"
    return "none"


class Totals:
    """What a replay led to, counted: calls, missed calls, and each ``outcome_of`` (``--summary``, ``--compare``)."""

    def __init__(self) -> None:
        self.calls = 0
        self.missed = 0
        self.outcomes: dict[str, int] = {}
        self.delays: list[float] = []  # seconds from each texted call's end to its text's send time

    def add(self, call: Call, action: dict | None) -> str:
        self.calls += 1
        self.missed += call.missed
        o = outcome_of(action)
        self.outcomes[o] = self.outcomes.get(o, 0) + 1
        if o == "texted" and action and action.get("send_at"):
            self.delays.append((datetime.fromisoformat(action["send_at"]) - call.ended).total_seconds())
        return o

    def time_to_text(self) -> list[tuple[str, str]]:
        """``(label, figure)``: call end → text sent, as the owner's figures give it (median, 95th percentile;
        ``core.figures``) and the longest: what a change of grace or quiet hours moves even when every call
        keeps its outcome (``--summary``, ``--compare``)."""
        f = Figures(to_text=self.delays)
        return [("time to text, median", duration(f.median_to_text)),
                ("time to text, 95th percentile", duration(f.p95_to_text)),
                ("time to text, longest", duration(max(self.delays, default=None)))]

    @property
    def texted(self) -> int:
        return self.outcomes.get("texted", 0)

    def rows(self, also: Iterable[str] = ()) -> list[tuple[str, int]]:
        """``(label, count)``: the totals, then the outcomes grouped (texted, cancelled, not texted), each group's
        reasons by count, most first; ``also``: outcomes to list with 0 when this replay had none (``--compare``)."""
        counts = dict.fromkeys(also, 0) | self.outcomes
        out = [("calls", self.calls), ("missed", self.missed)]
        for group in ("texted", "scheduled", "cancelled", "not texted", "none"):
            items = sorted(((k, v) for k, v in counts.items() if k.split(":")[0] == group),
                           key=lambda kv: (-kv[1], kv[0]))
            if not items:
                continue
            if len(items) == 1 and ":" not in items[0][0]:
                out.append(items[0])
                continue
            out.append((group, sum(v for _, v in items)))
            out += [("  " + k.split(": ", 1)[1], v) for k, v in items]
        return out
