"""Replay a recorded PBX byte stream through the same parser and tracker the daemon uses.

Each PBX adapter provides ``<adapter>.replay_source.read_events(path)``, which
yields ``(event, arrival_epoch_seconds)`` from a capture file. This module
opens files (``.gz`` transparently), feeds the tracker and returns the
finished calls in the order they finished.
"""

from __future__ import annotations

import gzip
import importlib
from collections.abc import Iterator
from pathlib import Path

from textbackd.config import Config
from textbackd.errors import TextbackError
from textbackd.model import Call
from textbackd.pbx import make_tracker

_SOURCES = {"asterisk": "textbackd.ami.replay_source", "freeswitch": "textbackd.freeswitch.replay_source"}


def open_trace(path: str | Path) -> bytes:
    """The bytes of a capture, gunzipped when the file is gzip (by magic, not by name)."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise TextbackError(f"{p}: no such file") from None
    except OSError as e:
        raise TextbackError(f"{p}: cannot read: {e.strerror}") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise TextbackError(f"{p}: damaged gzip file: {e}") from None
    return raw


def replay_calls(path: str | Path, config: Config, pbx: str | None = None) -> Iterator[Call]:
    kind = pbx or config.pbx.kind
    source = importlib.import_module(_SOURCES[kind])
    if kind != config.pbx.kind:
        from dataclasses import replace

        config = replace(config, pbx=replace(config.pbx, kind=kind))
    tracker = make_tracker(config)
    last = 0.0
    for event, at in source.read_events(path):
        last = max(last, at)
        yield from tracker.feed(event, at)
        # expiry is driven by event time, exactly as the daemon drives it by its clock
    yield from tracker.flush(last)
