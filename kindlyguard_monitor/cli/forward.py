"""kgmon forward: the local threat history, forwarded to the fleet's NATS JetStream stream.

Every threat (and every gap) the history holds goes to stream KINDLYGUARD_THREATS,
exactly once, in row order, resuming from the last acknowledged row after a
restart, a kill, a network loss or a server restart (kindlyguard_monitor/fleet/).
Runs until Ctrl-C / SIGTERM, or with --once until nothing waits.
Exit status 0, 2 bad usage, 1 when --once could not finish.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from kindlyguard_monitor.cli.args import EXIT_FAILURE, EXIT_OK, int_in
from kindlyguard_monitor.textsafe import visible

ENV_NATS_URL = "KINDLYGUARD_NATS_URL"


def nats_urls(text: str) -> str:
    """An argparse type: nats:// or tls:// URLs, comma-separated."""
    from kindlyguard_monitor.fleet.connect import url_problem

    problem = url_problem(text)
    if problem is not None:
        raise argparse.ArgumentTypeError(problem)
    return text


def otlp_url(text: str) -> str:
    """An argparse type: the OTLP/HTTP logs endpoint, http:// or https://."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(text.strip())
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        ok = False
    if not ok:
        raise argparse.ArgumentTypeError("give the receiver's OTLP/HTTP logs URL, e.g. http://collector:4318/v1/logs")
    return text.strip()


def add_connection_options(p) -> None:
    """TLS and credentials, shared by `kgmon forward` and `kgmon tail --fleet`."""
    g = p.add_argument_group("NATS connection (docs/fleet.md)")
    g.add_argument("--ca", metavar="FILE", help="CA certificate(s) to check the server's TLS certificate "
                   "(turns TLS on; default with tls:// URLs: the system's CAs)")
    g.add_argument("--tls-cert", metavar="FILE", help="client certificate for mutual TLS (with --tls-key)")
    g.add_argument("--tls-key", metavar="FILE", help="the client certificate's private key")
    g.add_argument("--creds", metavar="FILE", help="a NATS credentials file (user JWT and NKey seed)")
    g.add_argument("--nkey", metavar="FILE", help="a file holding an NKey seed (SU...)")


def connection_options(args, urls: str, name: str):
    from kindlyguard_monitor.fleet.connect import Options, split_urls

    return Options(servers=tuple(split_urls(urls)), ca_file=args.ca, cert_file=args.tls_cert,
                   key_file=args.tls_key, creds_file=args.creds, nkey_file=args.nkey, name=name)


def add_parser(sub, common) -> None:
    p = sub.add_parser(
        "forward",
        parents=[common],
        help="forward the threat history to a NATS JetStream fleet stream",
        description="Publish every threat in the local history (and every gap it records) to the JetStream "
        "stream KINDLYGUARD_THREATS, subject kindlyguard.threats.<host>.<severity>, exactly once and in order; "
        "resumes from the last acknowledged row. Runs until stopped (Ctrl-C, SIGTERM).",
    )
    p.add_argument("--nats", type=nats_urls, metavar="URL",
                   help=f"the NATS server(s): nats://host:4222 or tls://host:4222, comma-separated "
                   f"(default: ${ENV_NATS_URL})")
    p.add_argument("--otlp", type=otlp_url, metavar="URL",
                   help="instead of NATS: send every threat as an OpenTelemetry log record to this OTLP/HTTP "
                   "receiver (http(s)://collector:4318/v1/logs; --ca checks its certificate; headers such as "
                   "an API key from $OTEL_EXPORTER_OTLP_HEADERS). Needs the otel extra")
    p.add_argument("--history", metavar="PATH", help="the threat history (default: $KINDLYGUARD_HISTORY_PATH, "
                   "else the user's data folder)")
    p.add_argument("--host", metavar="NAME", help="this workstation's name in subjects (default: the host name)")
    p.add_argument("--window", type=int_in(1, 65536), default=1024, metavar="N",
                   help="most publishes waiting for their acknowledgement (default %(default)s)")
    p.add_argument("--replicas", type=int_in(1, 5), default=1, metavar="N",
                   help="replicas of the stream, if this command creates it (default %(default)s)")
    p.add_argument("--once", action="store_true",
                   help="exit when everything in the history is acknowledged (status 0) or at the first failure (1)")
    add_connection_options(p)
    p.set_defaults(run=run)


def _urls(args) -> str | None:
    import os

    from kindlyguard_monitor.fleet.connect import url_problem

    if args.nats:
        return args.nats
    env = os.environ.get(ENV_NATS_URL, "").strip()
    if not env:
        print(f"kgmon {args.command}: give --nats URL (or set {ENV_NATS_URL})", file=sys.stderr)
        return None
    problem = url_problem(env)
    if problem is not None:
        print(f"kgmon {args.command}: {ENV_NATS_URL}: {visible(problem)}; fix it or unset it", file=sys.stderr)
        return None
    return env


def nats_missing(command: str) -> str | None:
    """One sentence when the NATS client (the fleet extra; the installers carry it) cannot be imported."""
    try:
        import nats  # noqa: F401
        import nats.js  # noqa: F401
    except ImportError:
        if getattr(sys, "frozen", False):
            return (f"kgmon {command}: this build of kgmon was made without the NATS client (nats-py), so it "
                    "cannot reach a fleet; use a build that has it, or pip install 'kindlyguard-monitor[fleet]'")
        return f"kgmon {command}: the NATS client is not installed: pip install 'kindlyguard-monitor[fleet]'"
    return None


def run_otlp(args: argparse.Namespace) -> int:
    from kindlyguard_monitor.fleet import otlp
    from kindlyguard_monitor.history.db import history_path

    if not otlp.available():
        print("kgmon forward: the OpenTelemetry exporter is not installed"
              + (" in this build" if getattr(sys, "frozen", False) else "")
              + ": pip install 'kindlyguard-monitor[otel]'", file=sys.stderr)
        return EXIT_FAILURE
    logging.getLogger("kindlyguard_monitor.fleet").setLevel(logging.INFO)
    fwd = otlp.OtlpForwarder(history_path(args.history), args.otlp, args.host, ca_file=args.ca)
    done = otlp.forward_until(fwd, args.once)
    print(f"kgmon forward: {fwd.acked} sent to the OTLP receiver, {fwd.waiting} waiting", file=sys.stderr)
    if args.once and not done:
        print(f"kgmon forward: {visible(fwd.state)}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    from kindlyguard_monitor.cli.args import EXIT_USAGE
    from kindlyguard_monitor.history.db import history_path

    if args.otlp:
        if args.nats:
            print("kgmon forward: give --nats or --otlp, not both (run two forwarders: each has its own cursor)",
                  file=sys.stderr)
            return EXIT_USAGE
        return run_otlp(args)
    missing = nats_missing("forward")
    if missing:
        print(missing, file=sys.stderr)
        return EXIT_FAILURE
    import asyncio  # here, not at the top: the desktop app imports this module for its options

    from kindlyguard_monitor.fleet.forwarder import Forwarder

    urls = _urls(args)
    if urls is None:
        return EXIT_USAGE
    logging.getLogger("kindlyguard_monitor.fleet").setLevel(logging.INFO)
    fwd = Forwarder(history_path(args.history), connection_options(args, urls, "kgmon forward"), args.host,
                    window=args.window, replicas=args.replicas)

    async def main() -> bool:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        return await fwd.run(stop, until_idle=args.once)

    done = asyncio.run(main())
    st = fwd.stats
    known = f" ({st.duplicates} already in the stream)" if st.duplicates is not None else ""
    print(f"kgmon forward: {st.acked} acknowledged{known}, {st.waiting} waiting, {st.failures} failure(s)",
          file=sys.stderr)
    if args.once and not done:
        print(f"kgmon forward: {visible(st.state)}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK
