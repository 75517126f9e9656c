"""kgmon: the KindlyGuard Monitor command line.

    kgmon         the desktop app (--demo: with the built-in demo writer; --fleet URL: the fleet's threats)
    kgmon demo    a demo writer: realistic threats into the ring and the WebSocket
    kgmon tail    a headless reader: one line (or JSON object) per threat
    kgmon doctor  checks what a user needs checked, and says what to do
    kgmon bench   measures both transports against the bare-C floor
    kgmon export  writes the threat history, or a search of it, as CSV or JSON
    kgmon forward forwards the threat history to a NATS JetStream fleet stream

Exit status: 0 fine, 1 failure, 2 bad usage, 3 cannot attach to the ring.

Bad usage is one line on standard error, never a traceback: the exit statuses,
the parser and the checking argument types are in cli/args.py, which every
command imports.
"""

from __future__ import annotations

import argparse
import logging
import sys

from kindlyguard_monitor import __version__
from kindlyguard_monitor.cli.args import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, Parser, ws_url, ws_url_from_env
from kindlyguard_monitor.textsafe import log_to_stderr, visible
from kindlyguard_monitor.vocabulary import DEFAULT_WS_URL


def build_parser() -> argparse.ArgumentParser:
    from kindlyguard_monitor.cli import bench, demo, doctor, export, forward, tail  # each adds its own options

    common = Parser(add_help=False)
    common.add_argument(
        "--shm-path",
        metavar="PATH",
        help="the ring file (default: $KINDLYGUARD_SHM_PATH, else the platform path, "
        "/dev/shm/kindly-guard/kindly-guard.shm on Linux)",
    )
    parser = Parser(
        prog="kgmon",
        description="KindlyGuard Monitor: see the threats KindlyGuard Shield finds, as it finds them.",
    )
    parser.add_argument("--version", action="version", version=f"kgmon {__version__}")
    gui = parser.add_argument_group("the desktop app (kgmon with no command)")
    gui.add_argument("--demo", action="store_true",
                     help="also start the built-in demo writer (stopped when the app quits)")
    gui.add_argument("--hidden", action="store_true", help="start in the tray, without showing the window")
    gui.add_argument("--shm-path", metavar="PATH", help="the ring file (see the commands' --shm-path)")
    gui.add_argument("--ws-url", type=ws_url, metavar="URL", help=f"the Shield's WebSocket (default {DEFAULT_WS_URL})")
    gui.add_argument("--fleet", type=forward.nats_urls, metavar="URL",
                     help="watch the fleet's threats on this NATS server (nats:// or tls://) instead of this "
                     "machine's Shield (docs/fleet.md)")
    gui.add_argument("--consumer", metavar="NAME",
                     help="with --fleet: this viewer's durable consumer (default viewer-<host>-<user>-app)")
    gui.add_argument("--fleet-host", metavar="HOST", help="with --fleet: only this workstation's threats")
    forward.add_connection_options(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in (demo, tail, bench, doctor, export, forward):
        module.add_parser(sub, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    from kindlyguard_monitor.cli.export import join_time_values

    parser = build_parser()
    args = parser.parse_args(join_time_values(sys.argv[1:] if argv is None else list(argv)))
    if getattr(args, "ws_url", "-") is None and args.command != "doctor":  # doctor reports it as a finding
        problem = ws_url_from_env()
        if problem is not None:
            print(f"kgmon: {problem}", file=sys.stderr)
            return EXIT_USAGE
    if args.command is None:
        try:
            from kindlyguard_monitor.gui.launch import run as run_gui  # Qt is loaded only for the app
        except ImportError as exc:
            print(f"kgmon: the desktop app cannot start: {visible(str(exc))}; `kgmon tail` works without it",
                  file=sys.stderr)
            return EXIT_FAILURE
        return run_gui(args)
    log_to_stderr(logging.WARNING)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
