"""``doctor`` for Asterisk: AMI reachable, banner, ``Login`` accepted, the permissions the daemon
needs (``Events`` answered; ``CoreShowChannels`` answered, needing read ``system`` or
``reporting``), and events arriving (``FullyBooted`` or any event within the timeout).

It speaks through the daemon's own ``AmiParser``, so what doctor reads is what the daemon reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING

from textbackd.core.checks import Check
from textbackd.pbx.asterisk.frames import AmiParser
from textbackd.pbx.base import connect

if TYPE_CHECKING:
    from textbackd.core.settings import Config


def _ok(frame: dict[str, str]) -> bool:
    return frame.get("Response", "").lower() == "success"


async def checks(cfg: Config, timeout: float) -> list[Check]:
    p = cfg.pbx
    where = f"AMI {p.host}:{p.port}"
    conn = await connect(p.host, p.port, where, timeout, "is Asterisk running with manager.conf `enabled = yes`, "
                         "`port`/`bindaddr` matching [pbx] host/port, and no firewall in between?")
    if isinstance(conn, Check):
        return [conn]
    reader, writer = conn
    parser = AmiParser()
    pending: list[dict[str, str]] = []
    events: list[dict[str, str]] = []
    out: list[Check] = []

    async def frame(deadline: float) -> dict[str, str]:
        while not pending:
            data = await asyncio.wait_for(reader.read(65536), max(0.01, deadline - time.monotonic()))
            if not data:
                raise asyncio.IncompleteReadError(b"", None)
            pending.extend(parser.feed(data))
        return pending.pop(0)

    async def request(action: str, aid: str, **fields: str) -> dict[str, str]:
        lines = [f"Action: {action}", f"ActionID: {aid}", *(f"{k}: {v}" for k, v in fields.items())]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await writer.drain()
        deadline = time.monotonic() + timeout
        while True:
            f = await frame(deadline)
            if "Response" in f and f.get("ActionID") == aid:
                return f
            if "Event" in f:
                events.append(f)

    try:
        deadline, raw = time.monotonic() + timeout, b""
        while b"\n" not in raw:  # the banner is the session's first line
            data = await asyncio.wait_for(reader.read(65536), max(0.01, deadline - time.monotonic()))
            if not data:
                raise asyncio.IncompleteReadError(raw, None)
            raw += data
        pending.extend(parser.feed(raw))
        banner = parser.banner or ""
        if not banner.startswith("Asterisk Call Manager"):
            shown = raw.split(b"\n", 1)[0].decode("utf-8", "replace").strip()
            return [Check("pbx reachable", False, f"{where}: answered {shown[:60]!r}, not AMI",
                          "[pbx] port must be the AMI port (5038 by default), kind = \"asterisk\"")]
        out.append(Check("pbx reachable", True, f"{where}: {banner}"))
        login = await request("Login", "doctor-login", Username=p.username, Secret=p.secret.reveal(),
                              Events="system,call,dialplan,agent")
        if not _ok(login):
            out.append(Check("pbx login", False,
                             f"{where} refused the login of {p.username!r}: {login.get('Message', 'no reason')}",
                             "[pbx] username/secret must match a user in /etc/asterisk/manager.conf "
                             "(`asterisk -rx 'manager show users'`), and its permit= must allow this host"))
            return out
        out.append(Check("pbx login", True, f"logged in as {p.username!r}"))
        ev = await request("Events", "doctor-events", EventMask="system,call,dialplan,agent")
        chans = await request("CoreShowChannels", "doctor-channels")
        denied = [(n, r) for n, r in (("Events", ev), ("CoreShowChannels", chans)) if not _ok(r)]
        if denied:
            out.append(Check("pbx permissions", False, f"{', '.join(n for n, _ in denied)} refused: "
                             + "; ".join(r.get("Message", "?") for _, r in denied),
                             f"give {p.username!r} in manager.conf `read = system,call,dialplan,agent,reporting` "
                             "(the README's least-privilege user) and `asterisk -rx 'manager reload'`"))
        else:
            out.append(Check("pbx permissions", True, "Events and CoreShowChannels answered"))
        deadline = time.monotonic() + timeout
        while not events and time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError, asyncio.IncompleteReadError):
                f = await frame(deadline)
                if "Event" in f:
                    events.append(f)
        if events:
            out.append(Check("pbx events", True, f"events arriving ({events[0].get('Event')} first)"))
        else:
            out.append(Check("pbx events", False, f"no event within {timeout:g}s of logging in",
                             f"give {p.username!r} `read = system,call,dialplan,agent` in manager.conf "
                             "(without `system` not even FullyBooted arrives)"))
    except (TimeoutError, asyncio.IncompleteReadError, OSError) as e:
        out.append(Check("pbx session", False, f"{where}: the session ended early ({type(e).__name__})",
                         "check the Asterisk log (`asterisk -rvvv`) for manager errors"))
    finally:
        with contextlib.suppress(Exception):
            writer.write(b"Action: Logoff\r\nActionID: doctor-bye\r\n\r\n")
            writer.close()
            await asyncio.wait_for(writer.wait_closed(), 1)
    return out
