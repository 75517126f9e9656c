"""Shared helpers for tests that run `kgmon` (python -m kindlyguard_monitor) as real processes.

- `ring_dir` / `ring_path`: a private ring folder (mode exactly 0700) per test;
- `run_kgmon(*args)`: run kgmon to completion, output captured;
- `start_kgmon(*args)` / `start_python(code, *args)`: start a process in the
  background; every process started this way is killed and reaped when the
  test ends (PID 1 does not reap here, so nothing may be left behind);
- `OutputWatcher(proc)`: drains a started process's stdout/stderr in threads
  (a tail printing thousands of lines must never block on a full pipe) and
  lets a test wait for a line, with the moment each line was read;
- `wait_for_file`, `wait_for`, `wait_blocked_in` (a thread really sleeps in a call),
  `wait_reader_settled` (the GUI has handled what a reader thread delivered), `read_json_lines`.

No fixed sleeps: everything waits for a condition, with generous timeouts
(these tests run on a loaded 2-core CI machine).
"""

from __future__ import annotations

import fcntl
import gc
import json
import os
import socket
import shutil
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

import pytest

# Widget and model tests run on Qt's offscreen platform; the end-to-end desktop
# tests start their own X server and set QT_QPA_PLATFORM=xcb for the app.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# Tests never talk to the user's own desktop: no notifications on a developer's
# screen, no tray icons in their panel. The desktop tests bring their own bus.
for _name in ("DBUS_SESSION_BUS_ADDRESS", "DISPLAY", "WAYLAND_DISPLAY"):
    os.environ.pop(_name, None)

REPO = Path(__file__).resolve().parents[1]
KGMON = [sys.executable, "-m", "kindlyguard_monitor"]

# One private home per test session (issue 12). Everything the app keeps per user
# or per desktop session goes to this session's folder: settings (QSettings under
# $XDG_CONFIG_HOME), the history's default place ($XDG_DATA_HOME), the single-
# instance socket ($XDG_RUNTIME_DIR), temp files ($TMPDIR: pytest's tmp_path, the
# desktop tests' folders, Qt's sockets). So the suite never meets the user's own
# running app, nor the tests of another checkout running at the same time, and
# what is left at the end is ours (tests/leftovers.py; checked below).
USER_ENV = dict(os.environ)  # as the user had it (e.g. their pip cache, for the wheel test)
SESSION_DIR = Path(tempfile.mkdtemp(prefix="kgmon-tests-"))
# Held (flock) while this session runs: a kgmon-tests-* folder whose lock nobody holds is an earlier,
# ended run's (see lift_immutable_leftovers). The kernel drops the lock however the process ends.
_SESSION_LOCK = open(SESSION_DIR / "session.lock", "w")
fcntl.flock(_SESSION_LOCK, fcntl.LOCK_EX)
# Not $XDG_CACHE_HOME: the app keeps nothing there, and PyInstaller's and fontconfig's
# caches there make `make dist` and Qt's start-up minutes slower when empty.
for _var, _sub in (("TMPDIR", "tmp"), ("XDG_RUNTIME_DIR", "run"), ("XDG_CONFIG_HOME", "config"),
                   ("XDG_DATA_HOME", "data"), ("XDG_STATE_HOME", "state")):
    (SESSION_DIR / _sub).mkdir(mode=0o700)
    os.environ[_var] = str(SESSION_DIR / _sub)
