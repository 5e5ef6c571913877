"""``[[webhooks]]``: each endpoint's URL, secret, events and retry horizon, checked with the key path."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from urllib.parse import urlsplit

from textbackd.core.settings import WEBHOOK_EVENTS, Secret, Section, WebhookConfig

MAX_TIMEOUT = 30.0
SECRET_PREFIX = "whsec_"


def is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def secret_key(secret: Secret) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret (Standard Webhooks)."""
    raw = secret.reveal()
    if raw.startswith(SECRET_PREFIX):
        raw = raw[len(SECRET_PREFIX):]
    return base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)


def parse_webhooks(root: Section) -> tuple[WebhookConfig, ...]:
    out: list[WebhookConfig] = []
    names: set[str] = set()
    for sec in root.tables("webhooks"):
        name = sec.str("name", required=True)
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            raise sec.error("name", f"{name!r} may only use letters, digits, '_', '.', '-'")
        if name in names:
            raise sec.error("name", f"{name!r} is used by another webhook")
        names.add(name)
        url = sec.str("url", required=True).strip()
        allow_http = sec.bool("allow_http", False)
        parts = urlsplit(url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise sec.error("url", f"{url!r} is not an http(s) URL")
        if parts.username or parts.password:
            raise sec.error("url", "must not carry a user or password (the body is signed with the secret)")
        if parts.scheme == "http" and not (allow_http or is_loopback(parts.hostname)):
            raise sec.error("url", "must be https:// (plain http only to a loopback address, or with allow_http = true)")
        secret = sec.secret("secret", f"webhooks.{name}.secret", required=True)
        if not secret.reveal().startswith(SECRET_PREFIX):
            raise sec.error("secret", "must be a Standard Webhooks secret: whsec_ then base64 "
                                      "(make one with `textbackd webhooks secret`)")
        try:
            key = secret_key(secret)
        except (binascii.Error, ValueError):
            raise sec.error("secret", "the part after whsec_ is not base64") from None
        if not 24 <= len(key) <= 64:
            raise sec.error("secret", f"must hold 24 to 64 bytes, not {len(key)} (make one with `textbackd webhooks secret`)")
        events = sec.strs("events", WEBHOOK_EVENTS)
        for i, e in enumerate(events):
            if e not in WEBHOOK_EVENTS:
                raise sec.error(f"events[{i}]", f"{e!r} is not an event ({', '.join(WEBHOOK_EVENTS)})")
        if not events:
            raise sec.error("events", "must name at least one event")
        wc = WebhookConfig(
            name=name,
            url=url,
            secret=secret,
            events=tuple(dict.fromkeys(events)),
            retry_hours=sec.float("retry_hours", 24.0, lo=0.01, hi=24 * 7),
            retry_base_seconds=sec.float("retry_base_seconds", 5.0, lo=0.01, hi=3600),
            retry_max_seconds=sec.float("retry_max_seconds", 3600.0, lo=0.1, hi=24 * 3600),
            timeout=sec.float("timeout", 10.0, lo=0.5, hi=MAX_TIMEOUT),
            allow_http=allow_http,
        )
        sec.done()
        out.append(wc)
    return tuple(out)
