"""ReaderThread (kindlyguard_monitor/gui/reader_thread.py): the TransportManager loop on its own
QThread, with coalesced signals. Real rings from PyWriter; the WebSocket URL
points at a free port nothing listens on."""

from __future__ import annotations

import threading
import time

import pytest

from kindlyguard_monitor.demo.threats import ThreatGenerator
from kindlyguard_monitor.gui.reader_thread import LatencySnapshot, ReaderCounters, ReaderThread
from kindlyguard_monitor.ring.pyring import PyWriter
from conftest import free_port


class Recorder:
    """Everything a ReaderThread emitted, as the GUI thread received it."""

    def __init__(self, rt: ReaderThread):
        self.rt = rt
        self.emissions: list[tuple[float, list]] = []  # (monotonic received, [Batch])
        self.changes: list[tuple[str, str]] = []
        self.counters: list[ReaderCounters] = []
        self.latency: list[LatencySnapshot] = []
        self.failed: list[str] = []
        self.slot_threads: set = set()
        rt.batches.connect(self._on_batches)
        rt.transport_changed.connect(lambda t, r: self.changes.append((t, r)))
        rt.counters.connect(self.counters.append)
        rt.latency.connect(self.latency.append)
        rt.failed.connect(self.failed.append)

    def disconnect(self) -> None:
        """Drop this Recorder's connections: each holds the Recorder, which holds the thread, a cycle
        through Qt that Python's collector cannot see, so the thread object outlived its test."""
        for signal in (self.rt.batches, self.rt.transport_changed, self.rt.counters, self.rt.latency,
                       self.rt.failed):
            signal.disconnect()

    def _on_batches(self, batches):
        self.slot_threads.add(threading.get_ident())
        self.emissions.append((time.monotonic(), batches))

    @property
    def events(self) -> list:
        return [e for _, batches in self.emissions for b in batches for e in b.events]

    @property
    def count(self) -> int:
        return sum(len(b.events) for _, batches in self.emissions for b in batches)


@pytest.fixture
def readers():
    """make(path, mode, **kw) -> (ReaderThread, Recorder). Every thread made is stopped and joined
    when the test ends, and its Recorder disconnected, so nothing of it outlives the test."""
    made: list[Recorder] = []

    def make(path, mode="shm", **kw) -> tuple[ReaderThread, Recorder]:
        rt = ReaderThread(str(path), f"ws://127.0.0.1:{free_port()}", mode=mode, **kw)
        rec = Recorder(rt)
        made.append(rec)
        return rt, rec

    yield make
    for rec in made:
        assert rec.rt.shutdown(5000)
        assert rec.rt.wait(5000) and not rec.rt.isRunning()
        rec.disconnect()
    made.clear()


def _start_on_shm(qtbot, rt: ReaderThread, rec: Recorder) -> None:
    """Start the reader thread and wait until it has attached to the ring."""
    rt.start()
    qtbot.waitUntil(lambda: bool(rec.changes) and rec.changes[0][0] == "shm", timeout=5000)


@pytest.fixture
def on_shm(qtbot, ring_path, readers):
    """make(slot_count, **kw) -> (PyWriter, ReaderThread, Recorder): a Python writer on the ring
    and a reader thread (readers(ring_path, **kw)) started and attached to it. The writers are
    closed when the test ends, before their readers are stopped."""
    writers: list[PyWriter] = []

    def make(slot_count: int, **kw) -> tuple[PyWriter, ReaderThread, Recorder]:
        w = PyWriter.create(ring_path, slot_count=slot_count)
        writers.append(w)
        rt, rec = readers(ring_path, **kw)
        _start_on_shm(qtbot, rt, rec)
        return w, rt, rec

    yield make
    for w in writers:
        w.close()


def test_events_arrive_in_order_all_of_them_shm_first(qtbot, on_shm):
    w, rt, rec = on_shm(1024)
    gen = ThreatGenerator(1)
    for _ in range(10):
        w.publish(gen.batch(50))
    qtbot.waitUntil(lambda: rec.count >= 500, timeout=5000)
    assert [e.seq for e in rec.events] == list(range(500))
    assert rec.changes[0][0] == "shm"
    assert all(b.transport == "shm" for _, bs in rec.emissions for b in bs)
    assert rec.slot_threads == {threading.get_ident()}  # slots run on the GUI thread
    assert not rec.failed


