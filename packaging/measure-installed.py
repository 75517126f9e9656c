"""Start-up of the INSTALLED app (the .deb), for docs/packaging.md.

    sudo .venv/bin/python packaging/measure-installed.py [dist/kindlyguard-monitor_*.deb] [--runs 5]

Installs the .deb if it is not installed (and purges it again at the end), then
starts /usr/bin/kgmon under a throw-away Xvfb desktop with a tray host
(tests/desktop.py) `--runs` times cold (the page cache dropped first: root
only) and as many times warm, and prints the medians of "window shown N ms
after the process started" (the app's own log line, the figure `kgmon bench
--gui` reads: from the process's creation to the first painted frame) and of
the wall-clock time from exec to that line. Not run by CI: dropping the page
cache slows everything else on the machine for a moment.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "packaging"))
import freeze  # noqa: E402
from desktop import DesktopSession  # noqa: E402

from kindlyguard_monitor import child_process  # noqa: E402

LINE = re.compile(r"window shown (\d+) ms after the process started")


def installed() -> bool:
    r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", freeze.PACKAGE_NAME], capture_output=True, text=True)
    return r.returncode == 0 and r.stdout.startswith("install ok installed")


def drop_caches() -> bool:
    try:
        subprocess.run(["sync"], check=True)
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def start_once(env: dict, ring: Path, cold: bool) -> tuple[float, float, bool]:
    dropped = drop_caches() if cold else False
    t0 = time.monotonic()
    proc = subprocess.Popen(["/usr/bin/kgmon", "--shm-path", str(ring)], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, errors="replace")
    try:
        for line in proc.stderr:
            m = LINE.search(line)
            if m:
                return float(m.group(1)), (time.monotonic() - t0) * 1000, dropped
        raise RuntimeError(f"kgmon exited ({proc.wait()}) without showing its window")
    finally:
        child_process.end(proc, 30)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    debs = sorted(glob.glob(str(ROOT / "dist" / f"{freeze.PACKAGE_NAME}_*.deb")))
    p.add_argument("deb", nargs="?", default=debs[-1] if debs else None)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--json", help="also write the figures here")
    args = p.parse_args(argv)
    we_installed = False
    if not installed():
        if not args.deb:
            p.error("no .deb given and none in dist/ (make dist)")
        subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", os.path.abspath(args.deb)],
                       check=True, env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"), stdout=subprocess.DEVNULL)
        we_installed = True
    try:
        with tempfile.TemporaryDirectory(prefix="kgmon-measure-") as tmp, DesktopSession(tray="sni") as d:
            t = Path(tmp)
            for sub in ("home", "tmp", "ring"):
                (t / sub).mkdir(mode=0o700)
            env = dict(d.env, HOME=str(t / "home"), TMPDIR=str(t / "tmp"), PATH="/usr/bin:/bin",
                       XDG_CONFIG_HOME=str(t / "home" / ".config"), XDG_DATA_HOME=str(t / "home" / ".local/share"))
            env.pop("PYTHONPATH", None)
            ring = t / "ring" / "kindly-guard.shm"
            results = {}
            for kind in ("cold", "warm"):
                runs = [start_once(env, ring, cold=(kind == "cold")) for _ in range(args.runs)]
                results[kind] = {
                    "window_shown_ms": [r[0] for r in runs], "exec_to_line_ms": [round(r[1]) for r in runs],
                    "median_window_shown_ms": statistics.median(r[0] for r in runs),
                    "median_exec_to_line_ms": round(statistics.median(r[1] for r in runs)),
                    "page_cache_dropped": all(r[2] for r in runs),
                }
                print(f"{kind}: window shown, median of {args.runs}: {results[kind]['median_window_shown_ms']:.0f} ms "
                      f"(runs {results[kind]['window_shown_ms']}); exec to that line "
                      f"{results[kind]['median_exec_to_line_ms']} ms"
                      + ("" if kind == "warm" or results[kind]["page_cache_dropped"] else " (page cache NOT dropped)"))
            if args.json:
                Path(args.json).write_text(json.dumps(results, indent=2))
    finally:
        if we_installed:
            subprocess.run(["apt-get", "purge", "-y", "-q", freeze.PACKAGE_NAME], check=False,
                           env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"), stdout=subprocess.DEVNULL)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
