"""kgmon bench: latency, throughput and CPU of the ring, against the bare-C floor in the same run.

The command's options and which bench they run; the ring's run is bench/ring_suite.py (measure)
and bench/ring_report.py (the tables); the app, history and fleet benches live beside them."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys

from kindlyguard_monitor.bench import ring_bench as rb
from kindlyguard_monitor.bench.ring_report import TABLE_HEAD, render, render_low_rates, render_websocket
from kindlyguard_monitor.bench.ring_suite import machine, measure, measure_low_rates, measure_websocket
from kindlyguard_monitor.cli.args import EXIT_FAILURE, EXIT_OK, SLOT_COUNT_MAX, SLOT_COUNT_MIN, power_of_two
from kindlyguard_monitor.textsafe import visible

# The on/off options, in the order --help lists them: (flag, help).
SWITCHES = (
    ("--json", "print JSON instead of a table"),
    ("--short", "a quick run (about 10 s) that proves the bench works"),
    ("--gui", "measure the desktop app instead: publish → row in the model and event-loop "
     "lateness at 1,000 events/s and under a 100,000 events/s flood"),
    ("--history", "measure the threat history instead: store rate, search over 1,000,000 rows, size, "
     "feed restore (--short: 100,000 rows)"),
    ("--fleet", "measure the fleet instead (NATS JetStream on loopback): forward rate, publish -> fleet "
     "viewer latency, 1,000 simulated hosts into a three-node cluster (docs/fleet.md)"),
    ("--low-rates", "only the low-rate comparison: the v2 reader (futex wake-up) and the Shield's v1 ring "
     "(polled) at 1, 10 and 100 events/s and idle (also part of the full run)"),
    ("--websocket", "only the WebSocket part: the app's path beside a bare client that only counts threats "
     "(steady 1,000 events/s, the highest rate with zero missed for both, the server's encoding)"),
)


def add_parser(sub, common) -> None:
    p = sub.add_parser(
        "bench",
        parents=[common],
        help="measure latency, throughput and CPU of the ring",
        description="Runs a C writer in a separate process and the app's reader, and in the same run the "
        "floor (a bare C reader), then prints a table. Figures are medians of what this machine did now; "
        "nothing is asserted. --shm-path sets where the bench ring lives (default: a private folder in "
        "/dev/shm).",
    )
    for flag, text in SWITCHES:
        p.add_argument(flag, action="store_true", help=text)
    p.add_argument("--slot-count", type=power_of_two(SLOT_COUNT_MIN, SLOT_COUNT_MAX), default=4096, metavar="N",
                   help="slots in the bench ring (default 4096: 2 MiB, the default ring)")
    p.add_argument("--pin", action="store_true",
                   help="pin the writer and the reader to two different cores (default: the scheduler places "
                   "them, as it does for the app)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    own_dir = None
    if args.shm_path:
        path = args.shm_path
    else:
        own_dir = rb.ring_dir()
        path = os.path.join(own_dir, "bench.shm")

    def progress(msg):
        print(f"kgmon bench: {visible(msg)}", file=sys.stderr, flush=True)

    try:
        if args.fleet or args.history or args.gui:
            _run_app_bench(args, progress)
            return EXIT_OK
        if args.websocket:
            _run_websocket(args, path, progress)
            return EXIT_OK
        if args.low_rates:
            _run_low_rates(args, path, progress)
            return EXIT_OK
        out = measure(path, args.short, progress, pin=args.pin, slot_count=args.slot_count)
    except Exception as exc:  # a bench failure is reported, not a traceback
        print(f"kgmon bench: failed: {visible(str(exc))}", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        if own_dir:
            shutil.rmtree(own_dir, ignore_errors=True)
    print(json.dumps(out, indent=2) if args.json else render(out))
    return EXIT_OK


def _run_app_bench(args: argparse.Namespace, progress) -> None:
    """--fleet, --history or --gui: the bench of that part (imported only then), printed."""
    if args.fleet:
        from kindlyguard_monitor.bench.fleet_bench import measure_fleet, render_fleet

        out = measure_fleet(args.short, progress)
        print(json.dumps(out, indent=2) if args.json else render_fleet(out))
    elif args.history:
        from kindlyguard_monitor.bench.history_bench import measure_history, render_history

        out = measure_history(args.short, progress)
        print(json.dumps(out, indent=2) if args.json else render_history(out))
    else:
        from kindlyguard_monitor.bench.gui_bench import measure_app_process, measure_gui, render_gui

        out = measure_gui(args.short, progress)
        out["app_process"] = measure_app_process(args.short, progress)
        print(json.dumps(out, indent=2) if args.json else render_gui(out))


def _measured(args: argparse.Namespace, writer, measure) -> dict | None:
    """One part of the ring bench, measured with `writer` (closed after): printed as JSON with --json
    (then None), else returned for its table."""
    try:
        out = {"machine": machine(), "mode": "short" if args.short else "full", **measure(writer)}
    finally:
        writer.close()
    if args.json:
        print(json.dumps(out, indent=2))
        return None
    return out


def _run_websocket(args: argparse.Namespace, path: str, progress) -> None:
    """--websocket: only the WebSocket part, printed."""
    out = _measured(args, rb.WriterProcess(path, websocket=True, slot_count=args.slot_count),
                    lambda writer: measure_websocket(writer, args.short, progress))
    if out is None:
        return
    m = out["machine"]
    print(f"kgmon bench --websocket ({out['mode']}) on {m['cpu']}, {m['cores']} cores, {m['os']}, "
          f"Python {m['python']}")
    print(TABLE_HEAD)
    print("\n".join(render_websocket(out)))


def _run_low_rates(args: argparse.Namespace, path: str, progress) -> None:
    """--low-rates: only the low-rate comparison, printed."""
    out = _measured(args, rb.WriterProcess(path, slot_count=args.slot_count),
                    lambda writer: {"low_rates": measure_low_rates(writer, args.short, progress)})
    if out is None:
        return
    m = out["machine"]
    print(f"kgmon bench --low-rates ({out['mode']}) on {m['cpu']}, {m['cores']} cores, {m['os']}")
    print("\n".join(render_low_rates(out["low_rates"])[1:]))
