"""Events from a recorded FreeSWITCH event-socket byte stream, for ``textbackd replay --pbx freeswitch``.

A capture is the raw bytes a client received on port 8021 (banner, replies,
``text/event-plain`` or ``text/event-json`` frames, disconnect notice), as
written by a plain socket recorder such as ``esl_capture.py``; ``.gz`` is
read transparently (``replay.open_trace``). The bytes go through the same
``EslParser`` the daemon uses, fed in 64 KiB pieces.

Times: each event carries its own ``Event-Date-Timestamp`` (microseconds
since the epoch, stamped by FreeSWITCH when the event fired), so a capture
needs no sidecar and replays with the PBX's own clock. An event without one
(never seen from FreeSWITCH itself) gets the time of the event before it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from textbackd.core.errors import TextbackError
from textbackd.pbx.base import Event
from textbackd.pbx.freeswitch.frames import EslParser, event_of, event_time

CHUNK = 64 * 1024


def iter_events(data: bytes, chunk: int = CHUNK, name: str = "capture") -> Iterator[tuple[Event, float]]:
    """``(event, epoch_seconds)`` for every event frame in ``data``.

    Raises ``TextbackError`` at the end when not a single event-socket frame
    was found (the file is not an ESL capture); damaged frames inside a real
    capture are skipped with a warning.
    """
    parser = EslParser()
    last = 0.0
    for i in range(0, len(data), chunk):
        for frame in parser.feed(data[i : i + chunk]):
            event = event_of(frame)
            if event is None:
                continue
            t = event_time(event)
            if t is not None:
                last = t
            yield event, last
    parser.close()
    if parser.stats.frames == 0:
        raise TextbackError(f"{name}: no event-socket frames found (is this a FreeSWITCH ESL capture?)")


def read_events(path: str | Path) -> Iterator[tuple[Event, float]]:
    from textbackd.pbx.base import open_trace

    return iter_events(open_trace(path), name=str(path))
