"""kgmon bench: the app's WebSocket path (the transport manager on the bench
writer's demo WebSocket server), beside ring_bench's ring readers, and its floor.

The floor, in the same run: the same server sending to a bare client that
only counts threats in the frames it receives (the same websockets library,
no JSON, no ThreatEvent, no queue), and the server's own encoding rate with no
client at all. The app's zero-loss rate is read as a ratio to the floor's.

A try at one rate holds when every event arrived (nothing missed: a server
backlog over its bound drops the oldest, a reader queue over its bound drops
and counts) and the reader took them about as fast as they were sent (at
least 90% of the rate: a client that only catches up seconds later is not
keeping up)."""

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

SUBSCRIBE_TIMEOUT_S = 5.0
# How the bare client counts threats without parsing: every THREAT our demo server sends has
# this key, and a quote inside a string value is escaped (\"), so it occurs once per threat.
THREAT_KEY = b'"mono_ns":'


def wait_subscribers(writer: WriterProcess, n: int, timeout: float = SUBSCRIBE_TIMEOUT_S) -> bool:
    """Wait (in the writer process) until its WebSocket server has exactly `n` subscribers."""
    now, _seconds = writer._command(f"subscribers {n} {timeout}")
    return now == n


def server_encode_rate(writer: WriterProcess, count: int) -> float:
    """Threats the server encodes per CPU second with no client (what broadcast() does before sending)."""
    done, cpu_seconds = writer._command(f"encode {count}")
    return done / cpu_seconds if cpu_seconds else 0.0


def run_ws_scenario(writer: WriterProcess, rate: float, count: int, cpu: int | None = None) -> ReaderResult:
    """The app's WebSocket path: the transport manager on the writer's demo
    WebSocket server; latencies from the server's mono_ns stamps."""
    from kindlyguard_monitor.transport.items import TransportUnavailable
    from kindlyguard_monitor.transport.manager import TransportManager

    result = ReaderResult()
    if not wait_subscribers(writer, 0):  # the previous scenario's client has gone
        result.error = "the previous WebSocket client is still subscribed"
        return result
    manager = TransportManager(os.path.join(os.path.dirname(writer.path), "no-ring.shm"), writer.ws_url,
                               mode=Transport.WEBSOCKET)
    try:
        manager.start()
    except TransportUnavailable as exc:
        result.error = str(exc)
        return result
    if not wait_subscribers(writer, 1):  # the subscribe reached the server before the first event
        manager.close()
        result.error = f"the WebSocket client did not subscribe within {SUBSCRIBE_TIMEOUT_S:g} s"
        return result
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
    result.frames = manager.link.frames  # messages received: threats per message = delivered / frames
    manager.close()
    return result


def run_ws_floor(writer: WriterProcess, rate: float, count: int, cpu: int | None = None) -> ReaderResult:
    """The floor: the same server, a bare client of the same websockets library (its own
    connection class, compression off like the app's link) that only counts the threats in
    each frame."""
    from websockets.sync.client import connect

    from kindlyguard_monitor.transport import local_auth, protocol

    result = ReaderResult()
    if not wait_subscribers(writer, 0):
        result.error = "the previous WebSocket client is still subscribed"
        return result
    try:
        with connect(writer.ws_url, open_timeout=3, proxy=None, compression=None, max_size=16 << 20,
                     additional_headers=local_auth.client_headers(writer.ws_url)) as conn:
            conn.send(protocol.command("subscribe"))
            if not wait_subscribers(writer, 1):
                result.error = f"the bare client did not subscribe within {SUBSCRIBE_TIMEOUT_S:g} s"
                return result
            _count_threats(conn, writer, rate, count, cpu, result)
    except Exception as exc:  # reported in the table, the bench goes on
        result.error = result.error or f"the bare client failed: {exc}"
    return result


def _count_threats(conn, writer: WriterProcess, rate: float, count: int, cpu: int | None,
                   result: ReaderResult) -> None:
    """Have the writer publish while a thread counts the threats in what `conn` receives."""
    counts = {"n": 0, "frames": 0}

    def loop():
        _pin_this_thread(cpu)
        deadline = time.monotonic() + 10.0 + count / rate
        n, frames, first = 0, 0, None
        cpu0, t0 = time.process_time(), time.perf_counter()
        while n < count and time.monotonic() < deadline:
            try:
                frame = conn.recv(timeout=0.1, decode=False)
            except TimeoutError:
                continue
            except Exception:  # closed: what arrived is the result
                break
            frames += 1
            got = frame.count(THREAT_KEY)
            if got and first is None:
                first, cpu0 = time.perf_counter(), time.process_time()
            n += got
        result.wall_s = time.perf_counter() - (first or t0)
        result.cpu_s = time.process_time() - cpu0  # this process: the library's reading thread and this one
        counts["n"], counts["frames"] = n, frames

    thread = threading.Thread(target=loop, name="bench-websocket-floor", daemon=True)
    thread.start()
    published, seconds = writer.run_ws(rate, count)
    result.writer_rate = published / seconds if seconds else 0.0
    thread.join()
    result.delivered, result.frames = counts["n"], counts["frames"]
    result.missed = max(0, count - result.delivered)


def _holds(run, writer: WriterProcess, seconds: float, cpu: int | None):
    def holds(rate):
        n = int(rate * seconds)
        res = run(writer, rate, n, cpu)
        # sustained: everything arrived, and about as fast as it was sent (a
        # client that only catches up seconds later is not keeping up)
        return res.missed == 0 and res.delivered == n and not res.error and res.rate >= 0.9 * rate, res
    return holds


def _tries(tried) -> list[dict]:
    return [{"rate": rate, "held": ok, "delivered": r.delivered, "missed": r.missed, "reader_rate": round(r.rate),
             "writer_rate": round(r.writer_rate), "cpu_percent": round(r.cpu_percent, 1),
             "frames": getattr(r, "frames", 0), "error": r.error}
            for rate, ok, r in tried]


def max_zero_loss_ws_rate(writer: WriterProcess, rates: list[float], seconds: float,
                          cpu: int | None = None, floor: bool = False
                          ) -> tuple[float, ReaderResult | None, list[dict]]:
    """The highest rate the WebSocket path carried with nothing missed (bisect_zero_loss: to 10%);
    floor: the bare counting client's instead of the app's."""
    best, best_res, tried = bisect_zero_loss(_holds(run_ws_floor if floor else run_ws_scenario, writer, seconds,
                                                    cpu), rates)
    return best, best_res, _tries(tried)
