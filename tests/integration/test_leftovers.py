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
