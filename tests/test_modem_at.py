import pathlib

import pytest

from textbackd.senders.modem import at
from textbackd.senders.modem.at import AtEngine, Command, Final, Stray, Urc, Write

TRACES = pathlib.Path(__file__).parent / "data" / "modem" / "issue_traces"


def run(engine: AtEngine, cmd: Command, *chunks: bytes) -> list:
    engine.start(cmd)
    events = []
    for c in chunks:
        events += engine.feed(c)
    return events


def finals(events):
    return [e for e in events if isinstance(e, Final)]


def test_ok_with_intermediate_lines_and_blank_lines():
    """Intermediate lines are collected and the blank lines around them ignored until OK."""
    e = AtEngine()
    ev = run(e, Command("AT+CSQ"), b"\r\n+CSQ: 21,99\r\n\r\nOK\r\n")
    assert ev == [Final(Command("AT+CSQ"), ("+CSQ: 21,99",), "OK")]
    assert not e.busy


def test_echo_is_dropped_when_ate0_did_not_take():
    """The echoed command line (Huawei style AT+CGMR\\r\\r\\n) is not taken as a response line."""
    e = AtEngine()
    ev = run(e, Command("AT+CGMR"), b"AT+CGMR\r\r\n21.263.03.00.141\r\n\r\nOK\r\n")
    [f] = finals(ev)
    assert f.lines == ("21.263.03.00.141",)


def test_line_containing_error_does_not_end_response():
    """A response line that merely contains ERROR (an operator name) is not a final result."""
    e = AtEngine()
    ev = run(e, Command("AT+COPS?"), b'\r\n+COPS: 0,0,"ERRORNET"\r\n', b"\r\nOK\r\n")
    [f] = finals(ev)
    assert f.ok and f.lines == ('+COPS: 0,0,"ERRORNET"',)


@pytest.mark.parametrize(
    "line,kind,code,meaning",
    [
        (b"+CMS ERROR: 330", "CMS", 330, "SMSC address unknown"),
        (b"+CME ERROR: 16", "CME", 16, "incorrect password"),
        (b"+CME ERROR: SIM PIN required", "CME", 11, "SIM PIN required"),
        (b"+CMS ERROR: network timeout", "CMS", 332, "network timeout"),
        (b"ERROR", "ERROR", None, "ERROR"),
        (b"COMMAND NOT SUPPORT", "VENDOR", None, "COMMAND NOT SUPPORT"),
        (b"+CMS ERROR:", "CMS", None, "CMS"),
    ],
)
def test_error_finals_numeric_and_verbose(line, kind, code, meaning):
    """Error result codes, numeric or verbose or vendor, end the command with their 27.005/27.007 meaning."""
    e = AtEngine()
    [f] = finals(run(e, Command("AT+X"), b"\r\n" + line + b"\r\n"))
    assert (f.error.kind, f.error.code, f.error.meaning) == (kind, code, meaning)
    with pytest.raises(at.AtCommandError):
        f.raise_for_error()


def test_urcs_inside_a_response_are_handed_out_not_swallowed():
    """+CMTI, ^RSSI and +CDSI arriving between response lines come out as URCs."""
    e = AtEngine()
    ev = run(
        e,
        Command("AT+CPMS?"),
        b'\r\n+CPMS: "SM",1,20,"SM",1,20,"SM",1,20\r\n\r\n+CMTI: "SM",3\r\n^RSSI:17\r\n',
        b'+CDSI: "SR",0\r\nOK\r\n',
    )
    assert [u.name for u in ev if isinstance(u, Urc)] == ["CMTI", "RSSI", "CDSI"]
    assert ev[0].args == ["SM", "3"]
    [f] = finals(ev)
    assert f.lines == ('+CPMS: "SM",1,20,"SM",1,20,"SM",1,20',)


def test_own_prefix_is_a_response_line_not_a_urc():
    """+CREG: answering AT+CREG? is a response; the same prefix with nothing in flight is a URC."""
    e = AtEngine()
    [f] = finals(run(e, Command("AT+CREG?"), b"\r\n+CREG: 0,1\r\n\r\nOK\r\n"))
    assert at.creg_stat(f.lines) == 1
    [u] = e.feed(b"\r\n+CREG: 5\r\n")
    assert isinstance(u, Urc) and u.name == "CREG"


def test_cds_urc_carries_its_pdu_line():
    """An unsolicited +CDS comes out with the status-report PDU of the next line (python-gsmmodem#44)."""
    e = AtEngine()
    pdu_hex = "079119890400202306400C91197909913764511090718384225110907183252200"
    ev = e.feed(b"\r\n+CDS: 25\r\n" + pdu_hex.encode() + b"\r\n")
    assert ev == [Urc("CDS", "+CDS: 25", pdu_hex)]