def test_shutdown_while_sleeping_in_a_ring_poll_is_prompt(qtbot, on_shm):
    w, rt, rec = on_shm(64, spin_ns=0)
    w.heartbeat()
    # the reader sleeps on the futex now (its ring reader counts the sleeps)
    qtbot.waitUntil(lambda: rt._manager.follower.reader.wait_stats[1] > 0, timeout=5000)
    t0 = time.monotonic()
    assert rt.shutdown(5000)
    assert time.monotonic() - t0 < 5
    assert rt.isFinished()
    assert rt.send_command("get_status") is False


def test_shutdown_while_disconnected_in_auto_mode_is_prompt(qtbot, ring_path, readers):
    rt, rec = readers(ring_path, mode="auto")
    rt.start()
    qtbot.waitUntil(lambda: bool(rec.changes), timeout=10000)
    assert rec.changes[0][0] == "disconnected"
    t0 = time.monotonic()
    assert rt.shutdown(5000)
    assert time.monotonic() - t0 < 5
    assert rt.isFinished()


def test_shutdown_before_start_and_twice_is_harmless(qtbot, ring_path, readers):
    rt, rec = readers(ring_path)
    assert rt.send_command("get_status") is False
    assert rt.shutdown(1000)
    assert rt.shutdown(1000)


def test_a_flood_is_coalesced_to_at_most_about_60_emissions_a_second(qtbot, ring_path, readers):
    total, chunk = 200_000, 2000
    slots = 1 << 16
    w = PyWriter.create(ring_path, slot_count=slots)
    rt, rec = readers(ring_path)
    done = threading.Event()
    stop_beat = threading.Event()
    threats = ThreatGenerator(7).batch(chunk)

    def writer():
        published = 0
        while published < total:
            # never lap the reader (a lapped event would be missed, not delivered)
            while published - (rec.count + rt.dropped_for_display) > slots // 2:
                w.heartbeat()
                time.sleep(0.001)
            published += w.publish(threats)
            w.heartbeat()
        done.set()
        while not stop_beat.wait(0.1):
            w.heartbeat()

    try:
        _start_on_shm(qtbot, rt, rec)
        t = threading.Thread(target=writer, daemon=True)
        t.start()
        qtbot.waitUntil(lambda: done.is_set() and rec.count + rt.dropped_for_display >= total, timeout=60000)
        qtbot.waitUntil(lambda: bool(rec.counters) and rec.counters[-1].delivered == total, timeout=5000)
        stop_beat.set()
        t.join(5)
        assert rec.count + rt.dropped_for_display == total
        assert rec.counters[-1].missed == 0
        first, last = rec.emissions[0][0], rec.emissions[-1][0]
        duration = max(1.0, last - first)
        # at most ~60 emissions a second however the writer goes (how many ring polls
        # fall into one emission depends on the machine's speed, so it is not asserted)
        assert len(rec.emissions) <= 80 * duration + 2, (len(rec.emissions), duration)
        seqs = [e.seq for e in rec.events]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    finally:
        stop_beat.set()
        w.close()


