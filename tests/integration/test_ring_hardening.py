"""Issue 11, the shared-memory side: a ring that is truncated, confused or
lied to never kills, spins or loses an event uncounted.

- a ring truncated (to 0 or 4096 bytes) while mapped: `kgmon tail` says "the
  ring was truncated" and carries on, the writer (`kgmon demo`) stops with a
  sentence, nobody dies of SIGBUS, and Python's faulthandler still reports a
  real crash elsewhere (native/kg_fault.c chains to it);
- a header whose state is out of range, and a write_seq that moves backwards,
  cost no CPU while waiting, and every event is delivered or counted;
- a heartbeat in the future is no proof of life; a writer stopped (SIGSTOP)
  past the 3 s limit and resumed is attached again, and what it published
  meanwhile is delivered or counted.

Processes are real (`kgmon demo`, `kgmon tail`, the pure-Python writer in a
test or a child); the truncation cases that would kill a process run in
children, never in the test process itself.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from kindlyguard_monitor import _ring
from kindlyguard_monitor.demo.threats import ThreatGenerator
from kindlyguard_monitor.ring.errors import RingError, Status
from kindlyguard_monitor.ring.follow import RingFollower, WriterGone
from kindlyguard_monitor.ring.pyring import OFF_HEARTBEAT_MONO, OFF_STATE, OFF_WRITE_SEQ, PyWriter, read_header
from kindlyguard_monitor.ring.reader import open_reader
from conftest import REPO, OutputWatcher, start_kgmon, start_python, wait_for, wait_for_file
from test_failover import wait_for_port
from test_ring_processes import summary, tail_args, threats, transports

SIGBUS_EXIT = {-signal.SIGBUS, 128 + signal.SIGBUS}
NOW_US = 1_700_000_000_000_000


def events(n: int, seed: int = 1):
    return ThreatGenerator(seed).batch(n, NOW_US)


class Heartbeat:
    """Keeps a PyWriter's heartbeat fresh from a thread until stopped."""

    def __init__(self, writer: PyWriter):
        self.writer = writer
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            with self._lock:
                if not self.writer._closed:
                    self.writer.heartbeat()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def cpu_of(fn) -> tuple[object, float]:
    """fn()'s result and the CPU time this thread spent in it."""
    t0 = time.thread_time()
    out = fn()
    return out, time.thread_time() - t0


# ---------------------------------------------------------------- 1. SIGBUS


# A writer process that publishes, truncates its own file when told, and then
# waits to be killed (it never touches the mapping again). The ring stays
# "alive" (heartbeat written with os.pwrite, not through the mapping).
TRUNCATING_WRITER = textwrap.dedent("""
    import os, select, struct, sys, time
    from kindlyguard_monitor.demo.threats import ThreatGenerator
    from kindlyguard_monitor.ring.pyring import OFF_HEARTBEAT_MONO, OFF_WRITE_SEQ, PyWriter
    path, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    w = PyWriter.create(path, slot_count=64)
    w.publish(ThreatGenerator(1).batch(count, 1_700_000_000_000_000))
    print("published", flush=True)
    fd = os.open(path, os.O_RDWR)
    while not select.select([sys.stdin], [], [], 0.05)[0]:
        w.heartbeat()  # through the mapping, for the last time before the truncation
    sys.stdin.readline()
    os.ftruncate(fd, size)
    if size >= 4096:  # the header is still there: make the reader look at the (gone) slots
        os.pwrite(fd, struct.pack("<Q", count + 5), OFF_WRITE_SEQ)
    print("truncated", flush=True)
    while True:
        if size >= 4096:
            os.pwrite(fd, struct.pack("<Q", time.monotonic_ns()), OFF_HEARTBEAT_MONO)
        time.sleep(0.05)
""")


