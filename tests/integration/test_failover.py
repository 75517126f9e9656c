"""Shared memory ⇄ WebSocket failover with real `kgmon demo` and `kgmon tail`
processes on loopback: every event once, every gap counted, the switch in
time."""

from __future__ import annotations

import os
import signal
import socket
import time

from conftest import free_port, OutputWatcher, start_kgmon, wait_for
from test_ring_processes import summary, threats, transports

from kindlyguard_monitor.demo.threats import ThreatGenerator
from kindlyguard_monitor.threats import severity_name, threat_type_name
from kindlyguard_monitor.transport.items import Batch, ShieldStatus
from kindlyguard_monitor.transport.manager import TransportManager




def demo(ring_path, port, *extra):
    return start_kgmon("demo", "--shm-path", ring_path, "--ws-port", port, "--quiet", *extra)


def tail(ring_path, port, *extra):
    proc = start_kgmon("tail", "--json", "--shm-path", ring_path, "--ws-url", f"ws://127.0.0.1:{port}", *extra)
    return proc, OutputWatcher(proc)


def assert_full_content(events, seed: int, count: int) -> None:
    want = ThreatGenerator(seed).batch(count)
    for e in events:
        t = want[e["seq"]]
        assert (e["threat_type"], e["severity"], e["blocked"], e["source"], e["details"]) == (
            threat_type_name(t.threat_type), severity_name(t.severity), t.blocked, t.source, t.details), e["seq"]


def kinds(objs) -> list[str]:
    return [t["transport"] for t in transports(objs)]


def unique_events(objs) -> None:
    keys = [(t["generation"], t["seq"]) for t in threats(objs)]
    assert len(keys) == len(set(keys)), "an event was delivered twice"


def wait_for_port(port: int, timeout: float = 30) -> None:
    def accepting():
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0
    wait_for(accepting, timeout, f"127.0.0.1:{port} to accept connections")


def test_websocket_only_demo_reaches_tail_whole(ring_path):
    port = free_port()
    # The demo holds its events until the tail subscribed (however long a loaded machine takes to
    # start the tail), so the tail must get all of them: no timed assertion on when it subscribed.
    d = demo(ring_path, port, "--no-shm", "--seed", 3, "--count", 300, "--rate", 100, "--wait-subscribers", 1)
    wait_for_port(port)
    t, tw = tail(ring_path, port, "--timeout", 90)
    tw.wait_json(lambda objs: any(e["seq"] == 299 for e in threats(objs)), 60, "the last threat")
    assert d.wait(60) == 0
    t.send_signal(signal.SIGTERM)
    assert tw.wait_exit(30) == 0
    objs = tw.objects()
    assert kinds(objs)[0] == "websocket", "no ring: the tail went straight to the WebSocket"
    events = threats(objs)
    assert {e["transport"] for e in events} == {"websocket"}
    assert [e["seq"] for e in events] == list(range(300)), "every event, once, in order"
    assert_full_content(events, 3, 300)  # the WebSocket carries the whole text: no slot to cut it to
    assert all(e["latency_us"] >= 0 for e in events)
    s = summary(objs)
    assert (s["delivered"], s["missed"], s["corrupt"]) == (300, 0, 0)
    assert not os.path.exists(ring_path)


