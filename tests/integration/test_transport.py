"""The WebSocket link and the transport manager against real servers on
loopback (tests/hostile_ws.py) and real rings (kindlyguard_monitor.ring.pyring.PyWriter)."""

from __future__ import annotations

import json
import threading
import time

import pytest
from conftest import free_port, wait_blocked_in
from hostile_ws import MiB, HostileServer, Pause, send_frames, slow_frame, slow_handshake

from kindlyguard_monitor.demo.threats import ThreatGenerator
from kindlyguard_monitor.ring.pyring import PyWriter
from kindlyguard_monitor.transport import protocol, server_frames
from kindlyguard_monitor.transport.items import (
    BadFrameSeen,
    Batch,
    ShieldStatus,
    TransportChange,
    TransportUnavailable,
)
from kindlyguard_monitor.transport.manager import TransportManager
from kindlyguard_monitor.transport.ws_client import WsLink

GEN = 0x00C0FFEE12345678
STATUS = server_frames.status_message(True, 7)


def threats_frame(seqs, generation=GEN, seed=1, mono=True) -> str:
    threats = ThreatGenerator(seed).batch(len(seqs))
    return server_frames.threat_message([
        server_frames.threat_json(t, server_frames.event_id(generation, s), s, time.monotonic_ns() if mono else None)
        for t, s in zip(threats, seqs)])


def shield(ws_extra=None):
    """A Shield-like script: status first, then it waits (the test pushes frames)."""
    return send_frames([STATUS] + (ws_extra or []))




def drain(manager: TransportManager, seconds: float, until=None) -> list:
    """Poll for `seconds` (or until until(items) is true); every item, in order."""
    items: list = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        items += manager.poll(0.05)
        if until is not None and until(items):
            break
    return items


def seqs_of(items, transport=None) -> list[int]:
    return [e.seq for i in items if isinstance(i, Batch) and (transport is None or i.transport == transport)
            for e in i.events]


def changes(items) -> list[str]:
    return [i.transport for i in items if isinstance(i, TransportChange)]


# ---- the link ----


def test_link_subscribes_on_connect_and_counts_every_bad_frame_without_dropping(ring_path, managers):
    bad = ["this is not json", "\xff\xfe{", '{"type": "threat", "threats": "many"}', '{"type": "warp"}', "[1, 2]",
           '{"type": "status", "protection_enabled": "yes"}', protocol.json.dumps({"type": "heartbeat"}) + " " * MiB]
    with HostileServer(shield(bad + [Pause(0.2), threats_frame([0, 1])])) as srv:
        m = TransportManager(str(ring_path), srv.url, mode="websocket")
        managers.append(m)
        items = m.start()
        items += drain(m, 10, until=lambda its: len(seqs_of(its)) >= 2)
        assert seqs_of(items) == [0, 1]
        assert json.loads(srv.received[0])["type"] == "subscribe"
        kinds = [i.kind for i in items if isinstance(i, BadFrameSeen)]
        assert kinds == ["not_json", "not_json", "wrong_types", "unknown_type", "wrong_types", "wrong_types",
                         "too_big"]
        assert m.bad_frames == 7 and srv.connections == 1, "bad frames never end the connection"
        assert ShieldStatus(True, 7) in items


def test_link_survives_a_frame_too_big_to_read_by_reconnecting(ring_path, managers):
    script = send_frames([STATUS, "x" * (20 * MiB)])
    with HostileServer(script) as srv:
        m = TransportManager(str(ring_path), srv.url, mode="websocket")
        managers.append(m)
        m.start()
        srv.wait_for(lambda: srv.connections >= 2, 20, "the client to reconnect")
        drain(m, 0.5)
        assert m.link.bad_frames["too_big"] >= 1


def test_abrupt_close_reconnects_and_subscribes_again(ring_path, managers):
    with HostileServer(send_frames([STATUS, threats_frame([0]), Pause(0.5)], then="abort")) as srv:
        m = TransportManager(str(ring_path), srv.url, mode="websocket")
        managers.append(m)
        items = m.start()
        srv.wait_for(lambda: srv.connections >= 2, 20, "a reconnect after the abort")
        items += drain(m, 3, until=lambda its: changes(its).count("websocket") >= 2)
        assert changes(items)[:3] == ["websocket", "disconnected", "websocket"]
        srv.wait_for(lambda: [json.loads(f)["type"] for f in srv.received].count("subscribe") >= 2, 10,
                     "a subscribe on the new connection")


