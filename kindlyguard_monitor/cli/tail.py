"""kgmon tail: a headless reader for people and scripts.

Replays what the ring still holds, then follows it, across writer restarts
and transport switches (shared memory, the Shield's WebSocket). One readable
line per threat, or --json: one object per line, ending with a summary line.
Exit status 0, 2 bad usage, 3 cannot attach (with the reason), 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time

from kindlyguard_monitor.cli import tail_fleet
from kindlyguard_monitor.cli.args import EXIT_CANNOT_ATTACH, EXIT_FAILURE, EXIT_OK, float_in, positive_int, seconds, ws_url
from kindlyguard_monitor.ring.paths import default_ring_path
from kindlyguard_monitor.event import ThreatEvent
from kindlyguard_monitor.textsafe import visible
from kindlyguard_monitor.threats import local_time, severity_name, threat_type_name
from kindlyguard_monitor.transport.items import (
    BadFrameSeen,
    Batch,
    ShieldError,
    ShieldStatus,
    TransportChange,
    TransportUnavailable,
)
from kindlyguard_monitor.transport.manager import TransportManager
from kindlyguard_monitor.transport.ws_client import default_ws_url
from kindlyguard_monitor.vocabulary import AUTO, DEFAULT_SPIN_NS, DEFAULT_WS_URL, MODES


# The longest poll: events and a closing writer end it at once; when nothing happens the
# reader wakes only this often (it was 0.1 s: idle CPU 0.16-0.20 %, now under 0.1 %).
IDLE_POLL_S = 0.5


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
    p.add_argument("--timeout", type=seconds, metavar="S", help="exit after S seconds")
    p.add_argument("--spin-us", type=float_in(0, 1e6), default=DEFAULT_SPIN_NS / 1000, metavar="US",
                   help="most microseconds to spin before sleeping (default %(default)g; 0 sleeps at once)")
    p.add_argument("--ws-url", type=ws_url, metavar="URL",
                   help=f"the Shield's WebSocket (default: $KINDLYGUARD_WS_URL, else {DEFAULT_WS_URL})")
    p.add_argument("--transport", choices=MODES, default=AUTO,
                   help="auto (default): shared memory when healthy, else the WebSocket, retrying both; "
                   "shm or websocket: that one only, exit 3 if it is not there")
    tail_fleet.add_options(p)  # --fleet URL and its connection options (issue 16)
    p.set_defaults(run=run)


def event_json(ev: ThreatEvent) -> dict:
    return {"type": "threat", **ev.to_dict(), "latency_us": round((ev.latency_ns or 0) / 1000, 1)}


def event_line(ev: ThreatEvent) -> str:
    when = local_time(ev.timestamp_unix_us, fallback="??:??:??.???")
    blocked = "BLOCKED" if ev.blocked else "allowed"
    latency = (ev.latency_ns or 0) / 1000
    return (f"{when}  {severity_name(ev.severity).upper():<8}  {threat_type_name(ev.threat_type):<18}  "
            f"{blocked}  {visible(ev.source)}  {visible(ev.details)}  ({latency:.1f} µs)")


class _Output:
    def __init__(self, as_json: bool):
        self.as_json = as_json
        self.out = sys.stdout

    def batch(self, batch: Batch) -> None:
        if self.as_json:
            lines = [json.dumps(event_json(ev)) for ev in batch.events]
        else:
            lines = [event_line(ev) for ev in batch.events]
        self.out.write("\n".join(lines) + "\n")
        self.out.flush()

    def transport(self, change: TransportChange) -> None:
        self._note({"type": "transport", "transport": change.transport, "reason": change.reason},
                   f"[{change.transport}] {change.reason}")

    def status(self, status: ShieldStatus) -> None:
        self._note({"type": "status", "protection_enabled": status.protection_enabled,
                    "threats_blocked": status.threats_blocked},
                   f"Shield status: protection {'on' if status.protection_enabled else 'off'}, "
                   f"{status.threats_blocked} threats blocked")

    def bad_frame(self, bad: BadFrameSeen) -> None:
        self._note({"type": "bad_frame", "kind": bad.kind, "detail": bad.detail, "total": bad.total},
                   f"bad frame from the WebSocket ({bad.kind}: {visible(bad.detail)}); {bad.total} so far")

    def shield_error(self, error: ShieldError) -> None:
        self._note({"type": "shield_error", "message": error.message}, f"the Shield says: {visible(error.message)}")

    def _note(self, obj: dict, text: str) -> None:
        if self.as_json:
            self.out.write(json.dumps(obj) + "\n")
            self.out.flush()
        else:
            print(f"kgmon tail: {visible(text)}", file=sys.stderr, flush=True)  # reasons carry server text

    def summary(self, m: TransportManager) -> None:
        link = websocket_summary(m)
        if self.as_json:
            self.out.write(json.dumps({"type": "summary", "delivered": m.delivered, "missed": m.missed,
                                       "corrupt": m.corrupt, "transport": m.transport, **link}) + "\n")
            self.out.flush()
        else:
            extra = "".join(f", {text}" for text in websocket_summary_text(link))
            print(f"kgmon tail: {m.delivered} delivered, {m.missed} missed, {m.corrupt} corrupt, "
                  f"{m.bad_frames} bad frames{extra}", file=sys.stderr, flush=True)


def websocket_summary(m: TransportManager) -> dict:
    """What the WebSocket link went through, for the summary (only what happened)."""
    if m.link is None:
        return {}
    facts = {"ws_overflow": m.ws_counts.overflow, "ws_epochs": m.ws_counts.epochs,
             "ws_dropped_soon": m.link.dropped_soon}
    return {k: v for k, v in facts.items() if v}


def websocket_summary_text(facts: dict) -> list[str]:
    words = {"ws_overflow": "missed because we read slower than the WebSocket sent ({})",
             "ws_epochs": "times the WebSocket's numbering restarted ({})",
             "ws_dropped_soon": "WebSocket connections dropped by the server soon after opening ({})"}
    return [words[k].format(v) for k, v in facts.items()]


def dropped_and_empty(m: TransportManager) -> str | None:
    """Why a tail that got nothing must not exit 0: the server kept dropping us."""
    if m.delivered or m.link is None or not m.link.dropped_soon:
        return None
    return (f"nothing received: the WebSocket at {m.ws_url} dropped the connection "
            f"{m.link.dropped_soon} time{'s' if m.link.dropped_soon != 1 else ''} soon after it opened "
            f"(last: {visible(m.link.last_error)})")


class _Stop(Exception):
    pass


def _raise_stop(signum, frame):
    raise _Stop()


def run(args: argparse.Namespace) -> int:
    if getattr(args, "fleet", None):
        return tail_fleet.run_fleet(args)
    manager = TransportManager(str(default_ring_path(args.shm_path)), default_ws_url(args.ws_url),
                               mode=args.transport, start="newest" if args.new else "oldest",
                               spin_ns=int(max(0.0, args.spin_us) * 1000))
    out = _Output(args.json)
    deadline = time.monotonic() + args.timeout if args.timeout else None
    old = signal.signal(signal.SIGTERM, _raise_stop)
    try:
        try:
            items = manager.start()
        except TransportUnavailable as exc:
            print(f"kgmon tail: {visible(str(exc))}", file=sys.stderr)
            return EXIT_CANNOT_ATTACH
        while True:
            for item in items:
                if isinstance(item, Batch):
                    out.batch(item)
                elif isinstance(item, TransportChange):
                    out.transport(item)
                elif isinstance(item, ShieldStatus):
                    out.status(item)
                elif isinstance(item, ShieldError):
                    out.shield_error(item)
                elif isinstance(item, BadFrameSeen):
                    out.bad_frame(item)
            if args.count and manager.accounted >= args.count:
                break
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                break
            wanted = args.count - manager.accounted if args.count else 0
            items = manager.poll(min(IDLE_POLL_S, remaining) if remaining is not None else IDLE_POLL_S, wanted)
    except (_Stop, KeyboardInterrupt):
        pass
    except BrokenPipeError:  # `kgmon tail | head`: the reader of our output left
        sys.stderr.close()
        manager.close()
        return EXIT_OK
    finally:
        signal.signal(signal.SIGTERM, old)
    try:
        out.summary(manager)
    except BrokenPipeError:
        pass
    manager.close()
    why = dropped_and_empty(manager)
    if why is not None:
        print(f"kgmon tail: {why}", file=sys.stderr, flush=True)
        return EXIT_FAILURE
    return EXIT_OK
