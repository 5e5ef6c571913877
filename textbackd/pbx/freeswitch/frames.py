"""Sans-I/O parser for the FreeSWITCH event socket (mod_event_socket), over bytes.

The wire format: a block of ``Name: value`` lines ended by an empty line,
then, when the block has ``Content-Length``, exactly that many **bytes** of
body. ``Content-Type`` says what the frame is:

* ``auth/request`` (the banner), ``command/reply`` (``Reply-Text``),
  ``api/response`` (body = the command's output), ``text/disconnect-notice``;
* ``text/event-plain``: the body is again a header block (values
  URL-encoded) and, with an inner ``Content-Length``, an inner body;
* ``text/event-json``: the body is a JSON object (inner body under ``_body``).

``EslParser.feed(data)`` accepts any split of the stream (a body split at
every byte included) and returns the complete ``Frame``s. It never raises on
garbage: a block with no header line, a bad ``Content-Length`` or a frame
over the size limits is skipped with a warning and parsing goes on at the
next frame. ``event_of(frame)`` turns an event frame into a ``Mapping[str,
str]`` (the ``pbx.Event`` the tracker takes), or ``None`` for anything else.

``EslParser(wanted=EventFilter(...))`` drops the event frames a consumer
provably ignores before their body is copied or parsed: it reads the
``Event-Name`` (and, for ``CUSTOM``, the ``Event-Subclass``) on the raw
bytes, exactly as ``PlainEvent`` (or the JSON decoder) would read it, and
when it cannot tell cheaply (CRLF, a raw multi-line value, a JSON escape, a
repeated key, no name at all) it keeps the frame for the general path. A
recording of ``event plain ALL`` is mostly events the tracker never reads
(``CHANNEL_STATE``, ``CODEC``, ``PRESENCE_IN``...): ``textbackd replay``
skips about three quarters of the frames this way. A dropped frame's body is
not validated (a broken JSON body with an ignored name is counted in
``stats.filtered``, not warned about).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import compress, repeat
from operator import is_not
from urllib.parse import unquote

import structlog

log = structlog.get_logger(__name__)

MAX_HEADER_BYTES = 64 * 1024  # one header block (outer frame); FS events' own headers are in the body
MAX_BODY_BYTES = 8 * 1024 * 1024  # api/response of `show channels` on a busy box stays far below

EVENT_PLAIN = "text/event-plain"
EVENT_JSON = "text/event-json"
AUTH_REQUEST = "auth/request"
COMMAND_REPLY = "command/reply"
API_RESPONSE = "api/response"
DISCONNECT_NOTICE = "text/disconnect-notice"


@dataclass(slots=True)
class Frame:
    """One framed message: its outer headers (``Reply-Text`` URL-decoded) and raw body bytes."""

    headers: dict[str, str]
    body: bytes = b""

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")

    @property
    def reply_text(self) -> str:
        """``Reply-Text`` of a ``command/reply``, or the body of an ``api/response``."""
        if "Reply-Text" in self.headers:
            return self.headers["Reply-Text"]
        return self.body.decode("utf-8", "replace").strip()

    @property
    def ok(self) -> bool:
        return self.reply_text.startswith("+OK")


@dataclass(slots=True)
class ParserStats:
    frames: int = 0  # complete frames, the filtered ones included
    skipped: int = 0  # malformed or oversized frames thrown away
    filtered: int = 0  # event frames dropped by ``wanted`` (never returned)
    bytes: int = 0
    reasons: dict[str, int] = field(default_factory=dict)


_NAME_PLAIN = (b"Event-Name: ", b"\nEvent-Name: ")
_SUB_PLAIN = (b"Event-Subclass: ", b"\nEvent-Subclass: ")
_NAME_JSON = (b'"Event-Name":"', b'"Event-Name"')  # how it is written; the name alone (counted: once only)
_SUB_JSON = (b'"Event-Subclass":"', b'"Event-Subclass"')


def _header_line(s: str | bytes | bytearray, a: int, b: int) -> bool:
    """``s[a:b]`` is a ``Name: value`` line with a name free of spaces and ``=``, on str or bytes, without slicing."""
    if isinstance(s, str):
        p = s.find(": ", a, b)
        return p > a and s.find(" ", a, p) < 0 and s.find("=", a, p) < 0
    p = s.find(b": ", a, b)
    return p > a and s.find(b" ", a, p) < 0 and s.find(b"=", a, p) < 0


def _plain_raw(buf: bytes | bytearray, start: int, stop: int, key: tuple[bytes, bytes]) -> tuple[bytes, int] | None:
    """``key``'s first raw value in the plain event body ``buf[start:stop]`` (as ``PlainEvent`` finds it) and
    where its line ends; ``None`` when absent or only after the header block."""
    first, line = key
    if buf.startswith(first, start, stop):
        i = start + len(first)
    else:
        k = buf.find(line, start, stop)
        if k < 0 or buf.find(b"\n\n", start, k + 1) >= 0:
            return None
        i = k + len(line)
    j = buf.find(b"\n", i, stop)
    if j < 0:
        return None
    return bytes(buf[i:j]), j


def _plain_sure(buf: bytes | bytearray, start: int, stop: int, key: tuple[bytes, bytes], j: int) -> bool:
    """The value ending at ``j`` is what ``PlainEvent`` returns, read lazily or whole: the key is not repeated
    further on (a whole parse keeps the last), there is no CR up to the next line, and that line is a new
    header (after a raw multi-line value PlainEvent parses the whole block)."""
    nxt = buf.find(b"\n", j + 1, stop)
    if nxt < 0:
        nxt = stop
    return (
        buf.find(b"\r", start, nxt) < 0
        and (nxt == j + 1 or _header_line(buf, j + 1, nxt))
        and buf.find(key[1], j, stop) < 0
    )


def _json_raw(buf: bytes | bytearray, start: int, stop: int, key: tuple[bytes, bytes]) -> tuple[bytes, int] | None:
    """``key``'s string value in the JSON event body ``buf[start:stop]``, as written (``None``: not written
    ``"key":"value"``)."""
    pattern, _ = key
    k = buf.find(pattern, start, stop)
    if k < 0:
        return None
    i = k + len(pattern)
    j = buf.find(b'"', i, stop)
    if j < 0:
        return None
    return bytes(buf[i:j]), j


def _json_sure(buf: bytes | bytearray, start: int, stop: int, key: tuple[bytes, bytes], raw: bytes) -> bool:
    """The value is what ``json.loads`` returns: no escape in it, the key's name written once only, and no
    ``\\u`` escape anywhere (the only way to write the same key another way, ``"\\u0045vent-Name"``)."""
    return b"\\" not in raw and buf.count(key[1], start, stop) == 1 and buf.find(b"\\u", start, stop) < 0


class EventFilter:
    """The events a consumer reads: ``names`` by ``Event-Name``, and ``CUSTOM`` events by ``subclasses``.

    ``keeps`` says no only for an event frame whose name (or CUSTOM subclass) it
    read for certain and is not wanted; anything else goes on to ``event_of``.
    """

    __slots__ = ("names", "subclasses", "_names", "_subclasses")

    def __init__(self, names: Iterable[str], subclasses: Iterable[str] = ()) -> None:
        self.names = frozenset(names)
        self.subclasses = frozenset(subclasses)
        self._names = frozenset(n.encode() for n in self.names)
        self._subclasses = frozenset(n.encode() for n in self.subclasses)

    def __repr__(self) -> str:
        return f"EventFilter({sorted(self.names)}, {sorted(self.subclasses)})"

    def keeps(self, content_type: str, buf: bytes | bytearray, start: int, stop: int) -> bool:
        if content_type == EVENT_PLAIN:
            return self._keeps_plain(buf, start, stop)
        if content_type == EVENT_JSON:
            return self._keeps_json(buf, start, stop)
        return True

    def _keeps_plain(self, buf: bytes | bytearray, start: int, stop: int) -> bool:
        found = _plain_raw(buf, start, stop, _NAME_PLAIN)
        if found is None or found[0] in self._names or not _plain_sure(buf, start, stop, _NAME_PLAIN, found[1]):
            return True
        name = _unquoted(found[0])
        if name in self.names:
            return True
        if name != "CUSTOM":
            return False
        found = _plain_raw(buf, start, stop, _SUB_PLAIN)
        if found is None or found[0] in self._subclasses or not _plain_sure(buf, start, stop, _SUB_PLAIN, found[1]):
            return True
        return _unquoted(found[0]) in self.subclasses

    def _keeps_json(self, buf: bytes | bytearray, start: int, stop: int) -> bool:
        found = _json_raw(buf, start, stop, _NAME_JSON)
        if found is None or found[0] in self._names or not _json_sure(buf, start, stop, _NAME_JSON, found[0]):
            return True
        if found[0] != b"CUSTOM":
            return False  # unescaped UTF-8: equal as text only if equal as bytes
        found = _json_raw(buf, start, stop, _SUB_JSON)
        return found is None or found[0] in self._subclasses or not _json_sure(buf, start, stop, _SUB_JSON, found[0])


def _unquoted(raw: bytes) -> str:
    """A raw plain value as the event mapping holds it (URL-decoded)."""
    v = raw.decode("utf-8", "replace")
    return unquote(v) if "%" in v else v


class EslParser:
    """Incremental frame parser. ``feed`` bytes as they arrive, get complete frames back."""

    def __init__(
        self,
        *,
        max_header_bytes: int = MAX_HEADER_BYTES,
        max_body_bytes: int = MAX_BODY_BYTES,
        wanted: EventFilter | None = None,
    ) -> None:
        self._buf = bytearray()
        self.wanted = wanted
        self._headers: dict[str, str] | None = None  # a header block waiting for its body
        self._need = 0  # body bytes still expected for _headers
        self._discard = 0  # bytes of an oversized body still to throw away
        self.max_header_bytes = max_header_bytes
        self.max_body_bytes = max_body_bytes
        self.stats = ParserStats()
        self._pos = 0  # where ``_event_frame`` left the buffer

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def _skip(self, reason: str, **kw: object) -> None:
        self.stats.skipped += 1
        self.stats.reasons[reason] = self.stats.reasons.get(reason, 0) + 1
        log.warning("esl_frame_skipped", reason=reason, **kw)

    def feed(self, data: bytes) -> list[Frame]:
        out: list[Frame] = []
        if not data:
            return out
        self.stats.bytes += len(data)
        buf = self._buf
        if self._discard:
            n = min(self._discard, len(data))
            self._discard -= n
            data = data[n:]
        buf += data
        pos = 0
        end = len(buf)
        while pos < end:
            if self._headers is not None:
                need = self._need
                if end - pos < need:
                    break
                headers = self._headers
                self._headers = None
                self.stats.frames += 1
                wanted = self.wanted
                if wanted is not None and not wanted.keeps(headers.get("Content-Type", ""), buf, pos, pos + need):
                    self.stats.filtered += 1
                    pos += need
                    continue
                with memoryview(buf) as view:
                    body = bytes(view[pos : pos + need])
                pos += need
                out.append(Frame(headers, body))
                continue
            # skip blank lines between frames (some servers and captures have them)
            while pos < end and buf[pos] in (10, 13):
                pos += 1
            if pos >= end:
                break
            if buf.startswith(_CL, pos):  # an event's own pair, read in place (what a stream is made of)
                nl = buf.find(b"\n", pos + len(_CL), pos + 40)
                if nl > 0 and self._event_frame(buf, pos, nl, end, out):
                    pos = self._pos
                    continue
            idx = buf.find(b"\n\n", pos)
            if idx < 0:
                idx_cr = buf.find(b"\r\n\r\n", pos)
                if idx_cr < 0:
                    if end - pos > self.max_header_bytes:
                        self._skip("header_block_too_large", size=end - pos)
                        pos = end
                    break
                idx, sep = idx_cr, 4
            else:
                sep = 2
                if buf.find(b"\r", pos, idx) >= 0:  # a CRLF stream: the earlier CRLF blank line wins
                    idx_cr = buf.find(b"\r\n\r\n", pos, idx + 2)
                    if 0 <= idx_cr < idx:
                        idx, sep = idx_cr, 4
            if idx - pos > self.max_header_bytes:
                self._skip("header_block_too_large", size=idx - pos)
                pos = idx + sep
                continue
            headers = _outer_headers(buf, pos, idx)
            pos = idx + sep
            if not headers:
                self._skip("no_headers")
                continue
            length_raw = headers.get("Content-Length")
            if length_raw is None:
                if "Content-Type" not in headers:
                    self._skip("no_content_type", keys=sorted(headers)[:5])
                    continue
                out.append(Frame(_decode_outer(headers)))
                self.stats.frames += 1
                continue
            try:
                length = int(length_raw.strip())
                if length < 0:
                    raise ValueError
            except ValueError:
                self._skip("bad_content_length", value=length_raw[:40])
                continue
            if length > self.max_body_bytes:
                self._skip("body_too_large", size=length)
                have = min(end - pos, length)
                pos += have
                self._discard = length - have
                continue
            self._headers = _decode_outer(headers)
            self._need = length
        del buf[:pos]
        return out

    def _event_frame(self, buf: bytearray, pos: int, nl: int, end: int, out: list[Frame]) -> bool:
        """An event frame's ``Content-Length: N`` / ``Content-Type: text/event-…`` pair at ``pos``: its body
        taken (or dropped by ``wanted``) at once when it is all here, else awaited; ``self._pos`` is where
        parsing goes on. False when the block is anything else (the general parser reads it)."""
        for tail, ctype in _EVENT_TAILS:
            if buf.startswith(tail, nl):
                break
        else:
            return False
        digits = buf[pos + len(_CL) : nl]
        if not digits.isdigit() or (length := int(digits)) > self.max_body_bytes:
            return False
        start = nl + len(tail)
        stop = start + length
        if stop > end:  # the body is still on its way
            self._headers = {"Content-Length": digits.decode(), "Content-Type": ctype}
            self._need = length
            self._pos = start
            return True
        self.stats.frames += 1
        self._pos = stop
        if self.wanted is not None and not self.wanted.keeps(ctype, buf, start, stop):
            self.stats.filtered += 1
            return True
        with memoryview(buf) as view:
            out.append(Frame({"Content-Length": digits.decode(), "Content-Type": ctype}, bytes(view[start:stop])))
        return True

    def close(self) -> list[Frame]:
        """End of stream: report a truncated frame (it is dropped)."""
        if self._headers is not None or self._buf.strip():
            self._skip("truncated_at_eof", buffered=len(self._buf))
        self._buf.clear()
        self._headers = None
        self._need = 0
        return []


_CL = b"Content-Length: "
_CT = b"Content-Type: "
_EVENT_TAILS = tuple((b"\n" + _CT + t.encode() + b"\n\n", t) for t in (EVENT_PLAIN, EVENT_JSON))


def _outer_headers(buf: bytearray, start: int, stop: int) -> dict[str, str]:
    """The outer header block ``buf[start:stop]``; an event's ``Content-Length``/``Content-Type`` pair
    is read in place, anything else by the general parser."""
    if buf.startswith(_CL, start, stop):
        nl = buf.find(b"\n", start, stop)
        if (
            nl >= 0
            and buf.startswith(_CT, nl + 1, stop)
            and buf.find(b"\n", nl + 1, stop) < 0
            and buf.find(b"\r", start, stop) < 0
            and stop > nl + 1 + len(_CT)
        ):
            return {
                "Content-Length": buf[start + len(_CL) : nl].decode("utf-8", "replace"),
                "Content-Type": buf[nl + 1 + len(_CT) : stop].decode("utf-8", "replace"),
            }
    text = buf[start:stop].decode("utf-8", "replace")
    if "\r" not in text:
        try:
            headers = dict(line.split(": ", 1) for line in text.split("\n"))  # type: ignore[misc]
        except ValueError:
            pass
        else:
            if all(" " not in k and "=" not in k and k for k in headers):
                return headers
    return parse_header_block(text, decode=False)


def _decode_outer(headers: dict[str, str]) -> dict[str, str]:
    """Outer headers are plain, but a ``connect`` reply URL-encodes ``Reply-Text`` (``%2BOK%0A``)."""
    rt = headers.get("Reply-Text")
    if rt is not None and "%" in rt:
        headers["Reply-Text"] = unquote(rt).strip()
    return headers


def parse_header_block(text: str, *, decode: bool = True) -> dict[str, str]:
    """``Name: value`` lines into a dict; values URL-decoded when ``decode``.

    A line that is not ``Name: value`` (a name holds no space and no ``=``)
    continues the previous value: that is how a raw, undecoded multi-line
    value (SDP) arrives. Lines before the first header are dropped.
    """
    headers: dict[str, str] = {}
    last: str | None = None
    for line in text.split("\n"):
        if line.endswith("\r"):
            line = line[:-1]
        name, sep, value = line.partition(": ")
        if not sep:
            if line.endswith(":") and line.count(":") == 1 and " " not in line:
                name, sep, value = line[:-1], ":", ""
        if sep and name and " " not in name and "=" not in name:
            last = name
            if decode and "%" in value:
                value = unquote(value)
            headers[name] = value
        elif last is not None:
            headers[last] = headers[last] + "\n" + line
    return headers


def _is_header_line(line: str) -> bool:
    """``Name: value`` with a name free of spaces and ``=`` (a raw multi-line value's next line is not)."""
    return _header_line(line, 0, len(line))


class PlainEvent(Mapping[str, str]):
    """The headers of a ``text/event-plain`` body, looked up and URL-decoded on demand.

    FreeSWITCH sends every event with ~100 headers and a tracker reads a
    handful of them, often only ``Event-Name``: building a full dict per
    event would cost most of the parsing time. ``__getitem__`` finds
    ``\nName: `` in the text; iterating (or any header with a raw multi-line
    value) parses the whole block once. The inner body, if any, is ``_body``.
    """

    __slots__ = ("_text", "_cache", "_full")

    def __init__(self, head: str, inner_body: str | None = None) -> None:
        if "\r" in head:
            head = head.replace("\r\n", "\n")
        self._text = "\n" + head + "\n"
        self._cache: dict[str, str] = {}
        self._full: dict[str, str] | None = None
        if inner_body is not None:
            self._cache["_body"] = inner_body

    def _parse_all(self) -> dict[str, str]:
        if self._full is None:
            full = parse_header_block(self._text[1:-1], decode=True)
            if "_body" in self._cache:
                full["_body"] = self._cache["_body"]
            self._full = full
        return self._full

    def __getitem__(self, key: str) -> str:
        if self._full is not None:
            return self._full[key]
        try:
            return self._cache[key]
        except KeyError:
            pass
        text = self._text
        i = text.find("\n" + key + ": ")
        if i < 0:
            if text.find("\n" + key + ":\n") < 0:
                raise KeyError(key)
            return self._parse_all()[key]
        start = i + len(key) + 3
        j = text.find("\n", start)
        nxt = text.find("\n", j + 1)
        if nxt > j + 1 and not _header_line(text, j + 1, nxt):
            return self._parse_all()[key]  # a raw multi-line value
        v = text[start:j]
        if "%" in v:
            v = unquote(v)
        self._cache[key] = v
        return v

    def get(self, key: str, default=None):  # type: ignore[no-untyped-def,override]
        try:
            return self[key]
        except KeyError:
            return default

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        try:
            self[key]
        except KeyError:
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(self._parse_all())

    def __len__(self) -> int:
        return len(self._parse_all())

    def __bool__(self) -> bool:
        """``event or {}`` must not parse the whole block: an event whose first line is a header is not empty."""
        if self._full is not None:
            return bool(self._full)
        if self._cache or _is_header_line(self._text[1 : self._text.find("\n", 1)]):
            return True
        return len(self) > 0

    def to_dict(self) -> dict[str, str]:
        return dict(self._parse_all())

    def __repr__(self) -> str:
        return f"PlainEvent({self.get('Event-Name')!r})"


def parse_plain_event(body: bytes) -> PlainEvent:
    """The body of a ``text/event-plain`` frame: headers, then an inner body after ``Content-Length``."""
    end = body.find(b"\n\n")
    if end < 0:
        end = len(body)
    text = body[:end].decode("utf-8", "replace")
    inner: str | None = None
    if end + 2 < len(body):
        rest = body[end + 2 :]
        ev = PlainEvent(text)
        n_raw = ev.get("Content-Length")
        try:
            n = int(n_raw) if n_raw is not None else len(rest)
        except ValueError:
            n = len(rest)
        inner = rest[: max(0, n)].decode("utf-8", "replace")
    return PlainEvent(text, inner)


def parse_json_event(body: bytes) -> dict[str, str] | None:
    """The body of a ``text/event-json`` frame; every value as a string (arrays joined with ``|``)."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        log.warning("esl_bad_json_event", error=str(e)[:80], size=len(body))
        return None
    if not isinstance(data, dict):
        log.warning("esl_bad_json_event", error="not an object", size=len(body))
        return None
    if set(map(type, data.values())) <= _ONLY_STR:  # what FreeSWITCH sends: nothing to convert
        return data
    # the few arrays (multi-valued variables) converted in place; finding them stays in C, since an
    # event has ~200 keys and a dict comprehension over all of them cost more than json.loads itself
    for k in list(compress(data, map(is_not, map(type, data.values()), repeat(str)))):
        data[k] = _json_text(data[k])
    return data


_ONLY_STR = {str}


def _json_text(v: object) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, list):
        return "|".join(str(x) for x in v)
    return "" if v is None else str(v)


def event_of(frame: Frame) -> Mapping[str, str] | None:
    """The event carried by an event frame, or ``None`` (replies, banners, logs, broken JSON)."""
    ct = frame.content_type
    if ct == EVENT_PLAIN:
        ev = parse_plain_event(frame.body)
        if "Event-Name" not in ev:
            log.warning("esl_event_without_name", size=len(frame.body))
            return None
        return ev
    if ct == EVENT_JSON:
        ev2 = parse_json_event(frame.body)
        if ev2 is None or "Event-Name" not in ev2:
            return None
        return ev2
    return None


def event_time(event: Mapping[str, str]) -> float | None:
    """``Event-Date-Timestamp`` (microseconds since the epoch) in seconds, when present and sane."""
    raw = event.get("Event-Date-Timestamp")
    if not raw:
        return None
    try:
        us = int(raw)
    except ValueError:
        return None
    return us / 1e6 if us > 0 else None
