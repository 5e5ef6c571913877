"""The outbox state machine, driven with scripted senders that follow the Sender protocol.

The real senders (modem on a pty, Kannel, Twilio) are exercised end to end elsewhere;
here the point is what the outbox does with each kind of answer.
"""

import asyncio

import pytest

from textbackd.core.errors import PermanentSendError, SenderUnavailableError, TemporarySendError, UnknownSendError
from textbackd.core.model import MessageState, SendResult
from textbackd.daemon.outbox import Outbox
from textbackd.store.db import Store


class Clock:
    def __init__(self, t=1000.0):
        self.t = t

    def __call__(self):
        return self.t


class ScriptedSender:
    """Answers each send with the next item of its script (an exception or 'ok')."""

    kind = "scripted"

    def __init__(self, name, script, healthy=True, delay=0.0):
        self.name = name
        self.script = list(script)
        self.sent = []
        self._healthy = healthy
        self.delay = delay

    async def start(self, sink):
        pass

    async def close(self):
        pass

    def healthy(self):
        return self._healthy

    async def send(self, to, text):
        if self.delay:
            await asyncio.sleep(self.delay)
        step = self.script.pop(0) if self.script else "ok"
        if isinstance(step, Exception):
            raise step
        self.sent.append((to, text))
        return SendResult(sender=self.name, segments=1, references=(str(len(self.sent)),))


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "t.db")
    yield s
    s.close()


def schedule(store, clock, to="+12125550101", send_at=None, **kw):
    return store.add_message(
        to=to, kind="textback", state=MessageState.SCHEDULED, now=clock(), send_at=send_at or clock(), text="hi", **kw
    )


async def test_due_text_is_sent_once_and_recorded(store):
    """A due text goes out once through the first sender and ends `sent` with its references."""
    clock = Clock()
    s1 = ScriptedSender("modem1", ["ok"])
    mid = schedule(store, clock)
    box = Outbox(store, [s1], clock=clock)
    await box.process_due()
    await box.process_due()
    m = store.message(mid)
    assert m.state is MessageState.SENT and m.sender == "modem1" and m.refs == ("1",)
    assert len(s1.sent) == 1
    events = store.message_events(mid)
    assert [e.state for e in events] == ["scheduled", "sending", "sending", "sent"]
    assert events[2].detail == "handed over to modem1"  # the second mark, before the sender was called


async def test_not_yet_due_text_waits(store):
    """A text scheduled for later (grace delay) is not sent early."""
    clock = Clock()
    s1 = ScriptedSender("modem1", [])
    mid = schedule(store, clock, send_at=clock() + 30)
    box = Outbox(store, [s1], clock=clock)
    assert await box.process_due() == 0
    clock.t += 31
    await box.process_due()
    assert store.message(mid).state is MessageState.SENT


async def test_failover_to_next_sender(store):
    """An unplugged modem falls over to the next sender in order."""
    clock = Clock()
    s1 = ScriptedSender("modem1", [SenderUnavailableError("/dev/ttyUSB0 missing")])
    s2 = ScriptedSender("kannel", ["ok"])
    mid = schedule(store, clock)
    await Outbox(store, [s1, s2], clock=clock).process_due()
    m = store.message(mid)
    assert m.state is MessageState.SENT and m.sender == "kannel"


async def test_preferred_sender_first(store):
    """A line's preferred sender is tried before the configured order."""
    clock = Clock()
    s1, s2 = ScriptedSender("modem1", []), ScriptedSender("modem2", [])
    schedule(store, clock, sender_pref="modem2")
    await Outbox(store, [s1, s2], clock=clock).process_due()
    assert s2.sent and not s1.sent


