"""KannelSender and the listener against a real Kannel: bearerbox, smsbox and fakesmsc on 127.0.0.1."""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote_to_bytes

import pytest

from textbackd import config as config_mod
from textbackd.core.errors import PermanentSendError, SenderUnavailableError
from textbackd.core.model import DeliveryReport, IncomingText
from textbackd.daemon.listener import Listener
from textbackd.senders.registry import build_sender

BEARERBOX = shutil.which("bearerbox") or "/usr/sbin/bearerbox"
SMSBOX = shutil.which("smsbox") or "/usr/sbin/smsbox"
FAKESMSC = "/usr/lib/kannel/test/fakesmsc"
HOOK_SECRET = "hook-7d1e5c0a9b"
KANNEL_PASSWORD = "kpw-31f0c9e2"

pytestmark = pytest.mark.skipif(
    not all(Path(p).exists() for p in (BEARERBOX, SMSBOX, FAKESMSC)),
    reason="Kannel not installed (Debian packages kannel and kannel-extras)",
)

KANNEL_CONF = """\
group = core
admin-port = {admin}
admin-password = adm-{admin}
admin-interface = 127.0.0.1
smsbox-port = {smsbox}
smsbox-interface = 127.0.0.1
box-allow-ip = 127.0.0.1
log-level = 0
dlr-storage = internal

group = smsc
smsc = fake
smsc-id = fake1
port = {fake}
connect-allow-ip = 127.0.0.1

group = smsbox
bearerbox-host = 127.0.0.1
bearerbox-port = {smsbox}
sendsms-port = {sendsms}
sendsms-interface = 127.0.0.1
mo-recode = true
http-request-retry = 3
http-queue-delay = 1
log-level = 0

group = sendsms-user
username = textbackd
password = {password}
concatenation = true
max-messages = 10

# Replies to us, as the README documents it.
group = sms-service
keyword = default
catch-all = true
max-messages = 0
get-url = "http://127.0.0.1:{listener}/kannel/kan/incoming/{secret}?from=%p&to=%P&text=%a&charset=%C&coding=%c&id=%I"
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Kannel:
    dir: Path
    ports: dict[str, int]
    procs: list[subprocess.Popen] = field(default_factory=list)

    def logs(self) -> str:
        out = []
        for p in sorted(self.dir.glob("*.log")):
            lines = [ln for ln in p.read_text(errors="replace").splitlines() if "DEBUG" not in ln]
            out.append(f"--- {p.name}\n" + "\n".join(lines[-15:]))
        return "\n".join(out)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.fixture(scope="module")
def kannel(tmp_path_factory: pytest.TempPathFactory):
    failures = []
    for _attempt in range(3):  # a free port can be taken by another process before the boxes bind it
        k = start_kannel(tmp_path_factory.mktemp("kannel"))
        try:
            wait_port(k.ports["smsbox"], k)
            k.procs.append(start_box(k, "smsbox", SMSBOX))
            wait_port(k.ports["sendsms"], k)
        except AssertionError as e:
            failures.append(str(e))
            for p in reversed(k.procs):
                stop(p)
            continue
        try:
            yield k
        finally:
            for p in reversed(k.procs):
                stop(p)
        return
    raise AssertionError("Kannel did not start three times:\n" + "\n".join(failures))


def start_box(k: Kannel, name: str, binary: str) -> subprocess.Popen:
    with open(k.dir / f"{name}.log", "wb") as log:
        return subprocess.Popen([binary, "-v", "1", str(k.dir / "kannel.conf")], stdout=log,
                                stderr=subprocess.STDOUT, cwd=k.dir)


def start_kannel(d: Path) -> Kannel:
    ports = {k: free_port() for k in ("admin", "smsbox", "fake", "sendsms", "listener")}
    (d / "kannel.conf").write_text(KANNEL_CONF.format(**ports, password=KANNEL_PASSWORD, secret=HOOK_SECRET))
    k = Kannel(d, ports)
    k.procs.append(start_box(k, "bearerbox", BEARERBOX))
    return k


def wait_port(port: int, k: Kannel, limit: float = 20.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in k.procs):
            raise AssertionError("a Kannel box exited\n" + k.logs())
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"port {port} not open\n" + k.logs())


class FakeSmsc:
    """fakesmsc in interactive mode: lines written to its stdin are messages from phones; MT texts land in its log."""

    def __init__(self, k: Kannel) -> None:
        self.log = k.dir / f"fakesmsc-{time.monotonic_ns()}.log"
        args = [FAKESMSC, "-H", "127.0.0.1", "-r", str(k.ports["fake"])]
        with open(self.log, "wb") as fh:
            self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=fh, stderr=subprocess.STDOUT, cwd=k.dir)

    def inject(self, line: str) -> None:
        """One message "sender receiver type text" as if a phone had sent it."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def received(self) -> list[tuple[str, str, str]]:
        """(sender, receiver, text) of each message the fake SMSC got, text decoded."""
        out = []
        for m in re.finditer(r"Got message \d+: <(\S+) (\S+) (\S+) (.*)>", self.log.read_text(errors="replace")):
            frm, to, typ, data = m.groups()
            if typ in ("ucs-2", "ucs2"):
                data = unquote_to_bytes(data.replace("+", " ")).decode("utf-16-be")
            out.append((frm, to, data))
        return out

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        stop(self.proc)


