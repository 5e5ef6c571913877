"""Asterisk side benchmark: parser + tracker, the real TCP client path, and panoramisk's parser.

Builds a stream of >= 1,000,000 AMI events by repeating the recorded busy office
hour (46 calls, 2,833 events of a real Asterisk 22) with every Uniqueid/Linkedid
renumbered per repetition, then measures on the same bytes:

1. parser + tracker in one process (``AmiParser(select=wants_frame)`` → ``AmiTracker``),
   the path ``replay`` and the daemon share: events/s, calls/s, peak RSS;
2. the whole TCP path: a fake Asterisk in another process streams the bytes over
   127.0.0.1 to the real ``AmiClient`` (login, FullyBooted, CoreShowChannels) feeding the tracker;
3. panoramisk 1.4's bare parsing (``AMIProtocol.data_received`` + ``Message.from_line``,
   dispatch to a no-op) on the same chunks, in memory, and the ratio of (2) to it.

Run: ``.venv/bin/python bench/bench_ami.py [--events N]``. Bars: (1) >= 100,000 events/s,
(2)/(3) >= 2, peak RSS < 100 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import multiprocessing
import re
import resource
import socket
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from textbackd import config  # noqa: E402
from textbackd.pbx.asterisk.frames import AmiParser  # noqa: E402
from textbackd.pbx.asterisk.tracker import AmiTracker, wants_frame  # noqa: E402

TRACE = ROOT / "tests" / "data" / "asterisk" / "18-busy-office-hour.ami.gz"
CHUNK = 64 * 1024
_ID = re.compile(rb"\b1795\d{6}(?=\.\d)")


class Stream:
    """The busy hour's events, repeated with fresh call ids, as 64 KiB chunks (never all in memory)."""

    def __init__(self, want_events: int) -> None:
        data = gzip.decompress(TRACE.read_bytes())
        start = data.index(b"Event: FullyBooted")
        start = data.index(b"\r\n\r\n", start) + 4
        end = data.rindex(b"Response: Goodbye")
        body = data[start:end]
        self.per_rep = body.count(b"\r\n\r\n")
        self.calls_per_rep = 46
        self.parts = _ID.split(body)
        self.reps = -(-want_events // self.per_rep)
        self.events = self.reps * self.per_rep
        self.bytes = 0

    def rep(self, i: int) -> bytes:
        return str(1_800_000_000 + i).encode().join(self.parts)

    def chunks(self):
        carry = b""
        for i in range(self.reps):
            data = carry + self.rep(i)
            n = len(data) - len(data) % CHUNK
            for off in range(0, n, CHUNK):
                yield data[off : off + CHUNK]
            carry = data[n:]
        if carry:
            yield carry


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_parser_tracker(stream: Stream, cfg) -> dict:
    parser = AmiParser(select=wants_frame, expect_banner=False)
    tracker = AmiTracker(cfg)
    calls = 0
    at = 1_800_000_000.0
    t = time.perf_counter()
    cpu = time.process_time()
    for chunk in stream.chunks():
        at += 0.001
        for ev in parser.feed(chunk):
            calls += len(tracker.feed(ev, at))
    calls += len(tracker.flush(at))
    dt = time.perf_counter() - t
    cpu = time.process_time() - cpu
    events = parser.frames + parser.ignored
    return {"events": events, "seconds": dt, "cpu": cpu, "calls": calls, "open_left": tracker.open_calls, "rss": rss_mb(),
            "skipped": parser.skipped_frames}


def bench_panoramisk(stream: Stream) -> dict:
    from panoramisk.ami_protocol import AMIProtocol

    class Factory:
        n = 0

        def dispatch(self, message) -> None:
            Factory.n += 1

    proto = AMIProtocol()
    proto.connection_made(None)
    proto.factory = Factory()
    proto.encoding = "utf-8"
    proto.log.disabled = True
    t = time.perf_counter()
    cpu = time.process_time()
    for chunk in stream.chunks():
        proto.data_received(chunk)
    dt = time.perf_counter() - t
    return {"events": Factory.n, "seconds": dt, "cpu": time.process_time() - cpu}


# --- the TCP path ---------------------------------------------------------------------


def _serve(sock: socket.socket, want_events: int) -> None:
    """Child process: a fake Asterisk streaming the benchmark bytes to one client."""
    stream = Stream(want_events)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"Asterisk Call Manager/11.0.0\r\n")
        parser = AmiParser(expect_banner=False)
        while True:
            data = await reader.read(4096)
            if not data:
                return
            for a in parser.feed(data):
                aid = a.get("ActionID", "")
                if a.get("Action") == "Login":
                    writer.write(f"Response: Success\r\nActionID: {aid}\r\nMessage: Authentication accepted\r\n\r\n"
                                 "Event: FullyBooted\r\nPrivilege: system,all\r\nStatus: Fully Booted\r\n\r\n".encode())
                elif a.get("Action") == "CoreShowChannels":
                    writer.write(f"Response: Success\r\nActionID: {aid}\r\nEventList: start\r\n\r\n"
                                 f"Event: CoreShowChannelsComplete\r\nActionID: {aid}\r\nListItems: 0\r\n\r\n".encode())
                    for chunk in stream.chunks():
                        writer.write(chunk)
                        await writer.drain()
                    await writer.drain()
                elif a.get("Action") == "Ping":
                    writer.write(f"Response: Success\r\nActionID: {aid}\r\nPing: Pong\r\n\r\n".encode())

    async def main() -> None:
        server = await asyncio.start_server(handle, sock=sock)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


