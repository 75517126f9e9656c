"""Shared-memory ring benchmark: a C writer in its own process, the app's
reader (kindlyguard_monitor.ring.reader: C poll, Python objects) in a reader thread, and in
the same run the floor: the bare C reader with no Python per event.

Every scenario starts a reader at the newest event, asks the writer process
to publish, and waits until every event is accounted for (delivered, missed
or corrupt). Latencies are publish -> seen by the C reader ("transport") and
publish -> Python objects in the reader thread ("delivery").
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

from kindlyguard_monitor import _ring, child_process
from kindlyguard_monitor.ring.reader import open_reader, open_v1_reader
from kindlyguard_monitor.vocabulary import ENV_BENCH_DIR

PERCENTILES = (50, 90, 99, 99.9)


def default_pinning() -> tuple[int, int] | None:
    """(writer CPU, reader CPU): two different cores, so a wake-up always
    crosses cores and runs compare like with like. Unpinned, the scheduler
    sometimes wakes the reader on the writer's core (faster, but bimodal)."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    return (cpus[0], cpus[1]) if len(cpus) >= 2 else None


def _pin_this_thread(cpu: int | None) -> None:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})  # 0 = the calling thread on Linux
HUGE_SPIN_NS = 10**15  # "spin forever": a busy-polling reader


def summarize(hist) -> dict:
    """Percentiles of a Histogram, in microseconds."""
    out = {f"p{p:g}": hist.percentile(p) / 1000 for p in PERCENTILES}
    out["max"] = hist.max / 1000
    out["count"] = hist.count
    return out


@dataclass
class ReaderResult:
    """What one reader did in one scenario; latencies are summarize() dicts
    (the histograms themselves are kept in *_hist for merging rounds)."""

    delivered: int = 0
    missed: int = 0
    corrupt: int = 0
    cpu_s: float = 0.0
    wall_s: float = 0.0
    transport: dict = field(default_factory=dict)
    delivery: dict = field(default_factory=dict)
    error: str = ""
    writer_rate: float = 0.0  # what the writer process published per second
    max_stall_us: float = 0.0  # the longest time the reader did not poll (Reader.max_stall_ns)
    transport_hist: object = None
    delivery_hist: object = None

    @property
    def cpu_percent(self) -> float:
        return 100.0 * self.cpu_s / self.wall_s if self.wall_s else 0.0

    @property
    def rate(self) -> float:
        return self.delivered / self.wall_s if self.wall_s else 0.0


class WriterProcess:
    """The C writer in a separate process (kindlyguard_monitor/bench/writer_proc.py)."""

    def __init__(self, path: str, slot_count: int = 4096, slot_size: int = 512, cpu: int | None = None,
                 websocket: bool = False, ring_format: str = "v2"):
        self.path = path
        pin = ["--cpu", str(cpu)] if cpu is not None else []
        if websocket:
            pin += ["--ws-port", "0"]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kindlyguard_monitor.bench.writer_proc", path, "--slot-count", str(slot_count),
             "--slot-size", str(slot_size), "--format", ring_format, *pin],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
        )
        line = self.proc.stdout.readline().split()
        if not line or line[0] != "ready":
            raise RuntimeError(f"bench writer did not start (exit {self.proc.poll()})")
        self.generation = int(line[1])
        self.ws_url = f"ws://127.0.0.1:{line[2]}" if len(line) > 2 and line[2] != "0" else None

    def run(self, rate: float, count: int, batch_max: int = 256) -> tuple[int, float]:
        return self._command(f"run {rate} {count} {batch_max}")

    def run_ws(self, rate: float, count: int) -> tuple[int, float]:
        return self._command(f"ws {rate} {count}")

    def _command(self, line: str) -> tuple[int, float]:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        words = self.proc.stdout.readline().split()
        return int(words[1]), float(words[2])

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("exit\n")
                self.proc.stdin.flush()
            except BrokenPipeError:
                pass
            child_process.end(self.proc, 5, sig=None)