@pytest.mark.parametrize("size", [0, 4096])
def test_tail_reports_a_ring_truncated_under_it_and_keeps_running(ring_path, size):
    writer = start_python(TRUNCATING_WRITER, ring_path, 20, size)
    assert writer.stdout.readline().strip() == "published"
    tail = start_kgmon(*tail_args(ring_path, "--spin-us", 0))
    tw = OutputWatcher(tail)
    tw.wait_json(lambda objs: len(threats(objs)) == 20, 60, "the 20 events")
    writer.stdin.write("go\n")
    writer.stdin.flush()
    assert writer.stdout.readline().strip() == "truncated"
    gone = tw.wait_json(lambda objs: [t for t in transports(objs) if "truncated" in t["reason"]], 30,
                        "the tail to say the ring was truncated")
    assert "the ring was truncated" in gone[0]["reason"]
    assert gone[0]["transport"] == "disconnected"
    assert tail.poll() is None, f"the tail died: {tail.returncode} {tw.stderr!r}"
    tail.send_signal(signal.SIGTERM)
    assert tw.wait_exit(30) == 0, tw.stderr
    s = summary(tw.objects())
    # the 5 events the header promised after truncation were never readable: counted as missed
    assert (s["delivered"], s["missed"], s["corrupt"]) == (20, 5 if size else 0, 0)
    assert "Bus error" not in tw.stderr and "Traceback" not in tw.stderr


def test_auto_mode_falls_back_to_the_websocket_when_the_ring_is_truncated(ring_path):
    port = _free_port()
    demo = start_kgmon("demo", "--no-shm", "--ws-port", port, "--rate", 20, "--quiet")
    wait_for_port(port)
    writer = start_python(TRUNCATING_WRITER, ring_path, 20, 0)
    assert writer.stdout.readline().strip() == "published"
    tail = start_kgmon("tail", "--json", "--shm-path", ring_path, "--ws-url", f"ws://127.0.0.1:{port}")
    tw = OutputWatcher(tail)
    tw.wait_json(lambda objs: len([e for e in threats(objs) if e["transport"] == "shm"]) == 20, 60, "the ring's events")
    writer.stdin.write("go\n")
    writer.stdin.flush()
    assert writer.stdout.readline().strip() == "truncated"
    left = tw.wait_json(lambda objs: [t for t in transports(objs) if "the ring was truncated" in t["reason"]], 30,
                        "the tail to say the ring was truncated")
    assert left[0]["transport"] in ("websocket", "disconnected"), left  # disconnected: the link was between tries
    tw.wait_json(lambda objs: any(e["transport"] == "websocket" for e in threats(objs)), 30,
                 "threats from the WebSocket")
    tail.send_signal(signal.SIGTERM)
    assert tw.wait_exit(30) == 0, tw.stderr
    demo.send_signal(signal.SIGTERM)
    demo.wait(30)


@pytest.mark.parametrize("size", [0, 4096])
def test_demo_writer_stops_with_a_sentence_when_its_ring_is_truncated(ring_path, size):
    demo = start_kgmon("demo", "--no-ws", "--rate", 200, "--shm-path", ring_path)
    dw = OutputWatcher(demo)
    wait_for_file(ring_path)
    wait_for(lambda: read_header(ring_path)["write_seq"] >= 10, 60, "the demo to publish")
    os.truncate(ring_path, size)
    code = dw.wait_exit(30)
    assert code not in SIGBUS_EXIT, f"the demo died of SIGBUS: {dw.stderr!r}"
    assert code == 1, dw.stderr
    assert "the ring was truncated" in dw.stderr
    assert "Traceback" not in dw.stderr


