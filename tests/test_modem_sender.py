"""ModemSender against the modem simulator on a real pty; every PDU the simulator gets is re-read by smspdudecoder."""

import asyncio
from io import StringIO

import pytest
from smspdudecoder.easy import read_outgoing_sms
from smspdudecoder.fields import SMSSubmit

from textbackd.config import parse
from textbackd.core.errors import PermanentSendError, SenderUnavailableError, TemporarySendError, UnknownSendError
from textbackd.senders.base import Sender
from textbackd.senders.modem.sender import ModemSender
from textbackd.senders.modem.simulator import ModemSimulator
from textbackd.senders.registry import build_sender

WAIT = 20.0  # generous, only so a broken build fails instead of hanging


class Sink:
    def __init__(self) -> None:
        self.texts = []
        self.reports = []
        self.changed = asyncio.Event()

    async def incoming(self, text) -> None:
        self.texts.append(text)
        self.changed.set()

    async def delivery_report(self, report) -> None:
        self.reports.append(report)
        self.changed.set()

    async def wait_for(self, pred) -> None:
        async def loop():
            while not pred():
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(loop(), WAIT)


def config(*senders: dict):
    return parse(
        {"business": {"name": "Test Clinic"}, "senders": [{"kind": "modem", "command_timeout": 3.0, **s} for s in senders]},
        env={},
    )


async def started(sim, sink=None, **extra) -> ModemSender:
    cfg = config({"name": "modem1", "device": sim.device, **extra})
    sender = build_sender("modem1", cfg)
    sender.retry_min = 0.05
    sender.retry_max = 0.2
    sender.settle_time = 0.05
    sender.part_retry_delays = (0.05, 0.1)
    await sender.start(sink or Sink())
    if sender.state == "ready":
        await asyncio.wait_for(sender.inbox_checked.wait(), WAIT)
    return sender


async def until(pred) -> None:
    async def loop():
        while not pred():
            await asyncio.sleep(0.02)

    await asyncio.wait_for(loop(), WAIT)


async def test_emoji_text_reaches_modem_as_exactly_that_text(sim):
    """The done-when text goes out as one UCS-2 PDU that smspdudecoder reads back exactly, with status report."""
    sender = await started(sim)
    try:
        assert isinstance(sender, Sender) and sender.healthy()
        text = "Sorry we missed your call 😊"
        res = await sender.send("+12125550101", text)
        assert (res.sender, res.segments, res.encoding) == ("modem1", 1, "ucs2")
        [got] = sim.received
        assert res.references == tuple(str(r) for r in got.references)
        [raw] = got.pdus
        assert read_outgoing_sms(raw) == {"recipient": "+12125550101", "content": text}
        assert SMSSubmit.decode(StringIO(raw))["header"]["srr"] is True
    finally:
        await sender.close()


async def test_400_char_gsm7_text_goes_out_as_three_linked_parts(sim):
    """A 400-character GSM-7 text is 3 parts with one concatenation reference, each with its own TP-MR."""
    sender = await started(sim)
    try:
        text = ("Hi, this is Test Clinic [front desk]. Sorry we missed you! " * 8)[:400]
        res = await sender.send("2125550102", text)  # national number, normalised to E.164
        assert res.segments == 3 and len(set(res.references)) == 3
        [got] = sim.received
        assert got.to == "+12125550102" and got.text == text
        refs = set()
        joined = ""
        for i, raw in enumerate(got.pdus, start=1):
            d = SMSSubmit.decode(StringIO(raw))
            assert d["dcs"]["encoding"] == "gsm"
            [el] = d["user_data"]["header"]["elements"]
            assert (el["data"]["parts_count"], el["data"]["part_number"]) == (3, i)
            refs.add(el["data"]["reference"])
            joined += d["user_data"]["data"]
        assert len(refs) == 1 and joined == text
    finally:
        await sender.close()


