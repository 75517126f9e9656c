"""Nothing left behind (issue 12): what a test session of ours leaves running or
on disk, found by tests/conftest.py's session hooks.

- processes: any process of this user, other than pytest itself, whose
  environment carries this session's KGMON_TEST_SESSION (every child of the
  suite inherits it: apps, demo writers, Xvfb, D-Bus, dunst...);
- files: whatever is left in the session's private folders (its TMPDIR and
  XDG_RUNTIME_DIR, pytest's own tmp_path folders excepted), and new entries in
  /dev/shm, /tmp and the user's own folders with one of our names that were not
  there when the session started (another session of ours, running at the same
  time, keeps to its own kgmon-tests-* folder and is not counted).
"""

from __future__ import annotations

import fnmatch
import os
import time
from pathlib import Path

import psutil

SESSION_VAR = "KGMON_TEST_SESSION"
# Names of ours in shared folders: rings, sockets, temp folders, the app's data.
OUR_NAMES = ("kindly*", "kgmon*", "kg-*", "kg_*", "KindlyGuard*", "selftest*")
SESSION_PREFIX = "kgmon-tests-"


def shared_places(home: Path) -> list[Path]:
    """Folders we look into for new entries with our names."""
    return [Path("/dev/shm"), Path("/tmp"), home / ".config", home / ".config" / "autostart",
            home / ".local" / "share", home / ".cache", home / ".local" / "state"]


def snapshot(places: list[Path]) -> set[str]:
    found = set()
    for place in places:
        try:
            names = os.listdir(place)
        except OSError:
            continue
        for name in names:
            if any(fnmatch.fnmatch(name, p) for p in OUR_NAMES) and not name.startswith(SESSION_PREFIX):
                found.add(str(place / name))
    return found


def processes(session: str) -> list[psutil.Process]:
    """Live processes of this user started under this test session (not us)."""
    me, uid, out = os.getpid(), os.getuid(), []
    for p in psutil.process_iter(["uids", "pid"]):
        try:
            if p.pid == me or p.info["uids"] is None or p.info["uids"].real != uid:
                continue
            if p.status() == psutil.STATUS_ZOMBIE:
                continue
            if p.environ().get(SESSION_VAR) == session:
                out.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return out


def private_leftovers(folders: list[Path], keep: tuple[str, ...] = ("pytest-of-*",)) -> list[str]:
    """Everything left in the session's own temp and runtime folders."""
    out = []
    for folder in folders:
        try:
            names = sorted(os.listdir(folder))
        except OSError:
            continue
        out += [str(folder / n) for n in names if not any(fnmatch.fnmatch(n, k) for k in keep)]
    return out


def kill(procs: list[psutil.Process]) -> None:
    for p in procs:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(p) for p in procs):
        time.sleep(0.05)  # a killed grandchild stays a zombie until its parent reaps it: gone enough


def _alive(p: psutil.Process) -> bool:
    try:
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def describe(p: psutil.Process) -> str:
    try:
        return f"pid {p.pid}: {' '.join(p.cmdline())[:160]}"
    except psutil.Error:
        return f"pid {p.pid}"
