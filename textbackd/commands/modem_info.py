"""`textbackd modem-info`: what the modem says about itself, its SIM and the network.

Reads the device of the first ``kind = "modem"`` sender (or ``--sender``, or
``--device`` — which works without a configuration file too), runs the same init
as the daemon (PIN from the configuration, entered at most once) and prints maker,
model, firmware, the IMEI's last digits, SIM state, operator, registration and
signal in dBm, and, when the modem hung while it was asked, what the recovery ladder
did (ESC, ``AT``, ``ATZ`` and re-init, reopening the port). Texts waiting on the SIM are
left there for the daemon.
"""

from __future__ import annotations

import argparse
import json
import sys

from textbackd.core.errors import ConfigError, TextbackError

NAME = "modem-info"
HELP = "show modem, SIM, operator, registration and signal (dBm)"

FIELDS = (
    ("maker", "maker"),
    ("model", "model"),
    ("firmware", "firmware"),
    ("imei_tail", "IMEI (last digits)"),
    ("sim", "SIM"),
    ("operator", "operator"),
    ("registration", "registration"),
    ("signal_dbm", "signal (dBm)"),
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", metavar="DEV", help="serial device (default: the modem sender's device)")
    p.add_argument("--sender", metavar="NAME", help="which modem sender of the configuration (default: the first)")
    p.add_argument("--json", action="store_true", help="print JSON instead of lines")


def _config(args: argparse.Namespace) -> cfgmod.Config:
    from textbackd import config as cfgmod
    from textbackd.core import log

    try:
        cfg = cfgmod.load(cfgmod.resolve_path(args.config))
    except ConfigError:
        if not args.device or args.config:
            raise
        # --device alone: no configuration needed.
        cfg = cfgmod.parse({"business": {"name": "modem-info"}}, env={})
    log.setup(args.log_level or cfg.logging.level, cfg.logging.format)
    return cfg


def run(args: argparse.Namespace) -> int:
    import asyncio
    import dataclasses
    from textbackd.senders.modem.checks import probe
    from textbackd.senders.modem.config import ModemConfig

    cfg = _config(args)
    modems = [s for s in cfg.senders if s.kind == "modem"]
    if args.sender:
        try:
            sc = cfg.sender(args.sender)
        except KeyError:
            raise ConfigError(f"no sender named {args.sender!r}", file=cfg.source) from None
        if sc.kind != "modem":
            raise TextbackError(f"sender {args.sender!r} is a {sc.kind} sender, not a modem")
    elif modems:
        sc = modems[0]
    elif args.device:
        sc = ModemConfig(name="modem", kind="modem", device=args.device)
    else:
        raise TextbackError(f"{cfg.source}: no modem sender configured; give --device /dev/ttyUSB0")
    if args.device:
        sc = dataclasses.replace(sc, device=args.device)
    status = asyncio.run(probe(sc, cfg))
    if status["state"] != "ready":
        print(f"textbackd modem-info: {status['reason'] or sc.device + ': ' + status['state']}", file=sys.stderr)
        return 1
    recovery = {k: status[k] for k in ("last_recovery", "resets") if status.get("last_recovery")}
    if args.json:
        print(json.dumps({"device": sc.device, **{k: status.get(k) for k, _ in FIELDS}, **recovery}))
    else:
        print(f"device: {sc.device}")
        for key, label in FIELDS:
            val = status.get(key)
            print(f"{label}: {'unknown' if val in (None, '') else val}")
        if recovery:  # the modem hung during this check and the recovery ladder brought it back
            print(f"recovery: {recovery['last_recovery']} (resets: {recovery['resets']})")
    return 0

