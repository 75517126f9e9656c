"""The --like-shield server (kindlyguard_monitor/demo/like_shield.py) against the facts of
docs/websocket.md, "The Shield as it is, and `kgmon demo --like-shield`". Each test names the
rule it checks ([S1] ... [S12], listed in the module's docstring): the client's
tests (test_ws_real_rules.py) are only worth as much as this stand-in is
faithful."""

from __future__ import annotations

import json
import re

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from conftest import wait_for

from kindlyguard_monitor.demo.like_shield import (
    DUPLICATE,
    OK,
    PATTERN,
    RATE,
    TOO_BIG,
    Gcra,
    LikeShieldServer,
    ShieldValidator,
    rfc3339_nanos,
)
from kindlyguard_monitor.demo.threats import ThreatGenerator
from kindlyguard_monitor.threats import Published


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def server():
    srv = LikeShieldServer(0)
    srv.start()
    yield srv
    srv.stop(drain_s=0)


def open_ws(srv):
    return connect(srv.url, open_timeout=5, close_timeout=1, compression=None, ping_interval=None)


def dropped_without_close_frame(ws) -> bool:
    """[S2] the server ended the connection with no close frame of its own."""
    try:
        ws.recv(timeout=5)
    except ConnectionClosed as exc:
        return exc.rcvd is None
    return False


def test_status_first_compact_in_order_and_nothing_else(server):  # [S1] [S2]
    with open_ws(server) as ws:
        assert ws.recv(timeout=5) == '{"type":"status","protection_enabled":true,"threats_blocked":0}'
        with pytest.raises(TimeoutError):
            ws.recv(timeout=1.2)  # no heartbeat, no second status


@pytest.mark.parametrize("command", ["subscribe", "unsubscribe", "get_status", "toggle_protection"])
def test_commands_get_no_reply(server, command):  # [S8]
    with open_ws(server) as ws:
        ws.recv(timeout=5)
        ws.send(json.dumps({"type": command, "nonce": "x1"}))  # [S8] extra fields are ignored
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.5)
    server_commands = server.commands
    assert server_commands[command] == 1


def test_toggle_flips_silently_and_the_next_connection_sees_it(server):  # [S8] [S1]
    with open_ws(server) as ws:
        ws.recv(timeout=5)
        ws.send('{"type":"toggle_protection"}')
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.5)
    assert server.protection_enabled is False
    with open_ws(server) as ws:
        assert json.loads(ws.recv(timeout=5))["protection_enabled"] is False


def test_the_same_frame_from_another_connection_drops_it(server):  # [S6] [S3] [S2]
    with open_ws(server) as a, open_ws(server) as b:
        a.recv(timeout=5)
        b.recv(timeout=5)
        a.send('{"type":"subscribe"}')
        b.send('{"type":"subscribe"}')
        assert dropped_without_close_frame(b)
        with pytest.raises(TimeoutError):
            a.recv(timeout=0.3)  # a is still connected
    assert server.drops[DUPLICATE] == 1


@pytest.mark.parametrize("text", ['{"type":"subscribe","x":"<SCRIPT>"}', '{"type":"subscribe","x":"JavaScript:"}',
                                  '{"type":"get_status","p":"../etc"}', '{"type":"get_status","p":"..\\\\x"}',
                                  '{"type":"get_status","p":"a\x00"}', '{"type":"get_status","p":"%00"}',
                                  '{"type":"get_status","p":"\\\\x00"}', '{"type":"get_status","p":"a\u202eb"}',
                                  '{"type":"get_status","p":"onClick="}', '{"type":"get_status","p":"\u2067"}'])
def test_patterns_drop_the_connection(server, text):  # [S7]
    with open_ws(server) as ws:
        ws.recv(timeout=5)
        ws.send(text)
        assert dropped_without_close_frame(ws)
    assert server.drops[PATTERN] == 1


def test_unknown_commands_and_non_json_get_a_command_error(server):  # [S9]
    with open_ws(server) as ws:
        ws.recv(timeout=5)
        ws.send('{"type":"bogus"}')
        assert re.fullmatch(r'\{"type":"error","message":"Command error: unknown variant `bogus`, .*"\}',
                            ws.recv(timeout=5))
        ws.send("not json")
        assert json.loads(ws.recv(timeout=5))["message"].startswith("Command error: expected value")
        ws.send(b"\x00binary")  # [S10] ignored, even with a NUL
        ws.ping().wait(5)  # [S10] pings are answered
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.3)