def _python_reader(path, count, spin_ns, adaptive, ready, result: ReaderResult, timeout_s, cpu, v1=False):
    """The app's reader in a thread: poll() until `count` events are accounted for.
    v1: the Shield's v1 ring, polled (its latencies run from each event's stored timestamp)."""
    _pin_this_thread(cpu)
    try:
        reader = open_v1_reader(path, start="newest") if v1 else \
            open_reader(path, start="newest", spin_ns=spin_ns, adaptive=adaptive)
    except Exception as exc:  # reported in the table, the bench goes on
        result.error = str(exc)
        ready.set()
        return
    ready.set()
    deadline = time.monotonic() + timeout_s
    cpu0, t0 = time.thread_time(), time.perf_counter()
    first = None
    while reader.delivered + reader.missed + reader.corrupt < count and time.monotonic() < deadline:
        if reader.poll(0.1) and first is None:
            first = time.perf_counter()
            cpu0 = time.thread_time()
    t1, cpu1 = time.perf_counter(), time.thread_time()
    result.delivered, result.missed, result.corrupt = reader.delivered, reader.missed, reader.corrupt
    result.max_stall_us = reader.max_stall_ns / 1000
    result.wall_s = t1 - (first or t0)
    result.cpu_s = cpu1 - cpu0
    result.transport_hist = reader.transport_latency.copy()
    result.delivery_hist = reader.delivery_latency.copy()
    result.transport = summarize(result.transport_hist)
    result.delivery = summarize(result.delivery_hist)
    reader.close()


def _floor_reader(path, count, spin, ready, result: ReaderResult, timeout_s, cpu):
    """The bare C reader in a thread (GIL released for the whole run)."""
    _pin_this_thread(cpu)
    ready.set()  # floor_read opens the ring first thing; the writer waits a moment below
    delivered, missed, corrupt, hist, cpu_ns, busy_ns, stall_ns, delivery = _ring.floor_read(
        path, count, spin=spin, timeout=timeout_s)
    result.delivered, result.missed, result.corrupt = delivered, missed, corrupt
    result.max_stall_us = stall_ns / 1000
    result.wall_s = busy_ns / 1e9
    result.cpu_s = cpu_ns / 1e9
    result.transport_hist = hist
    result.transport = summarize(hist)
    result.delivery_hist = delivery  # the event read, checked and copied: in hand, in C
    result.delivery = summarize(delivery)


def merge_results(results: list[ReaderResult]) -> ReaderResult:
    """One result for several rounds: counts and times added, histograms merged."""
    out = ReaderResult()
    for r in results:
        out.delivered += r.delivered
        out.missed += r.missed
        out.corrupt += r.corrupt
        out.cpu_s += r.cpu_s
        out.wall_s += r.wall_s
        out.error = out.error or r.error
        out.max_stall_us = max(out.max_stall_us, r.max_stall_us)
        for attr in ("transport_hist", "delivery_hist"):
            h = getattr(r, attr)
            if h is not None:
                if getattr(out, attr) is None:
                    setattr(out, attr, h.copy())
                else:
                    getattr(out, attr).merge(h)
    out.writer_rate = median_of([r.writer_rate for r in results])
    if out.transport_hist is not None:
        out.transport = summarize(out.transport_hist)
    if out.delivery_hist is not None:
        out.delivery = summarize(out.delivery_hist)
    return out


