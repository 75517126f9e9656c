"""The frozen app's entry point (build.spec's script): the same `kgmon` command
line as the installed one (no arguments: the desktop app; `kgmon demo`, `kgmon
tail`, ... the commands), so the demo writer the app starts as
`[sys.executable, "demo", ...]` is this same executable.

The app also starts helpers as `[sys.executable, "-c", CODE]` (kgmon doctor's
XEmbed probe) and `[sys.executable, "-m", MODULE, ...]` (kgmon bench's writer
process, kgmon bench --gui's app). A frozen executable is no interpreter, so
those two forms are served here, as python would: only when frozen, only as
the first argument. (Whoever can run this program can already run Python code
as themselves: it gives no one anything new.)
"""

from __future__ import annotations

import runpy
import sys


def _as_interpreter(argv: list[str]) -> bool:
    """Run `-c CODE ARGS` or `-m MODULE ARGS` as python does; False if argv is neither."""
    if len(argv) < 3 or argv[1] not in ("-c", "-m"):
        return False
    if argv[1] == "-c":
        sys.argv = ["-c", *argv[3:]]
        code = compile(argv[2], "<string>", "exec")
        exec(code, {"__name__": "__main__", "__builtins__": __builtins__})
    else:
        sys.argv = [argv[2], *argv[3:]]
        runpy.run_module(argv[2], run_name="__main__", alter_sys=True)
    return True


def main() -> int:
    if getattr(sys, "frozen", False) and _as_interpreter(sys.argv):
        return 0
    from kindlyguard_monitor.cli.main import main as kgmon_main

    return kgmon_main()


if __name__ == "__main__":
    sys.exit(main())
