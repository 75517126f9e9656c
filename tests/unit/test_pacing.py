"""kindlyguard_monitor/transport/pacing.py with a fake clock: the client's command bucket and
its reconnect back-off (issue 10: no reconnect storm against a Shield that drops us)."""

from __future__ import annotations

from kindlyguard_monitor.transport.pacing import Backoff, TokenBucket


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_bucket_burst_then_rate():
    clock = Clock()
    b = TokenBucket(3, 0.5, clock)
    assert [b.take() for _ in range(4)] == [True, True, True, False]
    assert b.wait_s() == 2.0
    clock.now += 1.9
    assert not b.take()
    clock.now += 0.1
    assert b.take() and not b.take()
    clock.now += 100
    assert sum(b.take() for _ in range(10)) == 3  # never more than the burst


def test_bucket_emptied_when_the_server_refused():
    clock = Clock()
    b = TokenBucket(3, 1.0, clock)
    b.empty()
    assert not b.take() and b.wait_s() == 1.0


def test_backoff_grows_while_connections_are_dropped_soon_and_resets_after_a_healthy_one():
    clock = Clock()
    b = Backoff(0.25, 5.0, 30.0, clock, jitter=lambda: 1.0)
    waits = []
    for _ in range(7):
        b.opened()
        clock.now += 0.1  # dropped soon after opening
        waits.append(b.closed())
    assert waits == [0.25, 0.5, 1.0, 2.0, 4.0, 5.0, 5.0] and b.failures == 7
    b.opened()
    clock.now += 29.9
    assert b.closed() == 5.0  # 29.9 s is not yet healthy
    b.opened()
    clock.now += 30.0
    assert b.closed() == 0.25 and b.failures == 0


def test_backoff_counts_connections_that_never_opened():
    b = Backoff(0.25, 5.0, 30.0, Clock(), jitter=lambda: 1.0)
    assert [b.closed() for _ in range(3)] == [0.25, 0.5, 1.0]


def test_a_websocket_link_stopped_before_it_started_stops_quietly():
    """The app shut down right after start: WsLink.stop() on a link whose thread never ran
    used to raise "cannot join thread before it is started" (logged as a failed close)."""
    from kindlyguard_monitor.transport.ws_client import WsLink

    link = WsLink("ws://127.0.0.1:9/")
    link.stop(timeout=0.1)
    assert not link.connected and link.connections == 0
