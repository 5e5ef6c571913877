"""The house keeps its rules: import-linter contracts, no import circle, SQL only in the store room,
and a PBX kind and a sender kind added from outside the package through the registries alone."""

from __future__ import annotations

import asyncio
import json
import pathlib
import re
import subprocess
import sys
import tokenize
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import grimp
from aiohttp import ClientSession, web

from textbackd import config as config_mod
from textbackd.core.checks import Check
from textbackd.core.errors import ConfigError
from textbackd.core.model import Call, Direction, Outcome, SendResult
from textbackd.core.settings import SenderConfig
from textbackd.daemon.service import Daemon
from textbackd.pbx import registry as pbx_kinds
from textbackd.senders import registry as sender_kinds
from textbackd.senders.base import Route

ROOT = pathlib.Path(__file__).parent.parent
PKG = ROOT / "textbackd"


def test_lint_imports_keeps_every_contract() -> None:
    """``lint-imports`` (the contracts in pyproject.toml: layers, kind independence, sans-I/O cores) passes."""
    exe = pathlib.Path(sys.executable).parent / "lint-imports"
    r = subprocess.run([str(exe), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "broken" not in r.stdout.lower().split("contracts:")[-1].replace("0 broken", "")


def _cycles(graph: grimp.ImportGraph, modules: set[str]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for root in sorted(modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root) & modules)))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            node, it = work[-1]
            nxt = next(it, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on.add(nxt)
                    work.append((nxt, iter(sorted(graph.find_modules_directly_imported_by(nxt) & modules))))
                elif nxt in on:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    m = stack.pop()
                    on.discard(m)
                    comp.append(m)
                    if m == node:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_the_package_has_no_import_circle() -> None:
    """No two modules import each other, directly or around a loop, counting imports for type checking too."""
    graph = grimp.build_graph("textbackd", include_external_packages=False)
    modules = {m for m in graph.modules if m.startswith("textbackd")}
    # a package's __init__ importing its own submodules is not a circle between rooms
    assert _cycles(graph, modules) == []


SQL_STATEMENT = re.compile(r"^[rbfu]*['\"]{1,3}\s*(SELECT|INSERT|UPDATE|DELETE|CREATE|PRAGMA|WITH)\s", re.I)
SQL_CALL = re.compile(r"\.(execute|executemany|executescript)\(")


def test_no_module_outside_the_store_room_speaks_sql() -> None:
    """No module outside ``textbackd/store/`` imports sqlite3, calls ``execute`` or holds an SQL statement."""
    offenders = []
    for f in sorted(PKG.rglob("*.py")):
        rel = f.relative_to(PKG)
        if rel.parts[0] == "store":
            continue
        with f.open("rb") as fh:
            for tok in tokenize.tokenize(fh.readline):
                where = f"{rel}:{tok.start[0]}: {tok.line.strip()}"
                if tok.type == tokenize.STRING and SQL_STATEMENT.match(tok.string):
                    offenders.append(where)
                elif tok.type == tokenize.NAME and tok.string == "sqlite3":
                    offenders.append(where)
                elif tok.type == tokenize.OP and tok.string == "(" and SQL_CALL.search(tok.line[: tok.start[1] + 1]):
                    offenders.append(where)
    assert offenders == []


# --------------------------------------------------------------------------------------
# a PBX kind and a sender kind that live only in this test


@dataclass(frozen=True, slots=True)
class EchoConfig(SenderConfig):
    prefix: str = ""


class EchoSender:
    """Keeps what it is asked to send; a reply arrives through its own webhook."""

    kind = "echo"
    sent: list[tuple[str, str]] = []

    def __init__(self, sc: EchoConfig) -> None:
        self.name, self.sc = sc.name, sc

    async def start(self, sink: Any) -> None:
        self.sink = sink

    async def send(self, to: str, text: str) -> SendResult:
        EchoSender.sent.append((to, self.sc.prefix + text))
        return SendResult(sender=self.name, segments=1, references=(f"echo-{len(EchoSender.sent)}",))

    async def close(self) -> None:
        return None

    def healthy(self) -> bool:
        return True

    def status(self) -> dict[str, Any]:
        return {"echoed": len(EchoSender.sent)}


class EchoKind:
    name = "echo"
    needs_listener = True
    needs_http_secret = False
    gauges = ()

    def parse_config(self, sec: Any, name: str) -> EchoConfig:
        cfg = EchoConfig(name=name, kind="echo", prefix=sec.str("prefix"))
        sec.done()
        return cfg

    def build(self, sc: EchoConfig, config: Any) -> EchoSender:
        return EchoSender(sc)

    def describe(self, sc: EchoConfig) -> str:
        return f"echo with prefix {sc.prefix!r}"

    def routes(self, ctx: Any) -> list[Route]:
        async def reply(request: web.Request) -> web.Response:
            sc = ctx.sender(request, "echo")
            form = dict(await ctx.form(request))
            await ctx.deliver_text(ctx.incoming(sc, form["from"], None, form["text"], None))
            return web.Response(text="ok")

        return [Route("POST", "/echo/{sender}/reply", reply)]

    def webhook_urls(self, sc: EchoConfig, config: Any) -> dict[str, str]:
        return {"reply": f"{config.http.base_url}/echo/{sc.name}/reply"}

    async def check(self, sc: EchoConfig, config: Any, timeout: float) -> Check:
        return Check(f"sender {sc.name}", True, "echo is always there")


class LineTracker:
    """Events ``{"id", "caller", "did", "what": ring|answer|hangup}`` → Calls."""

    def __init__(self) -> None:
        self.calls: dict[str, dict[str, Any]] = {}
        self.urgent = False

    def feed(self, event: Any, at: float) -> list[Call]:
        c = self.calls.setdefault(event["id"], {"started": at, "answered": None, **event})
        if event["what"] == "answer":
            c["answered"] = at
        if event["what"] != "hangup":
            return []
        del self.calls[event["id"]]
        t = lambda x: datetime.fromtimestamp(x, tz=timezone.utc)  # noqa: E731
        outcome = Outcome.ANSWERED if c["answered"] else Outcome.NO_ANSWER
        return [Call(id=event["id"], pbx="lines", direction=Direction.INBOUND, outcome=outcome, caller=c["caller"],
                     caller_raw=c["caller"], caller_name="", did=c["did"], started=t(c["started"]), ended=t(at),
                     ring_seconds=at - c["started"])]

    def expire(self, now: float) -> list[Call]:
        return []

    def flush(self, now: float) -> list[Call]:
        return []

    def event_time(self, event: Any) -> float | None:
        return None  # the lines PBX stamps nothing: calls are timed by arrival

    wake_at = None  # nothing is held back for a late event

    @property
    def open_calls(self) -> int:
        return len(self.calls)

    def snapshot(self) -> list[dict[str, Any]]:
        return list(self.calls.values())

    def restore(self, snapshot: list[dict[str, Any]]) -> int:
        self.calls = {c["id"]: c for c in snapshot}
        return len(snapshot)


class LineClient:
    """JSON lines over TCP."""

    def __init__(self, config: Any, on_event: Any, clock: Any) -> None:
        self.config, self.on_event, self.clock = config, on_event, clock
        self.connected, self.reconnects, self._done = False, 0, asyncio.Event()

    @property
    def first_attempt_over(self) -> bool:
        return self.reconnects > 0

    async def run(self) -> None:
        reader, writer = await asyncio.open_connection(self.config.pbx.host, self.config.pbx.port)
        self.connected = True
        while line := await reader.readline():
            await self.on_event(json.loads(line), self.clock())
        await self._done.wait()
        writer.close()

    async def close(self) -> None:
        self._done.set()


class LinesKind:
    name = "lines"
    default_port = 7000

    def parse_secret(self, sec: Any) -> Any:
        return sec.secret("token", "pbx.token")

    def describe(self, config: Any) -> str:
        return f"pbx: lines at {config.pbx.host}:{config.pbx.port}"

    def make_tracker(self, config: Any) -> LineTracker:
        return LineTracker()

    def make_client(self, config: Any, on_event: Any, clock: Any) -> LineClient:
        return LineClient(config, on_event, clock)

    def read_events(self, path: Any) -> Any:
        for line in pathlib.Path(path).read_text().splitlines():
            yield json.loads(line), 0.0

    async def checks(self, config: Any, timeout: float) -> list[Check]:
        return [Check("pbx reachable", True, "lines")]


async def test_a_kind_added_through_the_registries_alone_texts_a_missed_caller(tmp_path: pathlib.Path) -> None:
    """A PBX kind and a sender kind registered from this test: the config accepts and checks their sections,
    the daemon texts a missed caller through them, and the sender's own webhook delivers a reply."""
    pbx_kinds.register(LinesKind())
    sender_kinds.register(EchoKind())
    EchoSender.sent.clear()
    try:
        events = [
            {"id": "c1", "caller": "+12125550141", "did": "+12125550100", "what": "ring"},
            {"id": "c1", "caller": "+12125550141", "did": "+12125550100", "what": "hangup"},
            {"id": "c2", "caller": "+12125550142", "did": "+12125550100", "what": "ring"},
            {"id": "c2", "caller": "+12125550142", "did": "+12125550100", "what": "answer"},
            {"id": "c2", "caller": "+12125550142", "did": "+12125550100", "what": "hangup"},
        ]

        async def feed(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write("".join(json.dumps(e) + "\n" for e in events).encode())
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(feed, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        data = {
            "pbx": {"kind": "lines", "port": port, "token": "t"},
            "business": {"name": "Apex Dental"},
            "store": {"path": str(tmp_path / "t.db")},
            "policy": {"grace_seconds": 0, "quiet_hours": "send"},
            "http": {"listen": "127.0.0.1:0"},
            "senders": [{"name": "e1", "kind": "echo", "prefix": "[echo] "}],
        }
        with_typo = {**data, "senders": [{"name": "e1", "kind": "echo", "prefx": "x"}]}
        try:
            config_mod.parse(with_typo, env={})
        except ConfigError as e:
            assert "senders[0].prefx" in str(e) and "prefix" in str(e)
        else:
            raise AssertionError("the kind's section did not check its keys")
        cfg = config_mod.parse(data, env={})
        assert cfg.pbx.port == port and cfg.sender("e1").prefix == "[echo] "
        daemon = Daemon(cfg, handle_signals=False)
        task = asyncio.create_task(daemon.run())
        try:
            for _ in range(200):
                if EchoSender.sent and daemon.listener is not None:
                    break
                await asyncio.sleep(0.05)
            assert [to for to, _ in EchoSender.sent] == ["+12125550141"]
            assert EchoSender.sent[0][1].startswith("[echo] Hi, this is Apex Dental.")
            url = f"http://127.0.0.1:{daemon.listener.port}/echo/e1/reply"
            async with ClientSession() as http:
                async with http.post(url, data={"from": "+12125550141", "text": "Tuesday works"}) as r:
                    assert r.status == 200
            assert [i.text for i in daemon.store.incoming(number="+12125550141")] == ["Tuesday works"]
            assert len(EchoSender.sent) == 1  # the answered caller got nothing
        finally:
            daemon.stop()
            await asyncio.wait_for(task, 20)
            server.close()
    finally:
        pbx_kinds.unregister("lines")
        sender_kinds.unregister("echo")


def test_doctor_and_check_config_speak_for_a_registered_kind() -> None:
    """``check-config`` describes and ``doctor`` checks a sender of a kind registered from outside."""
    from textbackd.commands.check_config import describe

    sender_kinds.register(EchoKind())
    try:
        cfg = config_mod.parse({"business": {"name": "Apex"}, "senders": [{"name": "e1", "kind": "echo"}]}, env={})
        assert "sender 1: e1 (echo) echo with prefix ''" in describe(cfg)
        check = asyncio.run(sender_kinds.get("echo").check(cfg.sender("e1"), cfg, 1.0))
        assert check.ok and check.check == "sender e1"
    finally:
        sender_kinds.unregister("echo")
    assert "echo" not in sender_kinds.names()
