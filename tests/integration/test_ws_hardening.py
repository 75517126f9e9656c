"""Issue 11 in the WebSocket client: a hostile or absent server never makes it
spin, grow without bound, or count nonsense. Real servers on loopback
(tests/hostile_ws.py), the real link and manager, real `kgmon tail` processes."""

from __future__ import annotations

import re
import time

import psutil
import pytest
from conftest import OutputWatcher, start_kgmon
from hostile_ws import HostileServer, ping_flood, send_frames

from kindlyguard_monitor.demo.threats import ThreatGenerator
from kindlyguard_monitor.transport import protocol, server_frames
from kindlyguard_monitor.transport.link_queue import LinkQueue, Overflow
from kindlyguard_monitor.transport.items import BadFrameSeen, Batch
from kindlyguard_monitor.transport.manager import TransportManager
from kindlyguard_monitor.transport.ws_client import FLOODED_RETRY_S, MAX_PINGS_PER_S, WsLink

GEN = 0x0123456789ABCDEF
STATUS = server_frames.status_message(True, 0)


def threats_frame(seqs, generation=GEN) -> str:
    threats = ThreatGenerator(5).batch(len(seqs))
    return server_frames.threat_message([server_frames.threat_json(t, server_frames.event_id(generation, s), s)
                                    for t, s in zip(threats, seqs)])


def delivered_seqs(items) -> list[int]:
    return [e.seq for i in items if isinstance(i, Batch) for e in i.events]


def ws_manager(url, managers, **kw) -> TransportManager:
    m = TransportManager("/nonexistent/ring", url, mode="websocket", **kw)
    managers.append(m)
    return m


def poll_until(m: TransportManager, condition, timeout: float, what: str) -> list:
    items: list = []
    end = time.monotonic() + timeout
    while not condition(items):
        assert time.monotonic() < end, f"timed out waiting for {what}"
        items += m.poll(0.05)
    return items


# ---- 11.3: retrying costs almost nothing ----


def test_tail_retrying_a_websocket_that_went_away_does_not_spin():
    """Today: 100% of a core for as long as the server is away (the retry loop never waited)."""
    with HostileServer(send_frames([STATUS])) as srv:
        proc = start_kgmon("tail", "--json", "--transport", "websocket", "--ws-url", srv.url, "--timeout", 60)
        out = OutputWatcher(proc)
        out.wait_json(lambda objs: any(o.get("type") == "status" for o in objs), 30, "the Shield's status")
    out.wait_json(lambda objs: any(o.get("transport") == "disconnected" for o in objs), 30, "the drop")
    p = psutil.Process(proc.pid)
    before = sum(p.cpu_times()[:2])
    time.sleep(3.0)  # a measurement window, not a synchronisation
    used = sum(p.cpu_times()[:2]) - before
    proc.terminate()
    out.wait_exit(30)
    assert used < 0.3, f"retrying cost {used / 3:.0%} of a core"  # the aim is < 1%; this is 10%, for a loaded CI


# ---- 11.2: a slow reader never grows memory without bound ----


def test_a_reader_slower_than_the_server_loses_counted_threats_not_memory(managers):
    """Today the link's queue is unbounded (2.3 GiB in 40 s behind a pager)."""
    frames = [threats_frame(range(i * 100, (i + 1) * 100)) for i in range(60)]
    with HostileServer(send_frames([STATUS] + frames)) as srv:
        m = ws_manager(srv.url, managers)
        m.link.events = LinkQueue(max_weight=200_000)  # ~250 threats: a small budget, the same code
        m.start()
        # nobody polls while the server sends everything: the link must not queue it all
        deadline = time.monotonic() + 30
        while m.link.frames < 61:
            assert time.monotonic() < deadline, f"only {m.link.frames} frames arrived"
            time.sleep(0.01)
        assert m.link.events.weight <= 200_000
        assert m.link.events.dropped_threats > 0
        items = poll_until(m, lambda its: m.accounted >= 6000, 10, "every threat accounted for")
    seqs = delivered_seqs(items)
    assert seqs == sorted(seqs) and len(seqs) == len(set(seqs))
    assert m.delivered + m.missed == 6000 and m.ws_counts.overflow == m.link.events.dropped_threats
    assert m.missed == 6000 - len(seqs) > 0


def test_the_link_queue_keeps_notes_and_counts_dropped_threats_in_order():
    q = LinkQueue(max_weight=1)
    a = protocol.parse_frame(threats_frame([0, 1]))
    b = protocol.parse_frame(threats_frame([2, 3]))
    c = protocol.parse_frame(threats_frame([4]))
    assert q.put_threats(a, a.threats)  # an empty queue always takes one message
    assert not q.put_threats(b, b.threats)
    q.put("note")
    assert not q.put_threats(c, c.threats)
    first, overflow, note, overflow2 = q.get_nowait(), q.get_nowait(), q.get_nowait(), q.get_nowait()
    assert first is a and note == "note"
    assert isinstance(overflow, Overflow) and overflow.ranges == {GEN: [2, 3, 2]}
    assert isinstance(overflow2, Overflow) and overflow2.count == 1
    assert q.weight == 0 and q.dropped_threats == 3


def test_bad_frame_reports_are_bounded_but_counted():
    q = LinkQueue(max_notes=5)
    for _ in range(20):
        q.put(protocol.BadFrame("not_json", "x"), droppable=True)
    q.put("a status")  # never dropped
    assert q.qsize() == 6 and q.dropped_notes == 15


