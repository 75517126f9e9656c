"""kgmon demo: a headless demo writer that publishes realistic threats into the ring."""

from __future__ import annotations

import argparse
import signal
import sys
import time

from app.cli.main import EXIT_CANNOT_ATTACH, EXIT_FAILURE, EXIT_OK, positive_float, positive_int
from app.demo.threats import RateSchedule, ThreatGenerator
from app.ring.errors import RingError, Status
from app.ring.paths import default_ring_path
from app.ring.writer import RingWriter

MAX_BATCH = 4096
TICK_S = 0.1  # heartbeat well inside the spec's 500 ms even when idle


def add_parser(sub, common) -> None:
    p = sub.add_parser(
        "demo",
        parents=[common],
        help="publish a realistic stream of demo threats",
        description="Publish a realistic stream of threats (every type and severity, real zero-width and "
        "right-to-left-override characters) so the monitor has something to show without a Shield. "
        "Ctrl-C or SIGTERM marks the ring closed and exits.",
    )
    p.add_argument("--rate", type=positive_float, metavar="R",
                   help="steady events per second (default: a few a second with occasional bursts)")
    p.add_argument("--count", type=positive_int, metavar="N", help="stop after N events")
    p.add_argument("--duration", type=positive_float, metavar="S", help="stop after S seconds")
    p.add_argument("--seed", type=int, metavar="N", help="repeatable stream of threats")
    p.add_argument("--slot-count", type=positive_int, default=4096, metavar="N",
                   help="ring slots, a power of two from 16 to 1048576 (default 4096)")
    p.add_argument("--slot-size", type=positive_int, default=512, metavar="BYTES",
                   help="bytes per slot, a power of two from 256 to 65536 (default 512)")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    p.set_defaults(run=run)


class _Stop(Exception):
    pass


def _raise_stop(signum, frame):
    raise _Stop()


def run(args: argparse.Namespace) -> int:
    path = default_ring_path(args.shm_path)
    try:
        writer = RingWriter(path, slot_size=args.slot_size, slot_count=args.slot_count)
    except RingError as exc:
        print(f"kgmon demo: {exc}", file=sys.stderr)
        if exc.status == Status.INVALID:
            return 2
        return EXIT_CANNOT_ATTACH if exc.status == Status.LOCKED else EXIT_FAILURE
    schedule = RateSchedule(args.rate, args.seed)
    generator = ThreatGenerator(args.seed)
    old = {s: signal.signal(s, _raise_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    rate_text = f"{args.rate:g} events/s" if args.rate else "a few events/s with bursts"
    if not args.quiet:
        print(f"kgmon demo: writing to {path} (generation {writer.generation:#x}, {rate_text}); "
              "Ctrl-C stops", file=sys.stderr, flush=True)
    start = time.monotonic()
    published = 0
    try:
        while True:
            now = time.monotonic()
            if args.duration and now - start >= args.duration:
                break
            due = schedule.due(now)
            if args.count:
                due = min(due, args.count - published)
            while due > 0:
                n = min(due, MAX_BATCH)
                published += writer.publish(generator.batch(n))
                due -= n
            writer.tick()
            if args.count and published >= args.count:
                break
            wait = min(schedule.next_wakeup(time.monotonic()), TICK_S)
            if args.duration:
                wait = min(wait, max(0.0, start + args.duration - time.monotonic()))
            if wait > 0:
                time.sleep(wait)
    except _Stop:
        pass
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        writer.close()
    if not args.quiet:
        took = time.monotonic() - start
        print(f"kgmon demo: published {published} events in {took:.1f} s; ring closed", file=sys.stderr)
    return EXIT_OK
