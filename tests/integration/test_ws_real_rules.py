"""Issue 10.3: the monitor against a server that behaves as the real Shield does
(kindlyguard_monitor/demo/like_shield.py, faithful to real-shield.md as test_like_shield.py
checks). Real `kgmon tail` / `kgmon doctor` / `kgmon demo --like-shield`
processes and the real link and manager. The Shield facts each test leans on
are named as in like_shield.py: [S1] status on connect, [S5] one rate limit
for the server, [S6] duplicate frames drop the connection, [S8] no replies."""

from __future__ import annotations

import json
import re
import signal
import threading

import pytest
from conftest import OutputWatcher, free_port, start_kgmon, wait_for
from hostile_ws import HostileServer, drop_soon

from kindlyguard_monitor.demo.like_shield import LikeShieldServer
from kindlyguard_monitor.demo.threats import ThreatGenerator
from kindlyguard_monitor.threats import Published
from kindlyguard_monitor.transport import server_frames
from kindlyguard_monitor.transport.items import ShieldError, ShieldStatus
from kindlyguard_monitor.transport.manager import TransportManager
from kindlyguard_monitor.transport.ws_client import COMMAND_BURST, WsLink


@pytest.fixture
def shield():
    srv = LikeShieldServer(0)
    srv.start()
    yield srv
    srv.stop(drain_s=0)


def tail(url, *extra):
    proc = start_kgmon("tail", "--json", "--transport", "websocket", "--ws-url", url, *extra)
    return proc, OutputWatcher(proc)


def threat_lines(objs) -> list[dict]:
    return [o for o in objs if o.get("type") == "threat"]


def publish(srv: LikeShieldServer, threats) -> None:
    srv.broadcast([Published(0, i, t, 0) for i, t in enumerate(threats)])


def test_two_tails_one_after_the_other_both_receive_every_threat(shield):  # [S6] [S1]
    """Today the second tail's {"type":"subscribe"} is the first one's bytes: dropped, 0 threats, exit 0."""
    for run, seed in enumerate((1, 2)):
        want = ThreatGenerator(seed).batch(8)
        proc, out = tail(shield.url, "--count", 8, "--timeout", 60)
        wait_for(lambda: shield.subscribers == 1, 30, f"tail {run + 1} to subscribe")
        publish(shield, want)
        assert out.wait_exit(60) == 0, out.err_lines
        got = threat_lines(out.objects())
        assert [(g["source"], g["details"]) for g in got] == [(t.source, t.details) for t in want]
        assert all(re.fullmatch(r"threat_\d+", g["id"]) and g["seq"] is None for g in got)
        status = [o for o in out.objects() if o.get("type") == "status"]
        assert status and status[0]["protection_enabled"] is True  # the status sent on connect [S1]
    assert shield.drops == {} and shield.connections == 2


def test_a_server_that_keeps_dropping_us_sees_no_storm_and_the_tail_says_why():
    """Today: 20-30 connections in 6 s and exit 0 without a word."""
    with HostileServer(drop_soon([server_frames.status_message(True, 0)], after=0.05)) as srv:
        proc, out = tail(srv.url, "--timeout", 6)
        code = out.wait_exit(60)
        connections = srv.connections
    assert connections <= 8, f"{connections} connections in 6 s: a reconnect storm"
    assert code == 1
    said = " ".join(out.err_lines)
    assert "nothing received" in said and "dropped the connection" in said, said
    reasons = [o["reason"] for o in out.objects() if o.get("type") == "transport" and o["transport"] == "disconnected"]
    assert reasons and "before it had stayed up 30 s" in reasons[-1] and "in a row" in reasons[-1]
    summary = out.objects()[-1]
    assert summary["type"] == "summary" and summary["ws_dropped_soon"] >= 2


def test_doctor_twice_in_a_row_sees_the_shield_both_times(shield, tmp_path):  # [S1] [S6] [S8]
    for run in range(2):
        proc = start_kgmon("doctor", "--json", "--shm-path", tmp_path / "none.shm", "--ws-url", shield.url)
        stdout, stderr = proc.communicate(timeout=120)
        found = {f["check"]: f for f in json.loads(stdout)["findings"]}
        assert found["websocket"]["level"] == "ok", (run, found["websocket"])
        assert "protection enabled" in found["websocket"]["message"]
    assert shield.drops == {}


