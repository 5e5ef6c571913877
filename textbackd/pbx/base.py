"""What both PBX adapters provide: a sans-I/O frame parser, a sans-I/O call tracker, a client.

The trackers take events as ``Mapping[str, str]`` with the arrival time in
seconds since the epoch (``at``) and return the ``Call``s that finished. They
read no clock and do no I/O, so ``replay`` and the daemon share one path:

    parser.feed(bytes) → events → tracker.feed(event, at) → [Call, ...]

The clients (``ami/client.py``, ``freeswitch/client.py``) own the socket and
hand each event with its arrival time to a callback.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Protocol

from textbackd.core.model import Call

if TYPE_CHECKING:
    from textbackd.config import Config

Event = Mapping[str, str]
EventCallback = Callable[[Event, float], Awaitable[None]]


class Tracker(Protocol):
    def feed(self, event: Event, at: float) -> list[Call]:
        """Apply one event; return the calls it finished (usually none)."""

    def expire(self, now: float) -> list[Call]:
        """Close calls with no hangup for longer than ``pbx.call_expiry_seconds``."""

    def flush(self, now: float) -> list[Call]:
        """Close every open call (end of a replayed stream)."""

    @property
    def open_calls(self) -> int: ...


def make_tracker(config: Config) -> Tracker:
    if config.pbx.kind == "asterisk":
        from textbackd.pbx.asterisk.tracker import AmiTracker

        return AmiTracker(config)
    from textbackd.pbx.freeswitch.tracker import FsTracker

    return FsTracker(config)
