"""The desktop app under load: the assembled app (kindlyguard_monitor.gui.app.MonitorApp), with
its threat history (a new one in a temporary folder, as every user has one), fed by the bench's
C writer process, measuring

- publish → row in the model (the app's own "to screen" histogram),
- event-loop lateness: a 10 ms QTimer's lateness while threats arrive,
- the GUI thread's CPU time per second of the phase,
- the rows kept (bounded) and the process's memory,
- what the reader missed, and what the history stored (and how much of it the history's flood
  writer process wrote),

at a steady 1,000 events/s and under a 100,000 events/s flood; and the app as
a separate process (`kgmon`, as a user starts it): process start to window
shown (median of 5 starts), and the whole app's CPU while idle on an attached
ring. Runs on the offscreen platform unless a display is there. The window shows
its Overview tab throughout (its charts redraw as threats arrive), and the load
average is reported beside the figures: the GUI thread shares the machine with
the writer process and the reader thread.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

from kindlyguard_monitor.bench import ring_bench as rb

TICK_MS = 10


def measure_gui(short: bool, progress) -> dict:
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    import psutil
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from kindlyguard_monitor import _ring
    from kindlyguard_monitor.gui.app import MonitorApp
    from kindlyguard_monitor.gui.startup import prepare_for_floods
    from kindlyguard_monitor.history.store import HistoryStore

    ring_dir = rb.ring_dir()
    path = os.path.join(ring_dir, "gui.shm")
    writer = rb.WriterProcess(path)
    history_dir = tempfile.mkdtemp(prefix="kgmon-bench-gui-")
    qapp = QApplication.instance() or QApplication([])
    started = time.perf_counter()
    monitor = MonitorApp(qapp, path, "ws://127.0.0.1:1", demo=False,
                         history=HistoryStore(os.path.join(history_dir, "history.sqlite3")))
    counters: dict = {}
    monitor.reader.counters.connect(lambda c: counters.__setitem__("last", c))
    monitor.reader.transport_changed.connect(lambda transport, _why: counters.__setitem__("transport", transport))
    lateness = _ring.Histogram()
    last = [time.monotonic_ns()]

    def tick() -> None:
        now = time.monotonic_ns()
        lateness.record(max(0, now - last[0] - TICK_MS * 1_000_000))
        last[0] = now

    timer = QTimer()
    timer.timeout.connect(tick)
    out: dict = {}
    try:
        monitor.start()
        prepare_for_floods()  # as kindlyguard_monitor.gui.launch.run() does
        while not monitor.window.isVisible() and time.perf_counter() - started < 10:
            qapp.processEvents()
        # In-process, modules already imported: the window's own build-and-show time,
        # not a cold start of the app (not measured yet).
        out["build_to_window_s"] = round(time.perf_counter() - started, 3)
        attached = time.perf_counter()  # the reader starts once the history is open: wait until it reads the ring
        while counters.get("transport") != "shm" and time.perf_counter() - attached < 10:
            qapp.processEvents()
            time.sleep(0.005)
        monitor.window.tabs.setCurrentWidget(monitor.window.overview_tab)  # the overview draws throughout
        phases = [("steady_1000", 1000, 1000 if short else 5000),
                  ("flood_100000", 100_000, 50_000 if short else 500_000)]
        published = 0
        for name, rate, count in phases:
            progress(f"desktop app: {name}")
            monitor.screen_latency.reset()
            lateness.reset()
            last[0] = time.monotonic_ns()
            before = counters.get("last")
            published += count
            out[name] = _gui_phase(qapp, monitor, writer, timer, lateness, rate, count)
            out[name].update(_reader_and_history(qapp, monitor, counters, before, published))
        out["rss_mib"] = round(psutil.Process().memory_info().rss / 2**20)
    finally:
        monitor.shutdown()
        writer.close()
        shutil.rmtree(ring_dir, ignore_errors=True)  # the ring and its lock: nothing left in /dev/shm
        shutil.rmtree(history_dir, ignore_errors=True)
    return out


def _gui_phase(qapp, monitor, writer: rb.WriterProcess, timer, lateness, rate: int, count: int) -> dict:
    """One phase: the writer publishes `count` events at `rate` while the GUI thread runs its
    event loop (and the lateness timer ticks), then a second for the last batches to reach the
    model; the phase's figures."""
    timer.start(TICK_MS)
    done = threading.Event()
    threading.Thread(target=lambda: (writer.run(rate, count, 256), done.set()), daemon=True).start()
    settle = None
    cpu0, wall0 = time.thread_time(), time.monotonic()
    while settle is None or time.monotonic() < settle:
        qapp.processEvents()
        time.sleep(0.0005)
        if done.is_set() and settle is None:
            settle = time.monotonic() + 1.0  # let the last batches reach the model
    timer.stop()
    gui_cpu = 100 * (time.thread_time() - cpu0) / (time.monotonic() - wall0)
    h = monitor.screen_latency
    return {
        "publish_to_row_ms": {f"p{p:g}": round(h.percentile(p) / 1e6, 2) for p in (50, 90, 99)},
        "rows_measured": h.count,
        "event_loop_lateness_ms": {"p50": round(lateness.percentile(50) / 1e6, 2),
                                   "p99": round(lateness.percentile(99) / 1e6, 2),
                                   "max": round(lateness.max / 1e6, 2)},
        "rows_in_table": monitor.window.model.rowCount(),
        "gui_thread_cpu_percent": round(gui_cpu, 1),
        "load_average": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }


