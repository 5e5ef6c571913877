"""`textbackd contacts check | find NUMBER`: what the [[contacts]] sources hold, and who a number is."""

from __future__ import annotations

import argparse
import json

from textbackd.commands._common import config_option, load_config

NAME = "contacts"
HELP = "check the [[contacts]] sources (contacts, numbers, duplicates, refused rows) or look a number up"
DESCRIPTION = (
    "check: read every [[contacts]] source as the daemon does and print how many contacts and numbers each "
    "gave, the numbers found in two contacts, and each row refused with its file, line and reason (exit 1 when "
    "a source cannot be read). find NUMBER: who the number is (any format), with the tags the policy sees."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    c = sub.add_parser("check", help="read every source and report")
    c.add_argument("--json", action="store_true")
    f = sub.add_parser("find", help="who a number is")
    f.add_argument("number", metavar="NUMBER")
    f.add_argument("--json", action="store_true")
    for sp in (c, f):
        config_option(sp)


def run(args: argparse.Namespace) -> int:
    from textbackd.core import numbers

    from textbackd.contacts.book import describe, load
    from textbackd.decide.policy import contact_tag

    cfg = load_config(args)
    if not cfg.contacts:
        print("no [[contacts]] configured")
        return 0
    book = load(cfg)
    if args.action == "check":
        if args.json:
            r = book.report
            print(json.dumps({
                "sources": [{"name": s.name, "path": s.where, "contacts": s.contacts, "numbers": s.numbers,
                             "error": s.error, "refused": [{"where": x.where, "reason": x.reason} for x in s.refused]}
                            for s in r.sources],
                "duplicates": [{"number": d.number, "kept": d.kept.source, "dropped": d.dropped.source}
                               for d in r.duplicates],
            }, ensure_ascii=False, indent=2))
        else:
            for line in describe(book.report):
                print(line)
        return 1 if any(s.error for s in book.report.sources) else 0
    number = numbers.normalize(args.number, cfg.business.default_region)
    c = book.find(number)
    if args.json:
        print(json.dumps({"number": number, "contact": c.to_public() if c else None}, ensure_ascii=False))
        return 0 if c else 1
    if c is None:
        print(f"{number}: not in the contacts")
        return 1
    skip = contact_tag(c, cfg)
    print(f"{number}: {c.name} (first name {c.first_name or '-'}), from {c.source}")
    print(f"  numbers: {', '.join(c.numbers)}")
    print(f"  tags: {', '.join(c.tags) or '-'}" + (f"; never texted ({skip})" if skip else ""))
    return 0
