"""TOML configuration → immutable typed objects, every error with its file and key path.

The one public entry is ``load(path)`` (or ``parse(mapping, file=...)``). It
returns a frozen ``Config`` or raises ``ConfigError("…/textbackd.toml:
senders[1].device: required for kind \"modem\"")``. Unknown keys are refused,
so a typo never silently falls back to a default.

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
from dataclasses import dataclass, field
from datetime import date, time
from pathlib import Path
from typing import Any

from textbackd.core.errors import ConfigError

DEFAULT_PATH = "/etc/textbackd/textbackd.toml"

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class Secret:
    """A secret string that does not print itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('********')" if self._value else "Secret('')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


# --------------------------------------------------------------------------------------
# the typed objects


@dataclass(frozen=True, slots=True)
class PbxConfig:
    kind: str = "asterisk"  # "asterisk" | "freeswitch"
    host: str = "127.0.0.1"
    port: int = 5038
    username: str = "textbackd"
    secret: Secret = field(default_factory=lambda: Secret(""))  # AMI secret or ESL password
    ping_interval: float = 20.0  # AMI Ping / expected ESL HEARTBEAT interval, seconds
    connect_timeout: float = 10.0
    reconnect_min: float = 1.0
    reconnect_max: float = 60.0
    # call classification
    inbound_contexts: tuple[str, ...] = (
        "from-trunk",
        "from-pstn",
        "from-pstn-*",  # FreePBX: from-pstn-e164-us, from-pstn-toheader
        "from-did-direct",
        "from-external",
        "from-sip-external",
        "from-carrier",
        "public",
    )
    trunk_channel_patterns: tuple[str, ...] = ()  # regexes on the originating channel name
    internal_extension_pattern: str = r"^\d{2,6}$"
    call_expiry_seconds: float = 4 * 3600.0  # a call with no hangup after this is closed as unknown


@dataclass(frozen=True, slots=True)
class OpeningHours:
    """Opening intervals per weekday (0 = Monday), local time."""

    days: tuple[tuple[tuple[time, time], ...], ...] = tuple(() for _ in range(7))
    holidays: tuple[date, ...] = ()

    def describe(self) -> str:
        parts = []
        for name, spans in zip(WEEKDAYS, self.days):
            if spans:
                parts.append(
                    f"{name.capitalize()} " + ",".join(f"{a:%H:%M}-{b:%H:%M}" for a, b in spans)
                )
        return "; ".join(parts) if parts else "closed"


@dataclass(frozen=True, slots=True)
class BusinessConfig:
    name: str
    timezone: str = "UTC"
    default_region: str = "US"
    booking_link: str = ""
    contact: str = ""  # phone or e-mail given in HELP answers
    hours: OpeningHours = field(default_factory=OpeningHours)

    @property
    def tz(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)


@dataclass(frozen=True, slots=True)
class StoreConfig:
    path: str = "/var/lib/textbackd/textbackd.db"
    retention_days: int = 0  # 0 = keep forever


@dataclass(frozen=True, slots=True)
class SenderConfig:
    """One way out for texts. Fields that do not apply to a kind keep their defaults."""

    name: str
    kind: str  # "modem" | "kannel" | "twilio" | "http"
    # modem
    device: str = ""
    baudrate: int = 115200
    pin: Secret = field(default_factory=lambda: Secret(""))
    status_reports: bool = True
    command_timeout: float = 10.0
    # every HTTP kind
    url: str = ""
    timeout: float = 15.0
    from_: str = ""  # TOML key "from"
    # kannel
    username: str = ""
    password: Secret = field(default_factory=lambda: Secret(""))
    smsc: str = ""
    # twilio
    account_sid: str = ""
    auth_token: Secret = field(default_factory=lambda: Secret(""))
    messaging_service_sid: str = ""
    api_base: str = "https://api.twilio.com"
    # generic http
    method: str = "POST"
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)  # may carry API keys
    body_format: str = "form"  # "form" | "json"
    body: tuple[tuple[str, str], ...] = ()  # field → template with {to} {text} {from}
    success_status: tuple[int, ...] = (200, 201, 202)
    message_id_path: str = ""  # dotted JSON path of the provider's message id


