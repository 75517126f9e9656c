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
from kindlyguard_monitor.cli.args import (EXIT_FAILURE, EXIT_OK, EXIT_USAGE, TIME_OPTIONS, Parser, ws_url,
                                          ws_url_from_env)
from kindlyguard_monitor.textsafe import log_to_stderr, visible
from kindlyguard_monitor.vocabulary import DEFAULT_WS_URL, FLOOD_WRITER_COMMAND


COMMANDS = ("demo", "tail", "bench", "doctor", "export", "forward")


def build_parser(commands: bool = True) -> argparse.ArgumentParser:
    """kgmon's parser; without `commands`, only the desktop app's options (see gui_args)."""
    from kindlyguard_monitor.cli import forward  # the app's --fleet and NATS connection options

    common = Parser(add_help=False)
    common.add_argument(
        "--shm-path",
        metavar="PATH",
        help="the ring file (default: $KINDLYGUARD_SHM_PATH, else the platform path, "
        "/dev/shm/kindly-guard/kindly-guard.shm on Linux)",
    )
    # The app-only parser has no --help and takes no abbreviation: `--h` (--help or --hidden?)
    # and the like are left to the whole parser, as are --help and every command.
    parser = (Parser if commands else _AppOnlyParser)(
        prog="kgmon",
        description="KindlyGuard Monitor: see the threats KindlyGuard Shield finds, as it finds them.",
        add_help=commands, allow_abbrev=commands,
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
    if not commands:
        return parser
    # Each command's module adds its own options: imported only when a command (or --help) may be
    # asked for, since several of them import much (asyncio, websockets' server, the bench, the
    # doctor's checks) that the desktop app's start does not need (docs/benchmarks.md, start-up).
    from kindlyguard_monitor.cli import bench, demo, doctor, export, tail

    modules = {"demo": demo, "tail": tail, "bench": bench, "doctor": doctor, "export": export, "forward": forward}
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        modules[name].add_parser(sub, common)
    return parser


class _NotTheApp(Exception):
    """What the app-only parser cannot settle: kgmon's whole parser decides (and words any error)."""


class _AppOnlyParser(Parser):
    def error(self, message: str):
        raise _NotTheApp(message)


def gui_args(argv: list[str]) -> argparse.Namespace | None:
    """argv parsed as the whole parser would, when it starts the desktop app (no command,
    no --help, no usage error); None otherwise. The app's start thereby imports no
    command's module (tests/unit/test_cli_main.py checks both)."""
    try:
        args, rest = build_parser(commands=False).parse_known_args(argv)
    except _NotTheApp:
        return None
    if rest:  # a command, --help, or something the whole parser refuses
        return None
    args.command = None
    return args


def parse_args(argv: list[str]) -> argparse.Namespace:
    if any(option in argv for option in TIME_OPTIONS):  # only then is cli/export.py needed
        from kindlyguard_monitor.cli.export import join_time_values

        argv = join_time_values(argv)
    args = gui_args(argv)
    return args if args is not None else build_parser().parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == [FLOOD_WRITER_COMMAND]:  # not a user's command: the app's own child process
        from kindlyguard_monitor.history import flood_writer

        return flood_writer.main(argv[1:])
    args = parse_args(argv)
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
