"""The typed settings: frozen dataclasses for every section, and the TOML section reader.

``textbackd.config`` loads a file into these; each PBX and sender kind parses its own
section with ``Section`` (so its errors carry the key path, as every other key's do).
Secrets are held in ``Secret`` objects whose ``repr``/``str`` never show the value.
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, time
from pathlib import Path
from typing import Any

from textbackd.core.errors import ConfigError

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
    event_clock: str = "pbx"  # "pbx": the PBX's event time when believable (README "Which clock decides"); "arrival"


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
    """One way out for texts: the fields every kind has. Each kind's section is a subclass
    (``senders/<kind>/config.py``), parsed by the kind."""

    name: str
    kind: str

    @property
    def own_number(self) -> str:
        """The office number texts go out from, when the kind knows it ("" when not)."""
        return ""


def listen_host(listen: str) -> str:
    """``"127.0.0.1"`` of ``"127.0.0.1:8025"``, ``"::1"`` of ``"[::1]:8025"``."""
    return listen.rsplit(":", 1)[0].strip("[]")


def listen_port(listen: str) -> int:
    return int(listen.rsplit(":", 1)[1])


@dataclass(frozen=True, slots=True)
class HttpConfig:
    listen: str = "127.0.0.1:8025"
    public_url: str = ""  # how gateways reach us (dlr-url, StatusCallback); default http://<listen>
    secret: Secret = field(default_factory=lambda: Secret(""))  # shared secret in webhook paths
    max_body_bytes: int = 64 * 1024

    @property
    def host(self) -> str:
        return listen_host(self.listen)

    @property
    def port(self) -> int:
        return listen_port(self.listen)

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
    never_text_tags: tuple[str, ...] = ()  # issue 14: contacts with one of these tags are never texted


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
    missed_known: str = ""  # issue 14: for callers in the contacts ("" = missed)


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
    missed_known: str = ""  # issue 14: for callers in the contacts (default: messages.missed_known, then missed)


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


# -- [web]: the front desk in a browser (issue 12) --------------------------------------

WEB_ROLES = ("frontdesk", "owner", "admin")


@dataclass(frozen=True, slots=True)
class WebConfig:
    """``[web]``: present means the daemon serves the front desk at ``listen``."""

    listen: str = "127.0.0.1:8088"
    tls_cert: str = ""  # PEM certificate chain; with tls_key the app serves HTTPS itself
    tls_key: str = ""
    allow_plain_http: bool = False  # a non-loopback listen without TLS (behind a TLS proxy), on purpose
    session_idle_minutes: float = 60.0  # a session unused this long is over
    session_max_hours: float = 12.0  # and none lasts longer than this, used or not
    lockout_failures: int = 6  # this many wrong passwords in a row lock the account...
    lockout_minutes: float = 15.0  # ...for this long
    address_failures: int = 20  # wrong passwords from one address within the window: refused (429)
    address_window_minutes: float = 15.0
    page_size: int = 50

    @property
    def host(self) -> str:
        return listen_host(self.listen)

    @property
    def port(self) -> int:
        return listen_port(self.listen)

    @property
    def tls(self) -> bool:
        return bool(self.tls_cert and self.tls_key)

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)


def is_loopback(host: str) -> bool:
    """``localhost``, 127.0.0.0/8 or ::1."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class ContactColumns:
    """Which CSV columns hold what (``[contacts.columns]``); each a list of header names, ``*`` a wildcard.

    The defaults read Google Contacts (both its CSV layouts) and Outlook exports as they are."""

    name: tuple[str, ...] = ("Name", "Display Name", "Full Name")
    first_name: tuple[str, ...] = ("Given Name", "First Name")
    last_name: tuple[str, ...] = ("Family Name", "Last Name")
    organization: tuple[str, ...] = ("Organization 1 - Name", "Organization Name", "Company")
    numbers: tuple[str, ...] = ("Phone * - Value", "Phone", "Phone Number", "Mobile Phone", "Business Phone",
                                "Home Phone", "Other Phone", "Mobile", "Telephone")
    tags: tuple[str, ...] = ("Group Membership", "Labels", "Categories", "Tags")
    separator: str = ":::"  # between several values in one cell (Google: "a ::: b"); ";" and "," also split tags


