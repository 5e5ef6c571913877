"""A TCP server that speaks just enough AMI to replay a recorded capture.

Used by ``textbackd demo`` (the built-in PBX) and by the end-to-end tests and
benchmarks: it sends the banner, answers ``Login`` (checking the secret),
``Ping``, ``Events``, ``CoreShowChannels`` and ``Logoff`` like Asterisk does,
and after login streams the recorded events with their recorded spacing
divided by ``speed`` (``speed=0``: as fast as the socket takes them).

The capture is the raw ``.ami`` byte stream and its ``.timing`` sidecar (see
the trace README): each timed block ``<`` is one frame at ``offset``/``length``.
The recorded banner, login response, ``FullyBooted`` and ``Goodbye`` are not
replayed as events; the server makes its own.
"""

from __future__ import annotations

import asyncio
import gzip
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from textbackd.pbx.replay_base import LoopbackServer

BANNER = b"Asterisk Call Manager/11.0.0\r\n"


@dataclass(frozen=True, slots=True)
class Block:
    at: float  # seconds since the capture's connect
    data: bytes


def _read(path: Path) -> bytes:
    raw = path.read_bytes()
    return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw


def load_capture(ami_path: str | Path, timing_path: str | Path | None = None) -> list[Block]:
    """The event frames of a capture with their recorded times.

    Without a sidecar the frames are split on blank lines and spaced 10 ms apart.
    """
    ami = _read(Path(ami_path))
    blocks: list[Block] = []
    if timing_path is not None and Path(timing_path).exists():
        for line in _read(Path(timing_path)).decode().splitlines():
            if not line or line.startswith("#"):
                continue
            t, direction, off, length, first = line.split("\t", 4)
            if direction != "<":
                continue
            frame = ami[int(off) : int(off) + int(length)]
            if _skip(first):
                continue
            blocks.append(Block(float(t), frame))
        return blocks
    body = ami.replace(b"\r\n", b"\n")
    for i, chunk in enumerate(body.split(b"\n\n")):
        first = chunk.split(b"\n", 1)[0].decode("utf-8", "replace")
        if not chunk.strip() or _skip(first):
            continue
        blocks.append(Block(i * 0.01, chunk.replace(b"\n", b"\r\n") + b"\r\n\r\n"))
    return blocks


def _skip(first_line: str) -> bool:
    return (
        first_line.startswith("Asterisk Call Manager")
        or first_line.startswith("Response:")
        or first_line == "Event: FullyBooted"
    )


def builtin_busy_hour() -> list[Block]:
    """The recorded busy office hour shipped with textbackd (46 calls, about 5 minutes)."""
    data = resources.files("textbackd") / "data"
    with resources.as_file(data / "busy-hour.ami.gz") as ami, resources.as_file(data / "busy-hour.timing.gz") as timing:
        return load_capture(ami, timing)


def _parse_action(frame: bytes) -> dict[str, str]:
    """Keys lower-cased, except the value of ``Event`` which keeps its case."""
    out: dict[str, str] = {}
    for line in frame.decode("utf-8", "replace").splitlines():
        k, sep, v = line.partition(":")
        if sep:
            out.setdefault(k.strip().lower(), v.strip())
    return out


_CSC_NAMES = {
    "channel": "Channel", "channelstate": "ChannelState", "channelstatedesc": "ChannelStateDesc",
    "calleridnum": "CallerIDNum", "calleridname": "CallerIDName", "connectedlinenum": "ConnectedLineNum",
    "connectedlinename": "ConnectedLineName", "language": "Language", "accountcode": "AccountCode",
    "context": "Context", "exten": "Exten", "priority": "Priority", "uniqueid": "Uniqueid", "linkedid": "Linkedid",
    "application": "Application", "applicationdata": "ApplicationData", "bridgeid": "BridgeId", "duration": "Duration",
}


