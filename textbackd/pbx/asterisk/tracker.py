"""Sans-I/O Asterisk call tracker: AMI events in, finished ``Call``s out.

``AmiTracker(config).feed(event, at)`` applies one AMI event (a dict from
``frames.AmiParser``) received at ``at`` (epoch seconds) and returns the calls
that event finished. No clock, no asyncio, no I/O: the daemon and ``replay``
drive it the same way.

How a call is followed
    Every channel Asterisk creates for a call carries the call's ``Linkedid``
    (the ``Uniqueid`` of the originating channel): the trunk leg, the phone legs,
    both halves of FreePBX ``Local/…;1``/``;2`` pairs, queue member legs. One call
    that rang six phones is one call. A call ends when its last channel hangs up.

Direction (from the originating channel, ``Uniqueid == Linkedid``)
    inbound  its ``Context`` matches ``pbx.inbound_contexts`` (shell-style
             patterns, e.g. ``from-trunk``, ``from-pstn``, ``from-did-*``) or its
             channel name matches one of ``pbx.trunk_channel_patterns`` (regexes);
    internal otherwise, when the dialled ``Exten`` matches
             ``pbx.internal_extension_pattern`` (default 2 to 6 digits);
    outbound otherwise.

Outcome, decided when the call ends
    answered       a real device channel of the call (not the originating channel,
                   not a ``Local/`` channel) went ``Up`` and entered a bridge
                   (``BridgeEnter``: the parties can talk), or an ``AgentConnect``
                   was seen. A leg that answers but is never bridged (a mobile's
                   own voicemail refused by FreePBX "confirm calls") is no answer. ``Answer()`` by the dialplan for an IVR, a queue or
                   voicemail only brings the *caller's own* channel up, and a
                   ``Local`` half going up is not a person: neither counts. Once
                   answered, always answered (a blind transfer afterwards does not
                   change it).
    otherwise the last stage the caller reached decides:
    voicemail      ``VoiceMail()`` ran on any channel of the call;
                   ``voicemail_left`` when a ``MessageWaiting`` was raised on a
                   channel of the call (Asterisk raises it right after saving the
                   message) or ``VMSTATUS`` became ``SUCCESS``;
    queue_abandon  the caller was in a queue (``QueueCallerJoin``) and left it by
                   hanging up (``QueueCallerAbandon``); a queue left any other way
                   without an agent is ``no_answer``;
    dial result    the caller's ``DIALSTATUS`` (or its last ``DialEnd``):
                   ``CANCEL`` → caller_cancel, ``BUSY`` → busy, ``NOANSWER`` →
                   no_answer, ``CHANUNAVAIL``/``CONGESTION`` → unavailable (there is
                   no ``DialBegin`` at all when every endpoint is unregistered);
                   ``Busy()``/``Congestion()`` without a dial count as busy/unavailable;
    ivr_abandon    the dialplan answered or played a menu (``Answer``,
                   ``Background``, ``WaitExten``, ``Read``, ``Playback``...) and the
                   caller hung up before anything rang;
    unavailable    nothing was rung or played at all;
    unknown        the call was expired (no hangup after ``pbx.call_expiry_seconds``)
                   or ended while the AMI link was down.

Resynchronisation
    After a (re)connect the client sends ``CoreShowChannels``. Each
    ``CoreShowChannel`` creates or confirms a call and its channels (state,
    current application; a call first seen there whose context has moved on
    from the inbound one is still inbound when its channel belongs to a trunk
    endpoint that brought earlier inbound calls); ``CoreShowChannelsComplete`` closes the calls we thought
    open that Asterisk no longer has (they ended during the gap: ``answered`` if
    we saw the answer, else ``unknown``), and forgets channels that hung up
    during the gap.

Memory stays flat: finished calls are handed out and dropped; calls without a
hangup are expired (swept by event time, at most once a minute); the set of
recently closed call ids that absorbs late stragglers is bounded.
"""

from __future__ import annotations

import fnmatch
import re
from collections import OrderedDict
from collections.abc import Mapping
from typing import TYPE_CHECKING

import structlog

from textbackd.core import numbers
from textbackd.core.model import Call, Direction, Outcome, utc_from_epoch

if TYPE_CHECKING:
    from textbackd.core.settings import Config

log = structlog.get_logger(__name__)

Event = Mapping[str, str]