async def test_incoming_and_concatenated_replies_reach_the_sink_and_leave_the_sim(sim):
    """+CMTI replies, one short and one in 3 parts with an emoji, are decoded, reassembled, handed over and deleted."""
    sink = Sink()
    sender = await started(sim, sink)
    try:
        await sim.incoming("+12125550103", "STOP")
        long = "Can you call me back tomorrow morning? 😊 " * 6
        await sim.incoming("+12125550104", long)
        await sink.wait_for(lambda: len(sink.texts) == 2)
        assert [(t.from_number, t.text) for t in sink.texts] == [("+12125550103", "STOP"), ("+12125550104", long)]
        assert all(t.sender == "modem1" for t in sink.texts)
        await until(lambda: not sim.storage)
    finally:
        await sender.close()


async def test_texts_already_on_the_sim_are_read_at_start(sim):
    """Replies that arrived while the daemon was stopped are read with AT+CMGL=4 at start."""
    sim.cnmi = (2, 1, 0, 1, 0)
    await sim.incoming("+12125550105", "sent while you were down")
    sim.cnmi = (0, 0, 0, 0, 0)
    sink = Sink()
    sender = await started(sim, sink)
    try:
        await sink.wait_for(lambda: sink.texts)
        assert sink.texts[0].text == "sent while you were down"
        assert "AT+CMGL=4" in sim.commands
        await until(lambda: not sim.storage)
    finally:
        await sender.close()


async def test_delivery_reports_by_cds_and_by_cdsi(sim):
    """Status reports (+CDS direct, and +CDSI stored when ds=1 is refused) arrive with the TP-MR send returned."""
    sink = Sink()
    sender = await started(sim, sink)
    try:
        res = await sender.send("+12125550106", "hello")
        await sim.status_report(int(res.references[0]))
        await sink.wait_for(lambda: sink.reports)
        rep = sink.reports[0]
        assert (rep.sender, rep.reference, rep.delivered, rep.final) == ("modem1", res.references[0], True, True)
    finally:
        await sender.close()
    sim.ds_supported = (0, 2)
    sink = Sink()
    sender = await started(sim, sink)
    try:
        res = await sender.send("+12125550106", "hello again")
        await sim.status_report(int(res.references[0]), status=0x46)
        await sink.wait_for(lambda: sink.reports)
        rep = sink.reports[0]
        assert (rep.reference, rep.delivered, rep.final, rep.detail) == (
            res.references[0], False, True, "SM validity period expired")
        await until(lambda: not sim.sr_storage)
    finally:
        await sender.close()


async def test_cms_errors_map_to_permanent_and_temporary(sim):
    """+CMS ERROR 1 (unassigned number) is permanent at once, 38 (network out of order) temporary once its part's
    retries are spent, both with code and meaning."""
    sender = await started(sim)
    try:
        sim.fail_next_send(1)
        with pytest.raises(PermanentSendError) as e:
            await sender.send("+12125550107", "hi")
        assert e.value.code == "CMS 1" and "unassigned (unallocated) number" in str(e.value)
        for _ in range(3):  # the first try and its two retries
            sim.fail_next_send(38)
        with pytest.raises(TemporarySendError) as e:
            await sender.send("+12125550107", "hi")
        assert e.value.code == "CMS 38" and "network out of order" in str(e.value)
        assert not isinstance(e.value, SenderUnavailableError)
        assert (await sender.send("+12125550107", "hi")).segments == 1
    finally:
        await sender.close()


async def test_urcs_inside_responses_are_not_lost(sim):
    """A +CMTI injected in the middle of the next response is still acted on and the send still succeeds."""
    sink = Sink()
    sender = await started(sim, sink)
    try:
        sim.cnmi = (2, 0, 0, 1, 0)  # store silently, then announce by hand inside a response
        [idx] = await sim.incoming("+12125550108", "hidden reply")
        sim.cnmi = (2, 1, 0, 1, 0)
        sim.inject_urc(f'+CMTI: "SM",{idx}')
        sim.inject_urc("^RSSI:12")
        res = await sender.send("+12125550108", "x" * 200)
        assert res.segments == 2
        await sink.wait_for(lambda: sink.texts)
        assert sink.texts[0].text == "hidden reply"
    finally:
        await sender.close()


