"""TOML configuration → immutable typed objects, every error with its file and key path.

The one public entry is ``load(path)`` (or ``parse(mapping, file=...)``). It
returns a frozen ``Config`` or raises ``ConfigError("…/textbackd.toml:
senders[1].device: required for kind \"modem\"")``. Unknown keys are refused,
so a typo never silently falls back to a default.

The sections of the core live here; ``[pbx]`` kind details and every ``[[senders]]``
table are read by their kind (``pbx/registry.py``, ``senders/registry.py``), with the
same ``Section`` reader, so their errors carry the key path too. The typed objects
are defined in ``textbackd.core.settings`` and re-exported here.

Secrets (``secret``, ``password``, ``auth_token``, ``pin``) can be given inline,
as ``<key>_file = "/path"``, or through systemd credentials: a file named like
the key path (``pbx.secret``, ``senders.modem1.pin``) in
``$CREDENTIALS_DIRECTORY`` wins over both. They are held in ``Secret`` objects
whose ``repr``/``str`` never show the value.
"""

from __future__ import annotations

import os
import re
import tomllib
import zoneinfo
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from textbackd.core.errors import ConfigError
from textbackd.core.settings import *  # noqa: F403 - the typed objects are part of this module's API
from textbackd.core.settings import (
    BusinessConfig,
    Config,
    EmailConfig,
    FollowupConfig,
    HttpConfig,
    LineConfig,
    LoggingConfig,
    MessagesConfig,
    PbxConfig,
    PolicyConfig,
    Section,
    SenderConfig,
    StoreConfig,
    WebConfig,
    check_template,
    parse_duration,
    parse_hours,
    parse_time,
)
from textbackd.pbx import registry as pbx_kinds
from textbackd.senders import registry as sender_kinds

DEFAULT_PATH = "/etc/textbackd/textbackd.toml"
_D_PBX, _D_POLICY, _D_STORE, _D_MESSAGES = PbxConfig(), PolicyConfig(), StoreConfig(), MessagesConfig()


def _parse_sender(sec: Section, names: set[str]) -> SenderConfig:
    name = sec.str("name", required=True)
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise sec.error("name", f"{name!r} may only use letters, digits, '_', '.', '-'")
    if name in names:
        raise sec.error("name", f"{name!r} is used by another sender")
    names.add(name)
    kind = sec.str("kind", required=True, choices=sender_kinds.names())
    return sender_kinds.get(kind).parse_config(sec, name)


