"""A TCP server that speaks just enough of the FreeSWITCH event socket to replay a recorded capture.

For the client tests, ``textbackd demo``-style runs and end-to-end tests with
``kind = "freeswitch"``: it sends the ``auth/request`` banner, answers
``auth``/``userauth`` (checking the password), ``event plain|json …``,
``api show channels as json``, ``api status``, ``bgapi`` (with a
BACKGROUND_JOB) and ``exit`` like mod_event_socket does, and after the
subscription streams the recorded events the client subscribed to, in
``event plain`` or (converted) ``event json``, spaced by their recorded
``Event-Date-Timestamp`` divided by ``speed`` (0: as fast as the socket
takes them).

Test knobs: ``split`` writes every frame in pieces of that many bytes
(``1`` = every byte apart); ``drop_after`` aborts the first session after so
many events; ``silent_after`` makes the first session go quiet (no events,
no replies, socket open) after so many events, like a dead link;
``resume`` lets a reconnecting client get the rest of the capture.
"""

from __future__ import annotations

import asyncio
import json
import uuid as uuidlib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from textbackd.pbx.freeswitch.frames import EslParser, event_of, event_time
from textbackd.pbx.replay_base import LoopbackServer

DISCONNECT_BODY = b"Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n"


@dataclass(frozen=True, slots=True)
class Block:
    at: float  # seconds since the first event
    name: str
    subclass: str
    plain: bytes  # the whole text/event-plain frame as recorded
    headers: dict[str, str]


def load_capture(path: str | Path) -> list[Block]:
    """The event frames of a recorded ``event plain`` capture (``.gz`` accepted), with their times."""
    from textbackd.pbx.base import open_trace

    data = open_trace(path)
    blocks: list[Block] = []
    t0: float | None = None
    for frame in EslParser().feed(data):
        if frame.content_type != "text/event-plain":
            continue
        ev = event_of(frame)
        if ev is None:
            continue
        t = event_time(ev) or 0.0
        if t0 is None:
            t0 = t
        raw = b"Content-Length: %d\nContent-Type: text/event-plain\n\n" % len(frame.body) + frame.body
        blocks.append(Block(max(0.0, t - t0), ev["Event-Name"], ev.get("Event-Subclass", ""), raw, dict(ev.items())))
    return blocks


def plain_frame(headers: dict[str, str], body: str = "") -> bytes:
    text = "".join(f"{k}: {quote(v, safe='')}\n" for k, v in headers.items())
    raw = text.encode()
    if body:
        b = body.encode()
        raw += b"Content-Length: %d\n\n" % len(b) + b
    else:
        raw += b"\n"
    return b"Content-Length: %d\nContent-Type: text/event-plain\n\n" % len(raw) + raw


def json_frame(headers: dict[str, str]) -> bytes:
    raw = json.dumps(headers).encode()
    return b"Content-Length: %d\nContent-Type: text/event-json\n\n" % len(raw) + raw


def reply(text: str, **extra: str) -> bytes:
    more = "".join(f"{k.replace('_', '-')}: {v}\n" for k, v in extra.items())
    return f"Content-Type: command/reply\nReply-Text: {text}\n{more}\n".encode()


def api_response(body: str) -> bytes:
    b = body.encode()
    return b"Content-Type: api/response\nContent-Length: %d\n\n" % len(b) + b


def disconnect_notice() -> bytes:
    return b"Content-Type: text/disconnect-notice\nContent-Length: %d\n\n" % len(DISCONNECT_BODY) + DISCONNECT_BODY


class _Subscription:
    def __init__(self, words: list[str]) -> None:
        self.all = "ALL" in words
        if "CUSTOM" in words:
            i = words.index("CUSTOM")
            self.names = set(words[:i])
            self.subclasses = set(words[i + 1 :])
        else:
            self.names = set(words)
            self.subclasses = set()

    def wants(self, b: Block) -> bool:
        if self.all:
            return True
        if b.name == "CUSTOM":
            return b.subclass in self.subclasses
        return b.name in self.names