os.environ["KINDLYGUARD_BENCH_DIR"] = str(SESSION_DIR / "tmp")  # the bench's rings: not in /dev/shm
# The suite starts hundreds of Python processes (kgmon, demo writers, the app). With
# PYTHONDONTWRITEBYTECODE set (as on the CI machine) each one compiled every module of the app
# from source again: about half of a kgmon start's CPU. Compiled once per session instead, into
# this session's own folder (the checkout and the system stay untouched; removed at the end).
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
os.environ["PYTHONPYCACHEPREFIX"] = str(SESSION_DIR / "pycache")
os.environ["KGMON_TEST_SESSION"] = str(SESSION_DIR)  # every child inherits it: found if left running
# Leftovers in shared places (/dev/shm, /tmp, the user's folders) fail the run in CI;
# on a developer's machine other programs (a bench, another checkout) may be making
# such files at the same moment, so there they are reported, not failed.
STRICT_SHARED = os.environ.get("CI") == "true" or os.environ.get("KGMON_REQUIRE_DESKTOP") == "1"
tempfile.tempdir = None  # recomputed from the new TMPDIR

_started: list[subprocess.Popen] = []
_watchers: list["OutputWatcher"] = []


def _env(env: dict | None) -> dict:
    base = dict(os.environ if env is None else env)
    base.pop("KINDLYGUARD_SHM_PATH", None)  # every test names its ring explicitly
    if env is None:
        base.pop("KINDLYGUARD_WS_URL", None)  # a test that wants one passes its own env
    base["PYTHONPATH"] = str(REPO) + (os.pathsep + base["PYTHONPATH"] if base.get("PYTHONPATH") else "")
    return base


# ---- nothing left behind (issue 12) ----

_before: set[str] = set()


FS_IOC_GETFLAGS, FS_IOC_SETFLAGS, FS_IMMUTABLE_FL = 0x80086601, 0x40086602, 0x10
LOCKLESS_AGE = 6 * 3600  # a folder from before sessions held a lock: ended when this old


def _ended_session_folders(parent: Path) -> list[Path]:
    """The kgmon-tests-* folders in `parent` (beside ours: this user's earlier test sessions) whose
    run has ended: their session.lock is free (or, made before the lock existed, it is hours old)."""
    out = []
    for folder in parent.glob("kgmon-tests-*"):
        try:
            st = folder.lstat()
        except OSError:
            continue
        if folder == SESSION_DIR or not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
            continue  # a symlink, a file, another user's: not ours to touch
        try:
            fd = os.open(folder / "session.lock", os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            if time.time() - st.st_mtime > LOCKLESS_AGE:
                out.append(folder)
            continue
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released by the close below
            out.append(folder)
        except OSError:
            pass  # a session running now (another checkout, `make test-twice`'s other copy)
        finally:
            os.close(fd)
    return out


def lift_immutable_leftovers(parent: Path = SESSION_DIR.parent) -> list[str]:
    """Lift `chattr +i` (the `unwritable` fixture's) from what an earlier run left immutable in its own
    folder when it crashed before the fixture's teardown: such a folder cannot be removed, even by
    root. Only in ended kgmon-tests-* folders, never following a symlink out of them."""
    lifted = []
    for folder in _ended_session_folders(parent):
        for top, dirs, files in os.walk(folder):  # does not follow symlinked folders
            for name in dirs + files:
                path = os.path.join(top, name)
                try:
                    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY)
                except OSError:
                    continue  # a symlink, a socket, ...: chattr +i was never used on them
                try:
                    if not stat.S_ISREG(os.fstat(fd).st_mode) and not stat.S_ISDIR(os.fstat(fd).st_mode):
                        continue
                    flags = struct.unpack("i", fcntl.ioctl(fd, FS_IOC_GETFLAGS, struct.pack("i", 0)))[0]
                    if flags & FS_IMMUTABLE_FL:
                        fcntl.ioctl(fd, FS_IOC_SETFLAGS, struct.pack("i", flags & ~FS_IMMUTABLE_FL))
                        lifted.append(path)
                except OSError:
                    pass  # a file system without these flags
                finally:
                    os.close(fd)
    return lifted


def pytest_sessionstart(session):
    import leftovers

    lifted = lift_immutable_leftovers()
    if lifted:
        print(f"\nlifted chattr +i from {len(lifted)} file(s) an earlier test run left immutable: "
              + ", ".join(lifted[:5]), file=sys.stderr)
    _before.update(leftovers.snapshot(leftovers.shared_places(Path(USER_ENV.get("HOME", "~")).expanduser())))


