"""A bounded chaos run on the ring (issue 11, "a chaos test that stays"): a
writer that publishes in bursts, laps the reader, corrupts slots, truncates
its ring (to 0 bytes or to its header), restarts and stalls (SIGSTOP past the
3 s limit), against the real reader (`kgmon tail --transport shm`).

At the end every published event is delivered or counted exactly (delivered
+ missed + corrupt == what the writers published), no event is delivered
twice, no process died, and the reader's memory stayed bounded.

The writer is a child process driven step by step over stdin (a seeded
random plan), so that each step can wait for what it needs (the reader
attached to a new ring; the reader caught up before a truncation to 0 bytes,
which erases the header that counts the events) instead of sleeping.
"""

from __future__ import annotations

import random
import signal
import textwrap

import psutil

from conftest import OutputWatcher, start_kgmon, start_python, wait_for, wait_for_file
from test_ring_processes import summary, tail_args, threats, transports

SLOTS = 64

CHAOS_WRITER = textwrap.dedent("""
    import os, select, sys
    from kindlyguard_monitor.demo.threats import ThreatGenerator
    from kindlyguard_monitor.ring.errors import RingError
    from kindlyguard_monitor.ring.writer import RingWriter
    path, seed, slots = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    threats = ThreatGenerator(seed)
    w = RingWriter(path, slot_count=slots)
    published = {}  # generation -> events published

    def new_ring():
        global w
        w.close()
        w = RingWriter(path, slot_count=slots)

    def flip(n):  # one byte of event n's text, behind the writer's back
        fd = os.open(path, os.O_RDWR)
        try:
            at = 4096 + (n % slots) * 512 + 40
            os.pwrite(fd, bytes([os.pread(fd, 1, at)[0] ^ 0xFF]), at)
        finally:
            os.close(fd)

    print("ok", w.generation, 0, flush=True)
    while True:
        ready, _, _ = select.select([sys.stdin], [], [], 0.05)
        if not ready:
            w.tick()
            continue
        cmd = sys.stdin.readline().split()
        if not cmd:
            break
        op, arg = cmd[0], int(cmd[1]) if len(cmd) > 1 else 0
        if op == "publish":
            w.publish(threats.batch(arg))
        elif op == "corrupt":  # event write_seq - 1 - arg
            flip(w.write_seq - 1 - arg)
        elif op == "truncate":
            published[w.generation] = w.write_seq
            fd = os.open(path, os.O_RDWR)
            os.ftruncate(fd, arg)
            os.close(fd)
            try:
                w.publish(threats.batch(1))
                raise SystemExit("the writer did not notice the truncation")
            except RingError as exc:
                assert "the ring was truncated" in str(exc), exc
            new_ring()
        elif op == "restart":
            published[w.generation] = w.write_seq
            new_ring()
        elif op == "end":
            published[w.generation] = w.write_seq
            w.close()
            print("total", sum(published.values()), len(published), flush=True)
            break
        print("ok", w.generation, w.write_seq, flush=True)
""")


class Chaos:
    def __init__(self, ring_path, seed: int):
        self.writer = start_python(CHAOS_WRITER, ring_path, seed, SLOTS)
        self.generation, self.write_seq = self._reply()
        wait_for_file(ring_path)
        self.tail = start_kgmon(*tail_args(ring_path, "--spin-us", 0))
        self.tw = OutputWatcher(self.tail)
        self.wait_attached()

    def _reply(self) -> tuple[int, int]:
        line = self.writer.stdout.readline().split()
        assert line and line[0] == "ok", f"the chaos writer failed: {line!r} {self.writer.stderr.read()!r}"
        return int(line[1]), int(line[2])

    def do(self, op: str, arg: int = 0) -> None:
        before = self.generation
        self.writer.stdin.write(f"{op} {arg}\n")
        self.writer.stdin.flush()
        self.generation, self.write_seq = self._reply()
        if self.generation != before:
            self.wait_attached()

    def wait_attached(self) -> None:
        tag = f"generation {self.generation:#x}"
        self.tw.wait_json(lambda objs: any(tag in t["reason"] for t in transports(objs)), 30,
                          f"the tail to attach to {tag}")

    def wait_caught_up(self) -> None:
        last = (self.generation, self.write_seq - 1)
        self.tw.wait_json(lambda objs: any((e["generation"], e["seq"]) == last for e in threats(objs)), 30,
                          "the tail to read the newest event")

    def stall(self) -> None:
        """SIGSTOP past the 3 s limit; the tail gives up, then attaches again after SIGCONT."""
        gone = len(transports(self.tw.objects()))
        self.writer.send_signal(signal.SIGSTOP)
        try:
            self.tw.wait_json(lambda objs: any(t["transport"] == "disconnected" for t in transports(objs)[gone:]),
                              30, "the tail to give up on the stopped writer")
        finally:
            self.writer.send_signal(signal.SIGCONT)
        tag = f"generation {self.generation:#x}"
        self.tw.wait_json(lambda objs: any(t["transport"] == "shm" and tag in t["reason"]
                                           for t in transports(objs)[gone:]), 30, "the tail to attach again")

    def end(self) -> int:
        self.writer.stdin.write("end\n")
        self.writer.stdin.flush()
        line = self.writer.stdout.readline().split()
        assert line and line[0] == "total", line
        return int(line[1])


