"""`kgmon demo` as the Shield's WebSocket (docs/websocket.md), across real processes.

Every test runs `kgmon demo` on a free loopback port and talks to it with
websockets' sync client, as a monitor would. Content is checked against
ThreatGenerator(seed), whose stream is deterministic. The last test drives
DemoWsServer in-process, to make a client fall past its backlog bound cheaply.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import time

import psutil
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from kindlyguard_monitor.demo.threats import ThreatGenerator
from kindlyguard_monitor.demo.ws_server import DemoWsServer
from kindlyguard_monitor.ring.pyring import read_header
from kindlyguard_monitor.threats import Published, Threat, severity_name, threat_type_name
from kindlyguard_monitor.transport.local_auth import client_headers
from kindlyguard_monitor.transport.protocol import MAX_FRAME_BYTES
from kindlyguard_monitor.transport.server_frames import event_id
from conftest import free_port, OutputWatcher, run_kgmon, start_kgmon, wait_for

ID = re.compile(r"^([0-9a-f]{16})-(\d+)$")


# ---- helpers ----




def start_demo(*args, port: int, env: dict | None = None):
    """`kgmon demo ARGS --ws-port PORT`, waited for until it serves (its startup line)."""
    proc = start_kgmon("demo", *args, "--ws-port", port, env=env)
    watcher = OutputWatcher(proc)
    watcher.wait_stderr(lambda err: f"ws://127.0.0.1:{port}" in err, 60, "the demo to serve the WebSocket")
    return proc, watcher


class Client:
    """A monitor's side of the connection: frames as JSON, with the raw text kept."""

    def __init__(self, ws):
        self.ws = ws
        self.heartbeats = 0

    def send(self, obj) -> None:
        self.ws.send(obj if isinstance(obj, str) else json.dumps(obj))

    def recv_raw(self, timeout: float = 30) -> str:
        return self.ws.recv(timeout=timeout)

    def recv(self, timeout: float = 30) -> dict:
        return json.loads(self.recv_raw(timeout))

    def reply(self, timeout: float = 30, threats: list | None = None) -> dict:
        """The next frame that is not a threat or a heartbeat (threats kept in `threats` if given)."""
        deadline = time.monotonic() + timeout
        while True:
            msg = self.recv(max(0.01, deadline - time.monotonic()))
            if msg["type"] == "heartbeat":
                self.heartbeats += 1
            elif msg["type"] == "threat":
                if threats is not None:
                    threats.extend(msg["threats"])
            else:
                return msg

    def threats(self, n: int, timeout: float = 60) -> list[dict]:
        """At least n threats (whole messages); status/heartbeat frames in between are skipped."""
        got: list[dict] = []
        deadline = time.monotonic() + timeout
        while len(got) < n:
            msg = self.recv(max(0.01, deadline - time.monotonic()))
            if msg["type"] == "threat":
                got.extend(msg["threats"])
        return got

    def until_closed(self, timeout: float = 60) -> tuple[list[str], ConnectionClosed]:
        """Every raw frame until the server closes the connection, and how it closed."""
        frames: list[str] = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                frames.append(self.recv_raw(max(0.01, deadline - time.monotonic())))
            except ConnectionClosed as exc:
                return frames, exc


@pytest.fixture
def clients():
    """open_client(port): a connected Client, closed at the end of the test. A short
    close_timeout: a client with megabytes unread would otherwise wait 10 s to close."""
    with contextlib.ExitStack() as stack:

        def open_client(port: int, **options) -> Client:
            url = f"ws://127.0.0.1:{port}"
            ws = stack.enter_context(connect(url, proxy=None, compression=None, open_timeout=30, close_timeout=1,
                                             additional_headers=client_headers(url), **options))
            return Client(ws)

        yield open_client


def threats_in(frames: list[str]) -> list[dict]:
    out: list[dict] = []
    for raw in frames:
        msg = json.loads(raw)
        if msg["type"] == "threat":
            out.extend(msg["threats"])
    return out


def content(obj: dict) -> tuple:
    return (obj["threat_type"], obj["severity"], obj["source"], obj["details"], obj["blocked"])


def want(t: Threat) -> tuple:
    return (threat_type_name(t.threat_type), severity_name(t.severity), t.source, t.details, bool(t.blocked))


def is_status(msg: dict, enabled: bool | None = None) -> bool:
    return (msg["type"] == "status" and isinstance(msg["protection_enabled"], bool)
            and type(msg["threats_blocked"]) is int
            and (enabled is None or msg["protection_enabled"] is enabled))