# ---- 11.8: sequence numbers the manager cannot believe ----


def test_seq_jumping_back_from_the_top_is_a_new_epoch_not_18e18_missed(managers):
    """Today: missed = 18,446,744,073,709,551,613 and the threats after it are dropped as duplicates."""
    with HostileServer(send_frames([STATUS, threats_frame([2**64 - 1]), threats_frame([2]),
                                    threats_frame([3, 5])])) as srv:
        m = ws_manager(srv.url, managers)
        m.start()
        items = poll_until(m, lambda its: 5 in delivered_seqs(its), 10, "seq 5")
    assert delivered_seqs(items) == [2**64 - 1, 2, 3, 5]
    assert (m.delivered, m.missed, m.ws_counts.epochs) == (4, 1, 1)


def test_seq_absurdly_far_ahead_is_a_new_epoch(managers):
    with HostileServer(send_frames([STATUS, threats_frame([0, 1]), threats_frame([2**40, 2**40 + 2])])) as srv:
        m = ws_manager(srv.url, managers)
        m.start()
        items = poll_until(m, lambda its: 2**40 + 2 in delivered_seqs(its), 10, "the last threat")
    assert delivered_seqs(items) == [0, 1, 2**40, 2**40 + 2]
    assert (m.missed, m.ws_counts.epochs) == (1, 1)


def test_a_small_step_back_is_still_a_duplicate(managers):
    with HostileServer(send_frames([STATUS, threats_frame([10, 11, 12]), threats_frame([11, 13])])) as srv:
        m = ws_manager(srv.url, managers)
        m.start()
        items = poll_until(m, lambda its: 13 in delivered_seqs(its), 10, "seq 13")
    assert delivered_seqs(items) == [10, 11, 12, 13]
    assert (m.ws_counts.duplicates, m.ws_counts.epochs, m.missed) == (1, 0, 0)


# ---- 11.8: pings ----


def test_a_ping_flood_is_cut_off(managers):
    """Today the library answers every ping: 1.3 M pings in 20 s cost 72% of a core, for ever."""
    with HostileServer(raw=ping_flood([STATUS])) as srv:
        link = WsLink(srv.url, subscribed=False).start()
        try:
            srv.wait_for(lambda: "pings" in link.last_error, 15, "the link to give up on the flood")
            assert link.dropped_soon == 1 and srv.connections == 1
            wait = float(re.search(r"next try in ([0-9.]+) s", link.last_error).group(1))
            assert wait >= FLOODED_RETRY_S, link.last_error  # not tried again soon
        finally:
            link.stop()
    assert MAX_PINGS_PER_S < 1000


@pytest.mark.parametrize("entries, kind", [(5000, "wrong_types"), (300_000, "too_big")])
def test_a_frame_of_empty_threats_is_one_bad_frame_not_a_flood_of_blank_threats(managers, entries, kind):
    """Today one 1 MiB frame of {} entries became 349,512 blank Unknown threats."""
    frame = '{"type":"threat","threats":[' + ",".join(["{}"] * entries) + "]}"
    with HostileServer(send_frames([STATUS, frame, threats_frame([0])])) as srv:
        m = ws_manager(srv.url, managers)
        m.start()
        items = poll_until(m, lambda its: 0 in delivered_seqs(its), 15, "the good threat after it")
    assert m.delivered == 1 and m.bad_frames == 1
    assert [i.kind for i in items if isinstance(i, BadFrameSeen)] == [kind]


def test_tail_behind_a_reader_that_does_not_read_counts_what_it_could_not_keep():
    """11.2 end to end: `kgmon tail` whose output nobody reads while the server sends
    30,000 threats of 4 KB (more than loopback's buffers, ~36 MB, and the link's 64 MiB
    budget hold) keeps a bounded backlog; what did not fit is missed, counted, in the summary."""
    total, per_frame = 30_000, 200
    done = []
    big = ThreatGenerator(9).next()._replace(details="x" * 4000)

    async def flood(ws, srv):
        await ws.send(STATUS)
        await srv.next_received(ws, 30)  # the subscription
        for first in range(0, total, per_frame):
            await ws.send(server_frames.threat_message([
                server_frames.threat_json(big, server_frames.event_id(GEN, s), s) for s in range(first, first + per_frame)]))
        done.append(True)
        await ws.wait_closed()

    with HostileServer(flood) as srv:
        proc = start_kgmon("tail", "--json", "--transport", "websocket", "--ws-url", srv.url, "--count", total,
                           "--timeout", 120)
        srv.wait_for(lambda: done, 90, "the server to send everything while nobody reads the tail's output")
        rss_mib = psutil.Process(proc.pid).memory_info().rss >> 20
        out = OutputWatcher(proc)  # now read it
        assert out.wait_exit(120) == 0, out.err_lines
    objs = out.objects()
    seqs = [o["seq"] for o in objs if o.get("type") == "threat"]
    summary = objs[-1]
    assert summary["type"] == "summary" and summary.get("ws_overflow", 0) > 0, (summary, rss_mib)
    assert summary["delivered"] == len(seqs) and summary["delivered"] + summary["missed"] == total
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert rss_mib < 400, f"{rss_mib} MiB while {total:,} threats waited"
