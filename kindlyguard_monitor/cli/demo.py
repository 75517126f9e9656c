"""kgmon demo: a headless demo writer that publishes realistic threats into the ring
and, as the Shield does, on its WebSocket (ws://127.0.0.1:9955, docs/websocket.md).

Both transports carry the same events: every batch published to the ring is also
broadcast on the WebSocket with the ring's generation and event numbers (`seq`),
so a monitor can switch between them and count gaps. --no-ws: the ring only;
--no-shm: the WebSocket only (events still numbered, under a random generation).
A WebSocket client can toggle protection: while it is off, threats are
published (to both) with blocked=false, "reported but not blocked".
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import stat
import sys
import time

from kindlyguard_monitor.cli.args import (
    EXIT_CANNOT_ATTACH,
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    SLOT_COUNT_MAX,
    SLOT_COUNT_MIN,
    SLOT_SIZE_MAX,
    SLOT_SIZE_MIN,
    int_in,
    port_number,
    positive_float,
    positive_int,
    power_of_two,
    seconds,
)
from kindlyguard_monitor.demo.schedule import RateSchedule
from kindlyguard_monitor.demo.threats import ThreatGenerator
from kindlyguard_monitor.demo.like_shield import LikeShieldServer
from kindlyguard_monitor.demo.ws_server import DemoWsServer, WsServerError
from kindlyguard_monitor.ring.errors import RingError, Status
from kindlyguard_monitor.ring.layout import MAGIC
from kindlyguard_monitor.ring.paths import default_ring_path
from kindlyguard_monitor.ring import v1
from kindlyguard_monitor.ring.v1_writer import V1Writer
from kindlyguard_monitor.ring.writer import RingWriter
from kindlyguard_monitor.threats import Published
from kindlyguard_monitor.textsafe import visible
from kindlyguard_monitor.vocabulary import DEFAULT_WS_PORT, shield_ws_port

MAX_BATCH = 4096
TICK_S = 0.1  # heartbeat well inside the spec's 500 ms even when idle
DRAIN_AT_END_S = 10.0  # after --count/--duration: WebSocket clients get what is still pending
DRAIN_ON_SIGNAL_S = 1.0  # after Ctrl-C/SIGTERM: a short grace, then close (1001)


def add_parser(sub, common) -> None:
    p = sub.add_parser(
        "demo",
        parents=[common],
        help="publish a realistic stream of demo threats",
        description="Publish a realistic stream of threats (every type and severity, real zero-width and "
        "right-to-left-override characters) so the monitor has something to show without a Shield: "
        "into the ring, and on the Shield's WebSocket (ws://127.0.0.1:9955, the same events, subscribe "
        "to receive them). Ctrl-C or SIGTERM marks the ring closed, closes the WebSocket and exits.",
    )
    p.add_argument("--rate", type=positive_float, metavar="R",
                   help="steady events per second (default: a few a second with occasional bursts)")
    p.add_argument("--count", type=positive_int, metavar="N", help="stop after N events")
    p.add_argument("--duration", type=seconds, metavar="S", help="stop after S seconds")
    p.add_argument("--seed", type=int_in(-(2**63), 2**63 - 1), metavar="N", help="repeatable stream of threats")
    p.add_argument("--slot-count", type=power_of_two(SLOT_COUNT_MIN, SLOT_COUNT_MAX), default=4096, metavar="N",
                   help="ring slots, a power of two from 16 to 1048576 (default 4096)")
    p.add_argument("--slot-size", type=power_of_two(SLOT_SIZE_MIN, SLOT_SIZE_MAX), default=512, metavar="BYTES",
                   help="bytes per slot, a power of two from 256 to 65536 (default 512)")
    p.add_argument("--ws-port", type=port_number, metavar="N",
                   help="serve the Shield's WebSocket on ws://127.0.0.1:N (default: $SHIELD_WS_PORT, else 9955; "
                   "0 picks a free port); loopback only")
    p.add_argument("--format", choices=("v2", "v1"), default="v2",
                   help="v2 (default): our ring (broadcast to any number of readers, exact loss counts, "
                   "wake-ups). v1: the ring the KindlyGuard Shield's own shm_demo writes, quirks included "
                   "(2 MiB, polled by readers); the ring only, no WebSocket")
    p.add_argument("--v1-bytes", type=positive_int, metavar="BYTES", help=argparse.SUPPRESS)  # tests: a small v1 ring
    p.add_argument("--no-ws", action="store_true", help="do not serve the WebSocket (the ring only)")
    p.add_argument("--no-shm", action="store_true", help="do not create the ring (the WebSocket only)")
    p.add_argument("--like-shield", action="store_true",
                   help="serve the WebSocket as the real Shield does (docs/websocket.md: one validator for the "
                   "server, duplicate frames and patterns dropped, no replies, no heartbeats, threat_<ms> ids, no "
                   "seq); like the Shield app, no ring is written")
    p.add_argument("--wait-subscribers", type=positive_int, metavar="N",
                   help="publish nothing until N WebSocket clients have subscribed (so they miss no event)")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    p.add_argument("--parent-pid", type=int_in(1, 2**32), metavar="PID",
                   help="stop (closing the ring) when process PID is gone: the app passes its own, so its demo "
                   "writer never outlives it, even when the app is killed")
    p.set_defaults(run=run)


def parent_gone(pid: int) -> bool:
    """Has our parent `pid` ended? On POSIX an orphan is re-parented, so getppid()
    changes; Windows keeps the old number, so ask whether the process exists."""
    if os.name == "posix":
        return os.getppid() != pid
    import psutil

    return not psutil.pid_exists(pid)


RING_MAGIC = MAGIC.to_bytes(4, "little")  # "KGMS": every ring, v1 and v2, starts so


def not_a_ring(path) -> str | None:
    """Why the writer must not replace what is at `path` (its temp file + rename would):
    anything but nothing, an empty file or a ring. None when it may."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"cannot look at {path}: {exc.strerror or exc}"
    what = None
    if stat.S_ISLNK(st.st_mode):
        what = "a symbolic link"
    elif stat.S_ISDIR(st.st_mode):
        what = "a folder"
    elif not stat.S_ISREG(st.st_mode):
        what = "a device, pipe or socket"
    elif st.st_size:
        try:
            with open(path, "rb") as f:
                if f.read(4) != RING_MAGIC:
                    what = "a file that does not start as a ring does"
        except OSError as exc:
            return f"cannot read {path}: {exc.strerror or exc}"
    if what is None:
        return None
    return (f"{path} is not a KindlyGuard ring ({what}); kgmon demo replaces only a ring: "
            "remove it yourself or choose another --shm-path")


