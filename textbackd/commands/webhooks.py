"""`textbackd webhooks list|test NAME|enable NAME|secret`: the [[webhooks]] endpoints and their queues."""

from __future__ import annotations

import argparse
import json
import time

from textbackd.commands._common import config_option, load_config, local_time, table
from textbackd.core.errors import TextbackError

NAME = "webhooks"
HELP = "list the webhook endpoints and their queues, send a signed test ping, re-enable one"
DESCRIPTION = (
    "list: each [[webhooks]] endpoint with its events waiting (due now), whether it is failing and the last "
    "error. test NAME: POST a signed `ping` to the endpoint now and print its answer. enable NAME: deliver "
    "new events again to an endpoint a 410 Gone disabled. secret: print a new whsec_ secret for the config."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    ls = sub.add_parser("list", help="endpoints and their queues")
    ls.add_argument("--json", action="store_true", help="one JSON object per endpoint")
    t = sub.add_parser("test", help="send a signed ping to an endpoint")
    t.add_argument("name", metavar="NAME")
    e = sub.add_parser("enable", help="re-enable an endpoint disabled by 410 Gone")
    e.add_argument("name", metavar="NAME")
    sub.add_parser("secret", help="print a new whsec_ secret")
    for sp in (ls, t, e):
        config_option(sp)


def run(args: argparse.Namespace) -> int:
    from textbackd.store import webhooks as wh_q
    from textbackd.store.db import Store

    if args.action == "secret":
        from textbackd.webhooks.signing import new_secret

        print(new_secret())
        return 0
    cfg = load_config(args)
    if args.action == "test":
        return _test(cfg, args.name)
    if args.action == "enable":
        _endpoint(cfg, args.name)
        store = Store(cfg.store.path)
        try:
            if not wh_q.enable(store, args.name):
                raise TextbackError(f"{args.name}: the store has no such endpoint yet (start the daemon once)")
        finally:
            store.close()
        print(f"{args.name}: enabled; new events are queued for it again")
        return 0
    return _list(cfg, args.json)


def _endpoint(cfg, name: str):
    for wc in cfg.webhooks:
        if wc.name == name:
            return wc
    known = ", ".join(w.name for w in cfg.webhooks) or "none configured"
    raise TextbackError(f"no [[webhooks]] endpoint named {name!r} ({known})")


def _test(cfg, name: str) -> int:
    import asyncio

    from textbackd.webhooks.delivery import ping

    wc = _endpoint(cfg, name)
    msg_id, a = asyncio.run(ping(wc))
    if a.ok:
        print(f"{name}: {wc.url} answered {a.status} to a signed ping (webhook-id {msg_id})")
        return 0
    print(f"{name}: {wc.url}: {a.error or 'failed'} (webhook-id {msg_id})")
    return 1


def _list(cfg, as_json: bool) -> int:
    from textbackd.store import webhooks as wh_q
    from textbackd.store.db import Store

    now = time.time()
    store = Store(cfg.store.path, readonly=True)
    try:
        known = {s.name: s for s in wh_q.status(store, now)}
    finally:
        store.close()
    rows = []
    for wc in cfg.webhooks:
        st = known.get(wc.name)
        state = "not started yet" if st is None else ("disabled: " + st.disabled_reason if st.disabled_at else "active")
        rows.append({
            "name": wc.name, "url": wc.url, "events": list(wc.events), "state": state,
            "pending": st.pending if st else 0, "due": st.due if st else 0, "failing": bool(st and st.failing),
            "delivered": st.delivered if st else 0, "failed": st.failed if st else 0,
            "last_error": st.last_error if st else "", "last_delivered_at": st.last_delivered_at if st else None,
        })
    for name, st in known.items():
        if not any(r["name"] == name for r in rows) and st.pending:
            rows.append({"name": name, "url": "", "events": [], "state": "no longer configured", "pending": st.pending,
                         "due": st.due, "failing": st.failing, "delivered": st.delivered, "failed": st.failed,
                         "last_error": st.last_error, "last_delivered_at": st.last_delivered_at})
    if as_json:
        for r in rows:
            print(json.dumps(r, ensure_ascii=False))
        return 0
    if not rows:
        print("no [[webhooks]] configured")
        return 0
    table(["endpoint", "state", "waiting", "due", "failing", "delivered", "failed", "last delivered", "last error"],
          [(r["name"], r["state"], r["pending"], r["due"], "yes" if r["failing"] else "no", r["delivered"], r["failed"],
            local_time(r["last_delivered_at"]), r["last_error"]) for r in rows])
    return 0
