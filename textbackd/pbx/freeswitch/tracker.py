"""FreeSWITCH call tracker: event-socket events in, finished ``Call``s out. Pure: no clock, no I/O.

The call is the **a-leg**: the first channel of a call that FreeSWITCH did
not originate itself (a trunk leg in context ``public``, or a phone's leg).
Every other leg is tied to it:

* b-legs of ``bridge`` (phones, ring group members, trunk legs, loopback-a)
  carry ``variable_originator`` / ``Other-Leg-Unique-ID`` /
  ``Channel-Call-UUID`` = the a-leg;
* mod_callcenter agent legs carry ``variable_cc_member_session_uuid``;
* ``loopback/…-b`` legs (the stock ``Local_Extension`` voicemail) carry
  ``variable_other_loopback_leg_uuid`` = their ``-a`` twin.

Direction comes from where the a-leg came from, not from ``Call-Direction``
(FreeSWITCH calls every leg it originates "outbound"): inbound when its
first context is one of ``pbx.inbound_contexts`` (``public`` by default), its
sofia profile is ``external``, or its channel name matches
``pbx.trunk_channel_patterns``; else internal when it dialled an extension
(``pbx.internal_extension_pattern``) and outbound when it dialled anything
else or reached a trunk leg.

Outcome (decided when the a-leg and any loopback legs have hung up, see *Late voicemail* below):

* ``answered`` only when a human leg was bridged to the call (a phone, an
  agent, a trunk leg for a forward; a ``loopback`` leg is not human) or a
  ring-group leg was ``PICKED_OFF``. The a-leg answering for an IVR, a queue
  prompt or voicemail is not an answer;
* otherwise the **last stage** the caller reached decides: ``voicemail``
  (the ``voicemail`` app ran on the a-leg or its loopback leg;
  ``voicemail_left`` from ``vm::maintenance`` ``leave-message``),
  ``queue_abandon`` (``callcenter::info`` ``member-queue-end`` with
  ``CC-Cause: Cancel``, mod_fifo ``abort``/``timeout``), ``ivr_abandon``
  (``menu::enter`` / the ``ivr`` app, nothing rung after it), or ringing
  phones, where ``originate_disposition`` / ``Hangup-Cause`` /
  ``last_bridge_hangup_cause`` give ``caller_cancel``, ``busy``,
  ``no_answer`` or ``unavailable``. ``LOSE_RACE`` / ``PICKED_OFF`` b-legs
  never count as a no-answer.

Late voicemail (``VOICEMAIL_LINGER``, 5 s of event time): with the stock
``Local_Extension`` the ``voicemail`` app runs on ``loopback/voicemail-b``, a
channel with its own session thread. When the caller hangs up during the
recording, FreeSWITCH tears down the a-leg and both loopback legs while
mod_voicemail is still saving the message (``deliver_vm``: file, database row,
notification; the recorded event already says ``Answer-State: hangup``), and the
``leave-message`` event can reach us after every leg's hangup and destroy. So a call whose voicemail ran on a loopback leg, with no
``leave-message`` yet, is not reported when its last leg hangs up: it waits
until the message comes (then it is reported at once, ``voicemail_after_hangup``
in its notes) or until ``VOICEMAIL_LINGER`` seconds of event time after the last
leg's hangup (``voicemail_linger_over``). In the recorded captures the message
came within the same 20 ms tick as the hangups; 5 s covers a loaded box whose
disk or notification is slow, and costs nothing else: only such calls wait, the
call's ``ended`` stays the hangup time (the text's grace counts from it, and the
default grace of 30 s is longer than the wait), and ``wake_at`` tells the daemon
when to look again, so it need not wait for its expiry sweep. An answered call,
a call with its message, and every call that never reached a loopback
voicemail leg is reported by the event that ends it, as before. Voicemail run on
the a-leg itself (DID 5550100 in the captures) raises its event from the
caller's own thread, before that channel's hangup, and does not wait.
``LOOPBACK_LINGER`` (120 s) is the older, longer bound for a loopback leg that
never reports its hangup at all. A lingering call is in ``snapshot()`` (with its
deadline) and ``flush()`` reports it without a message.

Restarts: ``snapshot()`` / ``restore()`` carry the open calls (and their legs)
across a daemon crash; the ``show channels`` resync then closes the restored
calls FreeSWITCH no longer has. An a-leg's hangup is enough on its own: one met
first at its hangup (born while we were down) is still reported, and a bridge to
a human we did not see (``variable_bridge_epoch`` / ``variable_bridge_channel``)
still makes the call answered.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import structlog

from textbackd.core.model import Call, Direction, Outcome, utc_from_epoch
from textbackd.core.numbers import normalize
from textbackd.core.settings import Config
from textbackd.pbx.freeswitch.frames import event_time

log = structlog.get_logger(__name__)

PBX = "freeswitch"

# events the tracker reads; the client subscribes to exactly these (CUSTOM last: FS reads the rest as subclasses)
EVENTS = (
    "CHANNEL_CREATE",
    "CHANNEL_ANSWER",
    "CHANNEL_BRIDGE",
    "CHANNEL_EXECUTE",
    "CHANNEL_HANGUP_COMPLETE",
    "CHANNEL_DESTROY",
    "HEARTBEAT",
)
CUSTOM_SUBCLASSES = ("vm::maintenance", "callcenter::info", "fifo::info", "menu::enter")
# not a FreeSWITCH event: the client hands the reply to `show channels as json` after each
# (re)connect to the tracker as this event, with the JSON in `_body`, so a resync needs no side channel
SNAPSHOT_EVENT = "TEXTBACKD_CHANNELS_SNAPSHOT"

TRUNK_PROFILES = ("external",)
_TRUNK_NAME = re.compile(r"^sofia/(external|gateway)/")

_CANCEL = {"ORIGINATOR_CANCEL"}
_BUSY = {"USER_BUSY", "CALL_REJECTED"}
_NO_ANSWER = {"NO_ANSWER", "NO_USER_RESPONSE", "ALLOTTED_TIMEOUT", "PROGRESS_TIMEOUT", "MEDIA_TIMEOUT"}
_UNAVAILABLE = {
    "USER_NOT_REGISTERED",
    "SUBSCRIBER_ABSENT",
    "UNALLOCATED_NUMBER",
    "NO_ROUTE_DESTINATION",
    "NO_ROUTE_TRANSIT_NET",
    "DESTINATION_OUT_OF_ORDER",
    "NETWORK_OUT_OF_ORDER",
    "NORMAL_TEMPORARY_FAILURE",
    "NORMAL_CIRCUIT_CONGESTION",
    "SWITCH_CONGESTION",
    "RECOVERY_ON_TIMER_EXPIRE",
    "INVALID_GATEWAY",
    "GATEWAY_DOWN",
    "INVALID_NUMBER_FORMAT",
    "INCOMPATIBLE_DESTINATION",
    "SERVICE_UNAVAILABLE",
    "CHAN_NOT_IMPLEMENTED",
    "FACILITY_NOT_SUBSCRIBED",
    "EXCHANGE_ROUTING_ERROR",
    "MANDATORY_IE_MISSING",
}
_NOT_EVIDENCE = {"LOSE_RACE", "PICKED_OFF", "", "NONE", "SUCCESS", "NORMAL_CLEARING", "NORMAL_UNSPECIFIED"}

LOOPBACK_LINGER = 120.0  # seconds a hung-up call waits for its loopback legs before being reported anyway
# seconds of event time a call whose voicemail ran on a loopback leg waits, once every leg has hung up,
# for a ``vm::maintenance`` ``leave-message`` that has not come yet (see the module docstring)
VOICEMAIL_LINGER = 5.0
RESYNC_GRACE = 30.0  # seconds a call missing from a resync may still get its own hangup

RING, VOICEMAIL, QUEUE, IVR = "ring", "voicemail", "queue", "ivr"

# what a snapshot keeps of an a-leg's hangup event: the headers ``_outcome`` reads
_HANGUP_KEYS = (
    "Event-Name",
    "Hangup-Cause",
    "variable_last_app",
    "variable_cc_cause",
    "variable_originate_disposition",
    "variable_last_bridge_hangup_cause",
    "variable_bridge_hangup_cause",
)
_SET_FIELDS = ("legs", "loopback_open")
_LIST_FIELDS = ("bleg_causes", "notes")


def cause_outcome(cause: str) -> Outcome | None:
    if cause in _CANCEL:
        return Outcome.CALLER_CANCEL
    if cause in _BUSY:
        return Outcome.BUSY
    if cause in _NO_ANSWER:
        return Outcome.NO_ANSWER
    if cause in _UNAVAILABLE:
        return Outcome.UNAVAILABLE
    return None


@dataclass(slots=True)
class _Open:
    """A call in progress (the a-leg and what happened to it)."""

    uuid: str
    started: float
    channel: str
    context: str
    profile: str
    caller_raw: str
    caller_name: str
    dest: str
    last_at: float
    legs: set[str] = field(default_factory=set)  # every non-a-leg uuid tied to the call
    loopback_open: set[str] = field(default_factory=set)
    stage: str = ""
    ring_start: float | None = None  # the first phone (b-leg) rang: ring time counts from here, as Asterisk's does
    ring_end: float | None = None
    answered_at: float | None = None
    answered_by: str | None = None
    pbx_answered: bool = False
    voicemail_left: bool = False
    voicemail_box: str | None = None
    queue: str | None = None
    queue_abandoned: bool = False
    trunk_leg: bool = False
    picked_off: bool = False
    bleg_causes: list[str] = field(default_factory=list)
    hangup: Mapping[str, str] | None = None
    ended: float | None = None
    notes: list[str] = field(default_factory=list)
    vm_loopback: bool = False  # the voicemail app ran on a loopback leg (its own thread: its events may trail)
    linger_until: float | None = None  # every leg is gone; waiting for a late leave-message until then


def snapshot_rows(body: str) -> list[Mapping[str, str]]:
    """The rows of a ``show channels as json`` reply (``{"row_count": 0}`` has none); [] when unreadable."""
    try:
        data = json.loads(body) if body.strip() else {}
    except ValueError:
        log.warning("fs_snapshot_unreadable", size=len(body))
        return []
    rows = data.get("rows") if isinstance(data, dict) else None
    return [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []


def _leg_name(event: Mapping[str, str]) -> str:
    """The extension / agent a b-leg rang: dialed_user, the callcenter agent, else the destination."""
    for k in ("variable_dialed_user", "variable_cc_agent", "Caller-Callee-ID-Number", "Caller-Destination-Number"):
        v = event.get(k)
        if v:
            return v.split("@", 1)[0]
    return ""


class FsTracker:
    """``pbx.Tracker`` for FreeSWITCH. ``feed(event, at)`` → calls that finished."""

    event_time = staticmethod(event_time)  # the PBX's own time of an event (``Event-Date-Timestamp``), for the daemon

    def __init__(self, config: Config) -> None:
        self.config = config
        pbx = config.pbx
        self._inbound_contexts = frozenset(pbx.inbound_contexts)
        self._trunk_patterns = [re.compile(p) for p in pbx.trunk_channel_patterns]
        self._internal = re.compile(pbx.internal_extension_pattern)
        self._expiry = pbx.call_expiry_seconds
        self._region = config.business.default_region
        self._calls: dict[str, _Open] = {}  # a-leg uuid → call
        self._leg_call: dict[str, str] = {}  # any leg uuid → a-leg uuid
        self._leg_info: dict[str, tuple[str, str]] = {}  # leg uuid → (channel name, who)
        self._pending_loopback: dict[str, tuple[str, float]] = {}  # twin uuid → (loopback uuid waiting, since)
        self._missing: dict[str, float] = {}  # a-legs absent from the last resync → when
        self._done: dict[str, float] = {}  # recently finished a-legs → when (late events are ignored)
        self._lingering: dict[str, float] = {}  # a-legs waiting for a late leave-message → until when
        self.urgent = False  # a human answered since the last snapshot(): the daemon saves at once
        self.events = 0

    # ------------------------------------------------------------------ protocol

    @property
    def open_calls(self) -> int:
        return len(self._calls)

    @property
    def wake_at(self) -> float | None:
        """The earliest event time at which ``expire`` has a lingering call to report (None: none)."""
        return min(self._lingering.values(), default=None)

    # ------------------------------------------------------------------ surviving a crash
    #
    # The daemon saves ``snapshot()`` in its store (at once when ``urgent``: a human
    # answered; else every half second) and ``restore()``s it at start, before the client
    # connects. The resync that follows marks the restored calls FreeSWITCH no longer has,
    # and ``expire`` closes them after ``RESYNC_GRACE``: ``answered`` when a human had
    # answered before the crash, else ``unknown`` (a missed call), instead of forgetting them.

    def snapshot(self) -> list[dict]:
        """The open calls (with their legs) as JSON-able dicts; clears ``urgent``."""
        self.urgent = False
        return [self._saved(c) for c in self._calls.values()]

    def _saved(self, c: _Open) -> dict:
        d = {k: getattr(c, k) for k in _Open.__slots__ if k not in _SET_FIELDS + _LIST_FIELDS + ("hangup",)}
        for k in _SET_FIELDS:
            d[k] = sorted(getattr(c, k))
        for k in _LIST_FIELDS:
            d[k] = list(getattr(c, k))
        d["hangup"] = None if c.hangup is None else {k: str(c.hangup[k]) for k in _HANGUP_KEYS if k in c.hangup}
        d["leg_info"] = {leg: list(self._leg_info.get(leg, ("", ""))) for leg in sorted(c.legs)}
        return d

    def restore(self, snapshot: list[dict]) -> int:
        """Load calls saved by ``snapshot()`` (from before a restart); returns how many."""
        restored = 0
        for d in snapshot:
            c, info = self._restored(d)
            if c is None or c.uuid in self._calls or c.uuid in self._leg_call or c.uuid in self._done:
                continue
            self._calls[c.uuid] = c
            for leg in c.legs:
                self._leg_call[leg] = c.uuid
                self._leg_info[leg] = info.get(leg, ("", ""))
            if c.linger_until is not None:
                self._lingering[c.uuid] = c.linger_until  # lingering when we went down: still waits, as long
            restored += 1
        return restored

    @staticmethod
    def _restored(d: dict) -> tuple[_Open | None, dict[str, tuple[str, str]]]:
        """A saved call back as an ``_Open`` and its legs' (channel, who); ``None`` for an unreadable entry."""
        try:
            c = _Open(**{k: d[k] for k in _Open.__slots__ if k in d and k not in _SET_FIELDS + _LIST_FIELDS + ("hangup",)})
            c.uuid = str(c.uuid)
            for k in _SET_FIELDS:
                setattr(c, k, {str(x) for x in d.get(k, ())})
            c.bleg_causes = [str(x) for x in d.get("bleg_causes", ())]
            c.notes = [*map(str, d.get("notes", ())), "restored_after_restart"]
            h = d.get("hangup")
            c.hangup = {str(k): str(v) for k, v in h.items()} if isinstance(h, dict) else None
            info = {str(k): (str(v[0]), str(v[1])) for k, v in (d.get("leg_info") or {}).items()}
        except (KeyError, TypeError, ValueError, IndexError, AttributeError):
            log.warning("fs.snapshot_entry_skipped")
            return None, {}
        return c, info

    def feed(self, event: Mapping[str, str], at: float) -> list[Call]:
        self.events += 1
        if self._lingering and min(self._lingering.values()) <= at:
            return [*self._lingered(at), *self._feed(event, at)]  # event time moved past a linger: report it first
        return self._feed(event, at)

    def _feed(self, event: Mapping[str, str], at: float) -> list[Call]:
        name = event.get("Event-Name")
        if name == "CHANNEL_CREATE":
            self._create(event, at)
            return []
        if name == "CHANNEL_HANGUP_COMPLETE":
            return self._hangup(event, at)
        if name == "CHANNEL_BRIDGE":
            self._bridge(event, at)
            return []
        if name == "CHANNEL_EXECUTE":
            self._execute(event, at)
            return []
        if name == "CHANNEL_ANSWER":
            self._answer(event, at)
            return []
        if name == "CUSTOM":
            sub = event.get("Event-Subclass", "")
            if sub == "vm::maintenance":
                return self._vm(event, at)
            elif sub == "callcenter::info":
                self._callcenter(event, at)
            elif sub == "fifo::info":
                self._fifo(event, at)
            elif sub.startswith("menu::"):
                self._menu(event, at)
            return []
        if name == "CHANNEL_DESTROY":
            return self._destroy(event, at)
        if name == SNAPSHOT_EVENT:
            try:
                since = float(event.get("Session-Start") or at)
            except ValueError:
                since = at
            return self.resync(snapshot_rows(event.get("_body", "")), at, since=since)
        return []

    def _lingered(self, now: float) -> list[Call]:
        """Lingering calls whose ``VOICEMAIL_LINGER`` is over at ``now``: reported without a message."""
        out = []
        for uuid, until in sorted(self._lingering.items(), key=lambda kv: kv[1]):
            c = self._calls.get(uuid)
            if c is not None and until <= now:
                c.notes.append("voicemail_linger_over")
                out.append(self._finish(c, c.ended if c.ended is not None else c.last_at, unknown=False))
        return out

    def expire(self, now: float) -> list[Call]:
        out = self._lingered(now)
        for uuid, since in list(self._missing.items()):
            c = self._calls.get(uuid)
            if c is None or c.last_at > since:
                del self._missing[uuid]
            elif now - since >= RESYNC_GRACE:
                del self._missing[uuid]
                c.notes.append("ended_while_disconnected")
                out.append(self._finish(c, now, unknown=c.answered_at is None))
        for uuid, c in list(self._calls.items()):
            if c.linger_until is not None:
                continue
            if c.hangup is not None and now - c.last_at > LOOPBACK_LINGER:
                c.notes.append("loopback_leg_lingered")  # the caller is gone; its loopback leg never reported
                out.append(self._finish(c, c.ended if c.ended is not None else c.last_at, unknown=False))
            elif now - c.last_at > self._expiry:
                c.notes.append("expired")
                out.append(self._finish(c, c.last_at, unknown=c.hangup is None))  # ended: last sign of life
        cutoff = now - 3600.0
        for uuid, t in list(self._done.items()):
            if t < cutoff:
                del self._done[uuid]
        for twin, (_, since) in list(self._pending_loopback.items()):
            if since < cutoff:
                del self._pending_loopback[twin]
        return out

    def flush(self, now: float) -> list[Call]:
        out = []
        for c in list(self._calls.values()):
            if c.hangup is None:
                c.notes.append("open_at_end")
            out.append(self._finish(c, max(now, c.last_at), unknown=c.hangup is None))
        return out

    # ------------------------------------------------------------------ resync

    def resync(self, rows: Iterable[Mapping[str, str]], now: float, *, since: float | None = None) -> list[Call]:
        """Reconcile with ``show channels as json`` rows after a reconnect.

        Open calls whose a-leg is missing ended while we could not see them.
        Their hangup may still be on its way (FreeSWITCH can answer the
        ``api`` before it has flushed events queued earlier), so they are only
        marked: an event for them clears the mark, and ``expire`` closes them
        ``RESYNC_GRACE`` seconds later (``answered`` if a human had answered,
        else ``unknown``). Channels we did not know are adopted: a-legs become
        open calls, other legs are tied to their ``call_uuid``. Calls with an
        event at or after ``since`` (the new session's start) are left alone.
        """
        rows = [r for r in rows if isinstance(r, Mapping) and r.get("uuid")]
        present = {str(r["uuid"]) for r in rows}
        out: list[Call] = []
        for uuid, c in list(self._calls.items()):
            if uuid not in present and c.hangup is None and (since is None or c.last_at < since):
                self._missing[uuid] = now
        for r in rows:
            uuid = str(r["uuid"])
            if uuid in self._leg_call or uuid in self._calls or uuid in self._done:
                continue
            call_uuid = str(r.get("call_uuid") or "")
            name = str(r.get("name") or "")
            direction = str(r.get("direction") or "")
            if call_uuid and call_uuid != uuid and call_uuid in self._calls:
                self._link(uuid, call_uuid, name, str(r.get("dest") or ""), now)
                continue
            if direction != "inbound" or name.startswith("loopback/"):
                continue
            try:
                started = float(r.get("created_epoch") or now)
            except ValueError:
                started = now
            c = _Open(
                uuid=uuid,
                started=started,
                channel=name,
                context=str(r.get("initial_context") or r.get("context") or ""),
                profile="",
                caller_raw=str(r.get("initial_cid_num") or r.get("cid_num") or ""),
                caller_name=str(r.get("initial_cid_name") or r.get("cid_name") or ""),
                dest=str(r.get("initial_dest") or r.get("dest") or ""),
                last_at=now,
            )
            c.notes.append("adopted_on_resync")
            if str(r.get("callstate") or "") in ("ACTIVE", "HELD") and str(r.get("application") or "") in (
                "bridge",
                "intercept",
            ):
                c.stage = RING
            self._calls[uuid] = c
        return out

    # ------------------------------------------------------------------ events

    def _call_of(self, uuid: str | None) -> _Open | None:
        if not uuid:
            return None
        a = self._leg_call.get(uuid, uuid)
        return self._calls.get(a)

    def _link(self, leg: str, a_uuid: str, channel: str, who: str, at: float) -> None:
        self._leg_call[leg] = a_uuid
        c = self._calls[a_uuid]
        c.legs.add(leg)
        c.last_at = at
        self._leg_info[leg] = (channel, who)
        if channel.startswith("loopback/"):
            c.loopback_open.add(leg)
        waiting = self._pending_loopback.pop(leg, None)
        if waiting is not None:
            self._link(waiting[0], a_uuid, "loopback/", "", at)

    def _is_trunk(self, channel: str, profile: str) -> bool:
        if profile in TRUNK_PROFILES or _TRUNK_NAME.match(channel):
            return True
        return any(p.search(channel) for p in self._trunk_patterns)

    def _create(self, e: Mapping[str, str], at: float) -> None:
        uuid = e.get("Unique-ID")
        if not uuid or uuid in self._leg_call or uuid in self._calls or uuid in self._done:
            return
        channel = e.get("Channel-Name", "")
        parent = None
        for k in (
            "variable_originator",
            "variable_originating_leg_uuid",
            "variable_cc_member_session_uuid",
            "Other-Leg-Unique-ID",
            "Channel-Call-UUID",
        ):
            p = e.get(k)
            if p and p != uuid:
                a = self._leg_call.get(p, p)
                if a in self._calls:
                    parent = a
                    break
        if parent is None:
            twin = e.get("variable_other_loopback_leg_uuid")
            if twin:
                a = self._leg_call.get(twin)
                if a in self._calls:
                    parent = a
                elif channel.startswith("loopback/"):
                    self._pending_loopback[twin] = (uuid, at)
                    return
        if parent is not None:
            c = self._calls[parent]
            who = _leg_name(e)
            self._link(uuid, parent, channel, who, at)
            if not channel.startswith("loopback/"):
                if c.ring_start is None:
                    c.ring_start = at
                if c.stage != QUEUE:
                    c.stage = RING
                if self._is_trunk(channel, e.get("variable_sofia_profile_name", "")):
                    c.trunk_leg = True
            elif e.get("Caller-Destination-Number") == "voicemail" or "voicemail" in channel:
                c.stage = VOICEMAIL
            return
        if channel.startswith("loopback/"):
            return  # a loopback leg of something we do not track
        if e.get("Call-Direction", "inbound") != "inbound":
            return  # FS originated it and nobody we know asked: an API originate, not a caller
        self.urgent = True  # checkpoint new calls at once: a crash must not forget one that is ringing
        self._calls[uuid] = _Open(
            uuid=uuid,
            started=at,
            channel=channel,
            context=e.get("Caller-Context", ""),
            profile=e.get("variable_sofia_profile_name", ""),
            caller_raw=e.get("Caller-Caller-ID-Number", ""),
            caller_name=e.get("Caller-Caller-ID-Name", ""),
            dest=e.get("Caller-Destination-Number", ""),
            last_at=at,
        )
        if e.get("Caller-Privacy-Hide-Number") == "true":
            self._calls[uuid].notes.append("privacy_hide_number")  # the caller asked to withhold it

    def _answer(self, e: Mapping[str, str], at: float) -> None:
        uuid = e.get("Unique-ID")
        c = self._calls.get(uuid or "")
        if c is not None:
            c.pbx_answered = True
            c.last_at = at

    def _execute(self, e: Mapping[str, str], at: float) -> None:
        c = self._call_of(e.get("Unique-ID"))
        if c is None:
            return
        app = e.get("Application", "")
        c.last_at = at
        if app == "voicemail":
            c.stage = VOICEMAIL
            if e.get("Unique-ID") != c.uuid and e.get("Channel-Name", "").startswith("loopback/"):
                c.vm_loopback = True
            args = e.get("Application-Data", "").split()
            if args and not args[0].startswith("check") and c.voicemail_box is None:
                c.voicemail_box = args[-1]  # "default <domain> <box>"
            if c.ring_end is None:
                c.ring_end = at
        elif app in ("ivr", "play_and_get_digits") and e.get("Unique-ID") == c.uuid:
            c.stage = IVR
        elif app in ("bridge", "intercept") and not e.get("Application-Data", "").startswith("loopback/"):
            c.stage = RING
        elif app in ("callcenter", "fifo"):
            c.stage = QUEUE

    def _bridge(self, e: Mapping[str, str], at: float) -> None:
        a = e.get("Bridge-A-Unique-ID") or e.get("Unique-ID")
        b = e.get("Bridge-B-Unique-ID") or e.get("Other-Leg-Unique-ID")
        if not a or not b:
            return
        for x, y in ((a, b), (b, a)):
            c = self._call_of(x)
            if c is None or y == c.uuid:
                continue
            y_channel, who = self._leg_info.get(y, ("", ""))
            if not y_channel:
                y_channel = e.get("Other-Leg-Channel-Name", "") if x == e.get("Unique-ID") else ""
            if y_channel.startswith("loopback/"):
                continue
            c.last_at = at
            if c.answered_at is None:
                c.answered_at = at
                self.urgent = True  # a crash now must not forget that a human answered
                c.answered_by = who or (self._calls[y].caller_raw if y in self._calls else None) or y_channel
                if c.ring_end is None:
                    c.ring_end = at

    def _vm(self, e: Mapping[str, str], at: float) -> list[Call]:
        if e.get("VM-Action") != "leave-message":
            return []
        c = self._call_of(e.get("VM-UUID")) or self._call_of(e.get("Unique-ID"))
        if c is None:
            return []
        c.voicemail_left = True
        c.voicemail_box = e.get("VM-User") or c.voicemail_box
        c.stage = VOICEMAIL
        c.last_at = at
        if c.linger_until is not None:
            c.notes.append("voicemail_after_hangup")  # the message came while the call lingered for it
        return self._maybe_finish(c)

    def _callcenter(self, e: Mapping[str, str], at: float) -> None:
        c = self._call_of(e.get("CC-Member-Session-UUID"))
        if c is None:
            return
        action = e.get("CC-Action", "")
        c.last_at = at
        if action == "member-queue-start":
            c.stage = QUEUE
            c.queue = e.get("CC-Queue") or c.queue
        elif action == "member-queue-end":
            c.queue = e.get("CC-Queue") or c.queue
            if e.get("CC-Cause") == "Cancel":
                c.queue_abandoned = True
                c.notes.append(f"cc_cancel:{e.get('CC-Cancel-Reason', '')}")
                if c.ring_end is None:
                    c.ring_end = at

    def _fifo(self, e: Mapping[str, str], at: float) -> None:
        c = self._call_of(e.get("Unique-ID"))
        if c is None:
            return
        action = e.get("FIFO-Action", "")
        c.last_at = at
        if action == "push":
            c.stage = QUEUE
            c.queue = e.get("FIFO-Name") or c.queue
        elif action in ("abort", "timeout"):
            c.queue_abandoned = True
            c.notes.append(f"fifo_{action}")
            if c.ring_end is None:
                c.ring_end = at

    def _menu(self, e: Mapping[str, str], at: float) -> None:
        c = self._call_of(e.get("Unique-ID"))
        if c is not None and e.get("Event-Subclass") == "menu::enter" and e.get("Unique-ID") == c.uuid:
            c.stage = IVR
            c.last_at = at

    def _hangup(self, e: Mapping[str, str], at: float) -> list[Call]:
        uuid = e.get("Unique-ID", "")
        c = self._calls.get(uuid)
        if c is None and uuid not in self._done and self._call_of(uuid) is None:
            c = self._joined_at_hangup(e, at)
        if c is not None:
            if c.answered_at is None:
                self._bridged_per_hangup(c, e)
            c.hangup = e
            c.ended = at
            c.last_at = at
            if e.get("variable_after_hours") == "true":
                c.notes.append("after_hours")
            return self._maybe_finish(c)
        c = self._call_of(uuid)
        if c is None:
            return []
        c.last_at = at
        cause = e.get("Hangup-Cause", "")
        if cause == "PICKED_OFF":
            if not c.picked_off and c.answered_at is None:
                self.urgent = True  # picked up from another phone: answered
            c.picked_off = True
        c.bleg_causes.append(cause)
        if e.get("variable_last_app") == "voicemail" or e.get("variable_current_application") == "voicemail":
            c.stage = VOICEMAIL
        c.loopback_open.discard(uuid)
        return self._maybe_finish(c)

    def _joined_at_hangup(self, e: Mapping[str, str], at: float) -> _Open | None:
        """An a-leg first met by its hangup (it began and was answered or not while we could not see it).

        Between a (re)connect and the ``show channels`` answer, and for calls born while the
        daemon was down, the hangup may be all we get; it carries the whole channel, so the
        caller is still reported rather than lost.
        """
        channel = e.get("Channel-Name", "")
        if not e.get("Unique-ID") or e.get("Call-Direction") != "inbound" or not channel or channel.startswith("loopback/"):
            return None
        try:
            started = int(e.get("Caller-Channel-Created-Time") or 0) / 1e6 or at
        except ValueError:
            started = at
        c = _Open(
            uuid=e.get("Unique-ID", ""),
            started=min(started, at),
            channel=channel,
            context=e.get("Caller-Context", ""),
            profile=e.get("variable_sofia_profile_name", ""),
            caller_raw=e.get("Caller-Caller-ID-Number", ""),
            caller_name=e.get("Caller-Caller-ID-Name", ""),
            dest=e.get("variable_sip_req_user") or e.get("Caller-RDNIS") or e.get("Caller-Destination-Number", ""),
            last_at=at,
        )
        app = e.get("variable_last_app", "")
        c.stage = {"voicemail": VOICEMAIL, "callcenter": QUEUE, "fifo": QUEUE, "ivr": IVR, "bridge": RING}.get(app, "")
        c.notes.append("joined_at_hangup")
        self._calls[c.uuid] = c
        return c

    def _bridged_per_hangup(self, c: _Open, e: Mapping[str, str]) -> None:
        """The a-leg's hangup says it was bridged to a human (a bridge we did not see, e.g. during a gap)."""
        other = e.get("variable_bridge_channel", "")
        try:
            when = float(e.get("variable_bridge_epoch") or 0)
        except ValueError:
            when = 0.0
        if when <= 0 or not other or other.startswith("loopback/"):
            return
        c.answered_at = max(when, c.started)
        c.answered_by = self._leg_info.get(e.get("variable_last_bridge_to", ""), ("", ""))[1] or None
        self.urgent = True
        c.notes.append("answer_seen_at_hangup")
        if c.ring_end is None:
            c.ring_end = c.answered_at

    def _destroy(self, e: Mapping[str, str], at: float) -> list[Call]:
        """A leg gone without its HANGUP_COMPLETE (not subscribed, or lost): close what waits on it."""
        uuid = e.get("Unique-ID", "")
        c = self._call_of(uuid)
        if c is None:
            return []
        if uuid == c.uuid:
            if c.hangup is None:
                c.hangup = e
                c.ended = at
            c.loopback_open.clear()
        else:
            c.loopback_open.discard(uuid)
        return self._maybe_finish(c)

    def _maybe_finish(self, c: _Open) -> list[Call]:
        if c.hangup is None or c.loopback_open:
            return []
        if c.vm_loopback and not c.voicemail_left and c.answered_at is None and not c.picked_off:
            # every leg is down, but the voicemail-b leg's leave-message may still be on its way
            if c.linger_until is None:
                c.linger_until = c.last_at + VOICEMAIL_LINGER
                self._lingering[c.uuid] = c.linger_until  # (checkpointed by the daemon's half-second save)
            return []
        return [self._finish(c, c.ended if c.ended is not None else c.last_at, unknown=False)]

    # ------------------------------------------------------------------ decisions

    def _direction(self, c: _Open) -> Direction:
        if c.context in self._inbound_contexts or self._is_trunk(c.channel, c.profile):
            return Direction.INBOUND
        if c.trunk_leg:
            return Direction.OUTBOUND
        return Direction.INTERNAL if self._internal.match(c.dest) else Direction.OUTBOUND

    def _outcome(self, c: _Open) -> Outcome:
        if c.answered_at is not None or c.picked_off:
            return Outcome.ANSWERED
        h = c.hangup or {}
        if c.stage == VOICEMAIL or h.get("variable_last_app") == "voicemail":
            return Outcome.VOICEMAIL
        if c.voicemail_left:
            return Outcome.VOICEMAIL
        if c.stage == QUEUE or c.queue_abandoned or h.get("variable_cc_cause") == "cancel":
            return Outcome.QUEUE_ABANDON  # left the queue (BREAK_OUT, TIMEOUT, fifo abort...) with nobody answering
        if c.stage == IVR or h.get("variable_last_app") == "ivr":
            return Outcome.IVR_ABANDON
        cause = h.get("Hangup-Cause", "")
        disposition = h.get("variable_originate_disposition", "")
        if cause in _CANCEL or disposition in _CANCEL:
            return Outcome.CALLER_CANCEL
        for k in (disposition, h.get("variable_last_bridge_hangup_cause", ""), h.get("variable_bridge_hangup_cause", ""), cause):
            if k in _NOT_EVIDENCE:
                continue
            o = cause_outcome(k)
            if o is not None:
                return o
        for k in reversed(c.bleg_causes):
            o = cause_outcome(k)
            if o is not None and o is not Outcome.CALLER_CANCEL:
                return o
        if c.stage == RING:
            return Outcome.NO_ANSWER
        if c.pbx_answered:
            return Outcome.IVR_ABANDON  # answered by the PBX (a prompt) and left
        return Outcome.NO_ANSWER

    def _finish(self, c: _Open, now: float, *, unknown: bool) -> Call:
        self._calls.pop(c.uuid, None)
        self._lingering.pop(c.uuid, None)
        for leg in c.legs:
            self._leg_call.pop(leg, None)
            self._leg_info.pop(leg, None)
        self._done[c.uuid] = now
        outcome = Outcome.UNKNOWN if unknown and c.answered_at is None else self._outcome(c)
        ended = c.ended if c.ended is not None else now
        ring_end = c.answered_at or c.ring_end or ended
        ring = max(0.0, ring_end - c.ring_start) if c.ring_start is not None else 0.0  # never rang: 0, as Asterisk
        return Call(
            id=c.uuid,
            pbx=PBX,
            direction=self._direction(c),
            outcome=outcome,
            caller=normalize(c.caller_raw, self._region),
            caller_raw=c.caller_raw,
            caller_name=c.caller_name,
            did=c.dest,
            started=utc_from_epoch(c.started),
            ended=utc_from_epoch(max(ended, c.started)),
            answered_at=utc_from_epoch(c.answered_at) if c.answered_at is not None else None,
            ring_seconds=ring,
            voicemail_left=c.voicemail_left,
            voicemail_box=c.voicemail_box,
            answered_by=c.answered_by,
            queue=c.queue,
            channel=c.channel,
            notes=tuple(dict.fromkeys(c.notes)),
        )
