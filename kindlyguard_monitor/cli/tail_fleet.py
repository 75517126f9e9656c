"""kgmon tail --fleet URL: the fleet's threats from the NATS JetStream stream, one line (or object) each.

A durable consumer per viewer (--consumer, default viewer-<host>-<user>): what
came while this viewer was away is printed first. Lines are tail's with a Host
field; --json objects carry "host" too. Exit 0, 2 bad usage, 3 cannot reach the stream.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys

from kindlyguard_monitor.cli.args import EXIT_CANNOT_ATTACH, EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from kindlyguard_monitor.textsafe import visible
from kindlyguard_monitor.threats import format_timestamp, local_time, severity_name, threat_type_name


def add_options(p) -> None:
    """tail's fleet options (called from cli/tail.py)."""
    from kindlyguard_monitor.cli.forward import add_connection_options, nats_urls

    p.add_argument("--fleet", type=nats_urls, metavar="URL",
                   help="follow the fleet stream on this NATS server (nats:// or tls://) instead of this machine")
    p.add_argument("--consumer", metavar="NAME",
                   help="with --fleet: this viewer's durable consumer (default viewer-<host>-<user>)")
    p.add_argument("--fleet-host", metavar="HOST", help="with --fleet: only this workstation's threats")
    add_connection_options(p)


def threat_line(t) -> str:
    when = local_time(t.timestamp_unix_us, fallback="??:??:??.???")
    blocked = "BLOCKED" if t.blocked else "allowed"
    return (f"{when}  {visible(t.host):<16}  {severity_name(t.severity).upper():<8}  "
            f"{threat_type_name(t.threat_type):<18}  {blocked}  {visible(t.source)}  {visible(t.details)}")


def threat_json(t) -> dict:
    return {"type": "threat", "host": t.host, "id": t.id, "seq": t.seq, "stream_seq": t.stream_seq,
            "threat_type": threat_type_name(t.threat_type), "severity": severity_name(t.severity),
            "blocked": bool(t.blocked), "source": t.source, "details": t.details,
            "timestamp": format_timestamp(t.timestamp_unix_us), "transport": t.transport, "row": t.row}


def _show(item, args, out, counts: dict) -> None:
    """One item from the viewer on stdout (threats; gaps with --json) or stderr, counted."""
    from kindlyguard_monitor.fleet.message import FleetGap, FleetThreat

    if isinstance(item, FleetThreat):
        counts["threats"] += 1
        out.write((json.dumps(threat_json(item)) if args.json else threat_line(item)) + "\n")
    elif isinstance(item, FleetGap):
        counts["gaps"] += 1
        obj = {"type": "gap", "host": item.host, "missed": item.missed, "corrupt": item.corrupt,
               "kind": item.kind, "stream_seq": item.stream_seq}
        text = (f"kgmon tail: {visible(item.host)} missed {item.missed} and found {item.corrupt} corrupt "
                f"({visible(item.kind)} gap)")
        out.write(json.dumps(obj) + "\n") if args.json else print(text, file=sys.stderr)
    else:
        counts["bad"] += 1
        print(f"kgmon tail: not a fleet message at stream sequence {item.stream_seq} "
              f"({visible(item.subject)}): {visible(item.reason)}", file=sys.stderr)


def _summary(args, counts: dict) -> None:
    if args.json:
        print(json.dumps({"type": "summary", "delivered": counts["threats"], "gaps": counts["gaps"],
                          "bad": counts["bad"], "transport": "fleet"}), flush=True)
    else:
        print(f"kgmon tail: {counts['threats']} threats from the fleet, {counts['gaps']} gaps, "
              f"{counts['bad']} not ours", file=sys.stderr)


def run_fleet(args) -> int:
    from kindlyguard_monitor.cli.forward import connection_options, nats_missing

    missing = nats_missing("tail --fleet")
    if missing:
        print(missing, file=sys.stderr)
        return EXIT_FAILURE
    from kindlyguard_monitor.fleet import subjects as s
    from kindlyguard_monitor.fleet.connect import BadOption
    from kindlyguard_monitor.fleet.viewer import Unavailable, default_consumer, follow

    consumer = args.consumer or default_consumer()
    if not s.valid_consumer_name(consumer):
        print(f"kgmon tail: --consumer {visible(consumer)!r} may hold only letters, digits, '-' and '_'",
              file=sys.stderr)
        return EXIT_USAGE
    filt = s.host_filter(s.host_token(args.fleet_host)) if args.fleet_host else s.ALL_SUBJECTS
    options = connection_options(args, args.fleet, "kgmon tail --fleet")
    out = sys.stdout
    counts = {"threats": 0, "gaps": 0, "bad": 0}

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if args.timeout:
            loop.call_later(args.timeout, stop.set)
        async for item in follow(options, consumer, stop, filt, limit=args.count):
            _show(item, args, out, counts)
            if args.count and sum(counts.values()) >= args.count:  # as the viewer counts (limit)
                stop.set()
            if not args.json or counts["threats"] % 256 == 0:
                out.flush()
        out.flush()
        return EXIT_OK

    try:
        code = asyncio.run(main())
    except (Unavailable, BadOption) as exc:
        print(f"kgmon tail: {visible(str(exc))}", file=sys.stderr)
        return EXIT_CANNOT_ATTACH
    except BrokenPipeError:
        sys.stderr.close()
        return EXIT_OK
    _summary(args, counts)
    return code