def _reader_and_history(qapp, monitor, counters: dict, before, published: int) -> dict:
    """After a phase (outside its timing): what the reader missed in it, once its counters account
    for every event published so far, and what the history stored, once it has written everything."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        c = counters.get("last")
        if c is not None and c.delivered + c.missed + c.corrupt >= published:
            break
        qapp.processEvents()
        time.sleep(0.01)
    c = counters.get("last")
    history = monitor.history
    history.flush(60)
    base = (before.delivered, before.missed + before.corrupt) if before is not None else (0, 0)
    return {"reader_delivered": c.delivered - base[0] if c else None,
            "reader_missed": c.missed + c.corrupt - base[1] if c else None,
            "history_stored": history.stored, "history_flood_transactions": history.flood_transactions}


WINDOW_SHOWN = re.compile(r"window shown (\d+) ms after the process started")


def measure_app_process(short: bool, progress) -> dict:
    """Start `kgmon` (python -m kindlyguard_monitor) several times against an idle ring: the
    milliseconds from process start to window shown (the app logs them; after one untimed
    start that compiles the modules), and on the last start the whole process's CPU while idle."""
    runs = 3 if short else 5
    idle_s = 5.0 if short else 20.0
    private = tempfile.mkdtemp(prefix="kgmon-bench-app-")
    ring_folder = rb.ring_dir()
    path = os.path.join(ring_folder, "app.shm")
    writer = rb.WriterProcess(path)
    env = _app_env(private)
    starts: list[float] = []
    idle_cpu, idle_threads = None, []
    try:
        for i in range(-1, runs):
            progress(f"desktop app: start {i + 1} of {runs}" if i >= 0 else "desktop app: compiling its modules")
            proc = subprocess.Popen([sys.executable, "-m", "kindlyguard_monitor", "--shm-path", path], env=env,
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, text=True)
            try:
                shown_ms = _wait_window_shown(proc)
                if i >= 0:
                    starts.append(shown_ms)
                if i == runs - 1:
                    progress(f"desktop app: idle CPU over {idle_s:.0f} s")
                    idle_cpu, idle_threads = _idle_cpu(proc, idle_s)
            finally:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    finally:
        writer.close()
        shutil.rmtree(private, ignore_errors=True)
        shutil.rmtree(ring_folder, ignore_errors=True)
    return {"start_to_window_ms": {"median": rb.median_of(starts), "first": starts[0], "all": starts},
            "idle_cpu_percent": idle_cpu, "idle_seconds": idle_s, "idle_threads": idle_threads}


def _app_env(private: str) -> dict:
    """The started app's environment: its own folders under `private`, no WebSocket, offscreen
    unless a display is there, compiled modules."""
    from kindlyguard_monitor.vocabulary import ENV_WS_PORT

    env = dict(os.environ, TMPDIR=private, XDG_CONFIG_HOME=os.path.join(private, "config"),
               XDG_DATA_HOME=os.path.join(private, "data"))
    env[ENV_WS_PORT] = "1"  # nothing listens there: the app stays on the ring
    if not env.get("DISPLAY") and not env.get("WAYLAND_DISPLAY"):
        env["QT_QPA_PLATFORM"] = "offscreen"
    # Compiled modules, as an installed app has them (pip and PyInstaller compile them): with
    # PYTHONDONTWRITEBYTECODE set and a source checkout, every start compiled the app's modules
    # again, ~100 ms of CPU per start (docs/benchmarks.md, start-up). Made by one untimed start
    # first, in a private folder (or $PYTHONPYCACHEPREFIX when set): the checkout is not written to.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.setdefault("PYTHONPYCACHEPREFIX", os.path.join(private, "pycache"))
    return env