async def _client_run(port: int, stream: Stream, cfg) -> dict:
    from textbackd.config import PbxConfig, Secret
    from textbackd.pbx.asterisk.client import AmiClient

    tracker = AmiTracker(cfg)
    calls = 0
    first: list[float] = []

    async def on_event(ev, at) -> None:
        nonlocal calls
        if not first:
            first.extend([time.perf_counter(), time.process_time()])
        calls += len(tracker.feed(ev, at))

    pbx = PbxConfig(host="127.0.0.1", port=port, secret=Secret("bench"), ping_interval=600)
    client = AmiClient(pbx, on_event, select=wants_frame)
    task = asyncio.create_task(client.run())
    total = stream.events + 3  # + FullyBooted, CoreShowChannelsComplete, ... responses are frames too
    t0 = time.perf_counter()
    while client.parser.frames + client.parser.ignored < total:
        await asyncio.sleep(0.02)
        if time.perf_counter() - t0 > 300:
            break
    dt = time.perf_counter() - (first[0] if first else t0)
    cpu = time.process_time() - (first[1] if first else 0.0)
    events = client.parser.frames + client.parser.ignored
    await client.close()
    task.cancel()
    return {"events": events, "seconds": dt, "cpu": cpu, "calls": calls}


def bench_tcp(stream: Stream, cfg, want_events: int) -> dict:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    port = sock.getsockname()[1]
    proc = multiprocessing.get_context("fork").Process(target=_serve, args=(sock, want_events), daemon=True)
    proc.start()
    try:
        return asyncio.run(_client_run(port, stream, cfg))
    finally:
        proc.terminate()
        proc.join()


def utf8_split_check() -> tuple[str, str]:
    """A CallerIDName whose 'ë' is split across two reads, through panoramisk and through AmiParser."""
    from panoramisk.ami_protocol import AMIProtocol

    frame = "Event: Newchannel\r\nCallerIDName: Zoë Ünal\r\nUniqueid: 1.1\r\n\r\n".encode()
    cut = frame.index("ë".encode()) + 1
    got: list = []

    class Factory:
        def dispatch(self, message) -> None:
            got.append(message["CallerIDName"])

    proto = AMIProtocol()
    proto.connection_made(None)
    proto.factory = Factory()
    proto.encoding = "utf-8"  # panoramisk's best case; its default 'ascii' drops every accent
    proto.log.disabled = True
    proto.data_received(frame[:cut])
    proto.data_received(frame[cut:])
    parser = AmiParser(expect_banner=False)
    ours = [e["CallerIDName"] for chunk in (frame[:cut], frame[cut:]) for e in parser.feed(chunk)]
    return (got[0] if got else "<lost>"), ours[0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    args = ap.parse_args()
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))  # warnings off: speed run
    cfg = config.parse({"business": {"name": "bench"}})
    stream = Stream(args.events)
    print(f"stream: {stream.events:,} events ({stream.reps} x busy hour of {stream.per_rep} events, "
          f"{stream.reps * stream.calls_per_rep:,} calls)")

    pt = bench_parser_tracker(stream, cfg)
    ev_s = pt["events"] / pt["seconds"]
    print(f"parser+tracker : {pt['events']:,} events in {pt['seconds']:.2f} s (CPU {pt['cpu']:.2f} s) = {ev_s:,.0f} events/s, "
          f"{pt['calls'] / pt['seconds']:,.0f} calls/s ({pt['calls']:,} calls, {pt['open_left']} left open), "
          f"peak RSS {pt['rss']:.1f} MB")

    tcp = bench_tcp(stream, cfg, args.events)
    tcp_s = tcp["events"] / tcp["seconds"]
    print(f"TCP path       : {tcp['events']:,} events in {tcp['seconds']:.2f} s (client CPU {tcp['cpu']:.2f} s) = {tcp_s:,.0f} events/s "
          f"({tcp['calls']:,} calls) [AmiClient over 127.0.0.1, server in another process]")

    pz = bench_panoramisk(stream)
    pz_s = pz["events"] / pz["seconds"]
    print(f"panoramisk 1.4 : {pz['events']:,} events in {pz['seconds']:.2f} s (CPU {pz['cpu']:.2f} s) = {pz_s:,.0f} events/s "
          f"[bare AMIProtocol.data_received, in memory, no TCP]")
    ratio = tcp_s / pz_s
    cpu_ratio = (tcp["events"] / tcp["cpu"]) / (pz["events"] / pz["cpu"]) if tcp["cpu"] and pz["cpu"] else 0.0
    print(f"ratio TCP path / panoramisk bare parsing = {ratio:.2f}x wall clock ({cpu_ratio:.2f}x by CPU time)")
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else []
    print(f"machine: {multiprocessing.cpu_count()} CPUs, load average {' '.join(load)} (other work slows every figure)")
    theirs, ours = utf8_split_check()
    print(f"UTF-8 split across two reads: panoramisk gives {theirs!r}, AmiParser gives {ours!r}")
    rss = rss_mb()
    print(f"peak RSS of the whole benchmark process: {rss:.1f} MB")
    ok = ev_s >= 100_000 and ratio >= 2 and pt["rss"] < 100 and pt["calls"] == stream.reps * stream.calls_per_rep
    print("bars (>= 100k events/s, >= 2x panoramisk, RSS < 100 MB, every call out):", "PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
