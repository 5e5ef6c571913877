"""`textbackd send`: one text through one configured sender (modem or gateway), result as JSON.

It retries like the outbox does for one text: a temporary failure (``+CMS ERROR: 38``, a
gateway 503, a modem that is down or hung and being reset) is tried again with the outbox's
backoff (``policy.retry_base_seconds``, doubling) for up to ``--retry-for`` seconds (default
60); a long text whose part 2 failed resumes with the same concatenation reference, so the
phone still joins it. ``--no-retry`` tries once.

Exit status: 0 sent (JSON ``{"sender", "segments", "references", "encoding", "attempts"}`` on
stdout); 75 (EX_TEMPFAIL) when the failure is still temporary after the retries, or the sender
is down — try again or ``--via`` another sender; 1 for a permanent failure (with the 27.005
meaning for a modem), a send whose outcome is unknown (do not simply resend: the phone may
already have it), or a configuration problem.
"""

from __future__ import annotations

import argparse
import json
import sys

from textbackd.commands._common import load_config
from textbackd.core.errors import PermanentSendError, SendError, TemporarySendError, TextbackError, UnknownSendError

NAME = "send"
HELP = "send one text through a configured sender and print the result as JSON"
DESCRIPTION = (
    "Send one text through a configured sender (default: the first in the configuration), retrying temporary "
    "failures with the outbox's backoff for up to --retry-for seconds. Prints {sender, segments, references, "
    "attempts} as JSON; exits 75 when the sender is down or the failure is still temporary, 1 when it is "
    "permanent or its outcome unknown."
)
EX_TEMPFAIL = 75
RETRY_MAX = 3600.0  # the outbox's cap between tries


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--via", metavar="SENDER", help="the [[senders]] name to use (default: the first one)")
    p.add_argument("--to", metavar="NUMBER", required=True, help="destination, E.164 (+12125550101) or national")
    p.add_argument("--retry-for", metavar="SECONDS", type=float, default=60.0,
                   help="keep retrying temporary failures for this long (default 60)")
    p.add_argument("--no-retry", action="store_true", help="try once (a temporary failure exits 75 at once)")
    p.add_argument("text", metavar="TEXT", help='the text ("-" reads it from standard input)')


class _Failed(Exception):
    def __init__(self, error: SendError, attempts: int) -> None:
        super().__init__(error, attempts)
        self.error, self.attempts = error, attempts


def run(args: argparse.Namespace) -> int:
    import asyncio
    from textbackd.core import numbers
    from textbackd.senders.registry import build_sender

    cfg = load_config(args)
    if not cfg.senders:
        raise TextbackError(f"{cfg.source}: no [[senders]] configured")
    if args.retry_for < 0:
        raise TextbackError("--retry-for: give a number of seconds, 0 or more")
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
    retry_for = 0.0 if args.no_retry else args.retry_for
    try:
        res, attempts = asyncio.run(_send(sender, dest, text, retry_for, cfg.policy.retry_base_seconds))
    except _Failed as f:
        e = f.error
        if isinstance(e, TemporarySendError):
            kind, status = "temporary failure, try again later", EX_TEMPFAIL
        elif isinstance(e, PermanentSendError):
            kind, status = "permanent failure", 1
        elif isinstance(e, UnknownSendError):
            kind, status = "outcome unknown (the text may have gone out; do not resend blindly)", 1
        else:
            kind, status = "failed", 1
        code = f" [{e.code}]" if e.code else ""
        tries = f" after {f.attempts} attempts" if f.attempts > 1 else ""
        print(f"textbackd send: {kind}{code}{tries}: {e}", file=sys.stderr)
        return status
    print(json.dumps({"sender": res.sender, "segments": res.segments, "references": list(res.references),
                      "encoding": res.encoding, "attempts": attempts}))
    return 0


async def _send(sender: Sender, to: str, text: str, retry_for: float, base: float) -> tuple[SendResult, int]:
    """Send, retrying temporary failures within ``retry_for`` seconds; (result, attempts) or ``_Failed``."""
    import asyncio
    from textbackd.core.model import SendResult
    from textbackd.daemon.outbox import retry_delay, takes_track
    from textbackd.senders.base import MemoryTrack, NullSink, Sender

    loop = asyncio.get_running_loop()
    deadline = loop.time() + retry_for
    track = MemoryTrack(sender.name)  # a multipart text resumes where the last attempt stopped
    await sender.start(NullSink())
    attempt = 0
    try:
        while True:
            attempt += 1
            try:
                if takes_track(sender):
                    return await sender.send(to, text, track=track), attempt
                return await sender.send(to, text), attempt
            except TemporarySendError as e:
                track.refused()
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise _Failed(e, attempt) from None
                delay = min(retry_delay(attempt, base, RETRY_MAX, e.retry_after), remaining)
                print(f"textbackd send: attempt {attempt}: {e}; trying again in {delay:.0f}s", file=sys.stderr)
                await asyncio.sleep(delay)
            except SendError as e:
                raise _Failed(e, attempt) from None
    finally:
        await sender.close()
