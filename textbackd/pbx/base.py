"""The protocols every PBX kind implements: a sans-I/O tracker, a client, and the kind itself.

The trackers take events as ``Mapping[str, str]`` with the arrival time in
seconds since the epoch (``at``) and return the ``Call``s that finished. They
read no clock and do no I/O, so ``replay`` and the daemon share one path:

    parser.feed(bytes) → events → tracker.feed(event, at) → [Call, ...]

The clients (``pbx/<kind>/client.py``) own the socket and hand each event with
its arrival time to a callback. A kind is one folder (``pbx/<kind>/``) whose
``__init__`` exposes ``KIND`` (a ``PbxKind``); ``pbx/registry.py`` lists them.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from textbackd.core.errors import TextbackError
from textbackd.core.model import Call

if TYPE_CHECKING:
    from textbackd.core.checks import Check
    from textbackd.core.settings import Config, Secret, Section

Event = Mapping[str, str]
EventCallback = Callable[[Event, float], Awaitable[None]]
Timed = tuple[Event, float]

PBX_CLOCK_SKEW = 5.0  # seconds: a session's first stamped event within this of its arrival → the PBX clock is believed
PBX_CLOCK_MAX_LAG = 3600.0  # seconds: a stamp further than this from its arrival, mid-session, is not


class EventClock:
    """When each event happened, for the tracker and the daemon's decisions. Pure: arrival times are passed in.

    ``stamp(event)`` is the kind's reading of the PBX's own time on an event (FreeSWITCH
    ``Event-Date-Timestamp``; AMI ``Timestamp:`` with ``timestampevents = yes``), or None. The first
    stamped event of a session (a connection) decides: within ``PBX_CLOCK_SKEW`` of its arrival,
    live events come in as they happen, so the PBX clock agrees with ours and its stamps are
    used from then on, however far behind we later read (a backlog); else the PBX clock is off
    and arrival is used for the whole session. A stamp more than ``PBX_CLOCK_MAX_LAG`` from its
    arrival (a clock stepped mid-session) ends the trust too. An event without a stamp gets
    its arrival moved by the offset of the last stamped one. ``present(wall)`` is "now" in the
    same time: the PBX's clock as far as the events read say, advancing with ours.
    """

    def __init__(self, stamp: Callable[[Event], float | None] | None) -> None:
        self.stamp = stamp
        self.trusted: bool | None = None if stamp is not None else False  # None: not decided this session
        self.offset = 0.0  # event time − arrival of the last stamped event (< 0: reading behind the PBX)
        self.skew = 0.0  # the offset of the session's first stamped event: the two clocks' difference, live
        self.distrusted: float | None = None  # the lag that made us distrust the PBX clock (for logs, doctor)

    def new_session(self) -> None:
        if self.stamp is not None:
            self.trusted = None
        self.offset = self.skew = 0.0

    def at(self, event: Event, arrival: float) -> float:
        t = self.stamp(event) if self.trusted is not False and self.stamp is not None else None
        if t is None:
            return arrival + self.offset
        lag = arrival - t
        if self.trusted is None:
            self.trusted = abs(lag) <= PBX_CLOCK_SKEW
            self.skew = -lag
        elif abs(lag) > PBX_CLOCK_MAX_LAG:
            self.trusted = False
        if not self.trusted:
            self.distrusted = lag
            self.offset = 0.0
            return arrival
        self.offset = -lag
        return t

    def present(self, wall: float) -> float:
        return wall + self.offset

    @property
    def drift(self) -> float:
        """How far the events read are from live: < 0 behind the PBX (a backlog), > 0 ahead (a fast replay)."""
        return self.offset - self.skew


class Tracker(Protocol):
    #: something a crash must not lose happened since the last ``snapshot()`` (a new call, an answer)
    urgent: bool

    def feed(self, event: Event, at: float) -> list[Call]:
        """Apply one event; return the calls it finished (usually none)."""

    def expire(self, now: float) -> list[Call]:
        """Close calls with no hangup for longer than ``pbx.call_expiry_seconds``."""

    def flush(self, now: float) -> list[Call]:
        """Close every open call (end of a replayed stream)."""

    @property
    def open_calls(self) -> int: ...

    def snapshot(self) -> list[dict[str, Any]]:
        """The open calls as JSON-able dicts (the daemon checkpoints them in the store); clears ``urgent``."""

    def restore(self, snapshot: list[dict[str, Any]]) -> int:
        """Reopen the calls of a snapshot after a restart; how many."""

    def event_time(self, event: Event) -> float | None:
        """The PBX's own time of ``event`` in epoch seconds, or None when the event carries none (``EventClock``)."""

    @property
    def wake_at(self) -> float | None:
        """The earliest time at which ``expire`` has a call held back for a late event to report (None: none)."""