@dataclass(frozen=True, slots=True)
class HttpConfig:
    listen: str = "127.0.0.1:8025"
    public_url: str = ""  # how gateways reach us (dlr-url, StatusCallback); default http://<listen>
    secret: Secret = field(default_factory=lambda: Secret(""))  # shared secret in webhook paths
    max_body_bytes: int = 64 * 1024

    @property
    def host(self) -> str:
        return self.listen.rsplit(":", 1)[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rsplit(":", 1)[1])

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.listen}").rstrip("/")


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    grace_seconds: float = 30.0
    dedupe_hours: float = 24.0
    min_ring_seconds: float = 0.0
    allowed_countries: tuple[str, ...] = ()  # default: (business.default_region,)
    quiet_hours: str = "defer"  # "defer" | "send"
    quiet_start: time = time(21, 0)
    quiet_end: time = time(8, 0)
    max_age_minutes: float = 120.0
    outcomes: tuple[str, ...] = (
        "no_answer",
        "busy",
        "unavailable",
        "caller_cancel",
        "voicemail",
        "queue_abandon",
        "ivr_abandon",
        "unknown",
    )
    text_when_voicemail_left: bool = True
    block: tuple[str, ...] = ()
    allow: tuple[str, ...] = ()  # when non-empty, only these numbers get texts
    max_per_number_per_day: int = 3
    max_per_prefix_per_hour: int = 10
    max_per_hour: int = 120
    max_attempts: int = 5
    retry_base_seconds: float = 30.0


@dataclass(frozen=True, slots=True)
class MessagesConfig:
    missed: str = (
        "Hi, this is {business}. Sorry we missed your call. How can we help? "
        "Reply here or book: {booking_link}"
    )
    after_hours: str = (
        "Hi, this is {business}. We're closed right now ({hours}). We'll call you back "
        "{next_open}, or reply here and we'll get back to you."
    )
    opt_out: str = "You're unsubscribed from {business} texts. Reply START to resubscribe."
    opt_in: str = "You're resubscribed to {business} texts. Reply STOP to unsubscribe."
    help: str = "{business}: reply to this text to reach us, or call {contact}. Reply STOP to unsubscribe."


@dataclass(frozen=True, slots=True)
class LineConfig:
    """A business number with its own identity (several lines or clinics on one daemon)."""

    did: str
    name: str = ""  # default: business.name
    missed: str = ""  # default: messages.missed
    after_hours: str = ""  # default: messages.after_hours
    booking_link: str = ""
    sender: str = ""  # preferred sender name
    hours: OpeningHours | None = None
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class FollowupConfig:
    after: str  # "2h", "30m", "1d", "next_business_day 09:00"
    text: str


@dataclass(frozen=True, slots=True)
class EmailConfig:
    host: str = ""
    port: int = 587
    from_: str = ""
    to: tuple[str, ...] = ()
    starttls: bool = True
    tls: bool = False
    username: str = ""
    password: Secret = field(default_factory=lambda: Secret(""))
    notify: str = "replies_only"  # "every_missed_call" | "replies_only" | "digest"
    summary: str = ""  # "" | "daily" | "weekly"
    escalate_after: str = ""  # "" = never, else a duration like "4h"
    receive_listen: str = ""  # "127.0.0.1:8026" to accept staff replies by mail
    reply_domain: str = ""  # domain of the Reply-To addresses staff answer to

    @property
    def enabled(self) -> bool:
        return bool(self.host and self.to)


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    level: str = "info"
    format: str = "auto"  # "auto" | "console" | "json"
    log_numbers: str = "masked"  # "masked" | "full"