@pytest.mark.parametrize(
    "prompt",
    [b"\r\n> ", b"\r\n>", b"> \r\n", b"\r\n> 0011000B", b"AT+CMGS=23\r\r\n> "],
)
def test_prompt_with_or_without_space_or_echo(prompt):
    """The > prompt triggers the PDU write with Ctrl-Z whatever its shape (space, none, glued echo, after echo)."""
    e = AtEngine()
    payload = "0011000B912121550501F10000AA0AE8329BFD4697D9EC37"
    ev = run(e, Command("AT+CMGS=23", payload), prompt)
    assert ev == [Write(payload.encode() + b"\x1a")]
    already = prompt.rsplit(b"> ", 1)[-1] if prompt.endswith(b"0011000B") else b""  # echo glued to the prompt
    ev = e.feed(payload.encode()[len(already):] + b"\x1a\r\n\r\n+CMGS: 64\r\n\r\nOK\r\n")
    [f] = finals(ev)
    assert f.lines == ("+CMGS: 64",)


def test_late_prompt_after_urcs_in_separate_reads():
    """ZTE URCs before a late prompt, and before +CMGS, are URCs; the prompt still works byte by byte."""
    e = AtEngine()
    payload = "00"
    e.start(Command("AT+CMGS=10", payload))
    ev = []
    for b in b"\r\n+ZDONR: \"01\",\"01\"\r\n\r\n>":
        ev += e.feed(bytes([b]))
    ev += e.feed(b" ")
    ev += e.feed(b"\r\n+ZPASR: \"UMTS\"\r\n\r\n+CMGS: 7\r\n\r\nOK\r\n")
    assert [type(x).__name__ for x in ev] == ["Urc", "Write", "Urc", "Final"]
    assert ev[-1].lines == ("+CMGS: 7",)


def test_abort_while_waiting_for_prompt_writes_escape():
    """Giving up before the prompt writes ESC so the modem leaves PDU entry and the next command is clean."""
    e = AtEngine()
    e.start(Command("AT+CMGS=23", "00"))
    data, cur = e.abort()
    assert data == at.ESC and cur.command.line == "AT+CMGS=23"
    assert not e.busy
    assert e.feed(b"\r\n+CMGS: 12\r\n") == [Stray("+CMGS: 12")]


def test_abort_after_payload_reports_payload_phase():
    """Giving up after the PDU went out says so (the text may have been sent)."""
    e = AtEngine()
    run(e, Command("AT+CMGS=23", "00"), b"> ")
    data, cur = e.abort()
    assert data == b"" and cur.phase == "payload_sent"


def test_boot_urcs_with_nothing_in_flight():
    """SIM800/Huawei boot messages are URCs when no command runs."""
    e = AtEngine()
    ev = e.feed(b"\r\nRDY\r\n\r\n+CFUN: 1\r\n\r\n+CPIN: READY\r\n\r\nCall Ready\r\n\r\nSMS Ready\r\n^BOOT:1,0,0,0,0\r\n")
    assert [u.name for u in ev] == ["RDY", "CFUN", "CPIN", "CALL_READY", "SMS_READY", "BOOT"]


def test_cdsi_in_same_read_as_cpin_answer_from_gammu_408():
    """The +CDSI URC and the AT+CPIN? answer arriving in one read (gammu#408) are told apart."""
    e = AtEngine()
    ev = run(e, Command("AT+CPIN?"), b'+CDSI: "SR",0\r\nAT+CPIN?\r\r\n+CPIN: READY\r\n\r\nOK\r\n')
    assert ev[0] == Urc("CDSI", '+CDSI: "SR",0')
    assert ev[1].lines == ("+CPIN: READY",)


def test_huawei_e1750_cmgs_trace_from_gammu_88():
    """The E1750 trace (echo, prompt glued to the echoed PDU, blank lines) yields +CMGS: 34."""
    text = (TRACES / "gammu-88_HuaweiE1750_minicom_cmgs_extra_newlines.txt").read_text()
    lines = text.splitlines()
    payload = lines[1][2:]
    e = AtEngine()
    ev = run(e, Command("at+cmgs=49", payload), ("\r\n".join(lines) + "\r\n").encode())
    assert isinstance(ev[0], Write)
    [f] = finals(ev)
    assert f.ok and f.lines == ("+CMGS: 34",)