def _wait_window_shown(proc: subprocess.Popen) -> float:
    """The milliseconds the started app logs from process start to window shown; after it, its
    stderr is drained in a thread so that it never blocks on a full pipe."""
    for line in proc.stderr:
        found = WINDOW_SHOWN.search(line)
        if found:
            break
    else:
        raise RuntimeError(f"kgmon exited ({proc.wait()}) before showing its window")
    threading.Thread(target=proc.stderr.read, daemon=True).start()  # never block on a full pipe
    return float(found.group(1))


def _idle_cpu(proc: subprocess.Popen, idle_s: float) -> tuple[float, list[dict]]:
    """The whole process's CPU % over `idle_s` seconds once start-up work has settled, and by thread."""
    import psutil

    time.sleep(2.0)  # let start-up work settle
    ps = psutil.Process(proc.pid)
    before, t0, threads0 = ps.cpu_times(), time.monotonic(), thread_stats(proc.pid)
    time.sleep(idle_s)
    after, t1, threads1 = ps.cpu_times(), time.monotonic(), thread_stats(proc.pid)
    used = (after.user + after.system) - (before.user + before.system)
    return round(100 * used / (t1 - t0), 2), idle_by_thread(threads0, threads1, t1 - t0)


def thread_stats(pid: int) -> dict[int, tuple[str, int, int]]:
    """Linux: per thread of `pid`, (name, CPU clock ticks, context switches); {} elsewhere."""
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                stat = f.read()
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                status = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        switches = sum(int(m) for m in re.findall(r"voluntary_ctxt_switches:\s+(\d+)", status))
        out[int(tid)] = (stat[stat.index("(") + 1:stat.rindex(")")], int(fields[11]) + int(fields[12]), switches)
    return out


def idle_by_thread(before: dict, after: dict, seconds: float) -> list[dict]:
    """Each thread's CPU % and wake-ups (context switches) a second between two thread_stats()."""
    hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    rows = []
    for tid, (name, ticks, switches) in after.items():
        _, ticks0, switches0 = before.get(tid, (name, 0, 0))
        rows.append({"thread": name, "cpu_percent": round(100 * (ticks - ticks0) / hz / seconds, 2),
                     "wakeups_per_s": round((switches - switches0) / seconds, 1)})
    return sorted(rows, key=lambda r: (-r["cpu_percent"], -r["wakeups_per_s"]))


def render_gui(out: dict) -> str:
    lines = [f"desktop app (offscreen unless a display is set; Overview tab shown); window built and shown in "
             f"{out['build_to_window_s'] * 1000:.0f} ms (in-process, not a cold start); RSS {out['rss_mib']} MiB; "
             f"{os.cpu_count()} CPUs"]
    for name in ("steady_1000", "flood_100000"):
        r = out[name]
        p, lat = r["publish_to_row_ms"], r["event_loop_lateness_ms"]
        extra = ""
        if "gui_thread_cpu_percent" in r:
            extra = f"; GUI thread {r['gui_thread_cpu_percent']:.0f}% of a core; load average {r['load_average']}"
        lines.append(f"  {name:<14} publish → row p50 {p['p50']:.1f} ms, p99 {p['p99']:.1f} ms "
                     f"({r['rows_measured']:,} rows); event-loop lateness p50 {lat['p50']:.1f} ms, "
                     f"p99 {lat['p99']:.1f} ms, max {lat['max']:.1f} ms; {r['rows_in_table']:,} rows kept{extra}")
        if r.get("reader_delivered") is not None:
            lines.append(f"  {'':<14} reader: {r['reader_delivered']:,} read, {r['reader_missed']:,} missed; history: "
                         f"{r['history_stored']:,} stored in all ({r['history_flood_transactions']} transactions "
                         "by its flood writer)")
    if "app_process" in out:
        a = out["app_process"]
        s = a["start_to_window_ms"]
        lines.append(f"  kgmon process  start → window shown median {s['median']:.0f} ms (first {s['first']:.0f} ms, "
                     f"{len(s['all'])} starts); idle CPU of the whole app {a['idle_cpu_percent']:.2f}% "
                     f"over {a['idle_seconds']:.0f} s on an attached, quiet ring")
        busy = [t for t in a.get("idle_threads", []) if t["cpu_percent"] or t["wakeups_per_s"]]
        if busy:
            lines.append("  idle by thread " + "; ".join(
                f"{t['thread']} {t['cpu_percent']:.2f}% {t['wakeups_per_s']:g} wake-ups/s" for t in busy))
    return "\n".join(lines)
