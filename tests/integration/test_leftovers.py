"""The session's leftover check (tests/leftovers.py, run by conftest.py at the end
of every session) is able to fail: a pytest run whose test leaves a file in
/dev/shm or in its temp folder, or a process running, ends in failure, naming
them, and kills the process."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import psutil

from conftest import REPO, USER_ENV

LEAKY = '''
import os, subprocess, sys, tempfile
def test_leaks():
    open({shm!r}, "w").close()
    tempfile.mkstemp(prefix="forgotten-")
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", {marker!r}])
'''


def test_a_session_that_leaves_something_behind_fails(tmp_path):
    marker = f"kgmon-leak-{uuid.uuid4().hex[:8]}"
    shm = f"/dev/shm/{marker}"
    (tmp_path / "test_leaky.py").write_text(LEAKY.format(shm=shm, marker=marker))
    env = dict(USER_ENV, PYTHONPATH=os.pathsep.join([str(REPO / "tests"), str(REPO)]), KGMON_REQUIRE_DESKTOP="1")
    try:
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "conftest", "-p", "no:cacheprovider",
                               "--rootdir", str(tmp_path), str(tmp_path / "test_leaky.py")],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 1, done.stdout + done.stderr
        assert f"left behind: {shm}" in done.stdout, done.stdout
        assert "still running: pid" in done.stdout and marker in done.stdout, done.stdout
        assert "/tmp/forgotten-" in done.stdout, "a temp file forgotten in the session's own TMPDIR"
        assert not [p for p in psutil.process_iter(["cmdline"]) if marker in (p.info["cmdline"] or [])], \
            "the check killed what it found"
        kept = Path(done.stderr.split("the test session's folder is kept: ")[1].split()[0])
        assert kept.name.startswith("kgmon-tests-")
    finally:
        if os.path.exists(shm):
            os.unlink(shm)
        if "kept" in locals():
            import shutil

            shutil.rmtree(kept, ignore_errors=True)


def test_immutable_files_an_ended_run_left_are_freed_and_nothing_else(tmp_path, unwritable):
    """A run that crashed inside the `unwritable` fixture leaves a `chattr +i` file in its
    kgmon-tests-* folder, which nobody can remove: the next session lifts the flag there, and only
    there: not in a running session's folder (its lock is held), nor in a folder not named as ours."""
    import fcntl

    from conftest import lift_immutable_leftovers

    def session_folder(name: str) -> tuple[Path, Path]:
        folder = tmp_path / name
        (folder / "tmp" / "deep").mkdir(parents=True)
        (folder / "session.lock").touch()
        stuck = folder / "tmp" / "deep" / "history.sqlite3"
        stuck.write_text("x")
        return folder, stuck

    ended, ended_file = session_folder("kgmon-tests-ended")
    running, running_file = session_folder("kgmon-tests-running")
    other, other_file = session_folder("someone-elses")
    (ended / "tmp" / "out").symlink_to(other)  # never followed out of the ended folder
    how = unwritable(ended_file, ended / "tmp" / "deep", running_file, other_file)
    with open(running / "session.lock") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        lifted = lift_immutable_leftovers(tmp_path)
    if how == "chattr +i":
        assert sorted(lifted) == sorted([str(ended_file), str(ended / "tmp" / "deep")])
        assert os.access(ended_file, os.W_OK) and os.access(ended / "tmp" / "deep", os.W_OK)
        assert not os.access(running_file, os.W_OK) and not os.access(other_file, os.W_OK)