def assert_contiguous(seqs: list[int]) -> None:
    assert seqs, "no threats"
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), \
        f"seqs not contiguous: first gap after {next(a for a, b in zip(seqs, seqs[1:]) if b != a + 1)}"


# ---- connecting, subscribing ----


def test_status_first_and_no_threats_before_subscribe(ring_path, clients):
    port = free_port()
    start_demo("--rate", 200, "--seed", 1, "--shm-path", ring_path, port=port)
    idle = clients(port)
    first = idle.recv(30)
    assert is_status(first, enabled=True), first
    watcher = clients(port)
    assert is_status(watcher.recv(30))
    watcher.send({"type": "subscribe"})
    watcher.threats(40)  # threats are flowing, to the subscriber
    idle.send({"type": "get_status"})
    # Anything sent to `idle` before this answer would have been sent while the subscriber got 40 threats.
    frames = []
    while True:
        msg = idle.recv(30)
        frames.append(msg["type"])
        if msg["type"] == "status":
            break
    assert set(frames) <= {"heartbeat", "status"}, frames
    idle.send({"type": "subscribe"})
    got = idle.threats(5)
    assert all(ID.match(t["id"]) for t in got)


def test_subscriber_receives_every_ring_event(ring_path, clients):
    seed, count = 4, 300
    port = free_port()
    demo, dw = start_demo("--count", count, "--rate", 300, "--seed", seed, "--shm-path", ring_path,
                          "--wait-subscribers", 1, port=port)
    c = clients(port)
    assert is_status(c.recv(30))
    c.send({"type": "subscribe"})
    frames, closed = c.until_closed(60)
    assert dw.wait_exit(60) == 0, dw.stderr
    assert closed.rcvd is not None and closed.rcvd.code == 1001, closed
    got = threats_in(frames)
    seqs = [t["seq"] for t in got]
    assert seqs == list(range(count)), "every event the ring got, once, in order"
    header = read_header(ring_path)
    assert header["state"] == 2 and header["write_seq"] == count
    gen = header["generation"]
    expected = ThreatGenerator(seed).batch(count)
    now_ns = time.monotonic_ns()
    for t in got:
        assert t["id"] == event_id(gen, t["seq"]), t
        assert content(t) == want(expected[t["seq"]]), f"event {t['seq']} differs from ThreatGenerator({seed})"
        assert 0 < t["mono_ns"] <= now_ns
        assert t["timestamp"].endswith("Z") and t["context"] is None


def test_subscriber_from_first_seq_received_without_waiting(ring_path, clients):
    """No --wait-subscribers: whatever the first event received, every later one arrives once, in order."""
    seed, count = 4, 300
    port = free_port()
    demo, dw = start_demo("--count", count, "--rate", 300, "--seed", seed, "--shm-path", ring_path, port=port)
    c = clients(port)
    assert is_status(c.recv(30))
    c.send({"type": "subscribe"})
    frames, closed = c.until_closed(60)
    assert dw.wait_exit(60) == 0, dw.stderr
    got = threats_in(frames)
    seqs = [t["seq"] for t in got]
    assert_contiguous(seqs)
    assert seqs[-1] == count - 1
    expected = ThreatGenerator(seed).batch(count)
    assert [content(t) for t in got] == [want(expected[s]) for s in seqs]


def test_no_shm_serves_the_websocket_only(ring_dir, clients):
    port = free_port()
    ring = ring_dir / "never.shm"
    env = dict(os.environ, SHIELD_WS_PORT=str(port))  # the Shield's variable names the port
    proc = start_kgmon("demo", "--no-shm", "--rate", 200, "--seed", 5, "--shm-path", ring, env=env)
    dw = OutputWatcher(proc)
    line = dw.wait_stderr(lambda err: f"ws://127.0.0.1:{port}" in err and err, 60, "the startup line")
    assert "no ring" in line and str(ring) not in line
    c = clients(port)
    assert is_status(c.recv(30))
    c.send({"type": "subscribe"})
    got = c.threats(50)
    before = time.monotonic_ns()
    seqs = [t["seq"] for t in got]
    assert_contiguous(seqs)
    gens = {ID.match(t["id"]).group(1) for t in got}
    assert len(gens) == 1 and int(gens.pop(), 16) != 0
    for t in got:
        assert ID.match(t["id"]).group(2) == str(t["seq"])
        assert 0 < before - t["mono_ns"] < 60e9, "mono_ns is this host's CLOCK_MONOTONIC at publish"
    expected = ThreatGenerator(5).batch(seqs[-1] + 1)
    assert [content(t) for t in got] == [want(expected[s]) for s in seqs]
    assert not os.path.lexists(ring) and os.listdir(ring_dir) == []
    proc.send_signal(signal.SIGTERM)
    assert dw.wait_exit(30) == 0, dw.stderr
    assert not os.path.lexists(ring)


