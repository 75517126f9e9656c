"""kgmon tail: a headless reader for people and scripts.

Replays what the ring still holds, then follows it, across writer restarts.
One readable line per threat, or --json: one object per line, ending with a
summary line. Exit status 0, 2 bad usage, 3 cannot attach (with the reason),
1 otherwise.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import signal
import sys
import time

from app.cli.main import EXIT_CANNOT_ATTACH, EXIT_FAILURE, EXIT_OK, positive_float, positive_int
from app.ring.errors import RingError
from app.ring.follow import RingFollower, WriterGone
from app.ring.paths import default_ring_path
from app.ring.reader import DEFAULT_SPIN_NS, Event
from app.textsafe import visible
from app.threats import severity_name, threat_type_name

RETRY_ATTACH_S = 0.2
TRANSPORT = "shm"


def add_parser(sub, common) -> None:
    p = sub.add_parser(
        "tail",
        parents=[common],
        help="print threats as they arrive",
        description="Print every threat in the ring, then follow it. Threat text is shown with invisible "
        "and bidirectional characters made visible (⟨U+202E⟩).",
    )
    p.add_argument("--json", action="store_true",
                   help="one JSON object per line, and a final summary object")
    p.add_argument("--new", action="store_true", help="only threats published from now on")
    p.add_argument("--count", type=positive_int, metavar="N",
                   help="exit once N events are accounted for (delivered, missed or corrupt)")
    p.add_argument("--timeout", type=positive_float, metavar="S", help="exit after S seconds")
    p.add_argument("--spin-us", type=float, default=DEFAULT_SPIN_NS / 1000, metavar="US",
                   help="most microseconds to spin before sleeping (default %(default)g; 0 sleeps at once)")
    p.set_defaults(run=run)


def rfc3339(unix_us: int) -> str:
    try:
        moment = dt.datetime.fromtimestamp(unix_us / 1e6, tz=dt.timezone.utc)
    except (OverflowError, OSError, ValueError):
        return "invalid"
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event_json(ev: Event, generation: int) -> dict:
    return {
        "type": "threat",
        "transport": TRANSPORT,
        "generation": generation,
        "seq": ev.seq,
        "id": f"{generation:016x}-{ev.seq}",
        "threat_type": threat_type_name(ev.threat_type),
        "severity": severity_name(ev.severity),
        "blocked": ev.blocked,
        "source": ev.source,
        "details": ev.details,
        "timestamp": rfc3339(ev.timestamp_unix_us),
        "latency_us": round(max(0, ev.observe_mono_ns - ev.publish_mono_ns) / 1000, 1),
    }


def event_line(ev: Event) -> str:
    try:
        when = dt.datetime.fromtimestamp(ev.timestamp_unix_us / 1e6).strftime("%H:%M:%S.%f")[:-3]
    except (OverflowError, OSError, ValueError):
        when = "??:??:??.???"
    blocked = "BLOCKED" if ev.blocked else "allowed"
    latency = max(0, ev.observe_mono_ns - ev.publish_mono_ns) / 1000
    return (f"{when}  {severity_name(ev.severity).upper():<8}  {threat_type_name(ev.threat_type):<18}  "
            f"{blocked}  {visible(ev.source)}  {visible(ev.details)}  ({latency:.1f} µs)")


class _Output:
    def __init__(self, as_json: bool):
        self.as_json = as_json
        self.out = sys.stdout

    def events(self, events: list[Event], generation: int) -> None:
        if self.as_json:
            lines = [json.dumps(event_json(ev, generation)) for ev in events]
        else:
            lines = [event_line(ev) for ev in events]
        self.out.write("\n".join(lines) + "\n")
        self.out.flush()

    def transport(self, transport: str, reason: str) -> None:
        if self.as_json:
            self.out.write(json.dumps({"type": "transport", "transport": transport, "reason": reason}) + "\n")
            self.out.flush()
        else:
            print(f"kgmon tail: [{transport}] {reason}", file=sys.stderr, flush=True)

    def summary(self, follower: RingFollower) -> None:
        c = follower.counts
        transport = TRANSPORT if follower.reader is not None else "disconnected"
        if self.as_json:
            self.out.write(json.dumps({"type": "summary", "delivered": c.delivered, "missed": c.missed,
                                       "corrupt": c.corrupt, "transport": transport}) + "\n")
            self.out.flush()
        else:
            print(f"kgmon tail: {c.delivered} delivered, {c.missed} missed, {c.corrupt} corrupt",
                  file=sys.stderr, flush=True)


class _Stop(Exception):
    pass


def _raise_stop(signum, frame):
    raise _Stop()


def run(args: argparse.Namespace) -> int:
    path = str(default_ring_path(args.shm_path))
    follower = RingFollower(path, start="newest" if args.new else "oldest",
                            spin_ns=int(max(0.0, args.spin_us) * 1000))
    out = _Output(args.json)
    deadline = time.monotonic() + args.timeout if args.timeout else None
    try:
        follower.attach()
    except RingError as exc:
        print(f"kgmon tail: {exc}", file=sys.stderr)
        return EXIT_CANNOT_ATTACH if exc.cannot_attach else EXIT_FAILURE
    old = signal.signal(signal.SIGTERM, _raise_stop)
    status = EXIT_OK
    try:
        out.transport(TRANSPORT, f"attached to {path} (generation {follower.generation:#x})")
        while not (args.count and follower.counts.accounted >= args.count):
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                break
            if follower.reader is None:
                _reattach(follower, out, path)
                time.sleep(RETRY_ATTACH_S if follower.reader is None else 0)
                continue
            wanted = args.count - follower.counts.accounted if args.count else 0
            try:
                events = follower.poll(min(0.1, remaining) if remaining is not None else 0.1, wanted)
            except WriterGone as gone:
                out.transport("disconnected", f"{gone}; waiting for a writer")
                continue
            if events:
                out.events(events, follower.generation)
    except (_Stop, KeyboardInterrupt):
        pass
    except BrokenPipeError:  # `kgmon tail | head`: the reader of our output left
        sys.stderr.close()
        return EXIT_OK
    except RingError as exc:
        print(f"kgmon tail: {exc}", file=sys.stderr)
        status = EXIT_FAILURE
    finally:
        signal.signal(signal.SIGTERM, old)
    try:
        out.summary(follower)
    except BrokenPipeError:
        pass
    follower.close()
    return status


def _reattach(follower: RingFollower, out: _Output, path: str) -> None:
    try:
        follower.attach()
    except RingError:
        return
    out.transport(TRANSPORT, f"attached to {path} (generation {follower.generation:#x})")
