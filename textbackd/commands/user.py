"""`textbackd user add|passwd|disable|enable|unlock|list`: the front desk's accounts (issue 12)."""

from __future__ import annotations

import argparse
import getpass
import sys
import time

from textbackd.commands._common import cli_actor, load_config, local_time, table
from textbackd.core.errors import TextbackError

NAME = "user"
HELP = "front-desk accounts: add, passwd, disable, enable, unlock, list"
DESCRIPTION = (
    "Accounts for the web front desk ([web]). Roles: frontdesk (inbox, conversations, missed calls), "
    "owner (+ figures), admin (+ status and users). Passwords are hashed with argon2id; give one with "
    "--password-file FILE (its first line), or type it at the prompt."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    a = sub.add_parser("add", help="add an account")
    a.add_argument("name")
    a.add_argument("--role", required=True, choices=("frontdesk", "owner", "admin"))
    a.add_argument("--password-file", metavar="FILE", help="read the password from FILE instead of asking")
    pw = sub.add_parser("passwd", help="set a new password (ends the account's sessions)")
    pw.add_argument("name")
    pw.add_argument("--password-file", metavar="FILE")
    for verb, what in (("disable", "refuse its sign-ins and end its sessions"), ("enable", "allow it again"),
                       ("unlock", "lift a lock after too many wrong passwords")):
        sub.add_parser(verb, help=what).add_argument("name")
    sub.add_parser("list", help="every account with its role and last sign-in")
    for sp in sub.choices.values():  # `textbackd user add NAME -c FILE` as well as `user -c FILE add NAME`
        sp.add_argument("-c", "--config", metavar="FILE", default=argparse.SUPPRESS, help="configuration file")


def _password(args: argparse.Namespace) -> str:
    if args.password_file:
        try:
            with open(args.password_file, encoding="utf-8") as fh:
                return fh.readline().rstrip("\r\n")
        except OSError as e:
            raise TextbackError(f"{args.password_file}: cannot read it: {e.strerror}") from None
    if not sys.stdin.isatty():
        raise TextbackError("not a terminal: give the password with --password-file FILE")
    first = getpass.getpass(f"Password for {args.name}: ")
    if first != getpass.getpass("Again: "):
        raise TextbackError("the two passwords differ; nothing changed")
    return first


def run(args: argparse.Namespace) -> int:
    from textbackd.staff import accounts
    from textbackd.store.db import Store

    cfg = load_config(args)
    store = Store(cfg.store.path)
    now, who = time.time(), cli_actor()
    try:
        if args.action == "list":
            table(["name", "role", "state", "last sign-in", "created"],
                  [(u.name, u.role, "disabled" if u.disabled else (
                      "locked" if u.locked_until and u.locked_until > now else "active"),
                    local_time(u.last_login_at) or "never", local_time(u.created_at)) for u in accounts.list_users(store)])
            return 0
        if args.action == "add":
            u = accounts.add_user(store, args.name, args.role, _password(args), actor=who, now=now)
            print(f"added {u.name} ({u.role})" + ("" if cfg.web else "; note: [web] is not configured, so no web app runs"))
        elif args.action == "passwd":
            u = accounts.set_password(store, args.name, _password(args), actor=who, now=now)
            print(f"new password for {u.name}; its sessions are ended")
        elif args.action in ("disable", "enable"):
            u = accounts.set_disabled(store, args.name, args.action == "disable", actor=who, now=now)
            print(f"{args.action}d {u.name}")
        elif args.action == "unlock":
            u = accounts.unlock(store, args.name, actor=who, now=now)
            print(f"unlocked {u.name}")
    finally:
        store.close()
    return 0
