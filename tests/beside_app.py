"""Run a command while the user's own KindlyGuard Monitor runs (issue 12):

    python tests/beside_app.py COMMAND...

Starts `kgmon --demo` as a user would (their default ring path, the default
single-instance socket, the default WebSocket port; offscreen when there is no
display; its settings and history in a throw-away home), waits until its ring
is there, runs COMMAND (the test suite), then checks the app is still running
(a test that stopped it, or took its socket or ring, would show here), stops it
and removes what it made. Exit status: COMMAND's, or 1 if the app did not
survive it. Used by `make test`.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from kindlyguard_monitor.ring.paths import default_ring_path  # noqa: E402
from kindlyguard_monitor.transport.local_auth import runtime_dir  # noqa: E402


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    for var in ("KINDLYGUARD_SHM_PATH", "KINDLYGUARD_HISTORY_PATH"):
        os.environ.pop(var, None)  # the user's app uses the defaults
    env = dict(os.environ)
    ring = Path(default_ring_path(None))
    ring_dir_existed = ring.parent.exists()
    home = Path(tempfile.mkdtemp(prefix="kgmon-user-home-"))
    app_env = dict(env, HOME=str(home), PYTHONPATH=str(REPO))
    for var in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME"):
        app_env.pop(var, None)  # the defaults under (the throw-away) HOME
    if not env.get("DISPLAY") and not env.get("WAYLAND_DISPLAY"):
        app_env["QT_QPA_PLATFORM"] = "offscreen"
    tokens = runtime_dir(app_env)  # where its demo's WebSocket keeps its token file
    tokens_existed = tokens.exists()
    log = home / "app.log"
    with open(log, "wb") as out:
        app = subprocess.Popen([sys.executable, "-m", "kindlyguard_monitor", "--demo"], env=app_env, cwd=home,
                               stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not ring.exists() and app.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        if not ring.exists():
            print(f"beside_app: the user's app did not start its demo ring at {ring}:\n{log.read_text()}",
                  file=sys.stderr)
            return 1
        print(f"beside_app: the user's own kgmon --demo runs (pid {app.pid}, ring {ring}); running "
              + " ".join(argv), file=sys.stderr, flush=True)
        status = subprocess.call(argv)
        if app.poll() is not None:
            print(f"beside_app: the user's app did not survive the run (exit {app.returncode}):\n"
                  f"{log.read_text()[-3000:]}", file=sys.stderr)
            return 1
        print("beside_app: the user's app is still running, untouched", file=sys.stderr)
        return status
    finally:
        if app.poll() is None:
            os.killpg(app.pid, signal.SIGTERM)
            try:
                app.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(app.pid, signal.SIGKILL)
                app.wait()
        if not ring_dir_existed:
            shutil.rmtree(ring.parent, ignore_errors=True)
        if not tokens_existed:
            shutil.rmtree(tokens, ignore_errors=True)
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
