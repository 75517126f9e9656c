"""The bench's writer process: a C writer driven over stdin, one line a command.

    run RATE COUNT BATCH_MAX   publish COUNT events at RATE/s (0 = flat out),
                               answering "done PUBLISHED SECONDS"
    exit                       close the ring and exit

It prints "ready GENERATION" once the ring exists and keeps the heartbeat
fresh while it waits. The events are published by C (Writer.run_paced) with
the GIL released: no Python runs per event.
"""

from __future__ import annotations

import argparse
import os
import select
import sys
import time

from app import _ring


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("path")
    p.add_argument("--slot-count", type=int, default=4096)
    p.add_argument("--slot-size", type=int, default=512)
    p.add_argument("--cpu", type=int, help="pin this process to one CPU")
    args = p.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    writer = _ring.Writer(args.path, slot_size=args.slot_size, slot_count=args.slot_count)
    print(f"ready {writer.generation}", flush=True)
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
    finally:
        writer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