def test_cms_error_without_code_then_next_echo_from_tinygsm_470():
    """SIM7000G's '+CMS ERROR:' without code still ends the command as a CMS error."""
    e = AtEngine()
    [f] = finals(run(e, Command('AT+CMGS="+4915000000000"', "x"), b"\r\n>blatest \r\n+CMS ERROR:\r\n"))
    assert f.error.kind == "CMS" and f.error.code is None


def test_signal_and_registration_helpers():
    """CSQ maps to dBm (99 unknown) and CREG answers of every shape give their stat."""
    assert at.csq_dbm(21) == -71 and at.csq_dbm(99) is None
    assert at.creg_stat(['+CREG: 2,1,"00C3","0010"']) == 1
    assert at.creg_stat(["+CREG: 5"]) == 5


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_SESSION = (
    b"AT+CMGS=23\r\r\n\r\n+CMTI: \"SM\",4\r\n\r\n> "
    b"0011000B912121550501F10000AA0AE8329BFD4697D9EC37\x1a\r\n"
    b"\r\n^RSSI:17\r\n\r\n+CMGS: 64\r\n\r\nOK\r\n"
    b"\r\n+CDS: 25\r\n079119890400202306400C91197909913764511090718384225110907183252200\r\n"
)


def _run_chunks(cuts: list[int]) -> list:
    e = AtEngine()
    e.start(Command("AT+CMGS=23", "0011000B912121550501F10000AA0AE8329BFD4697D9EC37"))
    events, last = [], 0
    for c in sorted(set(cuts)) + [len(_SESSION)]:
        events += e.feed(_SESSION[last:c])
        last = c
    return events


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(_SESSION)), max_size=30))
def test_any_split_of_the_byte_stream_gives_the_same_events(cuts):
    """However the serial reads split a send session, the engine yields the same write, URCs and final."""
    assert _run_chunks(cuts) == _run_chunks([])
    names = [type(ev).__name__ for ev in _run_chunks(cuts)]
    assert names == ["Urc", "Write", "Urc", "Final", "Urc"]


def _gsmmodem_sequence(line_no: int) -> list:
    import json

    seqs = json.loads((TRACES.parent / "python-gsmmodem_test_modem_response_sequences.json").read_text())
    [seq] = [s for s in seqs if s["line"] == line_no]
    return seq["value"]


def test_zte_urcs_around_prompt_and_cmgs_from_python_gsmmodem():
    """python-gsmmodem's ZTE sequence (URCs before the prompt and before +CMGS) gives 6 URCs, the write and +CMGS."""
    before = "".join(_gsmmodem_sequence(1542)).encode()
    after = "".join(v if isinstance(v, str) else v["template"].format(12) for v in _gsmmodem_sequence(1547)).encode()
    e = AtEngine()
    ev = run(e, Command("AT+CMGS=23", "00"), before, after)
    assert [type(x).__name__ for x in ev] == ["Urc", "Urc", "Write", "Urc", "Urc", "Urc", "Urc", "Final"]
    assert {x.name for x in ev if isinstance(x, Urc)} == {"ZDONR", "ZPASR"}
    assert ev[-1].lines == ("+CMGS: 12",)


def test_status_report_recorded_from_a_modem_in_python_gsmmodem():
    """The CMGR status report python-gsmmodem recorded from a real modem decodes to MR 35, delivered, +8/+7 h."""
    from datetime import datetime, timedelta, timezone

    from textbackd.senders.modem import pdu

    [[lines, _stat, number, mr, *_]] = _gsmmodem_sequence(2217)
    e = AtEngine()
    [fin] = run(e, Command("AT+CMGR=1"), "".join(lines).encode())
    rep = pdu.decode(fin.lines[1])
    assert (rep.reference, rep.recipient, rep.delivered) == (mr, number, True)
    assert rep.timestamp == datetime(2016, 10, 30, 4, 59, 44, tzinfo=timezone(timedelta(hours=8)))
    assert rep.discharge.utcoffset() == timedelta(hours=7)


def test_noise_without_line_ends_is_dropped_not_buffered_forever():
    """A device babbling bytes with no line end never grows the reader's buffer past ``MAX_LINE``; the noise
    is reported once per overflow as a Stray, and the command in flight still completes on its OK."""
    e = AtEngine()
    e.start(Command("AT"))
    events = []
    for _ in range(400):  # 400 × 1 KiB of garbage, no CR or LF
        events += e.feed(b"\x00\xff" * 512)
        assert len(e._buf) <= at.MAX_LINE
    assert e.dropped_bytes > 390 * 1024
    assert any(isinstance(ev, Stray) and "without a line end" in ev.line for ev in events)
    [final] = [ev for ev in e.feed(b"\r\nOK\r\n") if isinstance(ev, Final)]
    assert final.ok and final.command.line == "AT"
