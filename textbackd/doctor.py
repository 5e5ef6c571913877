"""``textbackd doctor``: check a setup part by part, each with a one-line verdict and a fix.

Checks, in order (a later one is skipped when what it needs failed):

* ``config``   the file loads (else: the file, key and reason);
* ``pbx``      AMI: TCP reachable, banner, ``Login`` accepted, the permissions
               the daemon needs (``Events`` answered; ``CoreShowChannels``
               answered, needing read ``system`` or ``reporting``), events
               arriving (``FullyBooted`` or any event within the timeout).
               FreeSWITCH: reachable, ``auth`` accepted, ``event plain``
               accepted, ``api show channels`` answered, events arriving;
* ``sender``   per sender. Modem: the device opens, SIM ready, registered,
               signal (the sender's own init, so the same logic as the
               daemon). Kannel: sendsms reachable and the credentials accepted
               (a request with no receiver: Kannel checks the login first, and
               sends nothing). Twilio: the account resource with the
               credentials (a GET, nothing sent). Generic HTTP: reachable
               (credentials cannot be checked without sending);
* ``smtp``     when ``[email]`` is set: connect, TLS as configured, login;
* ``store``    opens (migrating if needed), takes a write, its size;
* ``clock``    the time zone loads, the local time there, NTP sync when the
               system can tell.

``run(config_path) -> (results, exit_code)``; exit 0 only when every check passed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from textbackd import config as cfgmod
from textbackd.cli import version_facts


@dataclass
class Result:
    check: str
    ok: bool | None  # None: skipped (not configured, or what it needs failed)
    verdict: str
    fix: str = ""

    def line(self) -> str:
        mark = {True: "OK  ", False: "FAIL", None: "SKIP"}[self.ok]
        out = f"{mark}  {self.check:<14} {self.verdict}"
        if self.fix and self.ok is False:
            out += f"\n      fix: {self.fix}"
        return out


async def check_all(path: str, *, timeout: float = 5.0, emit: Callable[[Result], None] | None = None) -> list[Result]:
    results: list[Result] = []

    def add(r: Result) -> None:
        results.append(r)
        if emit is not None:
            emit(r)

    try:
        cfg = cfgmod.load(path)
    except cfgmod.ConfigError as e:
        add(Result("config", False, f"{e}", f"edit {e.file or path}" + (f", key {e.key}" if e.key else "")
                   + "; `textbackd check-config` shows what is understood"))
        return results
    add(Result("config", True, f"{cfg.source} is valid"))
    for r in await (_ami(cfg, timeout) if cfg.pbx.kind == "asterisk" else _esl(cfg, timeout)):
        add(r)
    if not cfg.senders:
        add(Result("sender", False, "no [[senders]] configured: texts would wait forever",
                   "add a [[senders]] table (modem, kannel, twilio or http)"))
    for sc in cfg.senders:
        add(await _sender(cfg, sc, timeout))
    add(await _smtp(cfg, timeout))
    add(_store(cfg))
    add(_clock(cfg))
    add(Result("version", True, "textbackd {textbackd}, store schema {schema} (the file: {store_file}), "
               "Python {python}".format(**version_facts(path))))
    return results


def exit_code(results: list[Result]) -> int:
    return 0 if all(r.ok is not False for r in results) and results and results[0].ok else 1


# --- PBX ---------------------------------------------------------------------------------


async def _read_frame(reader: asyncio.StreamReader, timeout: float) -> dict[str, str]:
    raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    out: dict[str, str] = {}
    for line in raw.decode("utf-8", "replace").split("\r\n"):
        k, sep, v = line.partition(":")
        if sep:
            out.setdefault(k.strip().lower(), v.strip())
    return out


async def _connect(cfg: cfgmod.Config, where: str, timeout: float, fix: str):
    """(reader, writer), or the failed ``pbx reachable`` Result."""
    try:
        return await asyncio.wait_for(asyncio.open_connection(cfg.pbx.host, cfg.pbx.port), timeout)
    except (OSError, TimeoutError) as e:
        why = "no answer in time" if isinstance(e, TimeoutError) else (e.strerror or str(e))
        return Result("pbx reachable", False, f"{where}: cannot connect ({why})", fix)


async def _ami(cfg: cfgmod.Config, timeout: float) -> list[Result]:
    p = cfg.pbx
    where = f"AMI {p.host}:{p.port}"
    conn = await _connect(cfg, where, timeout, "is Asterisk running with manager.conf `enabled = yes`, "
                          "`port`/`bindaddr` matching [pbx] host/port, and no firewall in between?")
    if isinstance(conn, Result):
        return [conn]
    reader, writer = conn
    out = []
    events: list[dict[str, str]] = []
    try:
        banner = (await asyncio.wait_for(reader.readline(), timeout)).decode("utf-8", "replace").strip()
        if not banner.startswith("Asterisk Call Manager"):
            return [Result("pbx reachable", False, f"{where}: answered {banner[:60]!r}, not AMI",
                           "[pbx] port must be the AMI port (5038 by default), kind = \"asterisk\"")]
        out.append(Result("pbx reachable", True, f"{where}: {banner}"))

        async def request(action: str, aid: str, **fields: str) -> dict[str, str]:
            lines = [f"Action: {action}", f"ActionID: {aid}", *(f"{k}: {v}" for k, v in fields.items())]
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
            await writer.drain()
            deadline = time.monotonic() + timeout
            while True:
                f = await _read_frame(reader, max(0.01, deadline - time.monotonic()))
                if "response" in f and f.get("actionid") == aid:
                    return f
                if "event" in f:
                    events.append(f)

        login = await request("Login", "doctor-login", Username=p.username, Secret=p.secret.reveal(),
                              Events="system,call,dialplan,agent")
        if login.get("response", "").lower() != "success":
            out.append(Result("pbx login", False,
                              f"{where} refused the login of {p.username!r}: {login.get('message', 'no reason')}",
                              "[pbx] username/secret must match a user in /etc/asterisk/manager.conf "
                              "(`asterisk -rx 'manager show users'`), and its permit= must allow this host"))
            return out
        out.append(Result("pbx login", True, f"logged in as {p.username!r}"))
        ev = await request("Events", "doctor-events", EventMask="system,call,dialplan,agent")
        chans = await request("CoreShowChannels", "doctor-channels")
        denied = [n for n, r in (("Events", ev), ("CoreShowChannels", chans))
                  if r.get("response", "").lower() != "success"]
        if denied:
            out.append(Result("pbx permissions", False, f"{', '.join(denied)} refused: "
                              + "; ".join(r.get("message", "?") for r in (ev, chans) if r.get("response", "").lower() != "success"),
                              f"give {p.username!r} in manager.conf `read = system,call,dialplan,agent,reporting` "
                              "(the README's least-privilege user) and `asterisk -rx 'manager reload'`"))
        else:
            out.append(Result("pbx permissions", True, "Events and CoreShowChannels answered"))
        deadline = time.monotonic() + timeout
        while not events and time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError, asyncio.IncompleteReadError):
                f = await _read_frame(reader, max(0.01, deadline - time.monotonic()))
                if "event" in f:
                    events.append(f)
        if events:
            out.append(Result("pbx events", True, f"events arriving ({events[0].get('event')} first)"))
        else:
            out.append(Result("pbx events", False, f"no event within {timeout:g}s of logging in",
                              f"give {p.username!r} `read = system,call,dialplan,agent` in manager.conf "
                              "(without `system` not even FullyBooted arrives)"))
    except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError) as e:
        out.append(Result("pbx session", False, f"{where}: the session ended early ({type(e).__name__})",
                          "check the Asterisk log (`asterisk -rvvv`) for manager errors"))
    finally:
        with contextlib.suppress(Exception):
            writer.write(b"Action: Logoff\r\nActionID: doctor-bye\r\n\r\n")
            writer.close()
            await asyncio.wait_for(writer.wait_closed(), 1)
    return out


async def _esl(cfg: cfgmod.Config, timeout: float) -> list[Result]:
    from textbackd.pbx.freeswitch.frames import EslParser

    p = cfg.pbx
    where = f"FreeSWITCH event socket {p.host}:{p.port}"
    conn = await _connect(cfg, where, timeout, "is mod_event_socket loaded (event_socket.conf.xml listen-ip/"
                          "listen-port = [pbx] host/port, apply-inbound-acl allowing this host)?")
    if isinstance(conn, Result):
        return [conn]
    reader, writer = conn
    parser = EslParser()
    frames: list = []
    out: list[Result] = []

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
            return [Result("pbx reachable", False, f"{where}: answered {first.content_type!r}, not auth/request",
                           "[pbx] port must be the event socket port (8021 by default), kind = \"freeswitch\"")]
        out.append(Result("pbx reachable", True, f"{where}: asks for a password"))
        reply = await command(f"auth {p.secret.reveal()}", "command/reply")
        if not reply.startswith("+OK"):
            out.append(Result("pbx login", False, f"{where} refused the password: {reply[:80]}",
                              "[pbx] secret must be event_socket.conf.xml's `password`"))
            return out
        out.append(Result("pbx login", True, "password accepted"))
        sub = await command("event plain CHANNEL_CREATE CHANNEL_ANSWER CHANNEL_HANGUP_COMPLETE HEARTBEAT",
                            "command/reply")
        api = await command("api show channels as json", "api/response")
        if sub.startswith("+OK") and not api.startswith("-ERR"):
            out.append(Result("pbx permissions", True, "event subscription and `api show channels` answered"))
        else:
            out.append(Result("pbx permissions", False, f"subscription: {sub[:60]!r}, api: {api[:60]!r}",
                              "allow `api` commands for this event socket user (no restrictive apply-inbound-acl)"))
        try:
            await frame("text/event-plain")
            out.append(Result("pbx events", True, "events arriving"))
        except (TimeoutError, asyncio.IncompleteReadError):
            out.append(Result("pbx events", False, f"no event within {timeout:g}s",
                              "FreeSWITCH sends HEARTBEAT every 20 s; run doctor with --timeout 25, "
                              "or check `fsctl` / event-heartbeat-interval"))
    except (TimeoutError, asyncio.IncompleteReadError, OSError) as e:
        out.append(Result("pbx session", False, f"{where}: the session ended early ({type(e).__name__})",
                          "check the FreeSWITCH log for event socket errors"))
    finally:
        with contextlib.suppress(Exception):
            writer.write(b"exit\n\n")
            writer.close()
    return out


# --- senders -----------------------------------------------------------------------------


async def _sender(cfg: cfgmod.Config, sc: cfgmod.SenderConfig, timeout: float) -> Result:
    name = f"sender {sc.name}"
    if sc.kind == "modem":
        return await _modem(cfg, sc, name)
    import aiohttp

    u = urlsplit(sc.api_base if sc.kind == "twilio" else sc.url)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as http:
            if sc.kind == "kannel":
                params = {"username": sc.username, "password": sc.password.reveal()}
                async with http.get(sc.url, params=params) as r:
                    body = (await r.text(errors="replace")).strip()
                if r.status == 403 or "authorization failed" in body.lower():
                    return Result(name, False, f"Kannel at {u.netloc} refused the credentials ({r.status}: {body[:60]})",
                                  f"username/password of sender {sc.name!r} must match a sendsms-user "
                                  "group in kannel.conf")
                return Result(name, True, f"Kannel at {u.netloc} reachable, credentials accepted (nothing sent)")
            if sc.kind == "twilio":
                url = f"{sc.api_base.rstrip('/')}/2010-04-01/Accounts/{sc.account_sid}.json"
                auth = aiohttp.BasicAuth(sc.account_sid, sc.auth_token.reveal())
                async with http.get(url, auth=auth) as r:
                    status = r.status
                if status in (401, 403, 404):
                    return Result(name, False, f"Twilio refused account {sc.account_sid!r} ({status})",
                                  f"check account_sid and auth_token of sender {sc.name!r} in the Twilio console")
                if status >= 400:
                    return Result(name, False, f"Twilio answered {status}", "try again; see status.twilio.com")
                return Result(name, True, "Twilio reachable, credentials accepted (nothing sent)")
            async with http.head(sc.url, allow_redirects=False) as r:
                status = r.status
            return Result(name, True, f"{u.netloc} reachable (HTTP {status}); credentials can only be "
                          "checked by sending (`textbackd reply` to a test phone)")
    except (aiohttp.ClientError, OSError, TimeoutError) as e:
        why = "no answer in time" if isinstance(e, TimeoutError) else type(e).__name__
        return Result(name, False, f"{sc.kind} gateway {u.netloc} not reachable ({why})",
                      f"check url of sender {sc.name!r}, that the gateway runs, and DNS/firewall")


async def _modem(cfg: cfgmod.Config, sc: cfgmod.SenderConfig, name: str) -> Result:
    if not os.path.exists(sc.device):
        return Result(name, False, f"{sc.device} does not exist",
                      "plug the modem in; `ls -l /dev/serial/by-id/` shows its stable name for `device`")
    from textbackd.commands.modem_info import _probe  # the daemon's init; texts on the SIM are left alone

    st = await _probe(sc, cfg)
    if st.get("state") != "ready":
        reason = st.get("reason") or st.get("state")
        fix = "stop the daemon first if it holds the modem (`systemctl stop textbackd`); check the SIM and PIN"
        if "pin" in str(reason).lower():
            fix = f"set pin (or pin_file) of sender {sc.name!r}; a SIM asking for PUK needs a phone to unlock"
        return Result(name, False, f"modem {sc.device}: {reason}", fix)
    reg = st.get("registration", "unknown")
    dbm = st.get("signal_dbm")
    desc = f"modem {sc.device}: SIM {st.get('sim', '?')}, {reg}, signal {dbm if dbm is not None else '?'} dBm, " \
           f"{st.get('operator') or 'operator ?'}"
    if not str(reg).startswith("registered"):
        return Result(name, False, desc, "the SIM is not registered: check the antenna, the SIM's plan and coverage")
    if dbm is None or dbm <= -110:
        return Result(name, False, desc, "no usable signal: move the modem or add an external antenna")
    return Result(name, True, desc)


# --- SMTP, store, clock ------------------------------------------------------------------


async def _smtp(cfg: cfgmod.Config, timeout: float) -> Result:
    e = cfg.email
    if not e.enabled:
        return Result("smtp", None, "no [email] host/to: staff e-mail is off")
    import aiosmtplib

    smtp = aiosmtplib.SMTP(hostname=e.host, port=e.port, use_tls=e.tls, start_tls=bool(e.starttls and not e.tls),
                           timeout=timeout)
    where = f"SMTP {e.host}:{e.port}"
    try:
        await smtp.connect()
        if e.username:
            await smtp.login(e.username, e.password.reveal())
        verdict = f"{where}: connected" + (f", logged in as {e.username!r}" if e.username else " (no login configured)")
        return Result("smtp", True, verdict)
    except aiosmtplib.SMTPAuthenticationError as err:
        return Result("smtp", False, f"{where} refused the login of {e.username!r} ({err.code})",
                      "check [email] username/password (an app password for Gmail/Microsoft 365)")
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as err:
        return Result("smtp", False, f"{where}: {type(err).__name__}: {str(err)[:100]}",
                      "check [email] host/port and tls/starttls (465 = tls, 587 = starttls)")
    finally:
        with contextlib.suppress(Exception):
            await smtp.quit()


def _store(cfg: cfgmod.Config) -> Result:
    from textbackd.core.errors import StoreError
    from textbackd.store.db import Store

    path = cfg.store.path
    try:
        s = Store(path)
        try:
            s.probe_write()
            size = s.size_bytes()
            free = shutil.disk_usage(os.path.dirname(os.path.abspath(path))).free
        finally:
            s.close()
    except StoreError as e:
        return Result("store", False, str(e), "the folder must exist and be writable by the daemon's user "
                      "(systemd: StateDirectory=textbackd gives /var/lib/textbackd)")
    except OSError as e:
        return Result("store", False, f"{path}: {e}", "check the folder of [store] path")
    keep = f", kept {cfg.store.retention_days} days" if cfg.store.retention_days else ", kept forever"
    if free < 50 * 1024 * 1024:
        return Result("store", False, f"{path}: writable, {_mb(size)}, only {_mb(free)} free",
                      "free disk space, or set [store] retention_days")
    return Result("store", True, f"{path}: writable, {_mb(size)}{keep}, {_mb(free)} free")


def _mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB"


def _clock(cfg: cfgmod.Config) -> Result:
    try:
        tz = cfg.business.tz
    except Exception as e:  # noqa: BLE001 - config validation normally catches it
        return Result("clock", False, f"time zone {cfg.business.timezone!r}: {e}",
                      "[business] timezone must be an IANA name like America/New_York; install tzdata")
    now = datetime.now(tz)
    if now.year < 2024:
        return Result("clock", False, f"the system clock says {now:%Y-%m-%d}",
                      "set the clock and enable NTP (`timedatectl set-ntp true`)")
    synced = _ntp_synced()
    desc = f"{now:%a %Y-%m-%d %H:%M} in {cfg.business.timezone} (opening hours are read in this zone)"
    if synced is False:
        return Result("clock", False, desc + ", NTP not synchronized",
                      "enable time sync (`timedatectl set-ntp true`); texts are timed by this clock")
    return Result("clock", True, desc + (", NTP synchronized" if synced else ""))


def _ntp_synced() -> bool | None:
    if os.path.exists("/run/systemd/timesync/synchronized"):
        return True
    exe = shutil.which("timedatectl")
    if not exe:
        return None
    try:
        r = subprocess.run([exe, "show", "-p", "NTPSynchronized", "--value"], capture_output=True, text=True, timeout=3)
    except (OSError, subprocess.TimeoutExpired):
        return None
    v = r.stdout.strip()
    return {"yes": True, "no": False}.get(v) if r.returncode == 0 else None
