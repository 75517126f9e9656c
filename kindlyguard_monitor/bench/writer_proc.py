"""The bench's writer process: a C writer driven over stdin, one line a command.

    run RATE COUNT BATCH_MAX   publish COUNT events at RATE/s (0 = flat out),
                               answering "done PUBLISHED SECONDS"
    ws RATE COUNT              the same over the demo's WebSocket server
                               (--ws-port): events are numbered and stamped
                               as the demo does, and batched by load
    subscribers N TIMEOUT      wait until the WebSocket server has exactly N
                               subscribers (at most TIMEOUT s), answering
                               "done SUBSCRIBERS SECONDS"
    encode COUNT               encode COUNT threats as broadcast() does, send
                               nothing: the server's own ceiling per event
                               ("done COUNT CPU_SECONDS")
    exit                       close the ring and exit

With --format v1 it writes the Shield's v1 ring instead (run RATE COUNT only,
one event at a time, from Python).

It prints "ready GENERATION WS_PORT" once the ring (and the WebSocket server)
exist and keeps the heartbeat fresh while it waits. Ring events are
published by C (Writer.run_paced) with the GIL released: no Python runs per
event. WebSocket events are Python by nature (JSON): one shared Threat,
numbered and stamped per event, encoded once and sent to every subscriber.
"""

from __future__ import annotations

import argparse
import os
import select
import sys
import time

from kindlyguard_monitor import _ring
from kindlyguard_monitor.demo.ws_server import DemoWsServer, encode_events
from kindlyguard_monitor.threats import Published, Threat


BENCH_THREAT = Threat(4, 3, True, "bench:ws-writer", "x" * 64, 0)
_next_ws_seq = 0


def publish_ws(server: DemoWsServer, generation: int, rate: float, count: int) -> int:
    """Publish `count` events at `rate`/s over the WebSocket: every event due
    goes into one broadcast, so at low rates each goes alone."""
    global _next_ws_seq
    start, done = time.monotonic(), 0
    threat = BENCH_THREAT._replace(timestamp_unix_us=time.time_ns() // 1000)
    while done < count:
        due = min(count, int((time.monotonic() - start) * rate) + 1) - done
        if due <= 0:
            time.sleep(max(0.0, start + done / rate - time.monotonic()))
            continue
        due = min(due, 5000)
        mono = time.monotonic_ns()
        first = _next_ws_seq
        server.broadcast([Published(generation, first + i, threat, mono) for i in range(due)])
        _next_ws_seq += due
        done += due
    return done


def encode_only(generation: int, count: int) -> int:
    """What broadcast() does to `count` events before any client sees them: the JSON of each."""
    threat = BENCH_THREAT._replace(timestamp_unix_us=time.time_ns() // 1000)
    mono = time.monotonic_ns()
    done = 0
    while done < count:
        n = min(5000, count - done)
        encode_events([Published(generation, done + i, threat, mono) for i in range(n)])
        done += n
    return done


def wait_subscribers(server: DemoWsServer, n: int, timeout: float) -> int:
    """Wait until the server has exactly `n` subscribers (a condition with a deadline)."""
    deadline = time.monotonic() + timeout
    while server.subscribers != n and time.monotonic() < deadline:
        time.sleep(0.001)
    return server.subscribers


def publish_v1(writer, rate: float, count: int) -> int:
    """Write `count` events at `rate`/s, each alone and stamped as it is written
    (a v1 reader's latency is measured from that stored timestamp)."""
    start, done = time.monotonic(), 0
    while done < count:
        wait = start + done / rate - time.monotonic() if rate > 0 else 0
        if wait > 0.0003:
            time.sleep(wait - 0.0002)
            continue
        while rate > 0 and time.monotonic() < start + done / rate:
            pass
        done += writer.write(4, 3, True, "bench:v1-writer", "x" * 64)
    return done


def run_v1(path: str) -> int:
    from kindlyguard_monitor.ring.v1_writer import V1Writer

    writer = V1Writer(path)
    print("ready 0 0", flush=True)
    try:
        for line in sys.stdin:
            words = line.split()
            if not words or words[0] == "exit":
                break
            if words[0] == "run":
                t0 = time.perf_counter()
                done = publish_v1(writer, float(words[1]), int(words[2]))
                print(f"done {done} {time.perf_counter() - t0:.6f}", flush=True)
    finally:
        writer.close()
    return 0


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("path")
    p.add_argument("--slot-count", type=int, default=4096)
    p.add_argument("--slot-size", type=int, default=512)
    p.add_argument("--cpu", type=int, help="pin this process to one CPU")
    p.add_argument("--ws-port", type=int, help="also serve the WebSocket on 127.0.0.1:PORT (0: any free port)")
    p.add_argument("--format", choices=("v2", "v1"), default="v2",
                   help="v1: the Shield's own ring (V1Writer: Python, as slow per event as upstream's is not)")
    args = p.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    if args.format == "v1":
        return run_v1(args.path)
    writer = _ring.Writer(args.path, slot_size=args.slot_size, slot_count=args.slot_count)
    server = None
    if args.ws_port is not None:
        server = DemoWsServer(args.ws_port, heartbeat_s=3600)
        server.start()
    print(f"ready {writer.generation} {server.port if server else 0}", flush=True)
    try:
        while True:
            readable, _, _ = select.select([sys.stdin], [], [], 0.1)
            writer.tick()
            if not readable:
                continue
            words = sys.stdin.readline().split()
            if not words or words[0] == "exit":
                break
            if words[0] == "run":
                rate, count, batch_max = float(words[1]), int(words[2]), int(words[3])
                t0 = time.perf_counter()
                done = writer.run_paced(rate, count, batch_max=batch_max)
                print(f"done {done} {time.perf_counter() - t0:.6f}", flush=True)
            elif words[0] == "ws" and server is not None:
                rate, count = max(1.0, float(words[1])), int(words[2])
                t0 = time.perf_counter()
                done = publish_ws(server, writer.generation, rate, count)
                print(f"done {done} {time.perf_counter() - t0:.6f}", flush=True)
            elif words[0] == "subscribers" and server is not None:
                t0 = time.perf_counter()
                now = wait_subscribers(server, int(words[1]), float(words[2]))
                print(f"done {now} {time.perf_counter() - t0:.6f}", flush=True)
            elif words[0] == "encode":  # answers CPU seconds: the cost, whatever else the machine runs
                t0 = time.thread_time()
                done = encode_only(writer.generation, int(words[1]))
                print(f"done {done} {time.thread_time() - t0:.6f}", flush=True)
    finally:
        if server is not None:
            server.stop(drain_s=5)
        writer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
