"""`make dist`'s build for tests/e2e/test_packaging.py, started as soon as the session knows it
will need it (tests/conftest.py's pytest_collection_finish), so it runs while the rest of the
suite does, instead of holding the suite up for minutes near its end (the rest of the suite
mostly waits on its processes and servers: it leaves a core idle most of the time).

The same two steps the packaging fixtures ran, in the same order, with the same commands:
`make dist-deps test-deps`, then packaging/build-linux.sh with this venv's Python. Only the
start is earlier, and at the lowest CPU priority (nice 19), so the build takes what the tests
leave idle and never slows a test down. The fixtures `dist_tools` and `built` wait for their
step's result and check it exactly as before. A session that ends first (-x, Ctrl-C) stops the
build (stop(), from pytest_sessionfinish): nothing is left running.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEPS_TIMEOUT = 900   # as the fixtures had it
BUILD_TIMEOUT = 1800  # the fixtures had 900 s; at nice 19 beside a busy suite it may take longer

_lock = threading.Lock()
_thread: threading.Thread | None = None
_proc: subprocess.Popen | None = None
_stopping = False
_results: dict[str, subprocess.CompletedProcess | BaseException] = {}
_done = {"deps": threading.Event(), "build": threading.Event()}


def _env(**extra: str) -> dict:
    """The session's environment, but Python's bytecode settings as the user had them: what pip
    installs (the dist extra) gets its .pyc files in the venv, not in the session's pycache."""
    from conftest import USER_ENV

    env = dict(os.environ, **extra)
    for var in ("PYTHONPYCACHEPREFIX", "PYTHONDONTWRITEBYTECODE"):
        env.pop(var, None)
        if var in USER_ENV:
            env[var] = USER_ENV[var]
    return env


def _run(step: str, argv: list[str], timeout: float, env: dict | None = None) -> bool:
    """Run one step at nice 19 in its own process group; keep its CompletedProcess (or the exception)."""
    global _proc
    started = time.monotonic()
    try:
        with _lock:
            if _stopping:
                raise RuntimeError("the test session ended before this step started")
            _proc = subprocess.Popen(["nice", "-n", "19", *argv], cwd=ROOT, env=env or _env(),
                                     stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     start_new_session=True)
        try:
            out, err = _proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill(_proc)
            out, err = _proc.communicate()
            raise subprocess.TimeoutExpired(argv, timeout, out, err) from None
        result = subprocess.CompletedProcess(argv, _proc.returncode, out, err)
        result.seconds = time.monotonic() - started
        _results[step] = result
        return result.returncode == 0
    except BaseException as exc:  # noqa: BLE001 - handed to the fixture that waits for it
        _results[step] = exc
        return False
    finally:
        _done[step].set()


_build_started = False


def _deps() -> bool:
    return _run("deps", ["make", "--no-print-directory", "dist-deps", "test-deps"], DEPS_TIMEOUT)


def _build() -> None:
    (ROOT / "dist" / "linux-artefacts.json").unlink(missing_ok=True)  # written again by a build that succeeds
    _run("build", ["bash", str(ROOT / "packaging" / "build-linux.sh")], BUILD_TIMEOUT,
         env=_env(PYTHON=sys.executable))


def _steps(build: bool) -> None:
    if _deps() and build:
        _build()
    elif build:
        _results["build"] = RuntimeError("not built: `make dist-deps test-deps` failed")
        _done["build"].set()


def start(build: bool) -> None:
    """Start the steps in the background (once): the deps, then the build unless build is False."""
    global _thread, _build_started
    if _thread is not None:
        return
    _build_started = build
    _thread = threading.Thread(target=_steps, args=(build,), name="dist-build", daemon=True)
    _thread.start()


def result(step: str) -> subprocess.CompletedProcess:
    """The finished step's CompletedProcess (its `seconds` too), waiting for it; started here if
    nothing started it (a session that picked its tests some other way). Raises what the step raised."""
    global _build_started
    if _thread is None:
        start(build=step == "build")
    if step == "build" and not _build_started:  # only the deps were wanted at the start
        _build_started = True
        if result("deps").returncode == 0:  # raises what the step raised
            _build()
        else:
            _results["build"] = RuntimeError("not built: `make dist-deps test-deps` failed")
            _done["build"].set()
    if not _done[step].wait(DEPS_TIMEOUT + BUILD_TIMEOUT):
        raise TimeoutError(f"{step} still running after {DEPS_TIMEOUT + BUILD_TIMEOUT} s")
    got = _results[step]
    if isinstance(got, BaseException):
        raise got
    return got


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def stop() -> None:
    """End a step still running (the session is over) and wait for it."""
    global _stopping
    with _lock:
        _stopping = True
        proc = _proc
    if proc is not None and proc.poll() is None:
        _kill(proc)
    if _thread is not None:
        _thread.join(60)