async def test_temporary_failure_everywhere_retries_with_backoff(store):
    """When every sender fails temporarily the text is rescheduled, then sent on a later attempt."""
    clock = Clock()
    s1 = ScriptedSender("gw", [TemporarySendError("HTTP 503"), "ok"])
    mid = schedule(store, clock)
    box = Outbox(store, [s1], clock=clock, retry_base=30)
    await box.process_due()
    m = store.message(mid)
    assert m.state is MessageState.SCHEDULED and m.attempts == 1
    assert clock() + 20 <= m.send_at <= clock() + 40
    clock.t = m.send_at
    await box.process_due()
    assert store.message(mid).state is MessageState.SENT


async def test_retry_after_is_honoured(store):
    """A 429 with Retry-After reschedules exactly that far ahead."""
    clock = Clock()
    mid = schedule(store, clock)
    await Outbox(store, [ScriptedSender("tw", [TemporarySendError("429", retry_after=120)])], clock=clock).process_due()
    assert store.message(mid).send_at == pytest.approx(clock() + 120)


async def test_gives_up_after_max_attempts(store):
    """Temporary failures stop after max_attempts and the text is failed with the reasons."""
    clock = Clock()
    s1 = ScriptedSender("gw", [TemporarySendError("HTTP 500")] * 3)
    mid = schedule(store, clock)
    box = Outbox(store, [s1], clock=clock, max_attempts=3, retry_base=1)
    for _ in range(3):
        clock.t = store.message(mid).send_at
        await box.process_due()
    m = store.message(mid)
    assert m.state is MessageState.FAILED and "gave up after 3 attempts" in m.reason and "HTTP 500" in m.reason


async def test_permanent_failure_is_not_retried(store):
    """An invalid number fails at once and is not tried on the next sender."""
    clock = Clock()
    s1 = ScriptedSender("tw", [PermanentSendError("Twilio 21211: invalid 'To' number", code="21211")])
    s2 = ScriptedSender("modem1", [])
    mid = schedule(store, clock)
    await Outbox(store, [s1, s2], clock=clock).process_due()
    m = store.message(mid)
    assert m.state is MessageState.FAILED and "21211" in m.reason and not s2.sent


async def test_unknown_outcome_is_never_resent(store):
    """A send that may have left (timeout after the request) is marked unknown and not retried."""
    clock = Clock()
    s1 = ScriptedSender("gw", [UnknownSendError("read timeout after request")])
    mid = schedule(store, clock)
    box = Outbox(store, [s1], clock=clock)
    await box.process_due()
    clock.t += 10_000
    await box.process_due()
    assert store.message(mid).state is MessageState.UNKNOWN and s1.sent == []


async def test_expired_text_is_dropped(store):
    """A text past its max age is expired, not sent late."""
    clock = Clock()
    s1 = ScriptedSender("modem1", [])
    mid = schedule(store, clock, expires_at=clock() + 60)
    clock.t += 61
    await Outbox(store, [s1], clock=clock).process_due()
    assert store.message(mid).state is MessageState.EXPIRED and not s1.sent


async def test_recheck_cancels_before_send(store):
    """When the recheck says the caller was reached meanwhile, the text is cancelled with that reason."""
    clock = Clock()
    s1 = ScriptedSender("modem1", [])
    mid = schedule(store, clock)
    await Outbox(store, [s1], clock=clock, recheck=lambda m, now: "answered_callback").process_due()
    m = store.message(mid)
    assert m.state is MessageState.CANCELLED and m.reason == "answered_callback" and not s1.sent


async def test_stop_finishes_the_send_in_flight(store):
    """stop() during a send lets it complete and record `sent` before run() returns."""
    clock = Clock()
    s1 = ScriptedSender("modem1", [], delay=0.2)
    mid = schedule(store, clock)
    schedule(store, clock, to="+12125550102")
    box = Outbox(store, [s1], clock=clock)
    task = asyncio.create_task(box.run())
    await asyncio.sleep(0.05)
    box.stop()
    await asyncio.wait_for(task, 5)
    assert store.message(mid).state is MessageState.SENT
    assert len(s1.sent) == 1  # the second one stays scheduled for the next start