async def test_missing_device_fails_fast_and_recovers_when_plugged(tmp_path):
    """With no device the sender reports down and send raises SenderUnavailableError; once plugged it sends."""
    link = str(tmp_path / "ttyUSB7")
    cfg = config({"name": "modem1", "device": link})
    sender = ModemSender(cfg.senders[0], cfg)
    sender.retry_min, sender.retry_max, sender.settle_time = 0.05, 0.1, 0.05
    await sender.start(Sink())
    sim = ModemSimulator(link=link)
    try:
        assert sender.state == "down" and "no such device" in sender.reason
        assert not sender.healthy()
        with pytest.raises(SenderUnavailableError):
            await sender.send("+12125550109", "hi")
        await sim.start()
        await until(lambda: sender.state == "ready")
        assert (await sender.send("+12125550109", "hi")).segments == 1
    finally:
        await sender.close()
        await sim.stop()


async def test_unplug_after_pdu_is_unknown_and_nothing_is_lost(sim):
    """Pulling the device after the PDU was written raises UnknownSendError; after replug sending works again."""
    sender = await started(sim)
    try:
        sim.unplug_on_pdu = True
        with pytest.raises(UnknownSendError):
            await sender.send("+12125550110", "Sorry we missed your call")
        assert len(sim.pdu_log) == 1 and sim.received == []
        await until(lambda: sender.state == "down")
        with pytest.raises(SenderUnavailableError):
            await sender.send("+12125550110", "Sorry we missed your call")
        await sim.replug()
        await until(lambda: sender.state == "ready")
        res = await sender.send("+12125550110", "Sorry we missed your call")
        assert res.segments == 1 and sim.received[-1].text == "Sorry we missed your call"
    finally:
        await sender.close()


async def test_unplug_before_prompt_is_unavailable(sim):
    """Pulling the device while AT+CMGS waits for its prompt raises SenderUnavailableError (nothing went out)."""
    sender = await started(sim)
    try:
        sim.unplug_on_command = "AT+CMGS"
        with pytest.raises(SenderUnavailableError):
            await sender.send("+12125550111", "hi")
        assert sim.pdu_log == []
    finally:
        await sender.close()


async def test_a_modem_that_ignores_one_command_gets_esc_and_at_then_the_send_is_retried(sim):
    """A modem that ignores AT+CMGS once gets ESC and AT (it answers: no reset needed), and the send is tried again."""
    sender = await started(sim)
    sender.command_timeout = 1.0
    try:
        sim.ignore_next = 1
        res = await sender.send("+12125550112", "hello")
        assert res.segments == 1 and len(sim.received) == 1
        assert "ATZ" not in sim.commands
        assert sum(c.startswith("AT+CMGS") for c in sim.commands) == 2
        assert sender.status()["recoveries"] == 1 and "AT: OK" in sender.status()["last_recovery"]
    finally:
        await sender.close()


async def test_silent_modem_send_fails_as_unavailable(sim):
    """A modem that stops answering entirely makes send raise SenderUnavailableError, not hang."""
    sender = await started(sim)
    sender.command_timeout = 0.5
    try:
        sim.silent = True
        with pytest.raises(SenderUnavailableError):
            await sender.send("+12125550113", "hello")
        assert sim.pdu_log == []
    finally:
        await sender.close()


async def test_wrong_pin_is_never_retried(tmp_path):
    """A PIN the SIM refuses is entered exactly once however often the sender reconnects."""
    sim = ModemSimulator(link=str(tmp_path / "ttyUSB0"), pin="1234")
    await sim.start()
    sender = await started(sim, pin="0000")
    try:
        assert sender.state == "down" and "refused the PIN" in sender.reason and "0000" not in sender.reason
        n = len(sim.commands)
        await until(lambda: len(sim.commands) > n + 6)  # several reconnect rounds
        assert sum(c.startswith("AT+CPIN=") for c in sim.commands) == 1
        with pytest.raises(SenderUnavailableError):
            await sender.send("+12125550114", "hi")
    finally:
        await sender.close()
        await sim.stop()


