"""The fleet (issue 16): `kgmon forward` into a real nats-server's JetStream, exactly once, in order.

Real servers on loopback (tests/fleet_servers.py), real `kgmon forward` processes killed
with SIGKILL mid-stream, a server restarted mid-stream, a three-node cluster with a
replicas=3 stream losing a node mid-stream, and `kgmon tail --fleet` reading it all back.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
from pathlib import Path

import pytest

from fleet_servers import (Cluster, NatsServer, create_stream, env, kgmon, run, stream_count, stream_messages,
                           wait_for)
from history_data import GEN, make_history, ring_batch, ring_event, start_store

from kindlyguard_monitor.fleet import message, status, subjects

pytest.importorskip("nats")


def history(path: Path, n: int, gap_after: int | None = None) -> Path:
    """A history of n threats (seq 0..n-1, every severity); with gap_after, a reader gap recorded after that many."""
    events = [ring_event(i, severity=1 + i % 4, details=f"threat {i} \u202e") for i in range(n)]
    if gap_after is None:
        return make_history(path, [ring_batch(events[i:i + 1000]) for i in range(0, n, 1000)])
    store = start_store(path)
    store.submit([ring_batch(events[:gap_after])])
    assert store.flush(60)
    store.record_counters(gap_after, 7, 0, "shm", GEN)
    assert store.flush(60)
    store.submit([ring_batch(events[gap_after:])])
    assert store.close(60), store.error
    return path


def forwarder(urls: str, hist: Path, host: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(kgmon("forward", "--nats", urls, "--history", str(hist), "--host", host, *extra),
                            env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def forward_once(urls: str, hist: Path, host: str, *extra: str) -> str:
    done = subprocess.run(kgmon("forward", "--nats", urls, "--history", str(hist), "--host", host, "--once", *extra),
                          env=env(), capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return done.stderr


def cursor(hist: Path) -> tuple[int, int]:
    conn = sqlite3.connect(hist)
    try:
        return conn.execute("SELECT threat_row, gap_row FROM fleet_forward").fetchone()
    finally:
        conn.close()


def check_exactly_once_in_order(urls: str, host: str, n: int, gaps: int = 0) -> list[tuple]:
    """The stream holds each of the host's n threats (and gaps) once, in history row order."""
    msgs = run(stream_messages(urls, subjects.host_filter(host)))
    items = [message.decode(body, seq) for seq, _, body in msgs]
    ids = [h[subjects.H_MSG_ID] for _, h, _ in msgs]
    assert len(ids) == len(set(ids)), "a message id twice"
    threats = [t for t in items if isinstance(t, message.FleetThreat)]
    assert [t.seq for t in threats] == list(range(n))  # every one, once, in order
    assert [t.row for t in threats] == sorted(t.row for t in threats)
    assert all(t.host == host for t in threats)
    assert threats[5].details == "threat 5 \u202e"  # text exactly as stored
    assert [subj.rsplit(".", 1)[1] for subj in (subjects.threat_subject(host, t.severity) for t in threats[:4])] == \
        ["low", "medium", "high", "critical"]
    found_gaps = [g for g in items if isinstance(g, message.FleetGap)]
    assert len(found_gaps) == gaps
    return items


@pytest.fixture
def server(tmp_path):
    s = NatsServer(tmp_path / "nats").start()
    yield s
    s.kill()


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path / "nats").start()
    yield c
    c.kill()