def pytest_collection_finish(session):
    """The packaging tests' build (minutes of PyInstaller and xz) starts now, in the background at
    the lowest priority, when a selected test will use it (tests/dist_build.py)."""
    if session.config.option.collectonly:
        return
    uses = [item.fixturenames for item in session.items
            if item.get_closest_marker("packaging") and item.path.name == "test_packaging.py"]
    build = any("built" in names for names in uses)
    reuse = os.environ.get("KGMON_REUSE_DIST") == "1" and (REPO / "dist" / "linux-artefacts.json").is_file()
    if build and not reuse or any("dist_tools" in names for names in uses):
        import dist_build

        dist_build.start(build=build and not reuse)


def pytest_sessionfinish(session, exitstatus):
    """Fail the run if a process of ours still runs or a file of ours is left in
    /dev/shm, /tmp, the user's folders or this session's private folders; then
    remove the session's folder (kept, and named, when something failed)."""
    import leftovers

    if "dist_build" in sys.modules:
        sys.modules["dist_build"].stop()  # a session that ended before its build did
    found = []
    procs = leftovers.processes(str(SESSION_DIR))
    found += ["still running: " + leftovers.describe(p) for p in procs]
    leftovers.kill(procs)
    found += [f"left behind: {p}" for p in leftovers.private_leftovers([SESSION_DIR / "tmp", SESSION_DIR / "run"])]
    home = Path(USER_ENV.get("HOME", "~")).expanduser()
    shared = [f"left behind: {p}" for p in sorted(leftovers.snapshot(leftovers.shared_places(home)) - _before)]
    if STRICT_SHARED:
        found += shared
    failed = bool(found) or exitstatus not in (0, 5)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    say = reporter.write_line if reporter else print
    if found:
        say("\n".join(["", "nothing may be left behind, but:", *found]))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    elif shared:
        say("\n".join(["", "new files with our names appeared in shared places during the run (ours, or another "
                        "program's running at the same time; CI fails on them):", *shared]))
    if failed:
        print(f"\nthe test session's folder is kept: {SESSION_DIR}", file=sys.stderr)
    else:
        shutil.rmtree(SESSION_DIR, ignore_errors=True)


# ---- fixtures ----


@pytest.fixture
def unwritable():
    """unwritable(*paths): make paths truly unwritable for this process until the test ends.
    As root (tests here run as root, whom file modes do not stop) with `chattr +i` (the
    immutable attribute stops root too; os.access agrees); otherwise with chmod a-w.
    Skips when neither is possible. Returns how it was done."""
    done: list[Path] = []
    how = {}

    def make(*paths: Path) -> str:
        for p in paths:
            if os.geteuid() != 0:
                os.chmod(p, os.stat(p).st_mode & ~0o222)
                how["how"] = "chmod a-w"
            else:
                try:
                    r = subprocess.run(["chattr", "+i", str(p)], capture_output=True, text=True)
                except FileNotFoundError:
                    pytest.skip("chattr (e2fsprogs) is not installed: cannot make a file unwritable for root")
                if r.returncode != 0:
                    pytest.skip(f"cannot make {p} unwritable as root here (chattr: {r.stderr.strip()})")
                how["how"] = "chattr +i"
            done.append(p)
            assert not os.access(p, os.W_OK)
        return how["how"]

    yield make
    for p in reversed(done):
        if how.get("how") == "chattr +i":
            subprocess.run(["chattr", "-i", str(p)], check=False)
        else:
            os.chmod(p, os.stat(p).st_mode | 0o200)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (free when asked)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(autouse=True)