def test_slow_servers_never_block_the_poll(ring_path, managers):
    for server in (HostileServer(raw=slow_handshake(0.5)), HostileServer(raw=slow_frame(delay=0.2))):
        with server as srv:
            m = TransportManager(str(ring_path), srv.url, mode="auto")
            managers.append(m)
            m.start()
            worst = 0.0
            for _ in range(20):
                t0 = time.monotonic()
                m.poll(0.05)
                worst = max(worst, time.monotonic() - t0)
            assert worst < 1.0, f"a poll(0.05) took {worst:.2f} s behind a slow server"


def test_refused_websocket_alone_is_unavailable_with_the_reason(ring_path):
    m = TransportManager(str(ring_path), f"ws://127.0.0.1:{free_port()}", mode="websocket")
    with pytest.raises(TransportUnavailable, match="refused"):
        m.start()
    m.close()


def test_link_rejects_a_non_websocket_url():
    with pytest.raises(ValueError):
        WsLink("http://127.0.0.1:9955")


# ---- the manager: numbering, duplicates, gaps ----


def test_websocket_duplicates_are_dropped_and_gaps_counted(ring_path, managers):
    with HostileServer(shield()) as srv:
        m = TransportManager(str(ring_path), srv.url)
        managers.append(m)
        assert changes(m.start()) == ["websocket"]
        srv.wait_for(lambda: srv.received, 10, "subscribe")
        for seqs in ([0, 1, 2], [2, 3], [1], [6]):
            srv.send_all(threats_frame(seqs))
        items = drain(m, 10, until=lambda its: 6 in seqs_of(its))
        assert seqs_of(items) == [0, 1, 2, 3, 6]
        assert (m.delivered, m.missed, m.ws_counts.duplicates) == (5, 2, 2)


def test_websocket_to_ring_resumes_after_the_last_event_without_duplicates(ring_path, managers):
    with HostileServer(shield()) as srv:
        m = TransportManager(str(ring_path), srv.url, probe_interval=0.2)
        managers.append(m)
        m.start()
        srv.wait_for(lambda: srv.received, 10, "subscribe")
        srv.send_all(threats_frame([0, 1, 2, 3]))
        items = drain(m, 10, until=lambda its: 3 in seqs_of(its))
        # the same writer's ring appears, holding events 24..39 of 0..39
        w = PyWriter.create(ring_path, slot_count=16, generation=GEN)
        w.publish(ThreatGenerator(1).batch(40))
        items += drain(m, 10, until=lambda its: 39 in seqs_of(its, "shm"))
        w.close()
        assert changes(items)[-1] == "shm"
        assert seqs_of(items, "shm") == list(range(24, 40))
        assert (m.delivered, m.missed) == (4 + 16, 20), "events 4..23 were overwritten: counted, not lost"
        srv.wait_for(lambda: "unsubscribe" in [json.loads(f)["type"] for f in srv.received], 10,
                     "the WebSocket to be unsubscribed while the ring carries the threats")


def test_ring_to_websocket_when_the_ring_closes_continues_the_numbering(ring_path, managers):
    with HostileServer(shield()) as srv:
        w = PyWriter.create(ring_path, slot_count=16, generation=GEN)
        w.publish(ThreatGenerator(1).batch(12))  # 0..11
        m = TransportManager(str(ring_path), srv.url)
        managers.append(m)
        items = m.start()
        items += drain(m, 10, until=lambda its: 11 in seqs_of(its))
        assert changes(items) == ["shm"]
        assert m.link.wait_connected(10)
        w.close()
        items += drain(m, 10, until=lambda its: "websocket" in changes(its))
        assert "closed" in [i for i in items if isinstance(i, TransportChange)][-1].reason
        srv.wait_for(lambda: "subscribe" in [json.loads(f)["type"] for f in srv.received], 10, "subscribe")
        srv.send_all(threats_frame([10, 11, 12, 13]))
        items += drain(m, 10, until=lambda its: 13 in seqs_of(its))
        assert seqs_of(items) == list(range(14))
        assert (m.delivered, m.missed, m.ws_counts.duplicates) == (14, 0, 2)