class _Stop(Exception):
    pass


def _raise_stop(signum, frame):
    raise _Stop()


def _ws_port(args: argparse.Namespace) -> int:
    """--ws-port, else $SHIELD_WS_PORT (as the Shield reads it), else 9955."""
    if args.ws_port is not None:
        return args.ws_port
    port = shield_ws_port(lowest=0, strict=True)  # ValueError: a sentence naming the variable
    return DEFAULT_WS_PORT if port is None else port


def _say(message: str) -> None:
    print(f"kgmon demo: {visible(message)}", file=sys.stderr, flush=True)  # paths, server errors: outside text


STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def run(args: argparse.Namespace) -> int:
    """SIGINT and SIGTERM are held back while the ring and the server start: a stop
    then (Ctrl-C, or the app quitting at once) would kill the process with its ring
    still marked running. They take effect once the handlers that close it are in place."""
    held = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS) if hasattr(signal, "pthread_sigmask") else None
    try:
        return _run(args)
    finally:
        if held is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)


def _let_signals_in() -> None:
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


class _Refused(Exception):
    """Start-up cannot go on: the exit status and the one line that says why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class _Tally:
    """What the publishing loop has done so far (read after a stop, too)."""

    def __init__(self):
        self.published = 0
        self.next_seq = 0  # without a ring: the WebSocket's own event numbers
        self.start: float | None = None  # when publishing began (monotonic)


def _run(args: argparse.Namespace) -> int:
    try:
        port = _check_options(args)
        writer, path = _open_ring(args)
        server = _serve(args, port, writer)
    except _Refused as exc:
        _say(str(exc))
        return exc.status
    # The WebSocket numbers events as the ring does: (generation, seq). Without a
    # ring: a random non-zero generation, seq from 0, so clients still count gaps.
    generation = writer.generation if writer is not None and writer.generation is not None \
        else (secrets.randbits(64) or 1)
    old = {s: signal.signal(s, _raise_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    if not args.quiet:
        _announce(args, path, writer, server, generation)
    tally = _Tally()
    finished = False  # --count/--duration reached (not a signal): give clients time to take everything
    broken: RingError | None = None  # the ring was truncated under us: stop, say so, exit 1
    try:
        _let_signals_in()  # a stop that came during start-up is raised here, inside the try
        _wait_for_subscribers(args, writer, server)
        _publish(args, writer, server, generation, tally)
        finished = True
    except _Stop:
        pass
    except RingError as exc:
        broken = exc
    finally:
        for s in old:  # a second signal must not interrupt the cleanup
            signal.signal(s, signal.SIG_IGN)
        if writer is not None:
            writer.close()
        if server is not None:
            server.stop(drain_s=DRAIN_AT_END_S if finished else DRAIN_ON_SIGNAL_S)
        for s, handler in old.items():
            signal.signal(s, handler)
    if broken is not None:
        _say(f"{broken}; stopped after publishing {tally.published} events")
        return EXIT_FAILURE
    if not args.quiet:
        _summarise(args, writer, server, tally)
    return EXIT_OK


def _check_options(args: argparse.Namespace) -> int | None:
    """The options that exclude each other; the WebSocket's port (None: no WebSocket)."""
    if args.like_shield:
        if args.no_ws:
            raise _Refused(EXIT_USAGE, "--like-shield serves the WebSocket; drop --no-ws")
        args.no_shm = True  # the Shield app itself writes no ring (docs/websocket.md)
    if args.no_ws and args.no_shm:
        raise _Refused(EXIT_USAGE, "--no-ws and --no-shm together leave nothing to publish to; drop one of them")
    if args.no_ws and args.wait_subscribers:
        raise _Refused(EXIT_USAGE, "--wait-subscribers needs the WebSocket; drop --no-ws")
    if args.format == "v1":
        if args.no_shm or args.ws_port is not None or args.wait_subscribers:
            raise _Refused(EXIT_USAGE, "--format v1 writes the Shield's v1 ring only: drop --no-shm, --like-shield, "
                           "--ws-port and --wait-subscribers (run `kgmon demo --like-shield` beside it for the "
                           "Shield's WebSocket)")
        args.no_ws = True
    if args.no_ws:
        return None
    try:
        return _ws_port(args)
    except ValueError as exc:
        raise _Refused(EXIT_USAGE, str(exc)) from None


