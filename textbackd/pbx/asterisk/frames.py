"""Sans-I/O parser for the Asterisk Manager Interface byte stream.

``AmiParser.feed(bytes) -> list[dict[str, str]]`` turns whatever the socket
gave (any split: one byte, half a UTF-8 character, ten frames at once) into
complete AMI messages. Rules:

* Bytes are buffered, never decoded chunk by chunk: a frame is decoded only once
  it is complete (``utf-8``, ``errors="replace"``), so ``Zoë`` split across two
  reads stays ``Zoë``.
* CRLF (what Asterisk sends) and LF-only (edited captures) are both accepted:
  the first line end of a session decides which; a frame ends at the first empty line.
* The banner line (``Asterisk Call Manager/11.0.0``) that opens each session is
  recognised and kept in ``banner``; call ``reset()`` for a new session.
* A frame longer than ``max_frame_bytes`` is dropped up to the next empty line;
  a frame without ``Event:``, ``Response:`` or ``Action:`` is dropped; lines that are not
  ``Key: Value`` are dropped from an otherwise good frame. Each drop is counted
  (``skipped_frames``, ``skipped_lines``) and logged (rate-limited). The parser
  never raises on garbage.
* A key that repeats inside one frame keeps its last value.
* ``select`` (optional) sees each complete frame's raw bytes (line ends as received)
  before it is decoded; frames it rejects are counted in ``ignored`` and never
  decoded. The tracker offers ``AmiTracker.wants_frame`` for this: most of an
  AMI stream (``CEL``, ``VarSet``, ``Newexten``...) says nothing about missed calls,
  and not building dicts for it is what makes parser + tracker fast.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import structlog

log = structlog.get_logger(__name__)

BANNER_PREFIX = b"Asterisk Call Manager/"
DEFAULT_MAX_FRAME = 64 * 1024
_BANNER = re.compile(rb"^[\x21-\x7e][\x20-\x7e]*/\d+(\.\d+)*$")  # "Some Manager/1.2.3"


class AmiParser:
    __slots__ = (
        "_buf",
        "_cr",
        "_discarding",
        "_expect_banner",
        "banner",
        "frames",
        "max_frame_bytes",
        "skipped_frames",
        "skipped_lines",
        "last_problem",
        "select",
        "ignored",
        "_reported",
        "_crlf",
    )

    def __init__(
        self,
        *,
        max_frame_bytes: int = DEFAULT_MAX_FRAME,
        expect_banner: bool = True,
        select: Callable[[bytes], bool] | None = None,
    ) -> None:
        self.max_frame_bytes = max_frame_bytes
        self.select = select
        self.ignored = 0
        self._reported = 0
        self._expect_banner = expect_banner
        self._buf = b""
        self._cr = False  # a chunk ended with "\r": it may be half of a CRLF
        self._discarding = False  # inside an oversized frame, dropping until the next empty line
        self._crlf: bool | None = None  # decided by the first line end of the session
        self.banner: str | None = None
        self.frames = 0
        self.skipped_frames = 0
        self.skipped_lines = 0
        self.last_problem = ""

    def reset(self, *, expect_banner: bool = True) -> None:
        """Forget buffered bytes: a new connection starts (the counters are kept)."""
        self._buf = b""
        self._cr = False
        self._crlf = None
        self._discarding = False
        self._expect_banner = expect_banner

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[dict[str, str]]:
        if self._crlf is None:
            # CRLF (Asterisk) or LF-only (an edited capture)? The first line end decides.
            buf = self._buf + data
            nl = buf.find(b"\n")
            if nl < 0:
                self._buf = buf
                if len(buf) > self.max_frame_bytes:
                    self._problem("frame_too_large", size=len(buf), limit=self.max_frame_bytes)
                    self._buf = buf[-3:]
                    self._discarding = True
                return []
            self._crlf = nl > 0 and buf[nl - 1] == 13
            self._buf = b""
            data = buf
        crlf = self._crlf
        if not crlf:
            if self._cr:
                data = b"\r" + data
                self._cr = False
            if data.endswith(b"\r"):
                data = data[:-1]
                self._cr = True
        if not data:
            return []
        if b"\n" not in data:
            # the common case when the stream trickles in: no line ended, nothing to do
            self._buf += data
            if len(self._buf) > self.max_frame_bytes:
                self._overflow()
            return []
        if crlf:
            buf = self._buf + data if self._buf else data
            if b"\n\n" in buf:  # an LF-only empty line: the stream is LF-only after all
                self._crlf = crlf = False
                if buf.endswith(b"\r"):
                    buf = buf[:-1]
                    self._cr = True
                buf = buf.replace(b"\r\n", b"\n")
        else:
            data = data.replace(b"\r\n", b"\n")
            buf = self._buf + data if self._buf else data
        if self._expect_banner:
            nl = buf.find(b"\n")
            first = buf[: nl - 1] if crlf and nl > 0 and buf[nl - 1] == 13 else buf[:nl]
            self._expect_banner = False
            if first.startswith(BANNER_PREFIX) or _BANNER.match(first):
                self.banner = first.decode("utf-8", "replace").strip()
                buf = buf[nl + 1 :]
        parts = buf.split(b"\r\n\r\n" if crlf else b"\n\n")
        tail = parts.pop()
        out: list[dict[str, str]] = []
        if self._discarding:
            if not parts:  # still inside the oversized frame
                self._buf = self._keep(tail)
                return out
            self._discarding = False
            parts = parts[1:]  # the end of the oversized frame
        self._buf = tail
        select = self.select
        limit = self.max_frame_bytes
        eol = "\r\n" if crlf else "\n"
        ignored = 0
        for raw in parts:
            if not raw:
                continue
            if select is not None and not select(raw):
                ignored += 1
                continue
            if raw[0] not in (10, 13) and len(raw) <= limit:
                # fast path: a well-formed frame ("Key: Value" on every line)
                try:
                    ev = dict([line.split(": ", 1) for line in raw.decode("utf-8", "replace").split(eol)])  # type: ignore[misc]
                except ValueError:
                    ev = None
                else:
                    if "Event" in ev or "Response" in ev or "Action" in ev:
                        out.append(ev)
                        self.frames += 1
                        continue
            ev = self._frame(raw, eol)
            if ev is not None:
                out.append(ev)
        self.ignored += ignored
        if len(self._buf) > self.max_frame_bytes:
            self._overflow()
        return out

    def _keep(self, tail: bytes) -> bytes:
        """The end of dropped bytes that may be the first half of the empty line ending the frame."""
        sep = b"\r\n\r\n" if self._crlf else b"\n\n"
        for i in range(len(sep) - 1, 0, -1):
            if tail.endswith(sep[:i]):
                return sep[:i]
        return b""

    def _overflow(self) -> None:
        if not self._discarding:
            self._problem("frame_too_large", size=len(self._buf), limit=self.max_frame_bytes)
        self._buf = self._keep(self._buf)
        self._discarding = True

    def _frame(self, raw: bytes, eol: str) -> dict[str, str] | None:
        if raw[0] in (10, 13):  # leading empty lines between frames
            raw = raw.lstrip(b"\r\n")
            if not raw:
                return None
        if len(raw) > self.max_frame_bytes:
            self._problem("frame_too_large", size=len(raw), limit=self.max_frame_bytes)
            return None
        lines = raw.decode("utf-8", "replace").split(eol)
        try:
            ev = dict([line.split(": ", 1) for line in lines])  # type: ignore[misc]
        except ValueError:
            ev = {}
            bad = 0
            for line in lines:
                k, sep, v = line.partition(":")
                k = k.strip()
                if not sep or not k or " " in k:
                    bad += 1
                    continue
                ev[k] = v[1:] if v.startswith(" ") else v
            if bad:
                self.skipped_lines += bad
                if ev:
                    self._problem("malformed_lines", lines=bad, count_as_frame=False)
        if "Event" not in ev and "Response" not in ev and "Action" not in ev:
            self._problem("not_a_message", size=len(raw))
            return None
        self.frames += 1
        return ev

    def _problem(self, what: str, count_as_frame: bool = True, **kw: int) -> None:
        if count_as_frame:
            self.skipped_frames += 1
        self.last_problem = what
        self._reported += 1
        n = self._reported
        if n <= 10 or n % 1000 == 0:
            log.warning(
                "ami.frame_skipped",
                problem=what,
                skipped_frames=self.skipped_frames,
                skipped_lines=self.skipped_lines,
                **kw,
            )