# Dialplan applications that show where the caller is.
_MENU_APPS = frozenset(
    {"Answer", "Background", "WaitExten", "Read", "Playback", "IVR", "BackGround", "ControlPlayback", "SayDigits"}
)
_STAGE_APPS = frozenset({"VoiceMail", "Queue", "Dial", "Busy", "Congestion", "Hangup", "Progress", "Ringing"}) | _MENU_APPS
_VARS = frozenset({"DIALSTATUS", "VMSTATUS", "FROM_DID", "__FROM_DID"})

_WANTED = frozenset(
    {
        b"Newchannel",
        b"Newstate",
        b"Hangup",
        b"DialBegin",
        b"DialEnd",
        b"NewCallerid",
        b"QueueCallerJoin",
        b"QueueCallerAbandon",
        b"QueueCallerLeave",
        b"AgentCalled",
        b"AgentConnect",
        b"MessageWaiting",
        b"CoreShowChannel",
        b"CoreShowChannelsComplete",
        b"FullyBooted",
        b"BridgeEnter",
    }
)
_WANTED_LINES = frozenset(b"Event: " + name for name in _WANTED)
_WANTED_APPS = frozenset(a.encode() for a in _STAGE_APPS)
_WANTED_VARS = frozenset(v.encode() for v in _VARS)

_DIAL_OUTCOME = {
    "CANCEL": Outcome.CALLER_CANCEL,
    "BUSY": Outcome.BUSY,
    "NOANSWER": Outcome.NO_ANSWER,
    "CHANUNAVAIL": Outcome.UNAVAILABLE,
    "CONGESTION": Outcome.UNAVAILABLE,
    "ANSWER": Outcome.UNKNOWN,  # connected to something that was not a person (a Local leg playing a message)
    "": Outcome.CALLER_CANCEL,  # the caller hung up while the Dial() was still running
}

_DEVICE = re.compile(r"^[^/]+/([^-/@;]+)")
_RECENT_MAX = 4096
_SWEEP_EVERY = 60.0


def _field(raw: bytes, key: bytes) -> bytes:
    """The value of ``key`` (``b"\\nName: "``) in a raw frame, or b""."""
    i = raw.find(key)
    if i < 0:
        return b""
    i += len(key)
    j = raw.find(b"\n", i)
    value = raw[i : j if j > 0 else None]
    return value[:-1] if value.endswith(b"\r") else value


def wants_frame(raw: bytes) -> bool:
    """Cheap test on a raw frame (CRLF or LF line ends): may ``AmiTracker.feed`` care about it?

    Used as ``AmiParser(select=wants_frame)`` so the bulk of the stream
    (``CEL``, most ``VarSet``/``Newexten``, ``Cdr``...) is never decoded.
    Responses and unknown shapes are always wanted.
    """
    nl = raw.find(b"\n")
    first = raw[:nl] if nl > 0 else raw
    if first.endswith(b"\r"):
        first = first[:-1]
    if first in _WANTED_LINES:
        return True
    if first == b"Event: VarSet":
        return _field(raw, b"\nVariable: ") in _WANTED_VARS
    if first == b"Event: Newexten":
        return _field(raw, b"\nApplication: ") in _WANTED_APPS
    return not first.startswith(b"Event: ")


class _Chan:
    __slots__ = ("name", "local", "up", "up_at")

    def __init__(self, name: str) -> None:
        self.name = name
        self.local = name.startswith("Local/")
        self.up = False
        self.up_at: float | None = None


class _Call:
    __slots__ = (
        "id",
        "started",
        "last_at",
        "chans",
        "origin_seen",
        "channel",
        "context",
        "exten",
        "cid_num",
        "cid_name",
        "from_did",
        "answered_at",
        "answered_by",
        "stage",
        "dial_status",
        "in_queue",
        "queue",
        "abandoned",
        "vm_box",
        "vm_left",
        "ring_start",
        "ring_end",
        "notes",
        "inbound_hint",
        "gone",
    )

    def __init__(self, linkedid: str, at: float) -> None:
        self.id = linkedid
        self.started = at
        self.last_at = at
        self.chans: dict[str, _Chan] = {}
        self.origin_seen = False
        self.channel = ""
        self.context = ""
        self.exten = ""
        self.cid_num = ""
        self.cid_name = ""
        self.from_did = ""
        self.answered_at: float | None = None
        self.answered_by: str | None = None
        self.stage = ""  # "" | "ivr" | "dial" | "queue" | "voicemail"
        self.dial_status = ""
        self.in_queue = False
        self.queue: str | None = None
        self.abandoned = False
        self.vm_box: str | None = None
        self.vm_left = False
        self.ring_start: float | None = None
        self.ring_end: float | None = None
        self.notes: list[str] = []
        self.inbound_hint = False
        self.gone: set[str] = set()  # Uniqueids that hung up: late events must not bring them back