async def test_right_pin_unlocks_and_modem_info_is_filled(tmp_path):
    """The configured PIN unlocks the SIM; identification, operator, registration and dBm are known."""
    sim = ModemSimulator(link=str(tmp_path / "ttyUSB0"), pin="1234", profile="sim800")
    await sim.start()
    sender = await started(sim, pin="1234")
    try:
        assert sender.state == "ready"
        assert sender.info["model"] == "SIMCOM_SIM800L"
        assert sender.info["imei_tail"] == "2345" and "imei" not in sender.info
        assert sender.info["signal_dbm"] == -71
        assert sender.info["operator"] == "Textback Mobile"
        assert sender.info["registration"] == "registered, home network"
    finally:
        await sender.close()
        await sim.stop()


async def test_two_modems_one_down_fails_fast_other_sends(sim, tmp_path):
    """With two modem senders, the unplugged one raises SenderUnavailableError at once and the other sends."""
    cfg = config({"name": "modem1", "device": str(tmp_path / "absent")}, {"name": "modem2", "device": sim.device})
    down, up = build_sender("modem1", cfg), build_sender("modem2", cfg)
    for s in (down, up):
        s.retry_min, s.settle_time = 0.05, 0.05
        await s.start(Sink())
    try:
        assert down.state == "down" and not down.healthy()
        with pytest.raises(SenderUnavailableError):
            await down.send("+12125550115", "hi")
        assert (await up.send("+12125550115", "hi")).sender == "modem2"
    finally:
        await down.close()
        await up.close()


@pytest.mark.parametrize("profile", ["huawei", "sim800", "quectel"])
async def test_each_simulated_modem_family_sends_and_receives(tmp_path, profile):
    """Huawei, SIM800 (bare > prompt) and Quectel styles all send a UCS-2 text and deliver a reply."""
    sim = ModemSimulator(link=str(tmp_path / "ttyUSB0"), profile=profile)
    await sim.start()
    sink = Sink()
    sender = await started(sim, sink)
    try:
        res = await sender.send("+12125550116", "Merci, à bientôt 😊")
        assert res.encoding == "ucs2" and sim.received[0].text == "Merci, à bientôt 😊"
        await sim.incoming("+12125550116", "ok")
        await sink.wait_for(lambda: sink.texts)
        assert sink.texts[0].text == "ok"
    finally:
        await sender.close()
        await sim.stop()


async def test_slow_network_answer_after_the_pdu_is_waited_for(sim):
    """A +CMGS that comes after the command timeout (the network is slow) still counts: no false unknown."""
    sender = await started(sim)
    sender.command_timeout = 0.3
    sender.submit_timeout = 30.0
    try:
        sim.cmgs_delay = 1.0
        res = await sender.send("+12125550117", "hello")
        assert res.references == (str(sim.received[0].references[0]),)
    finally:
        await sender.close()


async def test_modem_reboot_is_noticed_and_reinitialised(tmp_path):
    """A modem that reboots by itself (^SYSSTART, echo on, PIN needed again) is re-initialised and sends again."""
    sim = ModemSimulator(link=str(tmp_path / "ttyUSB0"), pin="1234")
    await sim.start()
    sender = await started(sim, pin="1234")
    try:
        n = len(sim.commands)
        await sim.reboot()
        await until(lambda: "AT+CNMI=2,1,0,1,0" in sim.commands[n:] and sender.state == "ready" and not sender._op_lock.locked())
        assert sum(c.startswith("AT+CPIN=") for c in sim.commands) == 2  # a fresh boot asks again: correct PIN, re-entered
        assert (await sender.send("+12125550118", "back")).segments == 1
    finally:
        await sender.close()
        await sim.stop()


async def test_close_during_a_send_ends_the_send_at_once(sim):
    """Closing the sender while a send waits for the modem ends that send with SenderUnavailableError."""
    sender = await started(sim)
    sim.silent = True
    task = asyncio.create_task(sender.send("+12125550119", "hi"))
    await until(lambda: any(c.startswith("AT+CMGS") for c in sim.commands))
    await sender.close()
    with pytest.raises(SenderUnavailableError):
        await asyncio.wait_for(task, WAIT)