def _frame(event: str, head: str, fields: dict[str, str]) -> bytes:
    lines = [f"Event: {event}"] + ([head.strip()] if head else [])
    lines += [f"{_CSC_NAMES.get(k, k)}: {v}" for k, v in fields.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class AmiReplayServer(LoopbackServer):
    """``async with AmiReplayServer(blocks, secret=...) as srv: srv.port``.

    Each new session replays from the start unless ``resume`` is set, in which
    case a reconnecting client gets the rest of the capture (a PBX that kept
    running while the link was down). ``drop_after`` closes the first session
    after that many events, to test reconnects.
    """

    def __init__(
        self,
        blocks: list[Block],
        *,
        username: str = "textbackd",
        secret: str = "",
        speed: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
        drop_after: int | None = None,
        resume: bool = True,
    ) -> None:
        self.blocks = blocks
        self.username = username
        self.secret = secret
        self.speed = speed
        self.host = host
        self.port = port
        self.drop_after = drop_after
        self.resume = resume
        self.position = 0
        self.sessions = 0
        self.logins = 0
        self.finished = asyncio.Event()
        self._init_server()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.sessions += 1
        session = self.sessions
        self._writers.add(writer)
        streamer: asyncio.Task | None = None
        try:
            writer.write(BANNER)
            await writer.drain()
            while True:
                frame = await reader.readuntil(b"\r\n\r\n")
                action = _parse_action(frame)
                name = action.get("action", "").lower()
                aid = action.get("actionid", "")
                head = f"ActionID: {aid}\r\n" if aid else ""
                if name == "login":
                    if action.get("username") != self.username or action.get("secret") != self.secret:
                        writer.write(f"Response: Error\r\n{head}Message: Authentication failed\r\n\r\n".encode())
                        await writer.drain()
                        break
                    self.logins += 1
                    writer.write(f"Response: Success\r\n{head}Message: Authentication accepted\r\n\r\n".encode())
                    writer.write(
                        b"Event: FullyBooted\r\nPrivilege: system,all\r\nUptime: 100\r\nLastReload: 100\r\n"
                        b"Status: Fully Booted\r\n\r\n"
                    )
                    await writer.drain()
                    if streamer is None:
                        streamer = asyncio.create_task(self._stream(writer, session))
                elif name == "ping":
                    writer.write(f"Response: Success\r\n{head}Ping: Pong\r\nTimestamp: 0.000000\r\n\r\n".encode())
                elif name == "coreshowchannels":
                    items = self.channels_up()
                    writer.write(f"Response: Success\r\n{head}EventList: start\r\nMessage: Channels will follow\r\n\r\n".encode())
                    for ch in items:
                        writer.write(_frame("CoreShowChannel", head, ch))
                    writer.write(
                        f"Event: CoreShowChannelsComplete\r\n{head}EventList: Complete\r\nListItems: {len(items)}\r\n\r\n".encode()
                    )
                elif name == "logoff":
                    writer.write(f"Response: Goodbye\r\n{head}Message: Thanks for all the fish.\r\n\r\n".encode())
                    await writer.drain()
                    break
                else:
                    writer.write(f"Response: Success\r\n{head}\r\n".encode())
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            await self._end_session(writer, streamer)

    def channels_up(self) -> list[dict[str, str]]:
        """The channels alive at the current replay position, as ``CoreShowChannel`` fields.

        Rebuilt from the events already streamed, as a real Asterisk that kept
        running while the client was away would list them.
        """
        chans: dict[str, dict[str, str]] = {}
        bridged: dict[str, str] = {}
        last_at = self.blocks[self.position - 1].at if self.position else 0.0
        for b in self.blocks[: self.position]:
            ev = _parse_action(b.data)
            kind = ev.get("event", "")
            uid = ev.get("uniqueid", "")
            if not uid or kind in ("CEL", "Cdr"):
                continue
            if kind == "Hangup":
                chans.pop(uid, None)
                bridged.pop(uid, None)
                continue
            if kind == "Newchannel":
                chans[uid] = {"_created": str(b.at)}
            ch = chans.get(uid)
            if ch is None:
                continue
            for key in ("channel", "channelstate", "channelstatedesc", "calleridnum", "calleridname",
                        "connectedlinenum", "connectedlinename", "language", "accountcode", "context", "exten",
                        "priority", "uniqueid", "linkedid"):
                if key in ev:
                    ch[key] = ev[key]
            if kind == "Newexten":
                ch["application"] = ev.get("application", "")
                ch["applicationdata"] = ev.get("appdata", "")
            elif kind == "BridgeEnter":
                bridged[uid] = ev.get("bridgeuniqueid", "")
            elif kind == "BridgeLeave":
                bridged.pop(uid, None)
        out = []
        for uid, ch in chans.items():
            dur = max(0, int(last_at - float(ch.pop("_created"))))
            ch["bridgeid"] = bridged.get(uid, "")
            ch["duration"] = f"{dur // 3600:02d}:{dur % 3600 // 60:02d}:{dur % 60:02d}"
            out.append(ch)
        return out

    async def _stream(self, writer: asyncio.StreamWriter, session: int) -> None:
        sent = 0
        async for b in self.paced():
            writer.write(b.data)
            sent += 1
            if sent % 64 == 0 or self.speed > 0:
                await writer.drain()
            if self.drop_after is not None and session == 1 and sent >= self.drop_after:
                await writer.drain()
                writer.transport.abort()
                return
        await writer.drain()
        self.finished.set()