def parse(data: Mapping[str, Any], *, file: str = "<memory>", env: Mapping[str, str] | None = None) -> Config:
    env = os.environ if env is None else env
    creds = Path(env["CREDENTIALS_DIRECTORY"]) if env.get("CREDENTIALS_DIRECTORY") else None
    root = Section(data, "", file, creds)

    p = root.table("pbx")
    kind = p.str("kind", "asterisk", choices=pbx_kinds.names())
    pk = pbx_kinds.get(kind)
    default_port = pk.default_port
    secret = pk.parse_secret(p)
    pbx = PbxConfig(
        kind=kind,
        host=p.str("host", "127.0.0.1"),
        port=p.int("port", default_port, lo=1, hi=65535),
        username=p.str("username", "textbackd"),
        secret=secret,
        ping_interval=p.float("ping_interval", 20.0, lo=1, hi=600),
        connect_timeout=p.float("connect_timeout", 10.0, lo=0.5, hi=120),
        reconnect_min=p.float("reconnect_min", 1.0, lo=0.05, hi=600),
        reconnect_max=p.float("reconnect_max", 60.0, lo=0.1, hi=3600),
        inbound_contexts=p.strs("inbound_contexts", _D_PBX.inbound_contexts),
        trunk_channel_patterns=p.strs("trunk_channel_patterns"),
        internal_extension_pattern=p.str("internal_extension_pattern", _D_PBX.internal_extension_pattern),
        call_expiry_seconds=p.float("call_expiry_seconds", 4 * 3600.0, lo=60),
        event_clock=p.str("event_clock", "pbx", choices=("pbx", "arrival")),
    )
    for i, pat in enumerate((*pbx.trunk_channel_patterns, pbx.internal_extension_pattern)):
        try:
            re.compile(pat)
        except re.error as e:
            key = f"trunk_channel_patterns[{i}]" if i < len(pbx.trunk_channel_patterns) else "internal_extension_pattern"
            raise p.error(key, f"not a valid regular expression: {e}") from None
    p.done()

    b = root.table("business")
    tzname = b.str("timezone", "UTC")
    try:
        zoneinfo.ZoneInfo(tzname)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise b.error("timezone", f"{tzname!r} is not a known time zone (e.g. America/New_York)") from None
    region = b.str("default_region", "US").upper()
    import phonenumbers

    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise b.error("default_region", f"{region!r} is not an ISO region code like US or GB")
    business = BusinessConfig(
        name=b.str("name", required=True),
        timezone=tzname,
        default_region=region,
        booking_link=b.str("booking_link"),
        contact=b.str("contact"),
        hours=parse_hours(b.table("hours")),
    )
    b.done()

    s = root.table("store")
    store = StoreConfig(
        path=s.str("path", _D_STORE.path),
        retention_days=s.int("retention_days", 0, lo=0),
    )
    s.done()

    names: set[str] = set()
    senders = tuple(_parse_sender(sec, names) for sec in root.tables("senders"))

    h = root.table("http")
    http = HttpConfig(
        listen=h.str("listen", "127.0.0.1:8025"),
        public_url=h.str("public_url"),
        secret=h.secret("secret", "http.secret"),
        max_body_bytes=h.int("max_body_bytes", 64 * 1024, lo=1024, hi=16 * 1024 * 1024),
    )
    if not re.fullmatch(r"(\[[0-9a-fA-F:]+\]|[\w.-]+):\d{1,5}", http.listen):
        raise h.error("listen", f"{http.listen!r} is not host:port")
    h.done()

    pol = root.table("policy")
    policy = PolicyConfig(
        grace_seconds=pol.float("grace_seconds", 30.0, lo=0, hi=3600),
        dedupe_hours=pol.float("dedupe_hours", 24.0, lo=0, hi=24 * 365),
        min_ring_seconds=pol.float("min_ring_seconds", 0.0, lo=0, hi=600),
        allowed_countries=tuple(c.upper() for c in pol.strs("allowed_countries")),
        quiet_hours=pol.str("quiet_hours", "defer", choices=("defer", "send")),
        quiet_start=parse_time(pol.str("quiet_start", "21:00"), pol, "quiet_start"),
        quiet_end=parse_time(pol.str("quiet_end", "08:00"), pol, "quiet_end"),
        max_age_minutes=pol.float("max_age_minutes", 120.0, lo=1),
        outcomes=pol.strs("outcomes", _D_POLICY.outcomes),
        text_when_voicemail_left=pol.bool("text_when_voicemail_left", True),
        block=pol.strs("block"),
        allow=pol.strs("allow"),
        max_per_number_per_day=pol.int("max_per_number_per_day", 3, lo=1),
        max_per_prefix_per_hour=pol.int("max_per_prefix_per_hour", 10, lo=1),
        max_per_hour=pol.int("max_per_hour", 120, lo=1),
        max_attempts=pol.int("max_attempts", 5, lo=1, hi=100),
        retry_base_seconds=pol.float("retry_base_seconds", 30.0, lo=0.01),
        never_text_tags=tuple(t.strip().lower() for t in pol.strs("never_text_tags") if t.strip()),
    )
    from textbackd.core.model import Outcome

    valid = {o.value for o in Outcome} - {"answered"}
    for i, o in enumerate(policy.outcomes):
        if o not in valid:
            raise pol.error(f"outcomes[{i}]", f"{o!r} is not a missed-call outcome ({', '.join(sorted(valid))})")
    for i, c in enumerate(policy.allowed_countries):
        if c not in phonenumbers.SUPPORTED_REGIONS:
            raise pol.error(f"allowed_countries[{i}]", f"{c!r} is not an ISO region code")
    pol.done()

    m = root.table("messages")
    messages = MessagesConfig(
        missed=m.str("missed", _D_MESSAGES.missed),
        after_hours=m.str("after_hours", _D_MESSAGES.after_hours),
        opt_out=m.str("opt_out", _D_MESSAGES.opt_out),
        opt_in=m.str("opt_in", _D_MESSAGES.opt_in),
        help=m.str("help", _D_MESSAGES.help),
        missed_known=m.str("missed_known"),
    )
    for k in ("missed", "after_hours", "opt_out", "opt_in", "help", "missed_known"):
        check_template(getattr(messages, k), m, k)
    m.done()

    lines = []
    dids: set[str] = set()
    for ls in root.tables("lines"):
        hours = parse_hours(ls.table("hours")) if ls.has("hours") else None
        line = LineConfig(
            did=ls.str("did", required=True),
            name=ls.str("name"),
            missed=ls.str("missed"),
            after_hours=ls.str("after_hours"),
            booking_link=ls.str("booking_link"),
            sender=ls.str("sender"),
            hours=hours,
            enabled=ls.bool("enabled", True),
            missed_known=ls.str("missed_known"),
        )
        if line.did in dids:
            raise ls.error("did", f"{line.did!r} is configured twice")
        dids.add(line.did)
        if line.sender and line.sender not in names:
            raise ls.error("sender", f"no sender named {line.sender!r}")
        for k in ("missed", "after_hours", "missed_known"):
            if getattr(line, k):
                check_template(getattr(line, k), ls, k)
        ls.done()
        lines.append(line)

    followups = []
    for fs in root.tables("followups"):
        after = fs.str("after", required=True)
        if parse_duration(after) is None and not re.fullmatch(r"next_business_day(\s+\d\d:\d\d)?", after.strip()):
            raise fs.error("after", f'{after!r} is not a delay like "2h", "1d" or "next_business_day 09:00"')
        text = fs.str("text", required=True)
        check_template(text, fs, "text")
        fs.done()
        followups.append(FollowupConfig(after=after.strip(), text=text))
    if len(followups) > 2:
        raise root.error("followups", "at most 2 follow-ups (3 texts in all)")

    e = root.table("email")
    tls = e.bool("tls", False)
    email = EmailConfig(
        host=e.str("host"),
        port=e.int("port", 587, lo=1, hi=65535),
        from_=e.str("from"),
        to=e.strs("to"),
        starttls=e.bool("starttls", not tls),
        tls=tls,
        username=e.str("username"),
        password=e.secret("password", "email.password"),
        notify=e.str("notify", "replies_only", choices=("every_missed_call", "replies_only", "digest")),
        summary=e.str("summary", "", choices=("", "daily", "weekly")),
        escalate_after=e.str("escalate_after"),
        receive_listen=e.str("receive_listen"),
        reply_domain=e.str("reply_domain"),
    )
    if email.host and not email.to:
        raise e.error("to", "required when email.host is set: a list of staff addresses")
    if email.host and not email.from_:
        raise e.error("from", "required when email.host is set")
    if email.tls and email.starttls:
        raise e.error("starttls", "choose tls (implicit, port 465) or starttls, not both")
    if email.escalate_after and parse_duration(email.escalate_after) is None:
        raise e.error("escalate_after", f'{email.escalate_after!r} is not a delay like "4h"')
    if email.receive_listen and not re.fullmatch(r"(\[[0-9a-fA-F:]+\]|[\w.-]+):\d{1,5}", email.receive_listen):
        raise e.error("receive_listen", f"{email.receive_listen!r} is not host:port (e.g. 127.0.0.1:8026)")
    e.done()

    from textbackd.contacts.config import parse_contacts  # issue 14
    from textbackd.webhooks.config import parse_webhooks

    contacts = parse_contacts(root)
    webhooks = parse_webhooks(root)

    lg = root.table("logging")
    logging_cfg = LoggingConfig(
        level=lg.str("level", "info", choices=("debug", "info", "warning", "error")),
        format=lg.str("format", "auto", choices=("auto", "console", "json")),
        log_numbers=lg.str("log_numbers", "masked", choices=("masked", "full")),
    )
    lg.done()
    web = _parse_web(root)
    root.done()

    return Config(
        pbx=pbx,
        business=business,
        store=store,
        senders=senders,
        http=http,
        policy=policy,
        messages=messages,
        lines=tuple(lines),
        followups=tuple(followups),
        email=email,
        logging=logging_cfg,
        source=file,
        web=web,
        contacts=contacts,
        webhooks=webhooks,
    )



