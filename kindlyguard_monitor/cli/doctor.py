"""kgmon doctor: what is wrong when the monitor shows nothing or is slow, and what to do.

One line per finding (`ok`, `warn`, `FAIL`, `info`), or --json:
{"findings": [{"check", "level", "message", "advice"}, ...], "ok": bool}.
Exit status 0 when nothing fails, 1 when something is broken, 2 bad usage.
The checks and their wording live in the kindlyguard_monitor/doctor package; this module
only parses the options and prints.
"""

from __future__ import annotations

import argparse
import json
import sys

from kindlyguard_monitor.cli.args import EXIT_FAILURE, EXIT_OK, float_in, ws_url
from kindlyguard_monitor.doctor import DEFAULT_WS_TIMEOUT_S, FAIL, diagnose, failed, finding_line
from kindlyguard_monitor.ring.paths import default_ring_path


def add_parser(sub, common) -> None:
    p = sub.add_parser(
        "doctor",
        parents=[common],
        help="check the ring, the Shield, the WebSocket and the desktop; say what to fix",
        description="Check what the monitor needs: the ring file and its writer, a probe of missed events, "
        "the Shield's WebSocket, CPU settings that raise latency, and the desktop the GUI needs. "
        "One line per finding, with what to do. Exit status 0 when nothing fails, 1 otherwise.",
    )
    p.add_argument("--json", action="store_true",
                   help='one JSON object: {"findings": [{"check", "level", "message", "advice"}], "ok": bool}')
    p.add_argument("--ws-url", type=ws_url, metavar="URL",
                   help="the Shield's WebSocket (default: $KINDLYGUARD_WS_URL, else ws://127.0.0.1:9955, "
                   "the port from $SHIELD_WS_PORT if set)")
    p.add_argument("--timeout", type=float_in(0.001, 3600), default=DEFAULT_WS_TIMEOUT_S, metavar="S",
                   help="seconds to wait for the WebSocket (default %(default)g)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    path = str(default_ring_path(args.shm_path))
    findings = diagnose(path, ws_url=args.ws_url, timeout=args.timeout)
    broken = failed(findings)
    try:
        if args.json:
            print(json.dumps({"findings": [f.as_dict() for f in findings], "ok": not broken}))
        else:
            for f in findings:
                print(finding_line(f))
            if broken:
                n = sum(f.level == FAIL for f in findings)
                print(f"kgmon doctor: {n} problem{'s' if n != 1 else ''} to fix", file=sys.stderr)
        sys.stdout.flush()
    except BrokenPipeError:
        sys.stderr.close()
    return EXIT_FAILURE if broken else EXIT_OK
