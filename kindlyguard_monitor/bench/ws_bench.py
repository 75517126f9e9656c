"""kgmon bench: the app's WebSocket path (the transport manager on the bench
writer's demo WebSocket server), beside ring_bench's ring readers."""

from __future__ import annotations

import os
import threading
import time

from kindlyguard_monitor.bench.ring_bench import (
    ReaderResult,
    WriterProcess,
    _pin_this_thread,
    bisect_zero_loss,
    summarize,
)
from kindlyguard_monitor.vocabulary import Transport


def run_ws_scenario(writer: WriterProcess, rate: float, count: int, cpu: int | None = None) -> ReaderResult:
    """The app's WebSocket path: the transport manager on the writer's demo
    WebSocket server; latencies from the server's mono_ns stamps."""
    from kindlyguard_monitor.transport.items import TransportUnavailable
    from kindlyguard_monitor.transport.manager import TransportManager

    result = ReaderResult()
    manager = TransportManager(os.path.join(os.path.dirname(writer.path), "no-ring.shm"), writer.ws_url,
                               mode=Transport.WEBSOCKET)
    try:
        manager.start()
    except TransportUnavailable as exc:
        result.error = str(exc)
        return result
    time.sleep(0.2)  # let the subscribe reach the server before the first event
    done = threading.Event()
    timeout_s = 10.0 + count / rate

    def loop():
        _pin_this_thread(cpu)
        deadline = time.monotonic() + timeout_s
        first = None
        cpu0, t0 = time.process_time(), time.perf_counter()
        while manager.delivered + manager.missed < count and time.monotonic() < deadline:
            if manager.poll(0.1) and first is None and manager.delivered:
                first, cpu0 = time.perf_counter(), time.process_time()
        result.wall_s = time.perf_counter() - (first or t0)
        result.cpu_s = time.process_time() - cpu0  # this process: the link's thread and this one
        done.set()

    thread = threading.Thread(target=loop, name="bench-websocket", daemon=True)
    thread.start()
    published, seconds = writer.run_ws(rate, count)
    result.writer_rate = published / seconds if seconds else 0.0
    thread.join()
    result.delivered, result.missed = manager.delivered, manager.missed + max(0, count - manager.delivered
                                                                              - manager.missed)
    result.transport_hist = manager.ws_transport_latency.copy()
    result.delivery_hist = manager.ws_delivery_latency.copy()
    result.transport = summarize(result.transport_hist)
    result.delivery = summarize(result.delivery_hist)
    manager.close()
    return result


def max_zero_loss_ws_rate(writer: WriterProcess, rates: list[float], seconds: float,
                          cpu: int | None = None) -> tuple[float, ReaderResult | None, list[dict]]:
    """The highest rate the WebSocket path carried with nothing missed (bisect_zero_loss: to 10%)."""

    def holds(rate):
        n = int(rate * seconds)
        res = run_ws_scenario(writer, rate, n, cpu)
        # sustained: everything arrived, and about as fast as it was sent (a
        # client that only catches up seconds later is not keeping up)
        return res.missed == 0 and res.delivered == n and not res.error and res.rate >= 0.9 * rate, res

    best, best_res, tried = bisect_zero_loss(holds, rates)
    return best, best_res, [{"rate": rate, "held": ok, "delivered": r.delivered, "missed": r.missed,
                             "reader_rate": round(r.rate), "cpu_percent": round(r.cpu_percent, 1)}
                            for rate, ok, r in tried]
