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


TRACE_CHUNK = 64 * 1024


def stream_trace(path: str | Path, chunk: int = TRACE_CHUNK) -> Iterator[bytes]:
    """A capture's bytes in pieces of ``chunk``, gunzipped on the fly: a replay of any size in constant memory.

    The file is opened at once (a missing or unreadable file raises ``TextbackError``
    here, before any event); a gzip file damaged further in raises it when the damage is read.
    """
    p = Path(path)
    try:
        f = p.open("rb")
    except FileNotFoundError:
        raise TextbackError(f"{p}: no such file") from None
    except OSError as e:
        raise TextbackError(f"{p}: cannot read: {e.strerror}") from None
    return _pieces(p, f, chunk)


def _pieces(p: Path, f: Any, chunk: int) -> Iterator[bytes]:
    with f:
        src = gzip.GzipFile(fileobj=f) if f.peek(2)[:2] == b"\x1f\x8b" else f
        try:
            while data := src.read(chunk):
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