def test_chaos_every_event_is_delivered_or_counted_exactly(ring_path):
    rng = random.Random(11)
    chaos = Chaos(ring_path, seed=11)
    rss_start = psutil.Process(chaos.tail.pid).memory_info().rss
    chaos.do("publish", 50)
    chaos.wait_caught_up()
    steps = ["publish"] * 8 + ["lap"] * 3 + ["corrupt"] * 4 + ["restart"] * 2 + ["truncate0", "truncate4096"]
    rng.shuffle(steps)
    steps.insert(len(steps) // 2, "stall")
    for step in steps:
        if step == "publish":
            chaos.do("publish", rng.randint(1, 120))
        elif step == "lap":
            chaos.do("publish", 3 * SLOTS)  # one batch of three rings' worth: the reader is lapped
        elif step == "corrupt":
            # the reader is held (SIGSTOP) so that it reads the slot only once it is corrupt
            chaos.tail.send_signal(signal.SIGSTOP)
            wait_for(lambda: psutil.Process(chaos.tail.pid).status() == psutil.STATUS_STOPPED, 10, "the tail to stop")
            try:
                chaos.do("publish", 8)
                chaos.do("corrupt", rng.randrange(8))
            finally:
                chaos.tail.send_signal(signal.SIGCONT)
        elif step == "restart":
            chaos.do("publish", rng.randint(1, 40))
            chaos.do("restart")
        elif step == "truncate0":
            # a truncation to 0 bytes erases the header that counts the events: read them all first
            chaos.do("publish", rng.randint(1, 40))
            chaos.wait_caught_up()
            chaos.do("truncate", 0)
        elif step == "truncate4096":
            chaos.do("publish", rng.randint(20, 60))  # not waited for: the header says what was lost
            chaos.do("truncate", 4096)
        elif step == "stall":
            chaos.do("publish", 10)
            chaos.stall()
            chaos.do("publish", 30)
    total = chaos.end()
    assert chaos.writer.wait(30) == 0, chaos.writer.stderr.read()
    chaos.tw.wait_json(lambda objs: any("closed" in t["reason"] for t in transports(objs)), 30,
                       "the tail to see the last ring closed")
    assert chaos.tail.poll() is None, "the tail died"
    rss_end = psutil.Process(chaos.tail.pid).memory_info().rss
    chaos.tail.send_signal(signal.SIGTERM)
    assert chaos.tw.wait_exit(30) == 0, chaos.tw.stderr
    objs = chaos.tw.objects()
    s = summary(objs)
    keys = [(e["generation"], e["seq"]) for e in threats(objs)]
    assert len(keys) == len(set(keys)), "an event was delivered twice"
    assert s["delivered"] == len(keys)
    assert s["delivered"] + s["missed"] + s["corrupt"] == total, (s, total)
    # every kind of loss happened (a corrupt slot may also be lapped before it is read: at least one)
    assert s["missed"] >= 3 * 2 * SLOTS and s["corrupt"] >= 1 and s["delivered"] > 0, s
    reasons = " | ".join(t["reason"] for t in transports(objs))
    assert reasons.count("the ring was truncated") == 2, reasons
    assert "Traceback" not in chaos.tw.stderr and "Bus error" not in chaos.tw.stderr
    assert rss_end - rss_start < 64 * 2**20, f"the tail grew by {(rss_end - rss_start) / 2**20:.0f} MiB"
