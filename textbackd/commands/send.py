"""`textbackd send`: one text through one configured sender (modem or gateway), result as JSON.

Exit status: 0 sent (JSON ``{"sender", "segments", "references", "encoding"}`` on stdout);
75 (EX_TEMPFAIL) for a temporary failure or a sender that is down — try again or
``--via`` another sender; 1 for a permanent failure, a send whose outcome is unknown
(do not simply resend: the phone may already have it), or a configuration problem.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from textbackd.commands._common import load_config
from textbackd.core import numbers
from textbackd.core.errors import PermanentSendError, SendError, TemporarySendError, TextbackError, UnknownSendError
from textbackd.senders.base import NullSink
from textbackd.senders.registry import build_sender

NAME = "send"
HELP = "send one text through a configured sender and print the result as JSON"
DESCRIPTION = (
    "Send one text through a configured sender (default: the first in the configuration). "
    "Prints {sender, segments, references} as JSON; exits 75 when the sender is down or the "
    "failure is temporary, 1 when it is permanent or its outcome unknown."
)
EX_TEMPFAIL = 75


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--via", metavar="SENDER", help="the [[senders]] name to use (default: the first one)")
    p.add_argument("--to", metavar="NUMBER", required=True, help="destination, E.164 (+12125550101) or national")
    p.add_argument("text", metavar="TEXT", help='the text ("-" reads it from standard input)')


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    if not cfg.senders:
        raise TextbackError(f"{cfg.source}: no [[senders]] configured")
    name = args.via or cfg.senders[0].name
    text = sys.stdin.read().rstrip("\n") if args.text == "-" else args.text
    if not text:
        raise TextbackError("the text is empty")
    ok, dest = numbers.textable(args.to, cfg.business.default_region)
    if not ok:
        raise TextbackError(f"--to {args.to!r} cannot get a text ({dest.replace('_', ' ')})")
    sender = build_sender(name, cfg)
    if getattr(sender, "kind", "") == "modem":
        sender.receive = False  # leave replies on the SIM for the daemon
    try:
        res = asyncio.run(_send(sender, dest, text))
    except SendError as e:
        if isinstance(e, TemporarySendError):
            kind, status = "temporary failure, try again later", EX_TEMPFAIL
        elif isinstance(e, PermanentSendError):
            kind, status = "permanent failure", 1
        elif isinstance(e, UnknownSendError):
            kind, status = "outcome unknown (the text may have gone out; do not resend blindly)", 1
        else:
            kind, status = "failed", 1
        code = f" [{e.code}]" if e.code else ""
        print(f"textbackd send: {kind}{code}: {e}", file=sys.stderr)
        return status
    print(json.dumps({"sender": res.sender, "segments": res.segments, "references": list(res.references), "encoding": res.encoding}))
    return 0


async def _send(sender, to: str, text: str):
    await sender.start(NullSink())
    try:
        return await sender.send(to, text)
    finally:
        await sender.close()
