"""Events from a recorded FreeSWITCH event-socket byte stream, for ``textbackd replay --pbx freeswitch``.

A capture is the raw bytes a client received on port 8021 (banner, replies,
``text/event-plain`` or ``text/event-json`` frames, disconnect notice), as
written by a plain socket recorder such as ``esl_capture.py``; ``.gz`` is
read transparently. The file is streamed (``pbx.base.stream_trace``: 64 KiB
reads, gunzipped on the fly), never read whole, so a month of events replays
in constant memory, through the same ``EslParser`` the daemon uses.

A recording of ``event plain ALL`` holds mostly events the tracker never
reads; the parser drops those on their raw bytes (``TRACKER_EVENTS``, the
tracker's own ``EVENTS`` and ``CUSTOM_SUBCLASSES``) before building anything.
``filtered=False`` parses every frame (the tests compare both).

Times: each event carries its own ``Event-Date-Timestamp`` (microseconds
since the epoch, stamped by FreeSWITCH when the event fired), so a capture
needs no sidecar and replays with the PBX's own clock. An event without one
(never seen from FreeSWITCH itself) gets the time of the event read before it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from textbackd.core.errors import TextbackError
from textbackd.pbx.base import Event
from textbackd.pbx.freeswitch.frames import EslParser, EventFilter, event_of, event_time
from textbackd.pbx.freeswitch.tracker import CUSTOM_SUBCLASSES, EVENTS, SNAPSHOT_EVENT

CHUNK = 64 * 1024

# every event FsTracker.feed acts on; any other it returns [] for (see its dispatch)
TRACKER_EVENTS = EventFilter(frozenset((*EVENTS, SNAPSHOT_EVENT)), frozenset(CUSTOM_SUBCLASSES))


def iter_events(
    data: bytes | Iterable[bytes], chunk: int = CHUNK, name: str = "capture", *, filtered: bool = True
) -> Iterator[tuple[Event, float]]:
    """``(event, epoch_seconds)`` for every event frame in ``data`` (bytes, or the pieces of a stream).

    With ``filtered`` only the events the tracker reads come out. Raises
    ``TextbackError`` at the end when not a single event-socket frame was found
    (the file is not an ESL capture); damaged frames inside a real capture are
    skipped with a warning.
    """
    parser = EslParser(wanted=TRACKER_EVENTS if filtered else None)
    pieces = (data[i : i + chunk] for i in range(0, len(data), chunk)) if isinstance(data, bytes) else data
    last = 0.0
    for piece in pieces:
        for frame in parser.feed(piece):
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


def read_events(path: str | Path, *, filtered: bool = True) -> Iterator[tuple[Event, float]]:
    from textbackd.pbx.base import stream_trace

    return iter_events(stream_trace(path, CHUNK), name=str(path), filtered=filtered)