def test_no_ws_and_no_shm_is_a_usage_error(ring_path):
    r = run_kgmon("demo", "--no-ws", "--no-shm", "--count", 1, "--shm-path", ring_path)
    assert r.returncode == 2, r.stderr
    assert "--no-ws" in r.stderr and "--no-shm" in r.stderr
    assert not os.path.lexists(ring_path)


# ---- commands ----


def test_get_status_and_toggle_protection(ring_path, clients):
    seed = 4
    port = free_port()
    start_demo("--rate", 200, "--seed", seed, "--shm-path", ring_path, port=port)
    a, b = clients(port), clients(port)
    assert is_status(a.recv(30), enabled=True) and is_status(b.recv(30), enabled=True)
    a.send({"type": "subscribe"})
    a.send({"type": "get_status"})
    before = []
    assert is_status(a.reply(threats=before), enabled=True)
    a.send({"type": "toggle_protection"})
    assert is_status(a.reply(threats=before), enabled=False)
    assert is_status(b.reply(), enabled=False), "the new status is broadcast to every client"

    generated = ThreatGenerator(seed).batch(100_000)
    for t in before:  # published while protection was on: blocked as the generator decided
        assert t["blocked"] == generated[t["seq"]].blocked
    after = a.threats(80)
    # Events in flight when the toggle landed may still carry the old decision: a short prefix
    # (in seq order) as the generator decided, then every event reported but not blocked.
    cut = next((i for i, t in enumerate(after) if t["blocked"] != generated[t["seq"]].blocked
                or all(not u["blocked"] for u in after[i:])), len(after))
    assert cut <= 10, f"{cut} events after the toggle still followed the old protection"
    assert all(t["blocked"] == generated[t["seq"]].blocked for t in after[:cut])
    rest = after[cut:]
    assert not any(t["blocked"] for t in rest)
    assert sum(generated[t["seq"]].blocked for t in rest) >= 5, "would-be-blocked events were reported unblocked"
    # threats_blocked stops growing while protection is off
    a.send({"type": "get_status"})
    s1 = a.reply()
    a.threats(40)
    a.send({"type": "get_status"})
    s2 = a.reply()
    assert is_status(s1, enabled=False) and is_status(s2, enabled=False)
    assert s1["threats_blocked"] == s2["threats_blocked"]
    # and back on: both clients hear it, and blocking resumes
    b.send({"type": "toggle_protection"})
    assert is_status(b.reply(), enabled=True)
    assert is_status(a.reply(), enabled=True)
    later = a.threats(200)[20:]
    assert [t["blocked"] for t in later] == [generated[t["seq"]].blocked for t in later]
    assert any(t["blocked"] for t in later)


def test_shield_command_sequence_and_rate_limit(ring_path, clients):
    port = free_port()
    start_demo("--rate", 20, "--seed", 2, "--shm-path", ring_path, port=port)
    c = clients(port)
    assert is_status(c.recv(30))
    t0 = time.monotonic()
    c.send({"type": "subscribe"})  # 1 (no answer)
    c.send({"type": "get_status"})  # 2
    c.send({"type": "toggle_protection"})  # 3
    c.send({"type": "bogus"})  # 4
    for _ in range(10):  # 5..14
        c.send({"type": "get_status"})
    answers = [c.reply() for _ in range(13)]
    assert is_status(answers[0], enabled=True)
    assert is_status(answers[1], enabled=False)
    assert answers[2] == {"type": "error", "message": "Unknown command: bogus"}
    assert all(is_status(a, enabled=False) for a in answers[3:]), answers[3:]
    sent = 14
    first_limited = None
    while first_limited is None and sent < 100:
        c.send({"type": "get_status"})
        sent += 1
        answer = c.reply()
        if answer == {"type": "error", "message": "Rate limit exceeded"}:
            first_limited = sent
        else:
            assert is_status(answer), (sent, answer)
    assert time.monotonic() - t0 < 55, "too slow to test the 60-a-minute budget"
    assert first_limited == 61
    # an excess command stays refused; the limit is per connection
    c.send({"type": "get_status"})
    assert c.reply() == {"type": "error", "message": "Rate limit exceeded"}
    other = clients(port)
    assert is_status(other.recv(30))
    other.send({"type": "get_status"})
    assert is_status(other.reply())