# A reader in a child: opens the ring, is told to poll after the truncation,
# prints what happened. Optionally with faulthandler enabled first or after.
READER_CHILD = textwrap.dedent("""
    import faulthandler, sys
    from kindlyguard_monitor import _ring
    from kindlyguard_monitor.ring.follow import RingFollower, WriterGone
    path, order = sys.argv[1], sys.argv[2]
    if order == "faulthandler-first":
        faulthandler.enable()
    f = RingFollower(path)
    f.attach()
    n = len(f.poll(1.0))
    if order == "faulthandler-after":
        faulthandler.enable()
        f = RingFollower(path)   # a new attach puts the guard back in front of faulthandler's handler
        f.attach()
        n = len(f.poll(1.0))
    print(n, flush=True)
    sys.stdin.readline()
    try:
        while True:
            f.poll(0.2)
    except WriterGone as gone:
        print("gone:", gone.status.name, gone, flush=True)
    print("counts", f.counts.delivered, f.counts.missed, flush=True)
    if sys.argv[3] == "crash":
        # a real SIGBUS outside any guard: faulthandler must still report it
        import mmap, os, tempfile
        fd, name = tempfile.mkstemp()
        os.ftruncate(fd, 8192)
        m = mmap.mmap(fd, 8192)
        os.ftruncate(fd, 0)
        os.unlink(name)
        m[4096]
""")


@pytest.mark.parametrize("order", ["none", "faulthandler-first", "faulthandler-after"])
def test_reader_turns_the_fault_into_an_error_and_faulthandler_still_works(ring_path, order):
    with PyWriter.create(ring_path, slot_count=64) as w:
        beat = Heartbeat(w)
        w.publish(events(10))
        child = start_python(READER_CHILD, ring_path, order, "crash")
        cw = OutputWatcher(child)
        cw.wait_lines(lambda lines: lines, 60, "the child to read")
        assert cw.lines[0][1] == "10"
        with beat._lock:
            w.publish(events(3))  # published just before the truncation: the reader never saw them
            os.truncate(ring_path, 0)
            w._closed = True  # its mapping is gone: nothing may store through it (closing would)
        beat.stop()
        child.stdin.write("go\n")
        child.stdin.flush()
        code = cw.wait_exit(60)
    out = [line for _, line in cw.lines]
    assert len(out) == 3, (out, code, cw.stderr)
    assert out[1].startswith("gone: TRUNCATED the ring was truncated"), (out, cw.stderr)
    # the 3 events published just before were never seen, and the header that counted them is gone
    assert out[2] == "counts 10 0", out
    # the real crash afterwards: still a SIGBUS, and faulthandler (where enabled) says so
    assert code in SIGBUS_EXIT, (code, cw.stderr)
    if order != "none":
        assert "Fatal Python error: Bus error" in cw.stderr, cw.stderr


# ---------------------------------------------------------------- 2. busy loops


def test_a_state_out_of_range_costs_no_cpu_and_is_reported(ring_path):
    with PyWriter.create(ring_path, slot_count=64) as w:
        beat = Heartbeat(w)
        w.publish(events(4))
        r = open_reader(ring_path, spin_ns=0)
        assert len(r.poll(0)) == 4
        w.set_header_field(OFF_STATE, "I", 7)
        got, cpu = cpu_of(lambda: r.poll(0.5))
        assert got == []
        assert cpu < 0.05, f"poll(0.5) on a confused header burned {cpu:.2f} s of CPU"
        assert r.health() == Status.BAD_HEADER
        r.close()
        w.set_header_field(OFF_STATE, "I", 1)
        f = RingFollower(str(ring_path))
        f.attach()
        f.poll(0)
        w.set_header_field(OFF_STATE, "I", 7)
        with pytest.raises(WriterGone) as gone:
            wait_for(lambda: f.poll(0.05) and False, 10, "the follower to give up")
        assert gone.value.status == Status.BAD_HEADER
        assert "state 7" in str(gone.value)
        w.set_header_field(OFF_STATE, "I", 1)
        beat.stop()