def test_restarted_demo_with_a_ring_takes_the_tail_back_to_shared_memory(ring_path):
    port = free_port()
    first = demo(ring_path, port, "--no-shm", "--seed", 5, "--rate", 50)
    t, tw = tail(ring_path, port, "--timeout", 120)
    tw.wait_json(lambda objs: len(threats(objs)) >= 20, 60, "threats over the WebSocket")
    first.send_signal(signal.SIGTERM)
    assert first.wait(30) == 0
    second = demo(ring_path, port, "--seed", 6, "--rate", 50)
    wait_for(lambda: os.path.exists(ring_path), 30, "the second demo's ring")
    ring_seen = time.monotonic()
    tw.wait_json(lambda objs: kinds(objs)[-1:] == ["shm"], 30, "the switch to shared memory")
    switched = [at for at, o in tw.json() if o["type"] == "transport" and o["transport"] == "shm"][-1]
    assert switched - ring_seen < 2.0, f"switched {switched - ring_seen:.2f} s after the ring appeared"
    tw.wait_json(lambda objs: len([e for e in threats(objs) if e["transport"] == "shm"]) >= 20, 60,
                 "threats from the ring")
    second.send_signal(signal.SIGTERM)
    assert second.wait(30) == 0
    tw.wait_json(lambda objs: kinds(objs)[-1] != "shm", 30, "the tail to see the ring close")
    t.send_signal(signal.SIGTERM)
    assert tw.wait_exit(30) == 0
    objs = tw.objects()
    unique_events(objs)
    s = summary(objs)
    # Every event of both writers is accounted for: delivered once or counted missed.
    by_generation: dict[int, list[int]] = {}
    for e in threats(objs):
        by_generation.setdefault(e["generation"], []).append(e["seq"])
    assert len(by_generation) == 2
    for seqs in by_generation.values():
        assert seqs == sorted(seqs)
    gaps = sum(max(s_) - min(s_) + 1 - len(s_) for s_ in by_generation.values())
    second_gen = threats(objs)[-1]["generation"]
    second_skipped = min(by_generation[second_gen])  # events of the second writer before the first seen
    assert s["missed"] == gaps + second_skipped
    assert s["delivered"] == sum(len(v) for v in by_generation.values())


def test_killed_writer_is_reported_within_3_s_and_a_new_one_is_followed(ring_path):
    port = free_port()
    d = demo(ring_path, port, "--seed", 7, "--rate", 50)
    t, tw = tail(ring_path, port, "--timeout", 120)
    tw.wait_json(lambda objs: len(threats(objs)) >= 10, 60, "threats")
    d.kill()
    killed = time.monotonic()
    d.wait(30)
    tw.wait_json(lambda objs: kinds(objs)[-1] == "disconnected", 30, "the tail to report the dead writer")
    reported = [at for at, o in tw.json() if o["type"] == "transport" and o["transport"] == "disconnected"][-1]
    assert reported - killed < 3.0, f"reported {reported - killed:.2f} s after the kill"
    reason = [o for o in transports(tw.objects()) if o["transport"] == "disconnected"][-1]["reason"]
    assert "writer" in reason and str(d.pid) in reason
    again = demo(ring_path, port, "--seed", 8, "--rate", 50)
    tw.wait_json(lambda objs: kinds(objs)[-1] == "shm" and threats(objs)[-1]["generation"] !=
                 threats(objs)[0]["generation"], 60, "the tail to follow the new writer")
    again.send_signal(signal.SIGTERM)
    again.wait(30)
    t.send_signal(signal.SIGTERM)
    assert tw.wait_exit(30) == 0
    unique_events(tw.objects())


def test_toggle_protection_round_trip_while_on_shared_memory(ring_path):
    port = free_port()
    d = demo(ring_path, port, "--seed", 9, "--rate", 20)
    wait_for(lambda: os.path.exists(ring_path), 30, "the ring")
    m = TransportManager(str(ring_path), f"ws://127.0.0.1:{port}")
    try:
        items = m.start()
        assert m.transport == "shm"
        assert m.link.wait_connected(20)
        statuses = lambda: [i for i in items if isinstance(i, ShieldStatus)]  # noqa: E731
        end = time.monotonic() + 20
        while not statuses() and time.monotonic() < end:
            items += m.poll(0.1)
        assert statuses() and statuses()[-1].protection_enabled is True
        assert m.send_command("toggle_protection")
        while not (statuses() and statuses()[-1].protection_enabled is False) and time.monotonic() < end:
            items += m.poll(0.1)
        assert statuses()[-1].protection_enabled is False
        # threats published from now on are reported, not blocked
        mark = len(items)
        end = time.monotonic() + 20
        while time.monotonic() < end:
            items += m.poll(0.1)
            later = [e for i in items[mark:] if isinstance(i, Batch) for e in i.events]
            if len(later) >= 5:
                break
        assert len(later) >= 5 and not any(e.blocked for e in later[1:])
    finally:
        m.close()
        d.send_signal(signal.SIGTERM)
        d.wait(30)