def test_a_flood_keeps_only_the_newest_events_for_one_emission_and_counts_the_rest(qtbot, ring_path, readers):
    """More than max_pending events waiting for one emission: only the newest are emitted; the
    rest were delivered and are counted (dropped_for_display), never lost from the counters."""
    total, budget = 20_000, 100
    w = PyWriter.create(ring_path, slot_count=1 << 15)
    try:
        threats = ThreatGenerator(4).batch(1000)
        for _ in range(total // 1000):  # all in the ring before the reader starts: one read takes thousands
            w.publish(threats)
        rt, rec = readers(ring_path, max_pending=budget)
        rt.start()
        qtbot.waitUntil(lambda: bool(rec.counters) and rec.counters[-1].delivered == total, timeout=10000)
        qtbot.waitUntil(lambda: rec.counters[-1].dropped_for_display == rt.dropped_for_display
                        and rec.count + rt.dropped_for_display == total, timeout=5000)
        sizes = [sum(len(b.events) for b in bs) for _, bs in rec.emissions]
        assert max(sizes) <= budget, sizes
        assert rt.dropped_for_display > 0
        seqs = [e.seq for e in rec.events]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        assert seqs[-budget:] == list(range(total - budget, total)), "the newest events are the ones kept"
    finally:
        w.close()


def test_at_a_low_rate_each_event_is_emitted_promptly_and_separately(qtbot, on_shm):
    w, rt, rec = on_shm(64)
    gen = ThreatGenerator(2)
    for i in range(20):
        t0 = time.monotonic()
        w.publish(gen.batch(1))
        qtbot.waitUntil(lambda: rec.count == i + 1, timeout=5000)
        assert time.monotonic() - t0 < 0.5
        qtbot.wait(50)
        w.heartbeat()
    assert len(rec.emissions) == 20
    assert [sum(len(b.events) for b in bs) for _, bs in rec.emissions] == [1] * 20
    assert [e.seq for e in rec.events] == list(range(20))


def test_writer_closing_the_ring_reports_disconnected(qtbot, on_shm):
    w, rt, rec = on_shm(64)
    w.publish(ThreatGenerator(5).batch(3))
    w.close()
    qtbot.waitUntil(lambda: any(t == "disconnected" for t, _ in rec.changes), timeout=5000)
    assert rec.count == 3  # what the writer left was delivered before the change
    transport, reason = next(c for c in rec.changes if c[0] == "disconnected")
    assert reason


def test_failed_when_the_named_ring_is_not_there(qtbot, ring_path, readers):
    rt, rec = readers(ring_path, mode="shm")
    with qtbot.waitSignal(rt.failed, timeout=5000) as blocker:
        rt.start()
    assert blocker.args[0]
    assert rt.wait(5000)
    assert rt.isFinished()
    assert not rec.emissions


def test_counters_and_latency_snapshots(qtbot, on_shm):
    n = 300
    w, rt, rec = on_shm(1024)
    w.publish(ThreatGenerator(6).batch(n))
    qtbot.waitUntil(lambda: bool(rec.counters) and rec.counters[-1].delivered == n, timeout=5000)
    c = rec.counters[-1]
    assert (c.missed, c.corrupt, c.bad_frames, c.dropped_for_display, c.transport) == (0, 0, 0, 0, "shm")
    qtbot.waitUntil(lambda: len(rec.latency) >= 2 and rec.latency[-1].delivery_latency.count == n, timeout=5000)
    snap = rec.latency[-1]
    assert snap.transport == "shm"
    assert snap.transport_latency.count == n
    # each event reaches the GUI after it reached the reader: delivery is never the shorter
    assert snap.delivery_latency.percentile(50) >= snap.transport_latency.percentile(50) > 0
    assert rec.latency[-2].delivery_latency is not snap.delivery_latency  # copies, not the live object
    # at most ~4 a second
    t0 = time.monotonic()
    before = len(rec.counters)
    qtbot.wait(1000)
    assert len(rec.counters) - before <= 4 * (time.monotonic() - t0) + 2


def test_cpu_pinning_from_the_environment(qtbot, ring_path, readers, on_shm, monkeypatch):
    import os

    cpu = min(os.sched_getaffinity(0))
    monkeypatch.setenv("KINDLYGUARD_READER_CPU", str(cpu))
    w, rt, rec = on_shm(64)
    assert rt.pinned_cpu == cpu
    monkeypatch.setenv("KINDLYGUARD_READER_CPU", "not-a-cpu")
    rt2, rec2 = readers(ring_path)
    _start_on_shm(qtbot, rt2, rec2)
    assert rt2.pinned_cpu is None
    assert os.sched_getaffinity(0) != {cpu} or len(os.sched_getaffinity(0)) == 1  # this thread not pinned


def test_emitting_does_not_leak_away_references_to_true(qtbot, ring_path, readers):
    """PySide6 6.12.0's emit() drops a reference to True per call and aborts the process after
    about a thousand (bool_dealloc); pyproject pins PySide6 below 6.12: this fails if a build
    with that bug is installed."""
    import gc
    import sys

    rt, rec = readers(ring_path)
    gc.collect()
    before = sys.getrefcount(True)
    for _ in range(5000):
        rt.failed.emit("x")
    gc.collect()
    assert abs(sys.getrefcount(True) - before) < 500
    assert len(rec.failed) == 5000
