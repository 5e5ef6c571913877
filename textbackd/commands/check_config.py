"""`textbackd check-config`: load the configuration and print what was understood."""

from __future__ import annotations

import argparse
import sys


NAME = "check-config"
HELP = "validate the configuration file and print what it means (exit 0 when usable)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", "-q", action="store_true", help="print nothing when the file is fine")


def run(args: argparse.Namespace) -> int:
    from textbackd import config as cfgmod

    path = cfgmod.resolve_path(args.config)
    try:
        cfg = cfgmod.load(path)
    except cfgmod.ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if not args.quiet:
        for line in describe(cfg):
            print(line)
    return 0


def _secret(s: cfgmod.Secret) -> str:
    from textbackd import config as cfgmod

    return "set (hidden)" if s else "not set"


def describe(cfg: cfgmod.Config) -> list[str]:
    """Human summary of a config; secrets appear only as set/not set."""
    from textbackd import config as cfgmod
    from textbackd.pbx import registry as pbx_kinds
    from textbackd.senders import registry as sender_kinds

    out = [f"config: {cfg.source}: OK"]
    p = cfg.pbx
    out.append(pbx_kinds.get(p.kind).describe(cfg))
    out.append(f"  inbound contexts: {', '.join(p.inbound_contexts)}")
    b = cfg.business
    out.append(f"business: {b.name!r}, time zone {b.timezone}, numbers read as {b.default_region}")
    out.append(f"  hours: {b.hours.describe()}")
    if b.hours.holidays:
        out.append(f"  holidays: {', '.join(d.isoformat() for d in b.hours.holidays)}")
    out.append(f"store: {cfg.store.path}" + (f" (kept {cfg.store.retention_days} days)" if cfg.store.retention_days else ""))
    if not cfg.senders:
        out.append("senders: none (texts will be scheduled but cannot go out)")
    for i, s in enumerate(cfg.senders, 1):
        out.append(f"sender {i}: {s.name} ({s.kind}) {sender_kinds.get(s.kind).describe(s)}")
    pol = cfg.policy
    out.append(
        f"policy: grace {pol.grace_seconds:g}s, one text per number per {pol.dedupe_hours:g}h, "
        f"countries {', '.join(cfg.allowed_countries)}, quiet hours {pol.quiet_start:%H:%M}-{pol.quiet_end:%H:%M} "
        f"({pol.quiet_hours}), max age {pol.max_age_minutes:g} min"
    )
    out.append(f"  texted outcomes: {', '.join(pol.outcomes)}")
    out.append(f"http listener: {cfg.http.listen}, secret {_secret(cfg.http.secret)}")
    out.append(_web(cfg))
    if cfg.email.enabled:
        e = cfg.email
        out.append(f"email: {e.host}:{e.port} → {', '.join(e.to)} ({e.notify}), password {_secret(e.password)}")
    else:
        out.append("email: off")
    out.extend(_templates(cfg))
    out.extend(_issue14(cfg))
    return out


def _issue14(cfg: cfgmod.Config) -> list[str]:
    """Contacts, webhooks (issue 14)."""
    from textbackd import config as cfgmod

    out = []
    for c in cfg.contacts:
        out.append(f"contacts {c.name}: {c.format} {c.path}" + (f", tags {', '.join(c.tags)}" if c.tags else ""))
    if cfg.policy.never_text_tags:
        out.append(f"  never texted: contacts tagged {', '.join(cfg.policy.never_text_tags)}")
    for w in cfg.webhooks:
        out.append(f"webhook {w.name}: {w.url}, secret {_secret(w.secret)}, events {', '.join(w.events)}, "
                   f"retried for {w.retry_hours:g} h")
    return out


def _web(cfg: cfgmod.Config) -> str:
    """The front desk (issue 12): where, how it is protected."""
    from textbackd import config as cfgmod

    w = cfg.web
    if w is None:
        return "web front desk: off (add a [web] section to serve it)"
    how = ("TLS " + w.tls_cert) if w.tls else ("plain HTTP on loopback" if w.loopback else
                                               "plain HTTP, allow_plain_http = true (put a TLS proxy in front)")
    return (f"web front desk: {'https' if w.tls else 'http'}://{w.listen}/ ({how}); sessions end after "
            f"{w.session_idle_minutes:g} min idle or {w.session_max_hours:g} h; an account locks for "
            f"{w.lockout_minutes:g} min after {w.lockout_failures} wrong passwords; one address may fail "
            f"{w.address_failures} times in {w.address_window_minutes:g} min; users: textbackd user list")


def _templates(cfg: cfgmod.Config) -> list[str]:
    from textbackd import config as cfgmod

    from datetime import datetime, timezone

    from textbackd.decide import templates

    out = ["templates (rendered with sample values):"]
    for item in templates.render_all(cfg, datetime.now(timezone.utc)):
        enc = "GSM-7" if item.encoding == "gsm7" else "UCS-2"
        out.append(f"  {item.key}: {item.segments} segment(s), {enc}, {item.units} {'septets' if item.encoding == 'gsm7' else 'code units'}")
        out.append(f"    {item.text}")
        if item.text_unknown and item.text_unknown != item.text:
            out.append(f"    unknown caller: {item.text_unknown}")
        for w in item.warnings:
            out.append(f"    warning: {w}")
    return out