def run_scenario(writer: WriterProcess, reader: str, rate: float, count: int, *, spin_ns: int = 0,
                 adaptive: bool = False, batch_max: int = 256, cpu: int | None = None) -> ReaderResult:
    """One measurement. reader: 'python' (the app's reader), 'v1' (the app's reader
    of the Shield's v1 ring: give it a v1 WriterProcess) or 'floor-spin' / 'floor-futex'."""
    result = ReaderResult()
    ready = threading.Event()
    timeout_s = 10.0 + (count / rate if rate else count / 1e6)
    if reader in ("python", "v1"):
        target, args = _python_reader, (writer.path, count, spin_ns, adaptive, ready, result, timeout_s, cpu,
                                        reader == "v1")
    else:
        target, args = _floor_reader, (writer.path, count, reader == "floor-spin", ready, result, timeout_s, cpu)
    thread = threading.Thread(target=target, args=args, name=f"bench-{reader}", daemon=True)
    thread.start()
    ready.wait()
    time.sleep(0.05)  # let the reader reach its first wait
    published, seconds = writer.run(rate, count, batch_max)
    result.writer_rate = published / seconds if seconds else 0.0
    thread.join()
    return result


IDLE_POLL_S = 0.5  # the longest poll of kgmon tail (cli/tail.py): how often an idle reader returns to Python


def idle_cpu_floor(path: str, seconds: float, cpu: int | None = None) -> float:
    """CPU % of the bare C futex reader with a live writer and no events."""
    _pin_this_thread(cpu)
    _, _, _, _, cpu_ns, *_ = _ring.floor_read(path, 1 << 62, spin=False, timeout=seconds)
    return 100.0 * cpu_ns / 1e9 / seconds


def idle_cpu(path: str, seconds: float, spin_ns: int, adaptive: bool, cpu: int | None = None,
             v1: bool = False, poll_s: float = IDLE_POLL_S) -> float:
    """CPU % of the app's reader with a live writer and no events (v1: once settled), polling
    as kgmon tail does."""
    reader = open_v1_reader(path, start="newest") if v1 else \
        open_reader(path, start="newest", spin_ns=spin_ns, adaptive=adaptive)
    out = {}

    def loop():
        _pin_this_thread(cpu)
        settle = time.monotonic() + (V1_ACTIVE_S + 0.5 if v1 else 0)
        while time.monotonic() < settle:  # v1: past the fast polling that follows attaching
            reader.poll(poll_s)
        end = time.monotonic() + seconds
        c0, t0 = time.thread_time(), time.perf_counter()
        while time.monotonic() < end:
            reader.poll(min(poll_s, max(0.0, end - time.monotonic())))
        out["pct"] = 100.0 * (time.thread_time() - c0) / (time.perf_counter() - t0)

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    t.join()
    reader.close()
    return out["pct"]


def bisect_zero_loss(holds, ladder: list[float], precision: float = 0.1) -> tuple[float, float | None, list]:
    """The highest rate that holds (nothing missed), to `precision`: climb `ladder` to the first
    rate that fails, then bisect between the last that held and it until they are within
    precision of each other. holds(rate) -> (ok, result). Returns (rate that held, 0 if none;
    its result; every try as (rate, ok, result))."""
    tried: list = []
    lo, lo_res, hi = 0.0, None, None
    for rate in ladder:
        ok, res = holds(rate)
        tried.append((rate, ok, res))
        if not ok:
            hi = rate
            break
        lo, lo_res = rate, res
    if hi is None:
        return lo, lo_res, tried  # the ladder's top held: the limit is above what we tried
    floor = lo or hi / 8  # the first rung failed: look below it
    while hi > floor * (1 + precision):
        mid = round((floor + hi) / 2, -2 if hi >= 10_000 else 0)
        if mid <= floor or mid >= hi:
            break
        ok, res = holds(mid)
        tried.append((mid, ok, res))
        if ok:
            floor = lo = mid
            lo_res = res
        else:
            hi = mid
    return lo, lo_res, tried


def zero_loss_search(writer: WriterProcess, ladder: list[float], seconds: float, reader: str = "python",
                     **kw) -> tuple[float, ReaderResult | None, list[dict]]:
    """bisect_zero_loss with real runs of `seconds` each: the rate, that run's result, every try."""

    def holds(rate):
        n = int(rate * seconds)
        res = run_scenario(writer, reader, rate, n, **kw)
        return res.missed == 0 and res.corrupt == 0 and res.delivered == n, res

    best, best_res, tried = bisect_zero_loss(holds, ladder)
    return best, best_res, [{"rate": rate, "held": ok, "delivered": r.delivered, "missed": r.missed,
                             "reader_rate": round(r.rate), "cpu_percent": round(r.cpu_percent, 1),
                             "max_stall_us": round(r.max_stall_us, 1)} for rate, ok, r in tried]