def _qt_garbage_freed_on_the_gui_thread(request):
    """A Qt test's leftovers are freed here, on the GUI thread, as soon as it ends. A test's frame
    is often in a reference cycle (qtbot.waitUntil keeps the exceptions it caught while polling,
    their tracebacks hold the frame, the frame holds the app), so without this the cyclic GC frees
    the test's app whenever some other thread allocates: the next test's reader thread or demo
    server. Qt then destroys widgets and timers off their thread and the GUI thread crashes later
    (seen: test_history_app then test_ws_admission, every time). The app itself keeps no such
    cycles: tests/integration/test_gui_app.py::test_a_dropped_app_is_freed_at_once_not_by_the_cyclic_gc."""
    yield
    if "qtbot" in request.fixturenames or "qapp" in request.fixturenames:
        from PySide6.QtWidgets import QApplication
        import shiboken6

        # The windows first, whole and in Qt's order (freed by the collector, a window's children can be
        # cleared before the window, and its close then reaches a child already gone: a crash in
        # QTableView::updateGeometries, seen under gdb).
        for widget in QApplication.topLevelWidgets():
            if shiboken6.isValid(widget) and widget.parent() is None:
                shiboken6.delete(widget)
        gc.collect()


@pytest.fixture(autouse=True)
def _private_ws_port(monkeypatch):
    """Each test gets its own WebSocket port (SHIELD_WS_PORT, read by `kgmon demo`
    and by every client's default URL), so no test meets another's demo, nor a
    Shield running on this machine."""
    port = free_port()
    monkeypatch.setenv("SHIELD_WS_PORT", str(port))
    return port


@pytest.fixture(autouse=True)
def _private_history(monkeypatch, tmp_path):
    """Each test's app (in-process or a child) keeps its threat history in the
    test's own folder, never in the user's data directory."""
    path = tmp_path / "history" / "history.sqlite3"
    monkeypatch.setenv("KINDLYGUARD_HISTORY_PATH", str(path))
    return path


@pytest.fixture(autouse=True)
def _private_runtime_dir(monkeypatch, tmp_path):
    """Each test's WebSocket token files (kindlyguard_monitor/transport/local_auth.py) live in its own folder, never
    in the user's $XDG_RUNTIME_DIR, where a running demo's token would meet the tests'."""
    path = tmp_path / "run"
    monkeypatch.setenv("KINDLYGUARD_RUNTIME_DIR", str(path))
    return path


@pytest.fixture
def ring_dir(tmp_path) -> Path:
    d = tmp_path / "ring"
    d.mkdir()
    os.chmod(d, 0o700)  # exactly 0700, whatever the umask
    return d


@pytest.fixture
def ring_path(ring_dir) -> Path:
    return ring_dir / "kindly-guard.shm"


@pytest.fixture
def shown_app(qtbot, qapp, ring_path):
    """The real app's wiring (MonitorApp) on a ring that is not there and a WebSocket nobody
    serves, its window shown and exposed; shut down when the test ends."""
    from kindlyguard_monitor.gui.app import MonitorApp

    monitor = MonitorApp(qapp, str(ring_path), "ws://127.0.0.1:9", demo=False)
    try:
        monitor.window.show()
        qtbot.waitExposed(monitor.window)
        yield monitor
    finally:
        monitor.shutdown()


@pytest.fixture(autouse=True)
def _reap_started_processes():
    """Kill and reap every process a test started, and stop its output threads."""
    yield
    procs, watchers = list(_started), list(_watchers)
    _started.clear()
    _watchers.clear()
    for p in procs:
        if p.poll() is None:
            try:
                p.kill()
            except ProcessLookupError:
                pass
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:  # pragma: no cover - a process that ignores SIGKILL
            pass
    for w in watchers:
        w.join(timeout=10)
    for p in procs:
        for stream in (p.stdin, p.stdout, p.stderr):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass


# ---- running kgmon ----