@dataclass(frozen=True, slots=True)
class ContactSourceConfig:
    """One ``[[contacts]]`` source: a CSV or vCard file (a CardDAV kind would add ``url`` and credentials)."""

    name: str  # a label for reports ("office"), default the file name
    format: str  # "csv" | "vcard"
    path: str = ""
    encoding: str = "utf-8-sig"
    columns: ContactColumns = field(default_factory=ContactColumns)
    tags: tuple[str, ...] = ()  # given to every contact of this source (e.g. ["staff"] for staff.vcf)
    url: str = ""  # reserved for a CardDAV source (not read yet)


WEBHOOK_EVENTS = (
    "call.missed", "call.answered", "text.scheduled", "text.sent", "text.delivered", "text.failed",
    "reply.received", "optout.changed", "conversation.handled",
)


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    """One ``[[webhooks]]`` endpoint: signed POSTs (Standard Webhooks) of the events it asks for."""

    name: str
    url: str
    secret: Secret  # "whsec_<base64>"
    events: tuple[str, ...] = WEBHOOK_EVENTS
    retry_hours: float = 24.0  # give an event up after this long
    retry_base_seconds: float = 5.0  # first retry after ~this, doubling, with jitter
    retry_max_seconds: float = 3600.0  # never more than this between two tries
    timeout: float = 10.0  # per request, capped at 30 s
    allow_http: bool = False  # plain http to a non-loopback host


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
    web: WebConfig | None = None  # issue 12: None = no [web] section, no web app
    contacts: tuple[ContactSourceConfig, ...] = ()  # issue 14
    webhooks: tuple[WebhookConfig, ...] = ()  # issue 14

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


class Section:
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

    def table(self, k: str) -> Section:
        self.used.add(k)
        return Section(self.data.get(k, {}), self.key(k), self.file, self.creds)

    def tables(self, k: str) -> list[Section]:
        self.used.add(k)
        v = self.data.get(k, [])
        if not isinstance(v, list):
            raise self.error(k, f"must be an array of tables ([[{k}]]), not {_tname(v)}")
        return [Section(item, f"{self.key(k)}[{i}]", self.file, self.creds) for i, item in enumerate(v)]

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


def _read_secret(p: Path, sec: Section, k: str) -> str:
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


def parse_time(s: str, sec: Section, k: str) -> time:
    m = _HHMM.match(s.strip())
    if not m:
        raise sec.error(k, f"{s!r} is not a time like 08:30")
    h, mi = int(m.group(1)), int(m.group(2))
    if h == 24:
        if mi:
            raise sec.error(k, f"{s!r} is not a time of day")
        return time(23, 59, 59, 999999)
    return time(h, mi)


def parse_hours(sec: Section) -> OpeningHours:
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
            ta, tb = parse_time(a, sec, d), parse_time(b, sec, d)
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



_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")


def parse_duration(s: str) -> float | None:
    """Seconds in "90s", "30m", "2h", "1d"; None when ``s`` is not such a duration."""
    m = _DURATION.match(s)
    if not m:
        return None
    return float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]




TEMPLATE_FIELDS = ("business", "caller_name", "first_name", "booking_link", "hours", "next_open", "contact", "did")


def check_template(tpl: str, sec: Section, k: str) -> None:
    import string

    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(tpl) if f is not None]
    except ValueError as e:
        raise sec.error(k, f"template is not valid: {e} (write a literal brace as {{{{ or }}}})") from None
    for f in fields:
        name = f.split("|", 1)[0]  # {first_name|there}: a fallback for an empty value (issue 14)
        if name not in TEMPLATE_FIELDS:
            raise sec.error(k, f"unknown placeholder {{{f}}}; use {', '.join('{' + x + '}' for x in TEMPLATE_FIELDS)}"
                            " (with a fallback: {first_name|there})")