def _parse_web(root: Section) -> WebConfig | None:
    """``[web]`` (issue 12): absent means no web app; present, defaults to 127.0.0.1:8088."""
    if not root.has("web"):
        root.used.add("web")
        return None
    w = root.table("web")
    d = WebConfig()
    web = WebConfig(
        listen=w.str("listen", d.listen),
        tls_cert=w.str("tls_cert"),
        tls_key=w.str("tls_key"),
        allow_plain_http=w.bool("allow_plain_http", False),
        session_idle_minutes=w.float("session_idle_minutes", d.session_idle_minutes, lo=1, hi=7 * 24 * 60),
        session_max_hours=w.float("session_max_hours", d.session_max_hours, lo=0.1, hi=24 * 31),
        lockout_failures=w.int("lockout_failures", d.lockout_failures, lo=2, hi=100),
        lockout_minutes=w.float("lockout_minutes", d.lockout_minutes, lo=0.1, hi=7 * 24 * 60),
        address_failures=w.int("address_failures", d.address_failures, lo=2, hi=10_000),
        address_window_minutes=w.float("address_window_minutes", d.address_window_minutes, lo=0.1, hi=24 * 60),
        page_size=w.int("page_size", d.page_size, lo=5, hi=500),
    )
    if not re.fullmatch(r"(\[[0-9a-fA-F:]+\]|[\w.-]+):\d{1,5}", web.listen):
        raise w.error("listen", f"{web.listen!r} is not host:port (e.g. 127.0.0.1:8088)")
    if bool(web.tls_cert) != bool(web.tls_key):
        raise w.error("tls_key" if web.tls_cert else "tls_cert", "give both tls_cert and tls_key, or neither")
    for k in ("tls_cert", "tls_key"):
        path = getattr(web, k)
        if path and not Path(path).is_file():
            raise w.error(k, f"{path}: no such file")
    if not web.loopback and not web.tls and not web.allow_plain_http:
        raise w.error(
            "listen",
            f"{web.listen!r} is reachable from other machines but has no TLS: patients' numbers and words would "
            "cross the network in clear. Set tls_cert and tls_key, or put a TLS proxy in front and set "
            "allow_plain_http = true",
        )
    w.done()
    return web


def load(path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None) -> Config:
    file = str(path)
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError("file not found", file=file) from None
    except PermissionError:
        raise ConfigError("permission denied (is it readable by the textbackd user?)", file=file) from None
    except IsADirectoryError:
        raise ConfigError("is a directory, not a TOML file", file=file) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"not valid TOML: {e}", file=file) from None
    return parse(data, file=file, env=env)


def resolve_path(cli_value: str | None, env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    return cli_value or env.get("TEXTBACKD_CONFIG") or DEFAULT_PATH