class Sink:
    def __init__(self) -> None:
        self.texts: list[IncomingText] = []
        self.reports: list[DeliveryReport] = []
        self.changed = asyncio.Event()

    async def incoming(self, text: IncomingText) -> None:
        self.texts.append(text)
        self.changed.set()

    async def delivery_report(self, report: DeliveryReport) -> None:
        self.reports.append(report)
        self.changed.set()


async def until(cond, what: str, k: Kannel, limit: float = 20.0):
    """Poll ``cond`` until it is truthy (the limit only guards against a hang)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        await asyncio.sleep(0.05)
    raise AssertionError(f"never saw {what}\n" + k.logs())


def make_config(k: Kannel, **sender: object) -> config_mod.Config:
    s = {"name": "kan", "kind": "kannel", "url": f"http://127.0.0.1:{k.ports['sendsms']}/cgi-bin/sendsms",
         "username": "textbackd", "password": KANNEL_PASSWORD, "from": "12125550100", **sender}
    return config_mod.parse({
        "business": {"name": "Test Dental"},
        "senders": [s],
        "http": {"listen": f"127.0.0.1:{k.ports['listener']}", "secret": HOOK_SECRET},
    })


@pytest.fixture
async def stack(kannel: Kannel):
    cfg = make_config(kannel)
    sink = Sink()
    listener = Listener(cfg, sink)
    await listener.start()
    sender = build_sender("kan", cfg)
    await sender.start(sink)
    yield cfg, sink, sender
    await sender.close()
    await listener.stop()


async def test_texts_reach_the_fake_smsc_in_gsm_and_ucs2_with_delivery_reports(kannel: Kannel, stack):
    """GSM and UCS-2 texts sent through smsbox arrive intact at the SMSC and their delivery reports come back."""
    cfg, sink, sender = stack
    smsc = FakeSmsc(kannel)
    try:
        gsm = "Sorry we missed your call {€} café. Reply here!"
        ucs = "Привет 😀, we missed your call"
        r1 = await sender.send("+12125550101", gsm)
        r2 = await sender.send("+12125550102", ucs)
        got = await until(lambda: len(smsc.received()) >= 2 and smsc.received(), "2 texts at the SMSC", kannel)
        assert sorted(got) == sorted([("12125550100", "+12125550101", gsm), ("12125550100", "+12125550102", ucs)])
        assert (r1.encoding, r1.segments, r2.encoding, r2.segments) == ("gsm7", 1, "ucs2", 1)
        assert len(r1.references) == 1 and r1.references != r2.references

        def delivered() -> set[str]:
            return {r.reference for r in sink.reports if r.delivered and r.final}

        await until(lambda: delivered() >= {r1.references[0], r2.references[0]}, "two final DLRs", kannel)
        assert all(r.sender == "kan" for r in sink.reports)
        assert {r.detail for r in sink.reports} >= {"delivered to the phone", "accepted by the SMSC"}
    finally:
        smsc.close()


async def test_replies_from_the_smsc_reach_the_sink(kannel: Kannel, stack):
    """Messages from phones (GSM and UCS-2) travel fakesmsc → bearerbox → smsbox → listener → sink."""
    cfg, sink, sender = stack
    smsc = FakeSmsc(kannel)
    try:
        smsc.inject("12125550103 12125550100 text Yes please, call me at 3")
        await until(lambda: sink.texts, "the GSM reply", kannel)
        smsc.inject("12125550104 12125550100 ucs2 %04%1F%04%40%048%042%045%04B%00%20%D8%3D%DE%00")
        await until(lambda: len(sink.texts) >= 2, "the UCS-2 reply", kannel)
    finally:
        smsc.close()
    a, b = sink.texts
    assert (a.sender, a.from_number, a.to_number, a.text) == ("kan", "+12125550103", "+12125550100", "Yes please, call me at 3")
    assert (b.from_number, b.text) == ("+12125550104", "Привет 😀")
    assert a.provider_id and a.provider_id != b.provider_id


async def test_kannel_refusals_map_to_our_errors(kannel: Kannel, stack):
    """A wrong password makes the sender unavailable; a request Kannel rejects is permanent."""
    cfg = make_config(kannel, password="wrong-password")
    bad = build_sender("kan", cfg)
    with pytest.raises(SenderUnavailableError) as ei:
        await bad.send("+12125550101", "hi")
    await bad.close()
    assert "wrong-password" not in str(ei.value) and "403" in str(ei.value)
    cfg = make_config(kannel, **{"from": ""})
    nofrom = build_sender("kan", cfg)
    with pytest.raises(PermanentSendError) as ei:
        await nofrom.send("+12125550101", "hi")
    await nofrom.close()
    assert "Sender missing" in str(ei.value)
    assert KANNEL_PASSWORD not in str(ei.value)


def test_kannel_answers_health_check(kannel: Kannel):
    """The smsbox started from the written config answers on its sendsms port (sanity of the fixture)."""
    with pytest.raises(urllib.error.HTTPError) as ei:
        urllib.request.urlopen(f"http://127.0.0.1:{kannel.ports['sendsms']}/cgi-bin/sendsms", timeout=5)
    assert ei.value.code in (400, 403)


async def test_outbox_store_and_conversations_through_kannel(kannel: Kannel, tmp_path):
    """End to end with the real outbox and store: sent, delivered by Kannel's report, and the reply recorded."""
    from textbackd.core.model import MessageState
    from textbackd.daemon.conversations import Conversations
    from textbackd.daemon.outbox import Outbox
    from textbackd.store.db import Store

    cfg = make_config(kannel)
    store = Store(tmp_path / "t.db")
    sender = build_sender("kan", cfg)
    box = Outbox(store, [sender])
    conversations = Conversations(store, cfg, wake_outbox=box.wake)
    listener = Listener(cfg, conversations, [sender])
    await listener.start()
    await sender.start(conversations)
    smsc = FakeSmsc(kannel)
    try:
        now = time.time()
        mid = store.add_message(to="+12125550111", kind="textback", state=MessageState.SCHEDULED, now=now,
                                send_at=now, text="Sorry we missed your call. Reply here!")
        await box.process_due()
        assert store.message(mid).state in (MessageState.SENT, MessageState.DELIVERED)
        await until(lambda: store.message(mid).state is MessageState.DELIVERED, "the text delivered", kannel)
        got = await until(smsc.received, "the text at the SMSC", kannel)
        assert got == [("12125550100", "+12125550111", "Sorry we missed your call. Reply here!")]
        smsc.inject("12125550111 12125550100 text Tuesday 10am works")
        await until(lambda: store.incoming(number="+12125550111"), "the reply in the store", kannel)
        [row] = store.incoming(number="+12125550111")
        assert (row.sender, row.text) == ("kan", "Tuesday 10am works")
    finally:
        smsc.close()
        await sender.close()
        await listener.stop()
        store.close()