REALISTIC_RATES = (1, 10, 100, 1000)


def rates_beside_floor(writer: WriterProcess, short: bool, progress, cpu: int | None = None,
                       rates=REALISTIC_RATES) -> dict:
    """The app's reader (adaptive, the default) beside the bare C futex reader at 1, 10, 100 and
    1,000 events/s, one event at a time, interleaved rounds in the same run, histograms merged."""
    from kindlyguard_monitor.ring.reader import DEFAULT_SPIN_NS

    seconds = {1: 3, 10: 1, 100: 0.5, 1000: 0.25} if short else {1: 8, 10: 4, 100: 2, 1000: 1}
    rounds = 1 if short else 2
    readers = (("floor C, futex", dict(reader="floor-futex")),
               ("app reader, adaptive (default)", dict(reader="python", spin_ns=DEFAULT_SPIN_NS, adaptive=True)))
    out: dict = {}
    for rate in rates:
        got: dict = {}
        for round_no in range(rounds):
            for name, kw in readers:
                progress(f"{rate} events/s for {seconds[rate]} s, round {round_no + 1}/{rounds}: {name}")
                got.setdefault(name, []).append(
                    run_scenario(writer, rate=rate, count=max(1, int(rate * seconds[rate])), batch_max=1, cpu=cpu,
                                 **kw))
        out[str(rate)] = {name: merge_results(results) for name, results in got.items()}
    return out


def ring_dir() -> str:
    """A private 0700 directory for the bench's ring (in /dev/shm where it exists;
    in $KINDLYGUARD_BENCH_DIR when set: the tests keep it in their own folder)."""
    base = os.environ.get(ENV_BENCH_DIR) or ("/dev/shm" if os.path.isdir("/dev/shm") else None)
    return tempfile.mkdtemp(prefix="kgmon-bench-", dir=base)


def median_of(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


LOW_RATES = (1, 10, 100)
V1_ACTIVE_S = 2.0  # native/kg_v1.h KG_V1_ACTIVE_NS: a v1 reader polls fast this long after an event


def low_rates(v2_writer: WriterProcess, v1_writer: WriterProcess, short: bool, progress,
              cpu: int | None = None) -> dict:
    """The app's v2 reader (adaptive, futex) and its v1 reader (polled) at 1, 10
    and 100 events/s, one event at a time, in the same run: delivery latency
    and the reader thread's CPU; then both idle."""
    from kindlyguard_monitor.ring.reader import DEFAULT_SPIN_NS

    seconds = {1: 3, 10: 2, 100: 1} if short else {1: 20, 10: 10, 100: 5}
    out: dict = {}
    for rate in LOW_RATES:
        count = rate * seconds[rate]
        for name, writer, kw in (("v2 (futex wake-up)", v2_writer, dict(reader="python", spin_ns=DEFAULT_SPIN_NS,
                                                                          adaptive=True, batch_max=1)),
                                 ("v1 (polled)", v1_writer, dict(reader="v1"))):
            progress(f"{rate} events/s for {seconds[rate]} s: {name}")
            out.setdefault(str(rate), {})[name] = run_scenario(writer, rate=rate, count=count, cpu=cpu, **kw)
    idle_s = 1.0 if short else 5.0
    progress("idle: v2 and v1 readers, live writers, no events")
    idle = {"v2 (futex wake-up)": idle_cpu(v2_writer.path, idle_s, DEFAULT_SPIN_NS, True, cpu),
            "v1 (polled)": idle_cpu(v1_writer.path, idle_s, 0, True, cpu, v1=True)}
    return {"by_rate": out, "idle_cpu_percent": idle}
