"""``doctor`` for FreeSWITCH: the event socket reachable, ``auth`` accepted, ``event plain``
accepted, ``api show channels`` answered, events arriving. Through the daemon's own ``EslParser``."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING

from textbackd.core.checks import Check
from textbackd.pbx.base import connect
from textbackd.pbx.freeswitch.client import subscription
from textbackd.pbx.freeswitch.frames import EslParser

if TYPE_CHECKING:
    from textbackd.core.settings import Config


async def checks(cfg: Config, timeout: float) -> list[Check]:
    p = cfg.pbx
    where = f"FreeSWITCH event socket {p.host}:{p.port}"
    conn = await connect(p.host, p.port, where, timeout, "is mod_event_socket loaded (event_socket.conf.xml listen-ip/"
                          "listen-port = [pbx] host/port, apply-inbound-acl allowing this host)?")
    if isinstance(conn, Check):
        return [conn]
    reader, writer = conn
    parser = EslParser()
    frames: list = []
    out: list[Check] = []

    async def frame(kind: str | None = None):
        deadline = time.monotonic() + timeout
        while True:
            for i, f in enumerate(frames):
                if kind is None or f.content_type == kind:
                    return frames.pop(i)
            data = await asyncio.wait_for(reader.read(65536), max(0.01, deadline - time.monotonic()))
            if not data:
                raise asyncio.IncompleteReadError(b"", None)
            frames.extend(parser.feed(data))

    async def command(line: str, kind: str) -> str:
        writer.write(f"{line}\n\n".encode())
        await writer.drain()
        f = await frame(kind)
        return (f.headers.get("Reply-Text") or f.body.decode("utf-8", "replace")).strip()

    try:
        first = await frame()
        if first.content_type != "auth/request":
            return [Check("pbx reachable", False, f"{where}: answered {first.content_type!r}, not auth/request",
                           "[pbx] port must be the event socket port (8021 by default), kind = \"freeswitch\"")]
        out.append(Check("pbx reachable", True, f"{where}: asks for a password"))
        reply = await command(f"auth {p.secret.reveal()}", "command/reply")
        if not reply.startswith("+OK"):
            out.append(Check("pbx login", False, f"{where} refused the password: {reply[:80]}",
                              "[pbx] secret must be event_socket.conf.xml's `password`"))
            return out
        out.append(Check("pbx login", True, "password accepted"))
        sub = await command(subscription(), "command/reply")  # the daemon's own subscription, event for event
        api = await command("api show channels as json", "api/response")
        if sub.startswith("+OK") and not api.startswith("-ERR"):
            out.append(Check("pbx permissions", True, "event subscription and `api show channels` answered"))
        else:
            out.append(Check("pbx permissions", False, f"subscription: {sub[:60]!r}, api: {api[:60]!r}",
                              "allow `api` commands for this event socket user (no restrictive apply-inbound-acl)"))
        try:
            await frame("text/event-plain")
            out.append(Check("pbx events", True, "events arriving"))
        except (TimeoutError, asyncio.IncompleteReadError):
            out.append(Check("pbx events", False, f"no event within {timeout:g}s",
                              "FreeSWITCH sends HEARTBEAT every 20 s; run doctor with --timeout 25, "
                              "or check `fsctl` / event-heartbeat-interval"))
    except (TimeoutError, asyncio.IncompleteReadError, OSError) as e:
        out.append(Check("pbx session", False, f"{where}: the session ended early ({type(e).__name__})",
                          "check the FreeSWITCH log for event socket errors"))
    finally:
        with contextlib.suppress(Exception):
            writer.write(b"exit\n\n")
            writer.close()
    return out