def test_write_seq_going_backwards_is_a_new_epoch_delivered_or_counted(ring_path):
    with PyWriter.create(ring_path, slot_count=64) as w:
        beat = Heartbeat(w)
        w.publish(events(40))
        r = open_reader(ring_path, spin_ns=0)
        assert [e.seq for e in r.poll(0)] == list(range(40))
        # the writer "resets": its counter goes back to 10 and it publishes 5 new events there
        with beat._lock:
            w._next = 10
            w.set_header_field(OFF_WRITE_SEQ, "Q", 10)
            w.publish(events(5, seed=2))
        got = r.poll(0.5)
        assert [e.seq for e in got] == list(range(10, 15)), "the reset's events, from where the reset began"
        want = [(t.source, t.details[:50]) for t in events(5, seed=2)]
        assert [(e.source, e.details[:50]) for e in got] == want
        # nothing more: a wait costs no CPU and does not return at once
        polls = 0

        def idle():
            nonlocal polls
            deadline = time.monotonic() + 0.5
            while time.monotonic() < deadline:
                assert r.poll(0.1) == []
                polls += 1

        _, cpu = cpu_of(idle)
        assert polls <= 10, f"poll(0.1) returned {polls} times in 0.5 s"
        assert cpu < 0.05, f"waiting after a reset burned {cpu:.2f} s of CPU"
        assert (r.delivered, r.missed, r.corrupt) == (45, 0, 0)
        w.publish(events(3, seed=3))
        assert [e.seq for e in r.poll(0.5)] == [15, 16, 17]
        r.close()
        beat.stop()


def test_a_reset_past_a_whole_ring_counts_what_it_no_longer_holds(ring_path):
    with PyWriter.create(ring_path, slot_count=16) as w:
        beat = Heartbeat(w)
        w.publish(events(100))
        r = open_reader(ring_path, start="newest", spin_ns=0)
        with beat._lock:
            w._next = 0
            w.set_header_field(OFF_WRITE_SEQ, "Q", 0)
            w.publish(events(40, seed=4))  # more than the ring holds: 0..23 are gone
        got = r.poll(0.5)
        assert [e.seq for e in got] == list(range(24, 40))
        assert (r.delivered, r.missed) == (16, 24)
        r.close()
        beat.stop()


# ---------------------------------------------------------------- 3. liveness


def test_a_restart_seen_half_way_attaches_the_new_writers_ring(ring_path, monkeypatch):
    # attach() opened the old ring and found it closed; by the time it read the file's header (to
    # count the events of a writer that came and went unseen), the path held the new writer's
    # running ring. That ring must not be taken for one already gone: the reader waited for a
    # writer until the next restart (tests/integration/test_chaos_ring.py, about 1 run in 6).
    from kindlyguard_monitor.ring import follow
    from kindlyguard_monitor.ring.writer import RingWriter

    threats_of = ThreatGenerator(5)
    old = RingWriter(str(ring_path), slot_count=64)
    f = RingFollower(str(ring_path))
    f.attach()
    old.publish(threats_of.batch(5))
    got = 0
    while got < 5:
        got += len(f.poll(1.0))
    old.close()
    with pytest.raises(WriterGone):
        for _ in range(50):
            f.poll(0.1)
    new = RingWriter(str(ring_path), slot_count=64)
    try:
        new.publish(threats_of.batch(3))
        real_open = follow.open_any

        def the_old_ring_closed(*args, **kwargs):  # what open_any saw a moment before the rename
            raise RingError(Status.CLOSED, str(ring_path), "the writer closed the ring")

        monkeypatch.setattr(follow, "open_any", the_old_ring_closed)
        with pytest.raises(RingError):
            f.attach()
        monkeypatch.setattr(follow, "open_any", real_open)
        reader = f.attach()
        assert reader.generation == new.generation
        events = f.poll(1.0)
        assert [e.seq for e in events] == [0, 1, 2]
        assert (f.counts.delivered, f.counts.missed, f.counts.corrupt) == (8, 0, 0)
    finally:
        f.close()
        new.close()