def _open_ring(args: argparse.Namespace):
    """The ring first, as before the WebSocket existed: its errors (another writer: exit 3)
    come first. (writer, path), or (None, None) with --no-shm."""
    if args.no_shm:
        return None, None
    path = default_ring_path(args.shm_path)
    problem = not_a_ring(path)
    if problem is None and args.format == "v1" and v1.peek_version(path) not in (None, v1.VERSION):
        problem = (f"{path} is a format v{v1.peek_version(path)} ring; --format v1 would initialise it in "
                   "place under its writer: stop that writer or choose another --shm-path")
    if problem is not None:
        raise _Refused(EXIT_USAGE, problem)
    try:
        if args.format == "v1":
            return V1Writer(path, size=args.v1_bytes or v1.LINUX_FILE_SIZE), path
        return RingWriter(path, slot_size=args.slot_size, slot_count=args.slot_count), path
    except (ValueError, OSError) as exc:
        raise _Refused(EXIT_USAGE if isinstance(exc, ValueError) else EXIT_FAILURE,
                       f"cannot write the v1 ring at {path}: {exc}") from None
    except RingError as exc:
        if exc.status == Status.INVALID:
            status = EXIT_USAGE
        else:
            status = EXIT_CANNOT_ATTACH if exc.status == Status.LOCKED else EXIT_FAILURE
        raise _Refused(status, str(exc)) from None


