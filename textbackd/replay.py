"""Replay a recorded PBX byte stream through the same parser and tracker the daemon uses.

Each PBX kind provides ``read_events(path)`` (``PbxKind`` in ``pbx/base.py``), which
yields ``(event, arrival_epoch_seconds)`` from a capture file (``.gz`` transparently).
This module feeds the tracker and returns the finished calls in the order they finished.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from itertools import islice
from pathlib import Path

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

    store = Store.scratch()
    pipe = Pipeline(store, config, contacts)
    waiting: deque[list] = deque()  # [call, action, resolved], in the order the calls finished
    texts: dict[int, list] = {}  # message id → its waiting entry, until the text is sent or cancelled
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
        nxt = store.next_due_at()
        next_due = float("inf") if nxt is None else nxt

    def ready() -> Iterator[tuple[Call, dict]]:
        while waiting and waiting[0][2]:
            call, action, _ = waiting.popleft()
            yield call, action

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
                    entry = [out.call, action, True]
                    if action.get("action") == "text" and out.message_id is not None:
                        entry[2] = False
                        texts[out.message_id] = entry
                        next_due = min(next_due, out.decision.send_at.timestamp())
                    waiting.append(entry)
                    yield from ready()
        with store.batch():
            deliver(float("inf"))
        yield from ready()
    finally:
        store.close()