def test_named_ring_alone_is_unavailable_without_a_ring(ring_path):
    m = TransportManager(str(ring_path), "ws://127.0.0.1:9", mode="shm")
    with pytest.raises(TransportUnavailable, match="no ring"):
        m.start()
    m.close()


def test_disconnected_until_a_ring_appears(ring_path, managers):
    m = TransportManager(str(ring_path), f"ws://127.0.0.1:{free_port()}")
    managers.append(m)
    first = m.start()
    assert changes(first) == ["disconnected"] and "no ring" in first[0].reason and "refused" in first[0].reason
    w = PyWriter.create(ring_path, slot_count=16)
    w.publish(ThreatGenerator(2).batch(3))
    items = drain(m, 10, until=lambda its: len(seqs_of(its)) >= 3)
    w.close()
    assert changes(items) == ["shm"] and seqs_of(items) == [0, 1, 2]


def test_stop_wakes_a_poll_waiting_on_the_websocket(ring_path, managers):
    with HostileServer(shield()) as srv:
        m = TransportManager(str(ring_path), srv.url, mode="websocket")
        managers.append(m)
        m.start()
        # the Shield's status first: a poll would return with it, not wait
        first = drain(m, 10, until=lambda its: any(isinstance(i, ShieldStatus) for i in its))
        assert any(isinstance(i, ShieldStatus) for i in first)
        done = threading.Event()
        poller = threading.Thread(target=lambda: (m.poll(30), done.set()), daemon=True)
        poller.start()
        wait_blocked_in(poller, "_drain_link")  # the poll sleeps on the link's queue
        m.stop()
        assert done.wait(5), "poll(30) did not return after stop()"


def test_commands_go_over_the_websocket_while_the_ring_carries_threats(ring_path, managers):
    with HostileServer(shield()) as srv:
        w = PyWriter.create(ring_path, slot_count=16)
        m = TransportManager(str(ring_path), srv.url)
        managers.append(m)
        assert changes(m.start()) == ["shm"]
        assert m.link.wait_connected(10) and m.commands_available
        assert m.send_command("toggle_protection") and m.send_command("get_status")
        srv.wait_for(lambda: len(srv.received) >= 2, 10, "the commands")
        sent = [json.loads(f)["type"] for f in srv.received]
        assert sent == ["toggle_protection", "get_status"], "never subscribed while on the ring"
        w.close()


def test_the_extension_dialect_is_delivered_too(ring_path, managers):
    frame = json.dumps({"type": "threat", "data": {"id": "t-1", "timestamp": "2026-11-25T14:55:00.123456Z",
                                                   "type": "injection", "severity": "critical",
                                                   "description": "ignore previous instructions", "context": None}})
    with HostileServer(shield([frame])) as srv:
        m = TransportManager(str(ring_path), srv.url, mode="websocket")
        managers.append(m)
        m.start()
        items = drain(m, 10, until=lambda its: any(isinstance(i, Batch) for i in its))
        (event,) = [e for i in items if isinstance(i, Batch) for e in i.events]
        assert (event.threat_type, event.severity, event.details, event.wire_id) == (
            4, 4, "ignore previous instructions", "t-1")


def test_a_toggle_answered_at_once_is_not_left_pending(ring_path, managers):
    """Our demo server answers toggle_protection with a status at once: the request must
    be noted before that answer, or it would look pending for ever (issue 10)."""
    async def answer_toggles(ws, srv):
        await ws.send(server_frames.status_message(True, 0))
        enabled = True
        while (frame := await srv.next_received(ws, 30)) is not None:
            if json.loads(frame)["type"] == "toggle_protection":
                enabled = not enabled
                await ws.send(server_frames.status_message(enabled, 0))

    with HostileServer(answer_toggles) as srv:
        m = TransportManager(str(ring_path), srv.url, mode="websocket")
        managers.append(m)
        m.start()
        drain(m, 10, until=lambda its: m.status is not None)
        for expected in (False, True, False):
            assert m.send_command("toggle_protection")
            drain(m, 10, until=lambda its: m.status.protection_enabled is expected and m.status.requested is None)
        drain(m, 0.3)
        assert m.status == ShieldStatus(False, 0, None)
