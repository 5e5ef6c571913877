"""Events from a recorded AMI byte stream (``replay`` and the tests read captures through this).

``read_events(path)`` yields ``(event, arrival_epoch_seconds)`` for every AMI
message in a capture: the raw bytes Asterisk sent (banner, login response,
events, CRLF or LF-only, ``.gz`` or not), parsed by the same ``AmiParser`` the
daemon uses.

Arrival times, best source first:

1. the ``.timing`` sidecar next to the capture (``NN-name.timing`` for
   ``NN-name.ami`` or ``NN-name.ami.gz``): ``t0_epoch`` plus the seconds at
   which the TCP read completing each block returned, exactly what the daemon's
   clock would have said;
2. the ``Timestamp:`` header Asterisk adds with ``timestampevents = yes``;
3. otherwise the capture file's modification time for every event: order is
   kept, but ring times and durations come out as 0. A warning says so.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import structlog

from textbackd.core.errors import TextbackError
from textbackd.pbx.asterisk.frames import AmiParser
from textbackd.pbx.asterisk.tracker import wants_frame
from textbackd.pbx.base import open_trace, stream_trace

log = structlog.get_logger(__name__)

Timed = tuple[dict[str, str], float]


def timing_path(path: str | os.PathLike[str]) -> Path | None:
    """The ``.timing`` sidecar of a capture, if one exists."""
    p = Path(path)
    base = p.with_suffix("") if p.suffix == ".gz" else p
    for cand in (base.with_suffix(".timing"), Path(str(base) + ".timing")):
        if cand.is_file():
            return cand
    return None


def parse_timing(text: str, size: int) -> tuple[float, list[tuple[float, int, int]]] | None:
    """``(t0_epoch, [(seconds, offset, length), ...])`` of received blocks, or None if unusable."""
    t0: float | None = None
    blocks: list[tuple[float, int, int]] = []
    for line in text.splitlines():
        if line.startswith("#"):
            key, _, value = line[1:].strip().partition("=")
            if key == "t0_epoch":
                try:
                    t0 = float(value)
                except ValueError:
                    return None
            continue
        cols = line.split("\t")
        if len(cols) < 4 or cols[1] != "<":
            continue
        try:
            secs, off, length = float(cols[0]), int(cols[2]), int(cols[3])
        except ValueError:
            return None
        if off < 0 or length < 0 or off + length > size:
            return None
        blocks.append((secs, off, length))
    if t0 is None or not blocks:
        return None
    blocks.sort(key=lambda b: b[1])
    return t0, blocks


def read_events(path: str | os.PathLike[str], *, tracked_only: bool = False) -> Iterator[Timed]:
    """Every message of the capture; with ``tracked_only`` (``replay``) only the frames the tracker reads are
    decoded, as in the daemon (``wants_frame``), and the rest are skipped unread."""
    parser = AmiParser(select=wants_frame if tracked_only else None)
    tp = timing_path(path)
    timing = None
    data = b""
    if tp is not None:
        data = open_trace(path)  # a sidecar's blocks index the whole capture (recorded sessions are small)
        try:
            timing = parse_timing(tp.read_text(encoding="utf-8", errors="replace"), len(data))
        except OSError as e:
            log.warning("ami.replay_timing_unreadable", file=str(tp), error=e.strerror)
        if timing is None:
            log.warning("ami.replay_timing_ignored", file=str(tp), reason="does not match the capture")
    count = 0
    if timing is not None:
        t0, blocks = timing
        pos = 0
        at = t0
        for secs, off, length in blocks:
            end = off + length
            if end <= pos:
                continue
            at = t0 + secs
            for ev in parser.feed(data[pos:end]):
                count += 1
                yield ev, at
            pos = end
        for ev in parser.feed(data[pos:]):
            count += 1
            yield ev, at
        tail = data[-parser.buffered :] if parser.buffered else b""
        content = bool(data.strip())
    else:
        try:
            at = os.stat(path).st_mtime
        except OSError:
            at = 0.0
        stamped = False
        content = False
        tail = b""
        # streamed: a month-long capture is never in memory whole
        for chunk in (data,) if data else stream_trace(path):
            content = content or bool(chunk.strip())
            tail = tail[-parser.max_frame_bytes :] + chunk  # enough to show what the parser still holds at the end
            for ev in parser.feed(chunk):
                ts = ev.get("Timestamp")
                if ts:
                    try:
                        at = float(ts)
                        stamped = True
                    except ValueError:
                        pass
                count += 1
                yield ev, at
        tail = tail[-parser.buffered :] if parser.buffered else b""
        if count and not stamped:
            log.warning(
                "ami.replay_no_timing",
                file=str(path),
                detail="no .timing sidecar and no Timestamp headers: every event gets the file time",
            )
    if tail.strip():
        log.warning("ami.replay_truncated", file=str(path), ignored_bytes=parser.buffered,
                    detail="the capture ends inside a message; that message is ignored")
    if count + parser.ignored == 0 and content:
        raise TextbackError(f"{path}: no AMI messages found (is this a raw AMI capture?)")
