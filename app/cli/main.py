"""kgmon: the KindlyGuard Monitor command line.

    kgmon         the desktop app (--demo: with the built-in demo writer)
    kgmon demo    a demo writer: realistic threats into the ring and the WebSocket
    kgmon tail    a headless reader: one line (or JSON object) per threat
    kgmon doctor  checks what a user needs checked, and says what to do
    kgmon bench   measures both transports against the bare-C floor
    kgmon export  writes the threat history, or a search of it, as CSV or JSON

Exit status: 0 fine, 1 failure, 2 bad usage, 3 cannot attach to the ring.
"""

from __future__ import annotations

import argparse
import sys

from app import __version__

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_CANNOT_ATTACH = 0, 1, 2, 3


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, not {text}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from app.cli import bench, demo, doctor, export, tail  # each adds its own options

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--shm-path",
        metavar="PATH",
        help="the ring file (default: $KINDLYGUARD_SHM_PATH, else the platform path, "
        "/dev/shm/kindly-guard/kindly-guard.shm on Linux)",
    )
    parser = argparse.ArgumentParser(
        prog="kgmon",
        description="KindlyGuard Monitor: see the threats KindlyGuard Shield finds, as it finds them.",
    )
    parser.add_argument("--version", action="version", version=f"kgmon {__version__}")
    gui = parser.add_argument_group("the desktop app (kgmon with no command)")
    gui.add_argument("--demo", action="store_true",
                     help="also start the built-in demo writer (stopped when the app quits)")
    gui.add_argument("--hidden", action="store_true", help="start in the tray, without showing the window")
    gui.add_argument("--shm-path", metavar="PATH", help="the ring file (see the commands' --shm-path)")
    gui.add_argument("--ws-url", metavar="URL", help="the Shield's WebSocket (default ws://127.0.0.1:9955)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in (demo, tail, bench, doctor, export):
        module.add_parser(sub, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        try:
            from app.gui.app import run as run_gui  # Qt is loaded only for the app
        except ImportError as exc:
            print(f"kgmon: the desktop app cannot start: {exc}; `kgmon tail` works without it", file=sys.stderr)
            return EXIT_FAILURE
        return run_gui(args)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