class PbxClient(Protocol):
    connected: bool
    reconnects: int

    async def run(self) -> None:
        """Connect, stream events to the callback, reconnect with backoff; returns after ``close()``."""

    async def close(self) -> None: ...

    @property
    def first_attempt_over(self) -> bool:
        """The first connection attempt has ended (refused or dropped): it is being retried."""


class PbxKind(Protocol):
    name: str  # the ``[pbx] kind``
    default_port: int

    def parse_secret(self, sec: Section) -> Secret:
        """The login secret from ``[pbx]``, under the key this PBX calls it."""

    def describe(self, config: Config) -> str:
        """One line for ``check-config`` (the secret as set / not set)."""

    def make_tracker(self, config: Config) -> Tracker: ...

    def make_client(self, config: Config, on_event: EventCallback, clock: Callable[[], float]) -> PbxClient: ...

    def read_events(self, path: str | Path) -> Iterator[Timed]:
        """``(event, arrival epoch seconds)`` from a capture file (``replay``)."""

    async def checks(self, config: Config, timeout: float) -> list[Check]:
        """``doctor``: reachable, login, permissions, events arriving."""


#: how many bytes of each capture file (by the path as given) ``open_trace``/``stream_trace`` have read from disk
#: so far: ``replay --progress`` reads it (one process, one replay at a time)
bytes_read: dict[str, int] = {}


def open_trace(path: str | Path) -> bytes:
    """The bytes of a capture, gunzipped when the file is gzip (by magic, not by name)."""
    p = Path(path)
    try:
        raw = p.read_bytes()
        bytes_read[str(path)] = len(raw)
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


TRACE_CHUNK = 64 * 1024


def stream_trace(path: str | Path, chunk: int = TRACE_CHUNK) -> Iterator[bytes]:
    """A capture's bytes in pieces of ``chunk``, gunzipped on the fly: a replay of any size in constant memory.

    The file is opened at once (a missing or unreadable file raises ``TextbackError``
    here, before any event); a gzip file damaged further in raises it when the damage is read.
    ``bytes_read`` follows how far into the file on disk the pieces are (``replay --progress``).
    """
    p = Path(path)
    try:
        f = p.open("rb")
    except FileNotFoundError:
        raise TextbackError(f"{p}: no such file") from None
    except OSError as e:
        raise TextbackError(f"{p}: cannot read: {e.strerror}") from None
    return _pieces(p, str(path), f, chunk)


def _pieces(p: Path, key: str, f: Any, chunk: int) -> Iterator[bytes]:
    with f:
        src = gzip.GzipFile(fileobj=f) if f.peek(2)[:2] == b"\x1f\x8b" else f
        try:
            while data := src.read(chunk):
                bytes_read[key] = f.tell()
                yield data
        except (gzip.BadGzipFile, EOFError, zlib.error) as e:
            raise TextbackError(f"{p}: damaged gzip file: {e}") from None
        except OSError as e:
            raise TextbackError(f"{p}: cannot read: {e.strerror}") from None


async def connect(host: str, port: int, where: str, timeout: float, fix: str) -> Any:
    """``doctor``: (reader, writer) of a TCP connection to the PBX, or the failed ``pbx reachable`` Check."""
    import asyncio

    from textbackd.core.checks import Check

    try:
        return await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, TimeoutError) as e:
        why = "no answer in time" if isinstance(e, TimeoutError) else (e.strerror or str(e))
        return Check("pbx reachable", False, f"{where}: cannot connect ({why})", fix)