def run_kgmon(*args, timeout: float = 60, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `kgmon ARGS` to completion (killed after `timeout` s); text output captured."""
    return subprocess.run(KGMON + [str(a) for a in args], cwd=REPO, env=_env(env), capture_output=True,
                          text=True, encoding="utf-8", errors="replace", timeout=timeout,
                          stdin=subprocess.DEVNULL)


def _start(argv: list[str], env: dict | None = None, stdin=subprocess.DEVNULL) -> subprocess.Popen:
    proc = subprocess.Popen(argv, cwd=REPO, env=_env(env), stdin=stdin, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, encoding="utf-8", errors="replace")
    _started.append(proc)
    return proc


def start_kgmon(*args, env: dict | None = None) -> subprocess.Popen:
    """Start `kgmon ARGS` in the background (stdout/stderr PIPE, text). Reaped at test end."""
    return _start(KGMON + [str(a) for a in args], env=env)


def start_python(code: str, *args, env: dict | None = None) -> subprocess.Popen:
    """Start `python -c CODE ARGS` with a stdin pipe (stdout/stderr PIPE, text). Reaped at test end."""
    return _start([sys.executable, "-c", code] + [str(a) for a in args], env=env, stdin=subprocess.PIPE)


# ---- waiting ----


def wait_for(condition: Callable[[], object], timeout: float, what: str = "condition", interval: float = 0.01,
             pause: Callable[[float], object] = time.sleep, detail: Callable[[], str] | None = None):
    """Poll condition() until it is truthy; return its value, or fail after timeout seconds.
    Between tries pause(interval): a sleep, or a condition variable's wait that a change ends
    early (HostileServer.wait_for); detail() adds what was seen to the failure's message."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}"
                                 + (f" ({detail()})" if detail is not None else ""))
        pause(interval)


def wait_blocked_in(thread: threading.Thread, function: str, timeout: float = 10) -> None:
    """Wait until `thread` is blocked (in threading's wait) inside a call of `function` (a name on
    its stack), e.g. a poll() that really sleeps before the test wakes it."""
    def blocked() -> bool:
        frame = sys._current_frames().get(thread.ident)
        names = []
        while frame is not None:
            names.append(frame.f_code.co_name)
            frame = frame.f_back
        return bool(names) and names[0] == "wait" and function in names

    wait_for(blocked, timeout, f"{thread.name} to block in {function}()")


def wait_reader_settled(qtbot, reader, delivered: int, timeout_ms: int = 10000) -> None:
    """Wait until a gui ReaderThread has delivered `delivered` events and the GUI thread has handled
    every batch it emitted for them: two of its counters at that count (a pending batch is
    emitted within 1/60 s, counters 4 times a second, and the GUI thread takes signals in order).
    What a test asserts afterwards (rows, news, notifications) is final, not a guess."""
    seen: list[int] = []
    reader.counters.connect(lambda c: seen.append(c.delivered))
    qtbot.waitUntil(lambda: sum(d >= delivered for d in seen) >= 2, timeout=timeout_ms)


def wait_for_file(path, timeout: float = 30) -> Path:
    """Wait until `path` exists (a ring appears whole, by rename)."""
    path = Path(path)
    wait_for(lambda: os.path.lexists(path), timeout, f"{path} to appear")
    return path