def test_forward_survives_kill_9_exactly_once_in_order(server, tmp_path):
    n = 10_000
    hist = history(tmp_path / "h.sqlite3", n, gap_after=n // 2)
    proc = forwarder(server.url, hist, "ws1", "--window", "256")
    try:
        wait_for(lambda: run(stream_count(server.url)) > 0, 30, "the first threats in the stream")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        proc.kill()
    at_kill = run(stream_count(server.url))
    assert 0 < at_kill < n + 1, "the forwarder was not killed mid-stream"
    assert cursor(hist)[0] <= at_kill  # the cursor never passes what the stream acknowledged
    out = forward_once(server.url, hist, "ws1")
    assert "0 waiting" in out
    check_exactly_once_in_order(server.url, "ws1", n, gaps=1)
    assert cursor(hist) == (n, 1)
    # Forwarding again: nothing to do; the cursor set back: every retry acknowledged, and dropped
    # by the stream's duplicate window (fast-ingest batches do not say which were duplicates).
    assert "0 acknowledged" in forward_once(server.url, hist, "ws1")
    conn = sqlite3.connect(hist)
    conn.execute("UPDATE fleet_forward SET threat_row = 0, gap_row = 0")
    conn.commit()
    conn.close()
    assert f"{n + 1} acknowledged, 0 waiting" in forward_once(server.url, hist, "ws1")
    assert run(stream_count(server.url)) == n + 1
    # What the status bar and `kgmon doctor` show, then with the server gone.
    assert status.status_text(hist).startswith("Forwarding: 0 waiting / last acknowledged at ")
    assert status.doctor_finding(hist)[0] == "ok"
    server.kill()
    gone = subprocess.run(kgmon("forward", "--nats", server.url, "--history", str(hist), "--once"), env=env(),
                          capture_output=True, text=True, timeout=60)
    assert gone.returncode == 1 and "no NATS server answers" in gone.stderr and "Traceback" not in gone.stderr
    level, text, advice = status.doctor_finding(hist)
    assert level == "warn" and f"not forwarding: no NATS server answers at {server.url}" in text and advice


def test_forward_resumes_across_a_server_restart(server, tmp_path):
    n = 10_000
    hist = history(tmp_path / "h.sqlite3", n)
    proc = forwarder(server.url, hist, "ws2", "--window", "256")
    try:
        wait_for(lambda: run(stream_count(server.url)) > 0, 30, "the first threats in the stream")
        server.kill(signal.SIGTERM)  # the server goes away mid-stream ...
        assert proc.poll() is None
        server.start()  # ... and comes back on the same port with its stream
        wait_for(lambda: run(stream_count(server.url)) >= n, 90, "every threat in the stream", every=0.2)
        wait_for(lambda: cursor(hist)[0] == n, 30, "the cursor at the last row")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "retrying" in err and "Traceback" not in err  # it saw the loss and said so
    check_exactly_once_in_order(server.url, "ws2", n)


def test_cluster_node_killed_mid_stream_and_the_fleet_viewer_sees_all(cluster, tmp_path):
    n = 3_000
    run(create_stream(cluster.urls, replicas=3))
    a = history(tmp_path / "a.sqlite3", n)
    b = history(tmp_path / "b.sqlite3", 500)

    fa = forwarder(cluster.urls, a, "ws-a", "--window", "256")
    try:
        wait_for(lambda: run(stream_count(cluster.urls)) > 0, 30, "the first threats in the stream")
        leader = run(_leader(cluster.urls))
        cluster.node(leader).kill()  # the stream's leader, SIGKILL
        # A second host meanwhile: --once gives up at a failure (no leader yet: 503), so it is run again.
        said = []

        def forward_b() -> bool:
            done = subprocess.run(kgmon("forward", "--nats", cluster.urls, "--history", str(b), "--host", "ws-b",
                                        "--once"), env=env(), capture_output=True, text=True, timeout=60)
            said[:] = [done.stderr]
            return done.returncode == 0

        try:
            wait_for(forward_b, 90, "ws-b forwarded", every=0.2)
        except AssertionError as exc:
            logs = {node.name: node.log.read_text(errors="replace")[-4000:] for node in cluster.nodes}
            raise AssertionError(f"{exc}; its last attempt said: {said}; the servers' logs end: {logs}") from None
        live = ",".join(node.url for node in cluster.nodes if node.proc is not None)
        wait_for(lambda: run(stream_count(live, subjects.host_filter("ws-a"))) >= n, 90, "every threat of ws-a",
                 every=0.2)
        wait_for(lambda: cursor(a)[0] == n, 30, "the cursor at the last row")
    finally:
        fa.send_signal(signal.SIGTERM)
        _, err = fa.communicate(timeout=20)
    assert fa.returncode == 0, err
    live = ",".join(node.url for node in cluster.nodes if node.proc is not None)
    check_exactly_once_in_order(live, "ws-a", n)
    check_exactly_once_in_order(live, "ws-b", 500)
    # The fleet viewer: a durable consumer reads every threat of both hosts, each once.
    shown = subprocess.run(kgmon("tail", "--fleet", live, "--consumer", "desk1", "--json", "--count", str(n + 500),
                                 "--timeout", "60"), env=env(), capture_output=True, text=True, timeout=90)
    assert shown.returncode == 0, shown.stderr
    lines = [json.loads(line) for line in shown.stdout.splitlines()]
    threats = [o for o in lines if o["type"] == "threat"]
    assert len(threats) == n + 500
    assert {(o["host"], o["seq"]) for o in threats} == {("ws-a", i) for i in range(n)} | {("ws-b", i) for i in range(500)}
    per_host = [o["seq"] for o in threats if o["host"] == "ws-a"]
    assert per_host == sorted(per_host)
    assert lines[-1] == {"type": "summary", "delivered": n + 500, "gaps": 0, "bad": 0, "transport": "fleet"}


async def _leader(urls: str) -> str:
    import nats

    nc = await nats.connect(servers=urls.split(","))
    try:
        info = await nc.jetstream().stream_info(subjects.STREAM)
        return info.cluster.leader
    finally:
        await nc.close()


def test_fleet_viewer_catches_up_from_where_it_stopped(server, tmp_path):
    hist = history(tmp_path / "h.sqlite3", 30)
    forward_once(server.url, hist, "ws3")

    def tail(count: int) -> list[dict]:
        done = subprocess.run(kgmon("tail", "--fleet", server.url, "--consumer", "desk2", "--json", "--count",
                                    str(count), "--timeout", "30"), env=env(), capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, done.stderr
        return [json.loads(line) for line in done.stdout.splitlines() if '"threat"' in line]

    first = tail(10)
    assert [t["seq"] for t in first] == list(range(10))
    rest = tail(20)  # offline meanwhile: it goes on where it stopped, nothing twice
    assert [t["seq"] for t in rest] == list(range(10, 30))
    assert rest[0]["host"] == "ws3" and rest[0]["details"] == "threat 10 \u202e"
    text = subprocess.run(kgmon("tail", "--fleet", server.url, "--consumer", "desk3", "--count", "1", "--timeout",
                                "30"), env=env(), capture_output=True, text=True, timeout=60)
    assert "ws3" in text.stdout and "⟨U+202E⟩" in text.stdout and "\u202e" not in text.stdout


def test_forwarding_through_nats_py_publish_when_the_fast_path_is_missing(server, tmp_path, monkeypatch):
    """wire.py hands HPUB lines to nats-py's internal buffer; with a nats-py that lacks it, every
    message goes through publish(): the same stream, exactly once, in order. (And this nats-py has it.)"""
    import asyncio

    from kindlyguard_monitor.fleet import wire
    from kindlyguard_monitor.fleet.connect import Options
    from kindlyguard_monitor.fleet.forwarder import Forwarder

    seen = []
    real_init = wire.Wire.__init__

    def without_fast_path(self, nc):
        real_init(self, nc)
        seen.append(self.raw)
        self.raw = False

    monkeypatch.setattr(wire.Wire, "__init__", without_fast_path)
    hist = history(tmp_path / "h.sqlite3", 600, gap_after=300)
    fwd = Forwarder(hist, Options((server.url,), name="test"), "ws-slow", window=64)
    assert asyncio.run(fwd.run(asyncio.Event(), until_idle=True))
    assert seen == [True]  # the installed nats-py offers the fast path
    check_exactly_once_in_order(server.url, "ws-slow", 600, gaps=1)


def test_a_threat_bigger_than_the_server_takes_is_named_and_waits(server, tmp_path):
    """A threat whose message exceeds the server's max_payload (1 MiB) stops forwarding at its row,
    with one sentence naming it; the rows before it are in the stream, the cursor just before it."""
    import asyncio

    from kindlyguard_monitor.fleet.connect import Options
    from kindlyguard_monitor.fleet.forwarder import Forwarder

    events = [ring_event(i, details="x" * (1_100_000 if i == 3 else 10)) for i in range(5)]
    hist = make_history(tmp_path / "h.sqlite3", [ring_batch(events)])
    fwd = Forwarder(hist, Options((server.url,), name="test"), "ws-big")
    assert not asyncio.run(fwd.run(asyncio.Event(), until_idle=True))
    assert "threat row 4 is 1,100,3" in fwd.stats.state and "max_payload 1,048,576" in fwd.stats.state
    assert run(stream_count(server.url)) == 3 and cursor(hist) == (3, 0)


def test_usage_errors_are_one_line(tmp_path):
    for args, words in ((("forward", "--nats", "http://x"), "must start with nats:// or tls://"),
                        (("forward",), "give --nats URL"),
                        (("tail", "--fleet", "nats://127.0.0.1:1", "--consumer", "a.b"), "may hold only"),
                        (("forward", "--nats", "nats://127.0.0.1:4222", "--window", "0"), "--window")):
        done = subprocess.run(kgmon(*args), env=env(), capture_output=True, text=True, timeout=30)
        assert done.returncode == 2, (args, done.stderr)
        assert words in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    nothing = subprocess.run(kgmon("forward", "--nats", "nats://127.0.0.1:1", "--history", str(tmp_path / "none"),
                                   "--once"), env=env(), capture_output=True, text=True, timeout=30)
    assert nothing.returncode == 1 and "no threat history" in nothing.stderr and "Traceback" not in nothing.stderr


def test_host_tokens_and_ids():
    assert subjects.host_token("WS1.corp.example") == "ws1_corp_example"
    assert subjects.host_token("a*b>c d") == "a_b_c_d"
    assert subjects.host_token("") == "unknown"
    long_a, long_b = "x" * 100 + "a", "x" * 100 + "b"
    assert len(subjects.host_token(long_a)) == 64 and subjects.host_token(long_a) != subjects.host_token(long_b)
    assert subjects.threat_subject("ws1", 4) == "kindlyguard.threats.ws1.critical"
    assert subjects.threat_subject("ws1", 9) == "kindlyguard.threats.ws1.unknown"
    assert subjects.threat_msg_id("ws1", bytes(range(16))) == "ws1.000102030405060708090a0b0c0d0e0f"
    with pytest.raises(message.BadMessage):
        message.decode(b'{"kind": "threat", "seq": "7"}')
    with pytest.raises(message.BadMessage):
        message.decode(b"\xff")


def test_status_of_a_history_never_forwarded(tmp_path):
    """The status bar and doctor say nothing about forwarding, and reading changes nothing."""
    hist = history(tmp_path / "h.sqlite3", 3)
    before = hist.read_bytes()
    assert status.status_text(hist) is None and status.doctor_finding(hist) is None
    assert status.status_text(tmp_path / "missing.sqlite3") is None
    assert not (tmp_path / "missing.sqlite3").exists()
    assert hist.read_bytes() == before
    tables = {r[0] for r in sqlite3.connect(hist).execute("SELECT name FROM sqlite_schema WHERE type = 'table'")}
    assert "fleet_forward" not in tables


def test_a_publish_lost_on_the_way_ends_the_batch_with_nothing_stored_after_it(server, tmp_path):
    """What keeps a host's threats in order with many publishes on the wire (publish.py): in a
    fast-ingest batch with gaps set to `fail`, the server stores nothing after a message it did
    not receive. A lost message is made here by skipping its number (what the server sees when
    one goes to a stream leader that dies); the server's answers, not ours, decide the result."""
    items = _encoded(history(tmp_path / "h.sqlite3", 8), "ws-lost")

    async def lose_one(pub):
        assert await pub.send(items[:3], last=False) == 1  # the first alone: does the stream take batches?
        await _started(pub)
        assert await pub.send(items[1:3], last=False) == 2
        pub.n += 1  # message 4 "lost on the way"
        await pub.send(items[3:6], last=True)  # 5, 6, 7 (the commit)
        await _until(pub, lambda: pub.problem)
        return pub.problem, pub.take_acked()

    problem, acked = run(_with_fast_batch(server.url, 4, lose_one))
    assert problem and "lost on the way" in problem
    assert acked is not None and acked[:2] == (3, 0)  # rows 1-3 acknowledged, nothing after
    stored = [message.decode(body, seq) for seq, _, body in run(stream_messages(server.url,
                                                                                subjects.host_filter("ws-lost")))]
    assert [t.seq for t in stored] == [0, 1, 2]


def test_a_lost_last_message_is_found_when_the_forwarder_asks_again(server, tmp_path):
    """When no acknowledgement came for a while the forwarder asks again (a ping with the last number
    it sent). If that last message was lost on the way, nothing after it reveals the gap, but the
    ping does: the server ends the batch at what it holds (its answers, checked here), which the
    publisher takes as a refusal, so the forwarder publishes again from its cursor. (That a ping's
    answer repeating the last ack is not progress: tests/unit/test_fleet_publish.py.)"""
    from kindlyguard_monitor.fleet import publish

    items = _encoded(history(tmp_path / "h.sqlite3", 3), "ws-ping")

    async def lose_the_last(pub):
        await pub.send(items[:1], last=False)
        await _started(pub)
        await pub.send(items[1:2], last=False)
        pub.n += 1  # message 3 "lost on the way": counted as sent, never written
        pub.waiting.append(publish.Sent(pub.n, 3, 0))
        await pub.ping()
        await _until(pub, lambda: pub.problem)
        return pub.problem, pub.take_acked()

    problem, acked = run(_with_fast_batch(server.url, 64, lose_the_last))
    assert problem and "lost on the way" in problem
    assert acked is not None and acked[:2] == (2, 0)  # what the stream holds: rows 1 and 2
    stored = [message.decode(body, seq) for seq, _, body in run(stream_messages(server.url,
                                                                                subjects.host_filter("ws-ping")))]
    assert [t.seq for t in stored] == [0, 1]


def _encoded(hist: Path, host: str) -> list[tuple]:
    """The history's threats as the forwarder publishes them: (message, threat row, gap row)."""
    from kindlyguard_monitor.fleet import outbox

    conn = sqlite3.connect(hist)
    try:
        enc = message.ThreatEncoder(host, "h1")
        return [(enc.encode(r), r[0], 0) for r in outbox.threat_rows_after(conn, 0, 100)]
    finally:
        conn.close()


async def _with_fast_batch(url: str, window: int, work):
    """work(a publish.FastBatch on a new connection to the stream), its result; the connection closed."""
    import nats

    from kindlyguard_monitor.fleet import publish
    from kindlyguard_monitor.fleet.connect import ensure_stream

    nc = await nats.connect(url)
    try:
        await ensure_stream(nc.jetstream(), replicas=1)
        pub = publish.FastBatch(nc, window=window)
        await pub.start()
        return await work(pub)
    finally:
        await nc.close()


async def _started(pub) -> None:
    """The server's first answer to a batch (it takes batches: no refusal)."""
    await _until(pub, lambda: not pub.starting or pub.problem or pub.unsupported)
    assert pub.room() > 0 and not pub.unsupported and not pub.problem


async def _until(pub, done, seconds: float = 10.0) -> None:
    for _ in range(int(seconds / 0.1)):
        if done():
            return
        await pub.wait(0.1)
    raise AssertionError("no answer from the stream in time")