@dataclass(frozen=True, slots=True)
class Config:
    pbx: PbxConfig
    business: BusinessConfig
    store: StoreConfig
    senders: tuple[SenderConfig, ...]
    http: HttpConfig = field(default_factory=HttpConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    messages: MessagesConfig = field(default_factory=MessagesConfig)
    lines: tuple[LineConfig, ...] = ()
    followups: tuple[FollowupConfig, ...] = ()
    email: EmailConfig = field(default_factory=EmailConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    source: str = "<memory>"

    def sender(self, name: str) -> SenderConfig:
        for s in self.senders:
            if s.name == name:
                return s
        raise KeyError(name)

    def line_for(self, did: str) -> LineConfig | None:
        for line in self.lines:
            if line.did == did:
                return line
        return None

    @property
    def allowed_countries(self) -> tuple[str, ...]:
        return self.policy.allowed_countries or (self.business.default_region,)


# --------------------------------------------------------------------------------------
# parsing


class _Section:
    """Reads one TOML table, tracking the key path for error messages."""

    def __init__(self, data: Any, path: str, file: str, creds: Path | None) -> None:
        if not isinstance(data, Mapping):
            raise ConfigError(f"must be a table, not {_tname(data)}", file=file, key=path or None)
        self.data = data
        self.path = path
        self.file = file
        self.creds = creds
        self.used: set[str] = set()

    def key(self, k: str) -> str:
        return f"{self.path}.{k}" if self.path else k

    def error(self, k: str | None, reason: str) -> ConfigError:
        return ConfigError(reason, file=self.file, key=self.key(k) if k else (self.path or None))

    def has(self, k: str) -> bool:
        return k in self.data

    def _get(self, k: str, types: tuple[type, ...], tname: str, default: Any, required: bool) -> Any:
        self.used.add(k)
        if k not in self.data:
            if required:
                raise self.error(k, "required")
            return default
        v = self.data[k]
        if isinstance(v, bool) and bool not in types:
            raise self.error(k, f"must be {tname}, not a boolean")
        if not isinstance(v, types):
            raise self.error(k, f"must be {tname}, not {_tname(v)}")
        return v

    def str(self, k: str, default: str = "", *, required: bool = False, choices: tuple[str, ...] = ()) -> str:
        v = self._get(k, (str,), "a string", default, required)
        if choices and v not in choices:
            raise self.error(k, f"must be one of {', '.join(repr(c) for c in choices)}, not {v!r}")
        if required and not v.strip():
            raise self.error(k, "must not be empty")
        return v

    def int(self, k: str, default: int = 0, *, lo: int | None = None, hi: int | None = None, required: bool = False) -> int:
        v = self._get(k, (int,), "an integer", default, required)
        self._range(k, v, lo, hi)
        return v

    def float(self, k: str, default: float = 0.0, *, lo: float | None = None, hi: float | None = None) -> float:
        v = self._get(k, (int, float), "a number", default, False)
        self._range(k, v, lo, hi)
        return float(v)

    def bool(self, k: str, default: bool = False) -> bool:
        return self._get(k, (bool,), "true or false", default, False)

    def strs(self, k: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        v = self._get(k, (list,), "a list of strings", None, False)
        if v is None:
            return default
        for i, item in enumerate(v):
            if not isinstance(item, str):
                raise self.error(f"{k}[{i}]", f"must be a string, not {_tname(item)}")
        return tuple(v)

    def table(self, k: str) -> _Section:
        self.used.add(k)
        return _Section(self.data.get(k, {}), self.key(k), self.file, self.creds)

    def tables(self, k: str) -> list[_Section]:
        self.used.add(k)
        v = self.data.get(k, [])
        if not isinstance(v, list):
            raise self.error(k, f"must be an array of tables ([[{k}]]), not {_tname(v)}")
        return [_Section(item, f"{self.key(k)}[{i}]", self.file, self.creds) for i, item in enumerate(v)]

    def secret(self, k: str, cred_name: str, *, required: bool = False) -> Secret:
        """``k`` inline, ``k_file`` path, or ``$CREDENTIALS_DIRECTORY/cred_name``."""
        self.used.update({k, f"{k}_file"})
        if self.creds is not None:
            p = self.creds / cred_name
            if p.is_file():
                return Secret(_read_secret(p, self, k))
        if k in self.data and f"{k}_file" in self.data:
            raise self.error(k, f"give either {k} or {k}_file, not both")
        if f"{k}_file" in self.data:
            p = self.data[f"{k}_file"]
            if not isinstance(p, str):
                raise self.error(f"{k}_file", f"must be a path string, not {_tname(p)}")
            return Secret(_read_secret(Path(p), self, f"{k}_file"))
        v = self._get(k, (str,), "a string", "", False)
        if required and not v:
            raise self.error(k, f"required (or {k}_file, or a systemd credential named {cred_name!r})")
        return Secret(v)

    def _range(self, k: str, v: float, lo: float | None, hi: float | None) -> None:
        if lo is not None and v < lo:
            raise self.error(k, f"must be at least {lo}, not {v}")
        if hi is not None and v > hi:
            raise self.error(k, f"must be at most {hi}, not {v}")

    def done(self) -> None:
        extra = [k for k in self.data if k not in self.used]
        if extra:
            raise self.error(extra[0], "unknown key" + _suggest(extra[0], self.used))


def _read_secret(p: Path, sec: _Section, k: str) -> str:
    try:
        return p.read_text(encoding="utf-8").strip()
    except OSError as e:
        raise sec.error(k, f"cannot read {p}: {e.strerror}") from None


def _suggest(k: str, known: set[str]) -> str:
    import difflib

    m = difflib.get_close_matches(k, sorted(known), n=1)
    return f" (did you mean {m[0]!r}?)" if m else ""


def _tname(v: Any) -> str:
    return {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "a boolean",
        list: "a list",
        dict: "a table",
    }.get(type(v), type(v).__name__)


_HHMM = re.compile(r"^([01]\d|2[0-4]):([0-5]\d)$")


def _parse_time(s: str, sec: _Section, k: str) -> time:
    m = _HHMM.match(s.strip())
    if not m:
        raise sec.error(k, f"{s!r} is not a time like 08:30")
    h, mi = int(m.group(1)), int(m.group(2))
    if h == 24:
        if mi:
            raise sec.error(k, f"{s!r} is not a time of day")
        return time(23, 59, 59, 999999)
    return time(h, mi)


def _parse_hours(sec: _Section) -> OpeningHours:
    """``[business.hours] mon = "08:00-12:00,13:00-18:00"``, ``sat = "closed"``, ``holidays = [...]``."""
    days: list[tuple[tuple[time, time], ...]] = []
    for d in WEEKDAYS:
        spec = sec.str(d, "closed")
        if spec.strip().lower() in ("", "closed"):
            days.append(())
            continue
        spans = []
        for part in spec.split(","):
            if "-" not in part:
                raise sec.error(d, f"{part.strip()!r} is not a span like 08:00-18:00")
            a, b = part.split("-", 1)
            ta, tb = _parse_time(a, sec, d), _parse_time(b, sec, d)
            if tb <= ta:
                raise sec.error(d, f"{part.strip()!r} ends before it starts")
            spans.append((ta, tb))
        days.append(tuple(sorted(spans)))
    holidays = []
    for i, h in enumerate(sec.strs("holidays")):
        try:
            holidays.append(date.fromisoformat(h))
        except ValueError:
            raise sec.error(f"holidays[{i}]", f"{h!r} is not a date like 2026-12-25") from None
    sec.done()
    return OpeningHours(days=tuple(days), holidays=tuple(holidays))


SENDER_KINDS = ("modem", "kannel", "twilio", "http")
_SENDER_REQUIRED = {
    "modem": ("device",),
    "kannel": ("url", "username"),
    "twilio": ("account_sid",),
    "http": ("url",),
}


def _parse_sender(sec: _Section, names: set[str]) -> SenderConfig:
    name = sec.str("name", required=True)
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise sec.error("name", f"{name!r} may only use letters, digits, '_', '.', '-'")
    if name in names:
        raise sec.error("name", f"{name!r} is used by another sender")
    names.add(name)
    kind = sec.str("kind", required=True, choices=SENDER_KINDS)
    for k in _SENDER_REQUIRED[kind]:
        if not sec.has(k):
            raise sec.error(k, f'required for kind "{kind}"')
    headers = sec.table("headers")
    hdrs = tuple((k, headers.str(k)) for k in list(headers.data))
    headers.done()
    body = sec.table("body")
    bdy = tuple((k, body.str(k)) for k in list(body.data))
    body.done()
    cfg = SenderConfig(
        name=name,
        kind=kind,
        device=sec.str("device"),
        baudrate=sec.int("baudrate", 115200, lo=300, hi=4_000_000),
        pin=sec.secret("pin", f"senders.{name}.pin"),
        status_reports=sec.bool("status_reports", True),
        command_timeout=sec.float("command_timeout", 10.0, lo=0.5, hi=300),
        url=sec.str("url"),
        timeout=sec.float("timeout", 15.0, lo=0.5, hi=300),
        from_=sec.str("from"),
        username=sec.str("username"),
        password=sec.secret("password", f"senders.{name}.password"),
        smsc=sec.str("smsc"),
        account_sid=sec.str("account_sid"),
        auth_token=sec.secret("auth_token", f"senders.{name}.auth_token", required=kind == "twilio"),
        messaging_service_sid=sec.str("messaging_service_sid"),
        api_base=sec.str("api_base", "https://api.twilio.com"),
        method=sec.str("method", "POST", choices=("POST", "GET", "PUT")),
        headers=hdrs,
        body_format=sec.str("body_format", "form", choices=("form", "json")),
        body=bdy,
        success_status=tuple(sec._get("success_status", (list,), "a list of integers", [200, 201, 202], False)),
        message_id_path=sec.str("message_id_path"),
    )
    if kind == "twilio" and not (cfg.from_ or cfg.messaging_service_sid):
        raise sec.error("from", 'required for kind "twilio" (or messaging_service_sid)')
    if kind in ("kannel", "twilio", "http") and not re.match(r"^https?://", cfg.url or cfg.api_base):
        raise sec.error("url", "must start with http:// or https://")
    if kind == "http" and not cfg.body:
        raise sec.error("body", 'required for kind "http": a table of fields, e.g. to = "{to}", text = "{text}"')
    for i, code in enumerate(cfg.success_status):
        if not isinstance(code, int) or isinstance(code, bool) or not 100 <= code <= 599:
            raise sec.error(f"success_status[{i}]", "must be an HTTP status code")
    sec.done()
    return cfg


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")


def parse_duration(s: str) -> float | None:
    """Seconds in "90s", "30m", "2h", "1d"; None when ``s`` is not such a duration."""
    m = _DURATION.match(s)
    if not m:
        return None
    return float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


_D_PBX, _D_POLICY, _D_STORE, _D_MESSAGES = PbxConfig(), PolicyConfig(), StoreConfig(), MessagesConfig()


def parse(data: Mapping[str, Any], *, file: str = "<memory>", env: Mapping[str, str] | None = None) -> Config:
    env = os.environ if env is None else env
    creds = Path(env["CREDENTIALS_DIRECTORY"]) if env.get("CREDENTIALS_DIRECTORY") else None
    root = _Section(data, "", file, creds)

    p = root.table("pbx")
    kind = p.str("kind", "asterisk", choices=("asterisk", "freeswitch"))
    default_port = 5038 if kind == "asterisk" else 8021
    if kind == "asterisk":
        secret = p.secret("secret", "pbx.secret")
        if p.has("password") or p.has("password_file"):
            raise p.error("password", 'Asterisk logins use "secret"')
    else:
        secret = p.secret("password", "pbx.password")
        if p.has("secret") or p.has("secret_file"):
            raise p.error("secret", 'FreeSWITCH uses "password" (event_socket.conf.xml)')
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
        hours=_parse_hours(b.table("hours")),
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
        quiet_start=_parse_time(pol.str("quiet_start", "21:00"), pol, "quiet_start"),
        quiet_end=_parse_time(pol.str("quiet_end", "08:00"), pol, "quiet_end"),
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
    )
    for k in ("missed", "after_hours", "opt_out", "opt_in", "help"):
        _check_template(getattr(messages, k), m, k)
    m.done()

    lines = []
    dids: set[str] = set()
    for ls in root.tables("lines"):
        hours = _parse_hours(ls.table("hours")) if ls.has("hours") else None
        line = LineConfig(
            did=ls.str("did", required=True),
            name=ls.str("name"),
            missed=ls.str("missed"),
            after_hours=ls.str("after_hours"),
            booking_link=ls.str("booking_link"),
            sender=ls.str("sender"),
            hours=hours,
            enabled=ls.bool("enabled", True),
        )
        if line.did in dids:
            raise ls.error("did", f"{line.did!r} is configured twice")
        dids.add(line.did)
        if line.sender and line.sender not in names:
            raise ls.error("sender", f"no sender named {line.sender!r}")
        for k in ("missed", "after_hours"):
            if getattr(line, k):
                _check_template(getattr(line, k), ls, k)
        ls.done()
        lines.append(line)

    followups = []
    for fs in root.tables("followups"):
        after = fs.str("after", required=True)
        if parse_duration(after) is None and not re.fullmatch(r"next_business_day(\s+\d\d:\d\d)?", after.strip()):
            raise fs.error("after", f'{after!r} is not a delay like "2h", "1d" or "next_business_day 09:00"')
        text = fs.str("text", required=True)
        _check_template(text, fs, "text")
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

    lg = root.table("logging")
    logging_cfg = LoggingConfig(
        level=lg.str("level", "info", choices=("debug", "info", "warning", "error")),
        format=lg.str("format", "auto", choices=("auto", "console", "json")),
        log_numbers=lg.str("log_numbers", "masked", choices=("masked", "full")),
    )
    lg.done()
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
    )


TEMPLATE_FIELDS = ("business", "caller_name", "booking_link", "hours", "next_open", "contact", "did")


def _check_template(tpl: str, sec: _Section, k: str) -> None:
    import string

    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(tpl) if f is not None]
    except ValueError as e:
        raise sec.error(k, f"template is not valid: {e} (write a literal brace as {{{{ or }}}})") from None
    for f in fields:
        if f not in TEMPLATE_FIELDS:
            raise sec.error(k, f"unknown placeholder {{{f}}}; use {', '.join('{' + x + '}' for x in TEMPLATE_FIELDS)}")


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