class EslReplayServer(LoopbackServer):
    """``async with EslReplayServer(blocks, password="ClueCon") as srv: srv.port``."""

    def __init__(
        self,
        blocks: list[Block],
        *,
        password: str = "ClueCon",
        secret: str | None = None,  # the AmiReplayServer spelling, so tests can build either server alike
        host: str = "127.0.0.1",
        port: int = 0,
        speed: float = 0.0,
        split: int | None = None,
        drop_after: int | None = None,
        silent_after: int | None = None,
        resume: bool = True,
        channels: list[dict[str, str]] | None = None,
    ) -> None:
        self.blocks = blocks
        self.password = password if secret is None else secret
        self.host = host
        self.port = port
        self.speed = speed
        self.split = split
        self.drop_after = drop_after
        self.silent_after = silent_after
        self.resume = resume
        self.channels = channels or []
        self.position = 0
        self.sessions = 0
        self.logins = 0
        self.commands: list[str] = []
        self.finished = asyncio.Event()
        self._init_server()
        self._silent: set[int] = set()

    def channels_at(self, position: int) -> list[dict[str, str]]:
        """``show channels`` rows for the channels up after the first ``position`` recorded events."""
        rows: dict[str, dict[str, str]] = {}
        for b in self.blocks[:position]:
            h = b.headers
            u = h.get("Unique-ID", "")
            if b.name == "CHANNEL_CREATE" and u:
                ts = h.get("Event-Date-Timestamp", "0")
                rows[u] = {
                    "uuid": u,
                    "direction": h.get("Call-Direction", ""),
                    "created_epoch": str(int(ts) // 1_000_000) if ts.isdigit() else "0",
                    "name": h.get("Channel-Name", ""),
                    "cid_name": h.get("Caller-Caller-ID-Name", ""),
                    "cid_num": h.get("Caller-Caller-ID-Number", ""),
                    "dest": h.get("Caller-Destination-Number", ""),
                    "context": h.get("Caller-Context", ""),
                    "call_uuid": h.get("Channel-Call-UUID", u),
                    "initial_cid_num": h.get("Caller-Caller-ID-Number", ""),
                    "initial_dest": h.get("Caller-Destination-Number", ""),
                    "initial_context": h.get("Caller-Context", ""),
                }
            elif b.name in ("CHANNEL_HANGUP_COMPLETE", "CHANNEL_DESTROY"):
                rows.pop(u, None)
        return list(rows.values())

    async def _write(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        if self.split:
            for i in range(0, len(data), self.split):
                writer.write(data[i : i + self.split])
                if i % (self.split * 256) == 0:
                    await writer.drain()
        else:
            writer.write(data)
        await writer.drain()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.sessions += 1
        session = self.sessions
        self._writers.add(writer)
        streamer: asyncio.Task | None = None
        authed = False
        try:
            await self._write(writer, b"Content-Type: auth/request\n\n")
            while True:
                raw = await reader.readuntil(b"\n\n")
                line = raw.decode("utf-8", "replace").strip()
                self.commands.append(line.split(" ", 1)[0] if line.startswith(("auth", "userauth")) else line)
                if session in self._silent:
                    continue
                words = line.split()
                cmd = words[0] if words else ""
                if not authed:
                    pw = ""
                    if cmd == "auth" and len(words) > 1:
                        pw = line.split(" ", 1)[1]
                    elif cmd == "userauth" and len(words) > 1:
                        pw = line.split(" ", 1)[1].rsplit(":", 1)[-1]
                    if cmd in ("auth", "userauth") and pw == self.password:
                        authed = True
                        self.logins += 1
                        await self._write(writer, reply("+OK accepted"))
                        continue
                    await self._write(writer, reply("-ERR invalid") + disconnect_notice())
                    break
                if cmd == "event" and len(words) > 1:
                    fmt = words[1]
                    await self._write(writer, reply(f"+OK event listener enabled {fmt}"))
                    if streamer is None:
                        sub = _Subscription(words[2:])
                        streamer = asyncio.create_task(self._stream(writer, session, sub, fmt))
                elif cmd == "api":
                    rest = line.split(" ", 1)[1] if len(words) > 1 else ""
                    if rest == "show channels as json":
                        rows = self.channels or self.channels_at(self.position)
                        body = json.dumps({"row_count": len(rows), "rows": rows} if rows else {"row_count": 0})
                    elif rest == "status":
                        body = "UP 0 years, 0 days\nFreeSWITCH (Version 1.10.12-release 64bit) is ready\n"
                    else:
                        body = f"-ERR {rest.split(' ', 1)[0]} Command not found!\n"
                    await self._write(writer, api_response(body))
                elif cmd == "bgapi":
                    job = str(uuidlib.uuid4())
                    await self._write(writer, reply(f"+OK Job-UUID: {job}", Job_UUID=job))
                    await self._write(
                        writer,
                        plain_frame({"Event-Name": "BACKGROUND_JOB", "Job-UUID": job, "Job-Command": words[1] if len(words) > 1 else ""}, "+OK\n"),
                    )
                elif cmd == "exit":
                    await self._write(writer, reply("+OK bye") + disconnect_notice())
                    break
                else:
                    await self._write(writer, reply("-ERR command not found"))
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            await self._end_session(writer, streamer)

    async def _stream(self, writer: asyncio.StreamWriter, session: int, sub: _Subscription, fmt: str) -> None:
        sent = 0
        async for b in self.paced(sub.wants):
            await self._write(writer, b.plain if fmt == "plain" else json_frame(b.headers))
            sent += 1
            if session == 1 and self.drop_after is not None and sent >= self.drop_after:
                writer.close()  # FIN after the data: a PBX restart, not lost bytes
                return
            if session == 1 and self.silent_after is not None and sent >= self.silent_after:
                self._silent.add(session)
                return
        self.finished.set()
