"""``textbackd doctor``: check a setup part by part, each with a one-line verdict and a fix.

Checks, in order (a later one is skipped when what it needs failed):

* ``config``   the file loads (else: the file, key and reason);
* ``pbx``      the PBX kind's own checks (``pbx/<kind>/checks.py``): reachable,
               login, the permissions the daemon needs, events arriving;
* ``sender``   per sender, the kind's check (``SenderKind.check``): a modem's
               own init (SIM, registration, signal), a gateway's credentials
               where they can be checked without sending;
* ``smtp``     when ``[email]`` is set: connect, TLS as configured, login;
* ``store``    opens (migrating if needed), takes a write, its size;
* ``clock``    the time zone loads, the local time there, NTP sync when the
               system can tell.

``run(config_path) -> (results, exit_code)``; exit 0 only when every check passed.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime

from textbackd import __version__
from textbackd import config as cfgmod
from textbackd.core.checks import Check as Result
from textbackd.pbx import registry as pbx_kinds
from textbackd.senders import registry as sender_kinds


def version_facts(config: str | None = None) -> dict[str, str]:
    """The facts ``--version`` and ``doctor`` report: package, store schema (built in and on disk), Python."""
    from textbackd import config as cfgmod
    from textbackd.store.db import SCHEMA_VERSION, file_schema

    path = cfgmod.resolve_path(config)
    try:
        store = cfgmod.load(path).store.path
        where = f"from {path}"
    except cfgmod.ConfigError:
        store = cfgmod.StoreConfig().path
        where = f"the default: {path} does not load"
    return {
        "textbackd": __version__,
        "schema": str(SCHEMA_VERSION),
        "store": f"{store} ({where})",
        "store_file": file_schema(store),
        "python": platform.python_version(),
        "python_exe": sys.executable,
    }


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
    for r in await pbx_kinds.get(cfg.pbx.kind).checks(cfg, timeout):
        add(r)
    if not cfg.senders:
        add(Result("sender", False, "no [[senders]] configured: texts would wait forever",
                   "add a [[senders]] table (modem, kannel, twilio or http)"))
    for sc in cfg.senders:
        add(await sender_kinds.get(sc.kind).check(sc, cfg, timeout))
    add(await _smtp(cfg, timeout))
    add(_store(cfg))
    add(_clock(cfg))
    add(Result("version", True, "textbackd {textbackd}, store schema {schema} (the file: {store_file}), "
               "Python {python}".format(**version_facts(path))))
    return results


def exit_code(results: list[Result]) -> int:
    return 0 if all(r.ok is not False for r in results) and results and results[0].ok else 1


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
