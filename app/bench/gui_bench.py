"""The desktop app under load: the assembled app (app.gui.app.MonitorApp) fed
by the bench's C writer process, measuring

- publish → row in the model (the app's own "to screen" histogram),
- event-loop lateness: a 10 ms QTimer's lateness while threats arrive,
- the rows kept (bounded) and the process's memory,

at a steady 1,000 events/s and under a 100,000 events/s flood. Runs on the
offscreen platform unless a display is there.
"""

from __future__ import annotations

import os
import threading
import time

from app.bench import ring_bench as rb

TICK_MS = 10


def measure_gui(short: bool, progress) -> dict:
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    import psutil
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from app import _ring
    from app.gui.app import MonitorApp

    ring_dir = rb.ring_dir()
    path = os.path.join(ring_dir, "gui.shm")
    writer = rb.WriterProcess(path)
    qapp = QApplication.instance() or QApplication([])
    started = time.perf_counter()
    monitor = MonitorApp(qapp, path, "ws://127.0.0.1:1", demo=False)
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
        while not monitor.window.isVisible() and time.perf_counter() - started < 10:
            qapp.processEvents()
        # In-process, modules already imported: the window's own build-and-show time,
        # not a cold start of the app (not measured yet).
        out["build_to_window_s"] = round(time.perf_counter() - started, 3)
        phases = [("steady_1000", 1000, 1000 if short else 5000),
                  ("flood_100000", 100_000, 50_000 if short else 500_000)]
        for name, rate, count in phases:
            progress(f"desktop app: {name}")
            monitor.screen_latency.reset()
            lateness.reset()
            last[0] = time.monotonic_ns()
            timer.start(TICK_MS)
            done = threading.Event()
            threading.Thread(target=lambda: (writer.run(rate, count, 256), done.set()), daemon=True).start()
            settle = None
            while settle is None or time.monotonic() < settle:
                qapp.processEvents()
                time.sleep(0.0005)
                if done.is_set() and settle is None:
                    settle = time.monotonic() + 1.0  # let the last batches reach the model
            timer.stop()
            h = monitor.screen_latency
            out[name] = {
                "publish_to_row_ms": {f"p{p:g}": round(h.percentile(p) / 1e6, 2) for p in (50, 90, 99)},
                "rows_measured": h.count,
                "event_loop_lateness_ms": {"p50": round(lateness.percentile(50) / 1e6, 2),
                                           "p99": round(lateness.percentile(99) / 1e6, 2),
                                           "max": round(lateness.max / 1e6, 2)},
                "rows_in_table": monitor.window.model.rowCount(),
            }
        out["rss_mib"] = round(psutil.Process().memory_info().rss / 2**20)
    finally:
        monitor.shutdown()
        writer.close()
    return out


def render_gui(out: dict) -> str:
    lines = [f"desktop app (offscreen unless a display is set); window built and shown in "
             f"{out['build_to_window_s'] * 1000:.0f} ms (in-process, not a cold start); RSS {out['rss_mib']} MiB"]
    for name in ("steady_1000", "flood_100000"):
        r = out[name]
        p, lat = r["publish_to_row_ms"], r["event_loop_lateness_ms"]
        lines.append(f"  {name:<14} publish → row p50 {p['p50']:.1f} ms, p99 {p['p99']:.1f} ms; "
                     f"event-loop lateness p50 {lat['p50']:.1f} ms, p99 {lat['p99']:.1f} ms, "
                     f"max {lat['max']:.1f} ms; {r['rows_in_table']:,} rows kept")
    return "\n".join(lines)
