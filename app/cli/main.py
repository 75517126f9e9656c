"""kgmon: the KindlyGuard Monitor command line.

    kgmon demo    a demo writer: realistic threats into the ring
    kgmon tail    a headless reader: one line (or JSON object) per threat
    kgmon bench   measures the ring end to end against the bare-C floor

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
    from app.cli import bench, demo, doctor, tail  # each adds its own options

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
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in (demo, tail, bench, doctor):
        module.add_parser(sub, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        print(
            "\nkgmon: the desktop app is not built yet; run `kgmon demo` in one terminal and "
            "`kgmon tail` in another to watch threats.",
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        return args.run(args)
    except KeyboardInterrupt:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