def read_json_lines(text: str) -> list[dict]:
    """One JSON object per non-empty line."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


class OutputWatcher:
    """Reads a process's stdout and stderr in two threads, so it never blocks on
    a full pipe. `lines` holds (monotonic time read, line) for stdout."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        self.lines: list[tuple[float, str]] = []
        self.err_lines: list[str] = []
        self._cond = threading.Condition()
        self._eof = False
        self._threads = [threading.Thread(target=self._read_out, daemon=True),
                         threading.Thread(target=self._read_err, daemon=True)]
        for t in self._threads:
            t.start()
        _watchers.append(self)

    def _read_out(self) -> None:
        try:
            for line in self.proc.stdout:
                with self._cond:
                    self.lines.append((time.monotonic(), line.rstrip("\n")))
                    self._cond.notify_all()
        except (ValueError, OSError):  # closed under us at teardown
            pass
        finally:
            with self._cond:
                self._eof = True
                self._cond.notify_all()

    def _read_err(self) -> None:
        try:
            for line in self.proc.stderr:
                with self._cond:
                    self.err_lines.append(line.rstrip("\n"))
                    self._cond.notify_all()
        except (ValueError, OSError):
            pass
        finally:
            with self._cond:
                self._cond.notify_all()

    def join(self, timeout: float = 30) -> None:
        for t in self._threads:
            t.join(timeout)

    @property
    def stderr(self) -> str:
        with self._cond:
            return "\n".join(self.err_lines)

    def json(self) -> list[tuple[float, dict]]:
        """(time read, object) for every stdout line so far (all must be JSON)."""
        with self._cond:
            return [(t, json.loads(line)) for t, line in self.lines if line.strip()]

    def objects(self) -> list[dict]:
        return [obj for _, obj in self.json()]

    def wait_json(self, predicate: Callable[[list[dict]], object], timeout: float, what: str,
                  tick: Callable[[], None] | None = None):
        """Wait until predicate(every stdout line so far, parsed as JSON) is truthy; return its value."""
        return self._wait(lambda out, err: predicate(out), timeout, what, tick, parse=True)

    def wait_lines(self, predicate: Callable[[list[str]], object], timeout: float, what: str,
                   tick: Callable[[], None] | None = None):
        """Wait until predicate(every non-empty stdout line so far, as text) is truthy; return its value."""
        return self._wait(lambda out, err: predicate(out), timeout, what, tick, parse=False)

    def wait_stderr(self, predicate: Callable[[str], object], timeout: float, what: str):
        """Wait until predicate(stderr so far) is truthy; return its value."""
        return self._wait(lambda out, err: predicate(err), timeout, what, None, parse=False)

    def _wait(self, predicate, timeout, what, tick, parse):
        """tick() is called about every 50 ms while waiting (e.g. a writer's heartbeat).
        Fails as soon as the process's output ended without the predicate holding."""
        deadline = time.monotonic() + timeout
        done = 0
        cache: list = []
        while True:
            with self._cond:
                new = self.lines[done:]
                done = len(self.lines)
                eof = self._eof and not any(t.is_alive() for t in self._threads)
                err = "\n".join(self.err_lines)
            cache.extend(json.loads(line) if parse else line for _, line in new if line.strip())
            value = predicate(cache, err)
            if value:
                return value
            if eof:
                raise AssertionError(f"output ended (exit {self.proc.poll()}) before {what}; "
                                     f"stderr: {err!r}; last lines: {cache[-3:]!r}")
            if time.monotonic() >= deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}; "
                                     f"stderr: {err!r}; last lines: {cache[-3:]!r}")
            if tick is not None:
                tick()
            with self._cond:
                if len(self.lines) == done:
                    self._cond.wait(0.05)

    def wait_exit(self, timeout: float, tick: Callable[[], None] | None = None) -> int:
        """Wait for the process to exit and its output to be read; return its exit status."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                code = self.proc.wait(timeout=0.05)
                break
            except subprocess.TimeoutExpired:
                if time.monotonic() >= deadline:
                    raise AssertionError(f"process {self.proc.args!r} still running after {timeout} s; "
                                         f"stderr: {self.stderr!r}") from None
                if tick is not None:
                    tick()
        self.join(30)
        return code


@pytest.fixture
def managers():
    """TransportManagers a test made (append them): closed at the end, whatever happened."""
    made = []
    yield made
    for m in made:
        m.close()


@pytest.fixture
def win(qtbot):
    """The main window, shown (offscreen) and cleaned up by qtbot."""
    from kindlyguard_monitor.gui.main_window import MainWindow

    w = MainWindow()
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    return w
