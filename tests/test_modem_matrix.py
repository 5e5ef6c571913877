"""The modem matrix: every simulated modem family × every fault, through ``ModemSender`` on a real pty.

Profiles: Huawei E3372, SIMCom SIM800, Quectel EC25 and a Wavecom-like modem that answers
``AT+CPIN?`` without a final ``OK`` (python-gsmmodem's recorded WavecomMultiband900E1800). Faults
(issue 13): a temporary ``+CMS ERROR`` on part k of a linked text (once, and past the sender's own
retries), a permanent one on a later part, a hang after k commands until ``ATZ`` (during init and
between texts), a hang until the port is reopened, a hang after the PDU went out, the modem
rebooting by itself, Huawei's periodic ``^BOOT`` line, and the device pulled before the prompt and
after the PDU. "The phone" is the simulator's list of parts it took (``sim.taken``).
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from test_modem_sender import Sink, started, until

from textbackd.core.errors import PermanentSendError, SenderUnavailableError, TemporarySendError, UnknownSendError
from textbackd.senders.base import MemoryTrack
from textbackd.senders.modem.simulator import ModemSimulator

PROFILES = ["huawei", "sim800", "quectel", "wavecom"]
LONG = ("Hi, this is Apex Plumbing. Sorry we missed your call; reply here or book online any time. " * 5)[:400]
FAST = {"command_timeout": 0.5}


async def each_profile(tmp_path, scenario, *, before=None, **sender_kw) -> None:
    """For every profile at once: a simulator (``before(sim)`` runs first), a started ``ModemSender``, then
    ``scenario(sim, sender)``; fails naming every profile that failed."""

    async def one(profile: str) -> None:
        sim = ModemSimulator(link=str(tmp_path / f"ttyUSB-{profile}"), profile=profile)
        await sim.start()
        if before is not None:
            before(sim)
        sender = None
        sim.sink = Sink()  # what the sender delivered (replies, delivery reports)
        try:
            sender = await started(sim, sim.sink, **{**FAST, **sender_kw})
            sender.settle_grace = 0.1
            sender.submit_timeout = 1.0
            assert sender.state == "ready", sender.reason
            await scenario(sim, sender)
        finally:
            if sender is not None:
                await sender.close()
            await sim.stop()

    results = await asyncio.gather(*(one(p) for p in PROFILES), return_exceptions=True)
    failed = {p: r for p, r in zip(PROFILES, results, strict=True) if isinstance(r, BaseException)}
    if failed:
        raise AssertionError("; ".join(f"{p}: {type(e).__name__}: {e}" for p, e in failed.items())) from next(
            iter(failed.values()))


def whole(sim, to: str, total: int) -> bool:
    """The phone holds exactly one copy of each part 1..total, all with one concatenation reference."""
    mine = [t for t in sim.taken if t.to == to]
    return (sorted(t.part for t in mine) == list(range(1, total + 1))
            and len({t.concat_ref for t in mine}) == 1 and all(t.total == total for t in mine))


async def test_temporary_error_on_part_2_resends_only_that_part_with_the_same_reference(tmp_path):
    """+CMS ERROR: 500 on part 2 of 3: part 2 is sent again (same reference, same numbering) and the text arrives whole."""

    async def scenario(msim, sender):
        msim.fail_part(2, 500)
        res = await sender.send("+12125550120", LONG)
        assert res.segments == 3 and len(res.references) == 3
        assert whole(msim, "+12125550120", 3)
        assert [r.text for r in msim.received] == [LONG]

    await each_profile(tmp_path, scenario)


async def test_part_2_failing_past_its_retries_resumes_on_the_next_send(tmp_path):
    """Part 2 refused on every retry: the send fails temporarily, and the next send sends parts 2 and 3 only, same reference."""

    async def scenario(msim, sender):
        msim.fail_part(2, 38, times=3)  # the first try and both retries
        track = MemoryTrack("modem1")
        with pytest.raises(TemporarySendError) as e:
            await sender.send("+12125550121", LONG, track=track)
        assert "1 of 3 parts went out" in str(e.value)
        assert [t.part for t in msim.taken] == [1]
        track.refused()  # what its owner (the outbox, `textbackd send`) does with a temporary failure
        res = await sender.send("+12125550121", LONG, track=track)
        assert [t.part for t in msim.taken] == [1, 2, 3] and whole(msim, "+12125550121", 3)
        assert res.references == tuple(str(t.mr) for t in msim.taken)

    await each_profile(tmp_path, scenario)


async def test_permanent_error_on_a_later_part_fails_naming_the_parts_that_went_out(tmp_path):
    """A permanent +CMS ERROR on part 3 fails the text at once, saying 2 of 3 parts went out."""

    async def scenario(msim, sender):
        msim.fail_part(3, 96)
        with pytest.raises(PermanentSendError) as e:
            await sender.send("+12125550122", LONG, track=MemoryTrack("modem1"))
        assert "2 of 3 parts went out" in str(e.value) and e.value.code == "CMS 96"
        assert [t.part for t in msim.taken] == [1, 2]

    await each_profile(tmp_path, scenario)


async def test_hang_during_init_until_atz_is_reset_and_the_modem_becomes_ready(tmp_path):
    """A modem that stops answering 4 commands into init (until ATZ) gets ESC, AT, ATZ, init again: ready, and sends."""

    async def scenario(msim, sender):
        assert "ATZ" in msim.commands and sender.resets == 1
        assert "ATZ: OK" in sender.status()["last_recovery"]
        await sender.send("+12125550123", "hello")
        assert [t.to for t in msim.taken] == ["+12125550123"]

    await each_profile(tmp_path, scenario, before=lambda sim: sim.hang_after(4, until="atz"))


async def test_hang_between_texts_until_atz_resets_and_retries_the_text_once(tmp_path):
    """Hung between two texts (until ATZ): the next AT+CMGS gets no prompt, the ladder resets the modem, the text goes once."""

    async def scenario(msim, sender):
        await sender.send("+12125550124", "first")
        msim.hang_after(0, until="atz")
        await sender.send("+12125550124", "second")
        assert [t.text for t in msim.taken] == ["first", "second"]
        i = msim.commands.index("ATZ")
        assert msim.commands[i - 1] == "AT" and "ATE0" in msim.commands[i:]  # ESC, AT, ATZ, then init again

    await each_profile(tmp_path, scenario)


async def test_hang_until_the_port_is_reopened_closes_and_reopens_it(tmp_path):
    """A modem deaf to ATZ too (until the port is reopened): the send fails unsent, the port is reopened, the next one goes."""

    async def scenario(msim, sender):
        opens = msim.opens
        msim.hang_after(0, until="reopen")
        with pytest.raises(SenderUnavailableError):
            await sender.send("+12125550125", "hello")
        assert msim.taken == []
        await until(lambda: sender.state == "ready" and msim.opens > opens)
        await sender.send("+12125550125", "hello")
        assert len(msim.taken) == 1 and "reopen" in sender.status()["last_recovery"]

    await each_profile(tmp_path, scenario)


async def test_hang_after_the_pdu_is_unknown_and_the_modem_is_reset_for_the_next_text(tmp_path):
    """The PDU went out and the modem hung (until ATZ): that text is unknown, never resent; the modem is reset, the next goes."""

    async def scenario(msim, sender):
        msim.pause_at("prompt")  # hang exactly after the prompt: the PDU reaches the modem, which then says nothing
        task = asyncio.create_task(sender.send("+12125550126", "hello", track=MemoryTrack("modem1")))
        await asyncio.wait_for(msim.paused.wait(), 10)
        msim.hang_after(0, until="atz")
        msim.resume()
        with pytest.raises(UnknownSendError):
            await task
        await until(lambda: "ATZ" in msim.commands and not sender._op_lock.locked())
        await sender.send("+12125550127", "next")
        assert [t.to for t in msim.taken] == ["+12125550127"]  # the hung one was read but never answered
        assert sum(c.startswith("AT+CMGS") for c in msim.commands) == 2

    await each_profile(tmp_path, scenario)


async def test_modem_rebooting_by_itself_is_reinitialised_once_and_sends(tmp_path):
    """A modem that reboots (its own boot lines; a silent Wavecom shows it by +CMS ERROR: 302) is re-initialised once."""

    async def scenario(msim, sender):
        n = len(msim.commands)
        await msim.reboot()
        if msim.p["boot"]:
            await until(lambda: sender.reboots == 1 and "AT+CMGF=0" in msim.commands[n:] and not sender._op_lock.locked())
        await sender.send("+12125550128", "after the reboot")
        assert [t.text for t in msim.taken] == ["after the reboot"]
        assert sum(c == "ATE0" for c in msim.commands[n:]) == 1  # one re-init, whatever the boot lines said
        assert "ATZ" not in msim.commands

    await each_profile(tmp_path, scenario)


async def test_periodic_boot_lines_change_nothing(tmp_path):
    """Sixty ^BOOT: status lines (a minute of a Huawei's, compressed) cause no ATZ, no re-init, and texts go out."""

    async def scenario(msim, sender):
        n = len(msim.commands)
        for i in range(60):
            msim.urc("^BOOT:12345,0,0,0,72")
            if i == 30:
                await sender.send("+12125550129", "in the middle")
            await asyncio.sleep(0.005)
        await sender.send("+12125550129", "after")
        assert "ATZ" not in msim.commands and "ATE0" not in msim.commands[n:]
        assert sender.reboots == 0 and sender.recoveries == 0 and len(msim.taken) == 2

    await each_profile(tmp_path, scenario)


async def test_device_pulled_before_the_prompt_sends_nothing_and_after_the_pdu_is_unknown(tmp_path):
    """Pulled while AT+CMGS waits for its prompt: unavailable, nothing out. Pulled after the PDU: unknown. Replugged: sends."""

    async def scenario(msim, sender):
        msim.unplug_on_command = "AT+CMGS"
        with pytest.raises(SenderUnavailableError):
            await sender.send("+12125550130", "one")
        assert msim.pdu_log == []
        await msim.replug()
        await until(lambda: sender.state == "ready")
        msim.unplug_on_pdu = True
        with pytest.raises(UnknownSendError):
            await sender.send("+12125550130", "two", track=MemoryTrack("modem1"))
        await msim.replug()
        await until(lambda: sender.state == "ready")
        await sender.send("+12125550130", "three")
        assert Counter(t.text for t in msim.taken) == Counter({"three": 1})

    await each_profile(tmp_path, scenario)


async def test_a_status_report_names_the_recipient(tmp_path):
    """A +CDS/+CDSI status report reaches the sink with its TP-MR and the recipient's number."""

    async def scenario(msim, sender):
        sink = msim.sink
        res = await sender.send("+12125550131", "hi")
        await msim.status_report(int(res.references[0]))
        await sink.wait_for(lambda: sink.reports)
        assert (sink.reports[0].reference, sink.reports[0].recipient) == (res.references[0], "+12125550131")

    await each_profile(tmp_path, scenario)