def _clean_name(name: str | None) -> str:
    if not name or name in ("<unknown>", "unknown"):
        return ""
    return name.strip()


def _clean_num(num: str | None) -> str:
    if not num or num == "<unknown>":
        return ""
    return num.strip()


def _duration(hms: str) -> float:
    try:
        parts = [int(p) for p in hms.split(":")]
    except ValueError:
        return 0.0
    secs = 0
    for p in parts:
        secs = secs * 60 + p
    return float(secs)


_PEER = re.compile(r"^((?!Local/)[^/]+/[^-/@;]+)-")


def _peer(channel: str) -> str:
    """``IAX2/carrier-4231`` → ``IAX2/carrier`` (the endpoint behind a channel), "" for Local channels."""
    m = _PEER.match(channel)
    return m.group(1) if m else ""


def device_of(channel: str) -> str:
    """``IAX2/104-6942`` → ``104``, ``PJSIP/alice-0000001a`` → ``alice``."""
    m = _DEVICE.match(channel)
    return m.group(1) if m else channel


class AmiTracker:
    """Follows Asterisk calls by ``Linkedid``; see the module docstring for the rules."""

    wants_frame = staticmethod(wants_frame)

    @staticmethod
    def event_time(event: Event) -> float | None:
        """The PBX's own time of an event: ``Timestamp:`` (epoch seconds), sent with ``timestampevents = yes``."""
        try:
            t = float(event.get("Timestamp") or 0)
        except ValueError:
            return None
        return t or None

    #: Asterisk holds no call back for a late event (a MessageWaiting after the last Hangup changes nothing:
    #: VoiceMail() sets VMSTATUS on the caller's channel first; tests/test_ami_late_mwi.py)
    wake_at: float | None = None

    def __init__(self, config: Config) -> None:
        pbx = config.pbx
        self.region = config.business.default_region
        self.expiry = pbx.call_expiry_seconds
        self._ctx_exact = frozenset(c for c in pbx.inbound_contexts if not any(ch in c for ch in "*?["))
        self._ctx_globs = tuple(c for c in pbx.inbound_contexts if c not in self._ctx_exact)
        self._trunks = tuple(re.compile(p) for p in pbx.trunk_channel_patterns)
        self._trunk_peers: OrderedDict[str, None] = OrderedDict()
        self._internal = re.compile(pbx.internal_extension_pattern)
        self._calls: dict[str, _Call] = {}
        self._recent: OrderedDict[str, None] = OrderedDict()
        self._last_sweep: float | None = None
        self._resync: set[str] | None = None  # Uniqueids listed by the running CoreShowChannels
        self.urgent = False  # something a crash must not lose happened since the last snapshot()
        self.closed = 0
        self.expired = 0
        self._handlers = {
            "Newchannel": self._newchannel,
            "Newstate": self._newstate,
            "Hangup": self._hangup,
            "DialBegin": self._dialbegin,
            "DialEnd": self._dialend,
            "NewCallerid": self._newcallerid,
            "BridgeEnter": self._bridgeenter,
            "Newexten": self._newexten,
            "VarSet": self._varset,
            "QueueCallerJoin": self._queuejoin,
            "QueueCallerAbandon": self._queueabandon,
            "QueueCallerLeave": self._queueleave,
            "AgentCalled": self._agentcalled,
            "AgentConnect": self._agentconnect,
            "MessageWaiting": self._messagewaiting,
            "CoreShowChannel": self._coreshowchannel,
        }

    # --- the Tracker protocol ----------------------------------------------------------

    @property
    def open_calls(self) -> int:
        return len(self._calls)

    # --- surviving a crash --------------------------------------------------------------
    #
    # The daemon saves ``snapshot()`` in its store (at once when ``urgent``: a call was
    # answered; else every half second) and ``restore()``s it at start, before the client
    # connects. The resync that follows closes the restored calls Asterisk no longer has:
    # they ended while we were down, and are reported instead of forgotten.

    def snapshot(self) -> list[dict]:
        """The open calls as JSON-able dicts; clears ``urgent``."""
        self.urgent = False
        out = []
        for c in self._calls.values():
            d = {k: getattr(c, k) for k in _Call.__slots__ if k not in ("chans", "gone", "notes")}
            d["chans"] = {u: [ch.name, ch.up, ch.up_at] for u, ch in c.chans.items()}
            d["gone"] = sorted(c.gone)
            d["notes"] = list(c.notes)
            out.append(d)
        return out

    def restore(self, snapshot: list[dict]) -> int:
        """Load calls saved by ``snapshot()`` (from before a restart); returns how many."""
        n = 0
        for d in snapshot:
            try:
                c = _Call(d["id"], d["started"])
                for k in _Call.__slots__:
                    if k in ("chans", "gone", "notes") or k not in d:
                        continue
                    setattr(c, k, d[k])
                for uid, (name, up, up_at) in d.get("chans", {}).items():
                    ch = c.chans[uid] = _Chan(name)
                    ch.up, ch.up_at = up, up_at
                c.gone = set(d.get("gone", ()))
                c.notes = [*d.get("notes", ()), "restored_after_restart"]
            except (KeyError, TypeError, ValueError):
                log.warning("ami.snapshot_entry_skipped")
                continue
            self._calls.setdefault(c.id, c)
            n += 1
        return n

    def feed(self, event: Event, at: float) -> list[Call]:
        name = event.get("Event")
        out: list[Call] = []
        if self._last_sweep is None:
            self._last_sweep = at
        elif at - self._last_sweep >= _SWEEP_EVERY:
            self._last_sweep = at
            out = self.expire(at)
        if name is None:
            return out
        handler = self._handlers.get(name)
        if handler is not None:
            done = handler(event, at)
            if done is not None:
                out.append(done)
        elif name == "CoreShowChannelsComplete":
            out.extend(self._resync_complete(at))
        return out

    def expire(self, now: float) -> list[Call]:
        limit = now - self.expiry
        stale = [c for c in self._calls.values() if c.last_at < limit]
        out = []
        for c in stale:
            c.notes.append("expired")
            self.expired += 1
            log.warning("ami.call_expired", linkedid=c.id, idle_seconds=round(now - c.last_at), channels=len(c.chans))
            out.append(self._close(c, c.last_at, forced=True))
        return out

    def flush(self, now: float) -> list[Call]:
        out = []
        for c in list(self._calls.values()):
            c.notes.append("flushed")
            out.append(self._close(c, max(c.last_at, min(now, c.last_at)), forced=True))
        return out

    # --- helpers ----------------------------------------------------------------------

    def _call(self, ev: Event, at: float, create: bool = True) -> tuple[_Call | None, str]:
        """The call of an event's channel, registering the channel when first seen."""
        linkedid = ev.get("Linkedid")
        uid = ev.get("Uniqueid")
        if not linkedid or not uid:
            return None, ""
        call = self._calls.get(linkedid)
        if call is None:
            if not create or linkedid in self._recent:
                return None, uid
            call = self._calls[linkedid] = _Call(linkedid, at)
            self.urgent = True  # checkpoint new calls at once: a crash must not forget one that is ringing
            if uid != linkedid:
                call.notes.append("joined_mid_call")
        call.last_at = at
        if uid not in call.chans:
            if uid in call.gone:
                return None, uid
            chan = ev.get("Channel", "")
            call.chans[uid] = _Chan(chan)
            if self._resync is not None:
                self._resync.add(uid)
            if uid == linkedid or not call.channel:
                self._origin(call, ev, uid == linkedid)
        return call, uid

    def _origin(self, call: _Call, ev: Event, real: bool) -> None:
        if call.origin_seen:
            return
        call.origin_seen = real
        call.channel = ev.get("Channel", "")
        call.context = ev.get("Context", "")
        call.exten = ev.get("Exten", "")
        call.cid_num = _clean_num(ev.get("CallerIDNum"))
        call.cid_name = _clean_name(ev.get("CallerIDName"))
        inbound = self._is_inbound(call.channel, call.context)
        peer = _peer(call.channel)
        if ev.get("Event") == "Newchannel":
            if inbound and peer:  # remember which trunks bring calls in
                self._trunk_peers[peer] = None
                if len(self._trunk_peers) > 256:
                    self._trunk_peers.popitem(last=False)
        elif not inbound and peer in self._trunk_peers:
            # first seen mid-call (resync): its context may have moved on (IVR, queue), its trunk has not
            inbound = True
            call.notes.append("inbound_by_trunk")
        elif not inbound and real and peer and not self._internal.search(device_of(call.channel)) and (
            call.cid_num and not self._internal.search(call.cid_num)
        ):
            # first seen mid-call by a fresh tracker (restart): a caller channel that is not a phone
            # (IAX2/carrier-…, PJSIP/mytrunk-…) with an outside number is a call from outside
            inbound = True
            call.notes.append("inbound_by_channel")
        call.inbound_hint = inbound

    def _is_inbound(self, channel: str, context: str) -> bool:
        if context in self._ctx_exact:
            return True
        for g in self._ctx_globs:
            if fnmatch.fnmatchcase(context, g):
                return True
        for t in self._trunks:
            if t.search(channel):
                return True
        return False

    def _mark_answered(self, call: _Call, chan: _Chan, at: float) -> None:
        if call.answered_at is None:
            call.answered_at = at
            call.answered_by = device_of(chan.name)
            self.urgent = True  # a crash now must not forget that a human answered
            if call.ring_start is not None and call.ring_end is None:
                call.ring_end = at

    # --- handlers ---------------------------------------------------------------------

    def _newchannel(self, ev: Event, at: float) -> Call | None:
        linkedid = ev.get("Linkedid")
        if linkedid and linkedid in self._recent:
            self._recent.pop(linkedid, None)  # a new channel really belongs to a live call
        call, uid = self._call(ev, at)
        if call is not None and uid == call.id and len(call.chans) == 1:
            call.started = at
        self._state(call, uid, ev, at)
        return None

    def _newstate(self, ev: Event, at: float) -> Call | None:
        call, uid = self._call(ev, at)
        self._state(call, uid, ev, at)
        return None

    def _state(self, call: _Call | None, uid: str, ev: Event, at: float) -> None:
        if call is None:
            return
        st = ev.get("ChannelState")
        if st == "6":
            chan = call.chans[uid]
            chan.up = True
            if chan.up_at is None:
                chan.up_at = at
        elif st == "5" and uid != call.id and call.ring_start is None:  # Ringing
            call.ring_start = at

    def _hangup(self, ev: Event, at: float) -> Call | None:
        linkedid = ev.get("Linkedid", "")
        uid = ev.get("Uniqueid", "")
        call = self._calls.get(linkedid)
        if call is None:
            if uid != linkedid or linkedid in self._recent:
                return None
            # The caller's own channel hangs up on a call we never saw (it ran while we were
            # reconnecting). Its Hangup still names the caller, context and DID: report the call
            # (outcome unknown) rather than lose it.
            call, _ = self._call(ev, at)
            if call is None:
                return None
            call.notes.append("seen_only_at_hangup")
        call.last_at = at
        if uid == call.id and not call.origin_seen:
            # first met through a leg (after a reconnect): the caller's own channel says who called
            self._origin(call, ev, True)
        call.chans.pop(uid, None)
        call.gone.add(uid)
        if not call.chans and (call.origin_seen or call.id in call.gone):
            return self._close(call, at)
        # else: only legs were known and they are gone; the originating channel's hangup (or the
        # resync list, or expiry) ends the call, so it is not closed as a leg-only "internal" call
        return None

    def _dialbegin(self, ev: Event, at: float) -> Call | None:
        call, uid = self._call(ev, at)
        if call is None:
            return None
        if call.ring_start is None:
            call.ring_start = at
        if uid == call.id and not call.in_queue:
            if call.stage != "voicemail":
                call.stage = "dial"
            call.dial_status = ""
        return None

    def _dialend(self, ev: Event, at: float) -> Call | None:
        call, uid = self._call(ev, at)
        if call is None:
            return None
        status = ev.get("DialStatus", "")
        if status == "ANSWER":
            chan = call.chans.get(ev.get("DestUniqueid", ""))
            if chan is not None and chan.up_at is None:
                chan.up_at = at
        if uid == call.id and not call.in_queue and status and status != "ANSWER":
            if call.stage in ("", "ivr", "dial"):
                call.stage = "dial"
                call.dial_status = status
        if call.answered_at is None:
            call.ring_end = at
        return None

    def _bridgeenter(self, ev: Event, at: float) -> Call | None:
        call, uid = self._call(ev, at)
        if call is not None and uid != call.id and ev.get("ChannelState") == "6":
            chan = call.chans[uid]
            if not chan.local:
                self._mark_answered(call, chan, chan.up_at if chan.up_at is not None else at)
        return None

    def _newcallerid(self, ev: Event, at: float) -> Call | None:
        call, uid = self._call(ev, at)
        if call is None or uid != call.id:
            return None
        num = _clean_num(ev.get("CallerIDNum"))
        if not call.cid_num and num:
            call.cid_num = num
        name = _clean_name(ev.get("CallerIDName"))
        # the name the carrier delivered wins: FreePBX rewrites it with route prefixes ("Appts" + name);
        # a later name only fills in a missing one (a CNAM lookup)
        if name and not call.cid_name and (num == call.cid_num or not num):
            call.cid_name = name
        return None

    def _newexten(self, ev: Event, at: float) -> Call | None:
        app = ev.get("Application", "")
        if app not in _STAGE_APPS:
            return None
        call, uid = self._call(ev, at)
        if call is None:
            return None
        if app == "VoiceMail":
            call.stage = "voicemail"
            data = ev.get("AppData", "")
            box = re.split(r"[@,&]", data, maxsplit=1)[0].strip()
            call.vm_box = box or None
            call.in_queue = False
            return None
        if uid != call.id:
            return None
        if app == "Queue":
            call.stage = "queue"
            call.queue = ev.get("AppData", "").split(",", 1)[0] or call.queue
        elif app == "Dial":
            if not call.in_queue:
                call.stage = "dial"
                call.dial_status = ""
        elif app in ("Busy", "Congestion"):
            if call.stage in ("", "ivr") or (call.stage == "dial" and not call.dial_status):
                call.stage, call.dial_status = "dial", "BUSY" if app == "Busy" else "CONGESTION"
        elif app in _MENU_APPS:
            if call.stage == "":
                call.stage = "ivr"
        return None

    def _varset(self, ev: Event, at: float) -> Call | None:
        var = ev.get("Variable", "")
        if var not in _VARS:
            return None
        call, uid = self._call(ev, at)
        if call is None:
            return None
        value = ev.get("Value", "")
        if var == "DIALSTATUS":
            if uid == call.id and value and not call.in_queue and call.stage in ("", "ivr", "dial"):
                call.stage = "dial"
                call.dial_status = value
        elif var == "VMSTATUS":
            if value == "SUCCESS":
                call.vm_left = True
        elif value and not call.from_did:
            call.from_did = value
        return None

    def _queuejoin(self, ev: Event, at: float) -> Call | None:
        call, _uid = self._call(ev, at)
        if call is not None:
            call.stage = "queue"
            call.in_queue = True
            call.queue = ev.get("Queue") or call.queue
        return None

    def _queueabandon(self, ev: Event, at: float) -> Call | None:
        call, _uid = self._call(ev, at)
        if call is not None:
            call.abandoned = True
            call.in_queue = False
            call.stage = "queue"
        return None

    def _queueleave(self, ev: Event, at: float) -> Call | None:
        call, _uid = self._call(ev, at)
        if call is not None:
            call.in_queue = False
        return None

    def _agentcalled(self, ev: Event, at: float) -> Call | None:
        call, _uid = self._call(ev, at)
        if call is not None and call.ring_start is None:
            call.ring_start = at
        return None

    def _agentconnect(self, ev: Event, at: float) -> Call | None:
        call, _uid = self._call(ev, at)
        if call is not None and call.answered_at is None:
            dest = ev.get("DestChannel", "")
            call.answered_at = at
            self.urgent = True
            call.answered_by = device_of(dest) if dest and not dest.startswith("Local/") else (
                ev.get("MemberName") or device_of(ev.get("Interface", "")) or None
            )
            if call.ring_end is None:
                call.ring_end = at
        return None

    def _messagewaiting(self, ev: Event, at: float) -> Call | None:
        call, _uid = self._call(ev, at, create=False)
        if call is not None and ev.get("New", "0") not in ("0", ""):
            call.vm_left = True
            if not call.vm_box:
                call.vm_box = ev.get("Mailbox", "").split("@", 1)[0] or None
        return None

    # --- resync -----------------------------------------------------------------------

    def _coreshowchannel(self, ev: Event, at: float) -> Call | None:
        if self._resync is None:
            self._resync = set()
            log.info("ami.resync_started", open_calls=len(self._calls))
        linkedid = ev.get("Linkedid")
        uid = ev.get("Uniqueid", "")
        if linkedid:
            self._recent.pop(linkedid, None)
        known = linkedid in self._calls
        call, uid = self._call(ev, at)
        if call is None:
            return None
        self._resync.add(uid)
        since = at - _duration(ev.get("Duration", ""))
        if not known:
            call.started = since
            call.notes.append("resynced")
        elif uid == call.id:
            call.started = min(call.started, since)
        chan = call.chans[uid]
        app = ev.get("Application", "")
        if ev.get("ChannelState") == "6":
            chan.up = True
            if chan.up_at is None:
                chan.up_at = since
            if uid != call.id and not chan.local and ev.get("BridgeId"):
                self._mark_answered(call, chan, at)
        if not known:
            if app == "VoiceMail":
                call.stage = "voicemail"
                call.vm_box = ev.get("ApplicationData", "").split("@", 1)[0].split(",", 1)[0] or None
            elif app == "Queue" and uid == call.id:
                call.stage, call.in_queue = "queue", True
                call.queue = ev.get("ApplicationData", "").split(",", 1)[0] or None
            elif app == "Dial" and uid == call.id:
                call.stage = "dial"
                if call.ring_start is None:
                    call.ring_start = at
            elif app in _MENU_APPS and uid == call.id and call.stage == "":
                call.stage = "ivr"
        return None

    def _resync_complete(self, at: float) -> list[Call]:
        listed = self._resync or set()
        self._resync = None
        out = []
        for call in list(self._calls.values()):
            gone = [u for u in call.chans if u not in listed]
            for u in gone:
                del call.chans[u]
            if not call.chans:
                call.notes.append("ended_during_gap")
                out.append(self._close(call, at, forced=True))
        log.info("ami.resync_done", open_calls=len(self._calls), ended_during_gap=len(out))
        return out

    # --- closing ----------------------------------------------------------------------

    def _close(self, call: _Call, at: float, forced: bool = False) -> Call:
        self._calls.pop(call.id, None)
        self._recent[call.id] = None
        if len(self._recent) > _RECENT_MAX:
            self._recent.popitem(last=False)
        self.closed += 1
        if call.inbound_hint:
            direction = Direction.INBOUND
        elif self._internal.search(call.exten or ""):
            direction = Direction.INTERNAL
        else:
            direction = Direction.OUTBOUND
        outcome = self._outcome(call, forced)
        did = call.exten
        if direction is Direction.INBOUND and (not did or did == "s") and call.from_did:
            did = call.from_did
        ring_start = call.ring_start
        ring_end = call.ring_end if call.ring_end is not None else at
        ring = max(0.0, ring_end - ring_start) if ring_start is not None else 0.0
        return Call(
            id=call.id,
            pbx="asterisk",
            direction=direction,
            outcome=outcome,
            caller=numbers.normalize(call.cid_num, self.region),
            caller_raw=call.cid_num,
            caller_name=call.cid_name,
            did=did,
            started=utc_from_epoch(call.started),
            ended=utc_from_epoch(max(at, call.started)),
            answered_at=utc_from_epoch(call.answered_at) if call.answered_at is not None else None,
            ring_seconds=ring,
            voicemail_left=call.vm_left,
            voicemail_box=call.vm_box if call.stage == "voicemail" or call.vm_left else None,
            answered_by=call.answered_by,
            queue=call.queue,
            channel=call.channel or None,
            notes=tuple(call.notes),
        )

    def _outcome(self, call: _Call, forced: bool) -> Outcome:
        if call.answered_at is not None:
            return Outcome.ANSWERED
        if forced:
            return Outcome.UNKNOWN
        stage = call.stage
        if stage == "voicemail":
            return Outcome.VOICEMAIL
        if stage == "queue":
            return Outcome.QUEUE_ABANDON if (call.abandoned or call.in_queue) else Outcome.NO_ANSWER
        if stage == "dial":
            return _DIAL_OUTCOME.get(call.dial_status, Outcome.UNKNOWN)
        if stage == "ivr":
            return Outcome.IVR_ABANDON
        return Outcome.UNAVAILABLE
