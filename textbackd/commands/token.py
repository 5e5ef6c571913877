"""`textbackd token add NAME --scope read|write | list | revoke NAME`: API tokens (shown once, stored hashed)."""

from __future__ import annotations

import argparse
import re
import sys
import time

from textbackd.commands._common import cli_actor, config_option, load_config, local_time, table
from textbackd.core.errors import TextbackError

NAME = "token"
HELP = "API tokens: add one (printed once), list them, revoke one"
DESCRIPTION = (
    "add NAME --scope read|write prints a new token for the JSON API (/api/v1) once; only its SHA-256 is "
    "stored, so a lost token is revoked and replaced, never shown again. Writes made with it are audited as "
    "api:NAME. list shows the tokens (never the secret), revoke NAME stops one at once."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    a = sub.add_parser("add", help="make a new token and print it once")
    a.add_argument("name", metavar="NAME", help="who uses it, e.g. crm (writes are audited as api:crm)")
    a.add_argument("--scope", metavar="read|write", required=True,  # checked in run(): --help imports no model
                   help="read: GET only; write: also send texts and mark conversations handled")
    ls = sub.add_parser("list", help="the tokens, without their secrets")
    r = sub.add_parser("revoke", help="stop a token at once")
    r.add_argument("name", metavar="NAME")
    for sp in (a, ls, r):
        config_option(sp)


def run(args: argparse.Namespace) -> int:
    from textbackd.core.model import AuditAction, TokenScope
    from textbackd.store import api as api_q
    from textbackd.store import audit
    from textbackd.store.db import Store

    from textbackd.api.app import hash_token, new_token

    if args.action == "add" and args.scope not in {s.value for s in TokenScope}:
        raise TextbackError(f"--scope {args.scope!r}: choose one of {', '.join(s.value for s in TokenScope)}")
    cfg = load_config(args)
    now = time.time()
    store = Store(cfg.store.path, readonly=args.action == "list")
    try:
        if args.action == "list":
            table(["name", "scope", "created", "by", "last used", "state"],
                  [(t.name, str(t.scope), local_time(t.created), t.created_by, local_time(t.last_used),
                    f"revoked {local_time(t.revoked_at)}" if t.revoked_at else "active") for t in api_q.tokens(store)])
            return 0
        if not re.fullmatch(r"[A-Za-z0-9_.@-]{1,64}", args.name):
            raise TextbackError(f"{args.name!r}: a token name uses letters, digits, '_', '.', '@', '-' (at most 64)")
        if args.action == "add":
            token = new_token()
            with store.tx():
                if not api_q.add_token(store, name=args.name, scope=TokenScope(args.scope), token_hash=hash_token(token),
                                       now=now, by=cli_actor()):
                    raise TextbackError(f"a token named {args.name!r} exists; revoke it first or pick another name")
                audit.record(store, at=now, actor=cli_actor(), action=AuditAction.TOKEN_CHANGED,
                             detail=f"added {args.name} ({args.scope})")
            print(token)
            print(f"token {args.name!r} ({args.scope}): shown once, keep it now; "
                  f"send it as 'Authorization: Bearer <token>'", file=sys.stderr)
            return 0
        with store.tx():
            if not api_q.revoke_token(store, args.name, now=now):
                raise TextbackError(f"no active token named {args.name!r}")
            audit.record(store, at=now, actor=cli_actor(), action=AuditAction.TOKEN_CHANGED, detail=f"revoked {args.name}")
        print(f"token {args.name!r} revoked")
        return 0
    finally:
        store.close()
