"""``doctor`` and ``modem-info`` for a modem: the daemon's own init, texts on the SIM left alone."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from textbackd.core.checks import Check
from textbackd.senders.base import NullSink

if TYPE_CHECKING:
    from textbackd.core.settings import Config
    from textbackd.senders.modem.config import ModemConfig


async def probe(sc: ModemConfig, cfg: Config) -> dict[str, Any]:
    """Open, init (PIN from the config, entered at most once), read the status, close."""
    from textbackd.senders.modem.sender import ModemSender

    sender = ModemSender(sc, cfg)
    sender.receive = False
    await sender.start(NullSink())
    try:
        return sender.status()
    finally:
        await sender.close()


async def check(sc: ModemConfig, cfg: Config, timeout: float) -> Check:
    name = f"sender {sc.name}"
    if not os.path.exists(sc.device):
        return Check(name, False, f"{sc.device} does not exist",
                     "plug the modem in; `ls -l /dev/serial/by-id/` shows its stable name for `device`")
    st = await probe(sc, cfg)
    if st.get("state") != "ready":
        reason = st.get("reason") or st.get("state")
        if st.get("last_recovery"):
            reason = f"{reason} (recovery tried: {st['last_recovery']})"
        fix = "stop the daemon first if it holds the modem (`systemctl stop textbackd`); check the SIM and PIN"
        if "pin" in str(reason).lower():
            fix = f"set pin (or pin_file) of sender {sc.name!r}; a SIM asking for PUK needs a phone to unlock"
        return Check(name, False, f"modem {sc.device}: {reason}", fix)
    reg = st.get("registration", "unknown")
    dbm = st.get("signal_dbm")
    desc = f"modem {sc.device}: SIM {st.get('sim', '?')}, {reg}, signal {dbm if dbm is not None else '?'} dBm, " \
           f"{st.get('operator') or 'operator ?'}"
    if st.get("last_recovery"):  # it hung while we asked and the ladder brought it back: say so
        desc += f"; hung and recovered: {st['last_recovery']}"
    if not str(reg).startswith("registered"):
        return Check(name, False, desc, "the SIM is not registered: check the antenna, the SIM's plan and coverage")
    if dbm is None or dbm <= -110:
        return Check(name, False, desc, "no usable signal: move the modem or add an external antenna")
    return Check(name, True, desc)