def test_bad_frames_answered_or_dropped_connection_stays(ring_path, clients):
    port = free_port()
    start_demo("--rate", 5, "--seed", 3, "--shm-path", ring_path, port=port)
    c = clients(port)
    assert is_status(c.recv(30))
    c.send("this is not JSON {")
    assert c.reply() == {"type": "error", "message": "Invalid JSON"}
    c.send({"type": "get_status"})
    assert is_status(c.reply())
    # over 1 MiB: dropped, unanswered (had it been read, it would have answered a status)
    big = json.dumps({"type": "get_status", "pad": "x" * (MAX_FRAME_BYTES // 2 * 3)})
    assert len(big) > MAX_FRAME_BYTES * 1.4
    c.send(big)
    c.send({"type": "nothing-else"})
    assert c.reply() == {"type": "error", "message": "Unknown command: nothing-else"}
    c.send({"type": "get_status"})
    assert is_status(c.reply())
    # documented limit: over 4 MiB the library itself closes the connection (1009, message too big)
    c.send("y" * (5 << 20))
    _frames, closed = c.until_closed(30)
    assert closed.rcvd is not None and closed.rcvd.code == 1009, closed


@pytest.mark.slow
def test_heartbeat_every_5_s(ring_path, clients):
    port = free_port()
    start_demo("--rate", 1, "--seed", 3, "--shm-path", ring_path, port=port)
    c = clients(port)
    t0 = time.monotonic()
    assert is_status(c.recv(30))
    while True:
        msg = c.recv(max(0.01, t0 + 6.5 - time.monotonic()))  # raises TimeoutError after 6.5 s
        if msg["type"] == "heartbeat":
            break
    assert msg == {"type": "heartbeat"}
    assert time.monotonic() - t0 <= 6.5


# ---- batching by load ----


def test_low_rate_one_threat_per_message(ring_path, clients):
    port = free_port()
    start_demo("--rate", 200, "--seed", 6, "--shm-path", ring_path, port=port)
    c = clients(port)
    assert is_status(c.recv(30))
    c.send({"type": "subscribe"})
    sizes, publishes = [], []
    while len(sizes) < 50:
        msg = c.recv(30)
        if msg["type"] == "threat":
            sizes.append(len(msg["threats"]))
            publishes.append(len({t["mono_ns"] for t in msg["threats"]}))  # one mono_ns per publish
    # Each threat goes out alone: the server merges no two publishes at this rate (allow a
    # couple, for a server thread descheduled for 5 ms). On an overloaded machine the demo's
    # schedule itself catches up by publishing two or three at once (one mono_ns): those
    # travel together, as one publish; most messages still carry exactly one threat.
    assert sum(1 for n in publishes if n > 1) <= 2, (sizes, publishes)
    assert sum(1 for n in sizes if n == 1) >= 35, sizes
    assert max(sizes) <= 5, sizes


def test_high_rate_batches_by_load_and_loses_nothing(ring_path, clients):
    count = 200_000
    port = free_port()
    start = time.monotonic()
    demo, dw = start_demo("--rate", count, "--count", count, "--seed", 7, "--shm-path", ring_path,
                          "--wait-subscribers", 1, port=port)
    c = clients(port)  # default max_size: 1 MiB, the Shield's limit, enforced by the client too
    assert is_status(c.recv(30))
    c.send({"type": "subscribe"})
    frames, closed = c.until_closed(120)
    assert dw.wait_exit(60) == 0, dw.stderr
    assert closed.rcvd is not None and closed.rcvd.code == 1001
    sizes = [len(raw.encode()) for raw in frames]
    assert max(sizes) <= MAX_FRAME_BYTES
    per_message = [len(json.loads(raw)["threats"]) for raw in frames if raw.startswith('{"type": "threat"')]
    seqs = [t["seq"] for t in threats_in(frames)]
    assert len(seqs) == count and seqs == list(range(count)), "no gap, no duplicate"
    assert max(per_message) > 100, "under load, threats travel together"
    print(f"{count} events in {len(per_message)} messages (max {max(per_message)} threats, "
          f"{max(sizes):,} bytes) in {time.monotonic() - start:.1f} s")


def test_slow_client_does_not_stall_the_others(ring_path, clients):
    """Order and completeness, not time: while `slow` reads nothing, `fast` gets
    30,000 events in order with no gap. The slow client's buffers (one queued
    frame of at most 1 MiB, a 64 KiB socket receive buffer, the server's send
    buffer) hold far fewer than 30,000 events (~10 MB), so the server's sends to
    `slow` were stalled while it kept serving `fast`. Then `slow`, reading again,
    gets every event from its first to past fast's last, in order (its backlog
    stays under the server's 200,000)."""
    port = free_port()
    start_demo("--rate", 20_000, "--seed", 8, "--no-shm", port=port)
    small = socket.create_connection(("127.0.0.1", port), timeout=30)
    small.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)  # no autotuning to megabytes
    slow, fast = clients(port, max_queue=1, sock=small), clients(port)
    assert is_status(slow.recv(30)) and is_status(fast.recv(30))
    slow.send({"type": "subscribe"})
    fast.send({"type": "subscribe"})
    fast_seqs = [t["seq"] for t in fast.threats(30_000, timeout=120)]
    assert_contiguous(fast_seqs)
    slow_seqs: list[int] = []
    while not slow_seqs or slow_seqs[-1] < fast_seqs[-1]:
        slow_seqs += [t["seq"] for t in slow.threats(1, timeout=60)]
    assert_contiguous(slow_seqs)
    assert slow_seqs[0] <= fast_seqs[0] + 1_000, "both subscribed at about the same event"


# ---- where it listens, how it starts and stops ----


def test_listens_on_loopback_only(ring_path):
    port = free_port()
    demo, _dw = start_demo("--rate", 5, "--shm-path", ring_path, port=port)
    listening = [c for c in psutil.Process(demo.pid).net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
    assert [(c.laddr.ip, c.laddr.port) for c in listening] == [("127.0.0.1", port)]
    # (No connection attempt to another address of this host: the test sends traffic to loopback only.)


def test_browser_pages_are_refused(ring_path, clients):
    """A handshake with an Origin header (a web page) is refused: no site can toggle protection."""
    port = free_port()
    start_demo("--rate", 5, "--shm-path", ring_path, port=port)
    with pytest.raises(InvalidStatus) as refused:
        connect(f"ws://127.0.0.1:{port}", proxy=None, origin="https://evil.example", open_timeout=30)
    assert refused.value.response.status_code == 403
    c = clients(port)  # no Origin: a monitor
    assert is_status(c.recv(30))


def test_port_taken_exits_3_with_one_line(ring_path):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        r = run_kgmon("demo", "--count", 5, "--shm-path", ring_path, "--ws-port", port)
    assert r.returncode == 3, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr
    assert f"127.0.0.1:{port}" in lines[0] and "in use" in lines[0]
    # the ring is created first (its own errors take precedence), then closed at once, empty
    header = read_header(ring_path)
    assert (header["state"], header["write_seq"]) == (2, 0)


def test_sigterm_closes_clients_1001_and_the_ring(ring_path, clients):
    port = free_port()
    demo, dw = start_demo("--rate", 50, "--seed", 9, "--shm-path", ring_path, port=port)
    c = clients(port)
    assert is_status(c.recv(30))
    c.send({"type": "subscribe"})
    c.threats(5)
    assert read_header(ring_path)["state"] == 1
    demo.send_signal(signal.SIGTERM)
    _frames, closed = c.until_closed(30)
    assert closed.rcvd is not None and closed.rcvd.code == 1001, closed
    assert dw.wait_exit(30) == 0, dw.stderr
    assert read_header(ring_path)["state"] == 2
    assert "ring closed; WebSocket closed" in dw.stderr


# ---- in-process: the backlog bound ----


def test_backlog_is_bounded_oldest_dropped_and_logged_once():
    logged: list[str] = []
    server = DemoWsServer(0, max_backlog=5_000, log=logged.append)
    server.start()
    try:
        threat = Threat(1, 3, True, "mcp:tools/call", "x" * 300, 1_700_000_000_000_000)
        with connect(server.url, proxy=None, compression=None, open_timeout=30,
                     additional_headers=client_headers(server.url)) as ws:
            assert json.loads(ws.recv(timeout=30))["type"] == "status"
            ws.send(json.dumps({"type": "subscribe"}))
            wait_for(lambda: server.subscribers == 1, 30, "the subscription")
            total, seq = 400_000, 0
            while seq < total:  # the client reads nothing meanwhile: it falls behind
                server.broadcast([Published(1, s, threat, time.monotonic_ns()) for s in range(seq, seq + 1000)])
                seq += 1000
            wait_for(lambda: server.dropped_events > 0, 30, "events to be dropped")
            seqs: list[int] = []
            while not seqs or seqs[-1] != total - 1:
                msg = json.loads(ws.recv(timeout=30))
                if msg["type"] == "threat":
                    seqs += [t["seq"] for t in msg["threats"]]
        assert seqs == sorted(set(seqs)), "in order, never twice"
        assert len(seqs) + server.dropped_events == total, "every event delivered or counted as dropped"
        assert seqs[-5_000:] == list(range(total - 5_000, total)), "the newest are kept"
        assert server.threats_blocked == total
        assert len(logged) == 1 and "behind" in logged[0], logged
    finally:
        server.stop(drain_s=0)