def test_a_heartbeat_in_the_future_does_not_keep_a_dead_writer_alive(ring_path):
    with PyWriter.create(ring_path, slot_count=64) as w:
        w.publish(events(3))
        w.set_header_field(OFF_HEARTBEAT_MONO, "Q", _ring.mono_ns() + 3600 * 10**9)
        f = RingFollower(str(ring_path))
        f.attach()
        assert len(f.poll(0)) == 3
        # nobody updates the heartbeat: within 3 s (plus a generous margin) the writer is gone
        with pytest.raises(WriterGone) as gone:
            wait_for(lambda: f.poll(0.1) and False, 15, "the follower to give up")
        assert gone.value.status == Status.STALE
        # and it is not attached again while the heartbeat stays frozen
        with pytest.raises(RingError):
            f.attach()
        assert f.reader is None
        assert 0 <= open_reader(ring_path).heartbeat_age_ns() < 3_600 * 10**9


def test_auto_mode_leaves_a_ring_whose_heartbeat_is_in_the_future_for_the_websocket(ring_path, tmp_path):
    port = _free_port()
    demo = start_kgmon("demo", "--no-shm", "--ws-port", port, "--rate", 20, "--quiet")
    wait_for_port(port)
    with PyWriter.create(ring_path, slot_count=64) as w:
        w.publish(events(3))
        w.set_header_field(OFF_HEARTBEAT_MONO, "Q", _ring.mono_ns() + 3600 * 10**9)
        tail = start_kgmon("tail", "--json", "--shm-path", ring_path, "--ws-url", f"ws://127.0.0.1:{port}")
        tw = OutputWatcher(tail)
        tw.wait_json(lambda objs: any(t["transport"] == "websocket" for t in transports(objs)), 30,
                     "auto mode to switch to the WebSocket")
        tw.wait_json(lambda objs: any(e["transport"] == "websocket" for e in threats(objs)), 30,
                     "threats from the WebSocket")
        assert transports(tw.objects())[0]["transport"] == "shm"
        tail.send_signal(signal.SIGTERM)
        assert tw.wait_exit(30) == 0
    demo.send_signal(signal.SIGTERM)
    demo.wait(30)


def _free_port() -> int:
    from conftest import free_port

    return free_port()


def test_a_writer_stopped_for_5_s_is_attached_again_and_nothing_is_lost(ring_path):
    demo = start_kgmon("demo", "--no-ws", "--rate", 40, "--seed", 7, "--shm-path", ring_path)
    dw = OutputWatcher(demo)
    wait_for_file(ring_path)
    tail = start_kgmon(*tail_args(ring_path))
    tw = OutputWatcher(tail)
    tw.wait_json(lambda objs: len(threats(objs)) >= 20, 60, "20 events before the stop")
    demo.send_signal(signal.SIGSTOP)
    stopped = time.monotonic()
    try:
        tw.wait_json(lambda objs: any(t["transport"] == "disconnected" for t in transports(objs)), 30,
                     "the tail to give up on the stopped writer")
        at_stop = read_header(ring_path)["write_seq"]
        # the scenario itself: the writer stays stopped for 5 s in all
        time.sleep(max(0.0, stopped + 5 - time.monotonic()))
    finally:
        demo.send_signal(signal.SIGCONT)
    back = tw.wait_json(lambda objs: [t for t in transports(objs)[1:] if t["transport"] == "shm"], 30,
                        "the tail to attach again to the resumed writer")
    assert "generation" in back[0]["reason"]
    tw.wait_json(lambda objs: any(e["seq"] >= at_stop + 100 for e in threats(objs)), 60,
                 "events published after the resume")
    demo.send_signal(signal.SIGTERM)
    assert dw.wait_exit(30) == 0
    published = int(dw.stderr.split("published ")[1].split()[0])
    tw.wait_json(lambda objs: any("closed" in t["reason"] for t in transports(objs)), 30, "the ring to close")
    tail.send_signal(signal.SIGTERM)
    assert tw.wait_exit(30) == 0
    objs = tw.objects()
    seqs = [e["seq"] for e in threats(objs)]
    assert len(seqs) == len(set(seqs)), "an event was delivered twice"
    s = summary(objs)
    assert s["delivered"] + s["missed"] + s["corrupt"] == published
    assert s["missed"] == 0  # the demo's 4096 slots hold everything it published while stopped
    assert set(seqs) == set(range(published))