def test_over_1_mib_drops(server):  # [S4]
    with open_ws(server) as ws:
        ws.recv(timeout=5)
        ws.send('{"type":"subscribe","pad":"' + "x" * (1 << 20) + '"}')
        assert dropped_without_close_frame(ws)
    assert server.drops[TOO_BIG] == 1


def test_rate_limit_is_one_for_the_whole_server(server):  # [S5] [S3]
    with open_ws(server) as a, open_ws(server) as b:
        a.recv(timeout=5)
        b.recv(timeout=5)
        for i in range(60):
            (a if i % 2 else b).send(json.dumps({"type": "get_status", "n": i}))
        wait_for(lambda: sum(server.commands.values()) == 60, 5, "60 commands")
        b.send('{"type":"get_status","n":"over"}')
        assert b.recv(timeout=5) == '{"type":"error","message":"Rate limit exceeded"}'
    assert sum(server.commands.values()) == 60


def test_gcra_burst_60_then_one_a_second():  # [S5]
    clock = FakeClock()
    limiter = Gcra(60, clock)
    assert all(limiter.check() for _ in range(60))
    assert not limiter.check()
    clock.now += 0.99
    assert not limiter.check()
    clock.now += 0.02
    assert limiter.check() and not limiter.check()
    clock.now += 60
    assert sum(limiter.check() for _ in range(100)) == 60


def test_validator_order_and_window():  # [S3] [S5] [S6]
    clock = FakeClock()
    v = ShieldValidator(per_minute=2, clock=clock)
    assert v.validate(b"a") == OK
    assert v.validate(b"a") == DUPLICATE
    assert v.validate(b"a") == RATE  # the rate limit comes before the duplicate check
    clock.now += 299
    assert v.validate(b"a") == DUPLICATE  # remembered 300 s
    clock.now += 2
    assert v.validate(b"a") == OK
    assert v.validate(b"x" * ((1 << 20) + 1)) == TOO_BIG
    clock.now += 100
    assert v.validate(b"../x") == PATTERN
    assert v.validate(b"../x") == DUPLICATE  # remembered before the patterns were checked


def test_threats_as_the_shield_would_shape_them(server):  # [S11]
    with open_ws(server) as ws:
        ws.recv(timeout=5)
        ws.send('{"type":"subscribe"}')
        wait_for(lambda: server.subscribers == 1, 5, "the subscription")
        server.broadcast([Published(0, i, t, 0) for i, t in enumerate(ThreatGenerator(7).batch(3))])
        text = ws.recv(timeout=5)
    assert ", " not in text.split('"threats":')[0] and '":' in text
    msg = json.loads(text)
    assert list(msg) == ["type", "threats"] and len(msg["threats"]) == 3
    for t in msg["threats"]:
        assert list(t) == ["id", "threat_type", "severity", "source", "details", "timestamp", "blocked"]
        assert re.fullmatch(r"threat_\d{13}", t["id"])
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3}|\.\d{6}|\.\d{9})?Z", t["timestamp"])
    assert len({t["id"] for t in msg["threats"]}) == 1, "one millisecond: the same id (as upstream)"


def test_unsubscribed_connections_get_no_threats(server):  # [S11]
    with open_ws(server) as ws:
        ws.recv(timeout=5)
        server.broadcast([Published(0, 0, ThreatGenerator(1).next(), 0)])
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.5)


@pytest.mark.parametrize("ns, text", [
    (1_700_000_000_000_000_000, "2023-11-14T22:13:20Z"),
    (1_700_000_000_123_000_000, "2023-11-14T22:13:20.123Z"),
    (1_700_000_000_123_456_000, "2023-11-14T22:13:20.123456Z"),
    (1_700_000_000_123_456_789, "2023-11-14T22:13:20.123456789Z"),
])
def test_timestamps_as_chrono_prints_them(ns, text):  # [S11]
    assert rfc3339_nanos(ns) == text


def test_any_origin_is_accepted(server):  # [S12]
    with connect(server.url, origin="https://evil.example", open_timeout=5) as ws:
        assert json.loads(ws.recv(timeout=5))["type"] == "status"