def _serve(args: argparse.Namespace, port: int | None, writer):
    """The WebSocket server, started (None without one). If it cannot be served, the new
    ring is closed at once."""
    if port is None:
        return None
    server = LikeShieldServer(port, log=_say) if args.like_shield else DemoWsServer(port, log=_say)
    try:
        server.start()
    except WsServerError as exc:
        if writer is not None:
            writer.close()
        raise _Refused(EXIT_CANNOT_ATTACH if exc.port_in_use else EXIT_FAILURE,
                       f"cannot serve the WebSocket: {exc}; pick another port with --ws-port N, or use --no-ws") \
            from None
    return server


def _rate_text(args: argparse.Namespace) -> str:
    return f"{args.rate:g} events/s" if args.rate else "a few events/s with bursts"


def _announce(args: argparse.Namespace, path, writer, server, generation: int) -> None:
    where = [str(path)] if writer is not None else []
    if server is not None:
        where.append(server.url)
    if args.format == "v1":
        _say(f"writing the Shield's v1 ring at {path} ({_rate_text(args)}); Ctrl-C stops")
    else:
        no_ring = "" if writer is not None else "no ring, "
        _say(f"writing to {' and '.join(where)} ({no_ring}generation {generation:#x}, {_rate_text(args)}); "
             "Ctrl-C stops")


def _wait_for_subscribers(args: argparse.Namespace, writer, server) -> None:
    if not args.wait_subscribers:
        return
    if not args.quiet:
        _say(f"waiting for {args.wait_subscribers} WebSocket subscriber(s) before publishing")
    while server.subscribers < args.wait_subscribers:
        if writer is not None:
            writer.tick()
        time.sleep(0.01)


def _publish(args: argparse.Namespace, writer, server, generation: int, tally: _Tally) -> None:
    """Publish what the schedule says is due, to the ring and the WebSocket alike, until
    --count or --duration is reached or the app that started us is gone."""
    schedule = RateSchedule(args.rate, args.seed)
    generator = ThreatGenerator(args.seed)
    start = tally.start = time.monotonic()
    while True:
        now = time.monotonic()
        if args.duration and now - start >= args.duration:
            break
        due = schedule.due(now)
        if args.count:
            due = min(due, args.count - tally.published)
        while due > 0:
            n = min(due, MAX_BATCH)
            threats = generator.batch(n)
            if server is not None and not server.protection_enabled:
                # protection off: reported but not blocked, on both transports
                threats = [t._replace(blocked=False) if t.blocked else t for t in threats]
            if writer is not None:
                first = writer.write_seq  # the batch's events are first, first + 1, ...
                accepted = writer.publish(threats)
            else:
                first, accepted = tally.next_seq, len(threats)
            tally.next_seq = first + accepted
            if server is not None:
                mono_ns = time.monotonic_ns()
                server.broadcast([Published(generation, first + i, t, mono_ns) for i, t in enumerate(threats)])
            tally.published += accepted
            due -= n
        if writer is not None:
            writer.tick()
        if args.count and tally.published >= args.count:
            break
        if args.parent_pid and parent_gone(args.parent_pid):
            _say(f"the app (pid {args.parent_pid}) is gone; stopping")
            break
        wait = min(schedule.next_wakeup(time.monotonic()), TICK_S)
        if args.duration:
            wait = min(wait, max(0.0, start + args.duration - time.monotonic()))
        if wait > 0:
            time.sleep(wait)


def _summarise(args: argparse.Namespace, writer, server, tally: _Tally) -> None:
    took = time.monotonic() - tally.start if tally.start is not None else 0.0
    ring_done = "lock file removed" if args.format == "v1" else "ring closed"
    closed = "; ".join(([ring_done] if writer is not None else [])
                       + (["WebSocket closed"] if server is not None else []))
    lost = ""
    if server is not None and server.dropped_events:
        lost = f"; {server.dropped_events} events dropped for WebSocket clients that fell behind"
    _say(f"published {tally.published} events in {took:.1f} s; {closed}{lost}")
    if args.like_shield:
        _say(f"like the Shield: {server.summary()}")