def test_toggle_shows_the_requested_state_until_a_status_confirms_it(shield, managers):  # [S8] [S1]
    """The Shield sends no status after a toggle: the monitor must neither wait for one nor claim it happened."""
    m = TransportManager("/nonexistent/ring", shield.url, mode="websocket")
    managers.append(m)
    m.start()
    items: list = []
    wait_for(lambda: items.extend(m.poll(0.05)) or m.status is not None, 10, "the status sent on connect")
    assert m.status == ShieldStatus(True, 0, None)
    assert m.send_command("toggle_protection")
    statuses = [i for i in m.poll(0.5) if isinstance(i, ShieldStatus)]
    assert statuses == [ShieldStatus(True, 0, False)], "shown as requested, not as done"
    seen: list = []
    wait_for(lambda: seen.extend(m.poll(0.05)) or (m.status.requested is None), 15, "the confirmation")
    assert m.status == ShieldStatus(False, 0, None)
    assert shield.protection_enabled is False and not any(isinstance(i, ShieldError) for i in seen)


def test_commands_stay_inside_the_servers_rate_limit(shield, managers):  # [S5]
    m = TransportManager("/nonexistent/ring", shield.url, mode="websocket")
    managers.append(m)
    m.start()
    wait_for(lambda: m.poll(0.05) is not None and shield.commands["subscribe"] == 1, 10, "the subscription",
             detail=lambda: f"commands {dict(shield.commands)}, {shield.summary()}")
    sent = sum(m.send_command("get_status") for _ in range(100))
    assert sent <= COMMAND_BURST
    wait_for(lambda: sum(shield.commands.values()) == 1 + sent, 10, "the commands")
    assert shield.errors_sent["rate_limited"] == 0 and shield.drops == {}
    assert m.link.connected


def test_a_subscription_asked_for_from_two_threads_at_once_is_sent_once(shield):  # [S5]
    """The link's thread and the manager's both sync the subscription; when both saw it unsent,
    both sent it (CI saw two subscribes, which spend the server's shared limit)."""
    inside, go = threading.Event(), threading.Event()

    class HeldLink(WsLink):
        def _command_frame(self, name: str) -> str:
            if not inside.is_set():  # hold the first sender between its decision and its frame
                inside.set()
                assert go.wait(10)
            return super()._command_frame(name)

    link = HeldLink(shield.url, subscribed=False).start()
    try:
        assert link.wait_connected(10)
        first = threading.Thread(target=link.set_subscribed, args=(True,))
        first.start()
        assert inside.wait(10)
        link.set_subscribed(True)  # a second thread, while the first is sending
        go.set()
        first.join(10)
        assert link.send_command("get_status")  # after the subscribe on the same connection
        wait_for(lambda: shield.commands["get_status"] == 1, 10, "the get_status")
        assert shield.commands["subscribe"] == 1, shield.commands
    finally:
        go.set()
        link.stop()


def test_a_subscription_the_server_refused_for_its_rate_limit_is_sent_again(shield, managers):  # [S5]
    from websockets.sync.client import connect

    with connect(shield.url) as other:  # another client uses up the server-wide burst
        other.recv(timeout=5)
        for i in range(60):
            other.send(json.dumps({"type": "get_status", "n": i}))
        wait_for(lambda: sum(shield.commands.values()) == 60, 10, "the other client's burst")
        m = TransportManager("/nonexistent/ring", shield.url, mode="websocket")
        managers.append(m)
        m.start()
        wait_for(lambda: m.poll(0.05) is not None and shield.commands["subscribe"] == 1, 20,
                 "the subscription, once the server's limit allows it")
    assert shield.errors_sent["rate_limited"] >= 1


def test_kgmon_demo_like_shield_end_to_end():  # the CLI: two tails, then the server's own account
    port = free_port()
    demo = start_kgmon("demo", "--like-shield", "--ws-port", port, "--rate", 20, "--duration", 120)
    demo_out = OutputWatcher(demo)
    url = f"ws://127.0.0.1:{port}"
    try:
        for _ in range(2):
            proc, out = tail(url, "--count", 5, "--timeout", 60)
            assert out.wait_exit(90) == 0, out.err_lines
            assert len(threat_lines(out.objects())) == 5
    finally:
        demo.send_signal(signal.SIGTERM)
    assert demo_out.wait_exit(60) == 0
    said = " ".join(demo_out.err_lines)
    assert "like the Shield: 2 connections, dropped: none" in said, said


def test_doctor_says_when_the_server_drops_the_connection(tmp_path):
    with HostileServer(drop_soon([server_frames.status_message(True, 0)], after=0.05)) as srv:
        proc = start_kgmon("doctor", "--json", "--shm-path", tmp_path / "none.shm", "--ws-url", srv.url)
        stdout, _ = proc.communicate(timeout=120)
    ws = {f["check"]: f for f in json.loads(stdout)["findings"]}["websocket"]
    assert ws["level"] == "warn" and "dropped the connection" in ws["message"], ws
    assert "without a close frame" in ws["message"] and "repeated frame" in ws["advice"]
