"""End to end on a real desktop: Xvfb, a private D-Bus session bus, a real tray
host (StatusNotifierItem and XEmbed, each test runs on both) and a real
notification server (dunst), with the real app (tests/e2e_app.py runs
kindlyguard_monitor.gui.launch.run exactly as `kgmon` does) and a real writer.

What a user would check by looking, checked by the test:
- with the demo writer running, threats appear in the table, the badge says
  Shared memory, the tray icon is shown, and a High threat becomes a real
  org.freedesktop.Notifications.Notify call on the bus;
- removing the ring switches the badge to WebSocket (the demo's server);
- clicking a notification opens the window on its threat;
- a burst becomes one summary notification, and no more follow;
- a threat text with U+202E shows escaped in the table, the details pane and
  the notification, never raw.

Screenshots of the window and the tray go to $KGMON_SCREENSHOT_DIR (`make
screenshots` points it at docs/screenshots), else to the test's temporary
folder. Marked `desktop`: `pytest -m "not desktop"` skips them. Without the
Debian packages (packaging/system-deps.sh --test installs them) they are
skipped, unless KGMON_REQUIRE_DESKTOP=1 (CI) makes that a failure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from kindlyguard_monitor import child_process
from kindlyguard_monitor.ring.writer import RingWriter
from kindlyguard_monitor.threats import CRITICAL, HIGH, THREAT_TYPE_NUMBER, Threat
from conftest import REPO, wait_for
from dbus_notify import notify_field  # noqa: F401 (test_desktop_notify_e2e.py takes it from here)
from desktop import DesktopSession, missing_programs

pytestmark = [pytest.mark.desktop, pytest.mark.timeout(180)]

RLO = "\u202e"
SCREENSHOTS = os.environ.get("KGMON_SCREENSHOT_DIR")


class HeartbeatWriter:
    """A real ring writer whose heartbeat keeps beating while the test waits
    (a writer silent for over a second with its process alive reads as stuck)."""

    def __init__(self, path: Path):
        self.writer = RingWriter(path)
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True)
        self.thread.start()

    def _beat(self) -> None:
        while not self.stopped.wait(0.1):
            with self.lock:
                self.writer.tick()

    def publish(self, threats) -> None:
        with self.lock:
            self.writer.publish(threats)

    def close(self) -> None:
        self.stopped.set()
        self.thread.join()
        self.writer.close()


@pytest.fixture(scope="module", params=["sni", "xembed"])
def desktop(request):
    missing = missing_programs(request.param)
    if missing:
        message = f"needs Debian packages {' '.join(missing)} (bash packaging/system-deps.sh --test)"
        if os.environ.get("KGMON_REQUIRE_DESKTOP") == "1":
            pytest.fail(message)
        pytest.skip(message)
    with DesktopSession(tray=request.param) as session:
        yield session


class RunningApp:
    """The app under test, driven over tests/e2e_app.py's control line."""

    def __init__(self, desktop: DesktopSession, tmp_path: Path, *args: str, settings: str = "",
                 extra_env: dict | None = None):
        self.desktop = desktop
        home = tmp_path / "home"
        home.mkdir(exist_ok=True)
        if settings:  # the app's settings file (QSettings' INI under XDG_CONFIG_HOME), as a user's would be
            conf = home / "config" / "KindlyGuard" / "KindlyGuard Monitor.conf"
            conf.parent.mkdir(parents=True, exist_ok=True)
            conf.write_text(settings)
        env = dict(desktop.env, PYTHONPATH=str(REPO), XDG_CONFIG_HOME=str(home / "config"),
                   XDG_DATA_HOME=str(home / "data"), XDG_CACHE_HOME=str(home / "cache"),
                   SHIELD_WS_PORT=os.environ["SHIELD_WS_PORT"],
                   KINDLYGUARD_HISTORY_PATH=str(tmp_path / "history" / "history.sqlite3"))
        env.update(extra_env or {})
        env.pop("KINDLYGUARD_SHM_PATH", None)
        env.pop("KINDLYGUARD_WS_URL", None)
        self.stderr_path = tmp_path / "app.stderr"
        self.proc = subprocess.Popen([sys.executable, str(REPO / "tests" / "e2e_app.py"), *args], env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=open(self.stderr_path, "w"), text=True)
        self.lock = threading.Lock()
        started = self._read(60)
        assert started == {"started": True}, self.stderr()

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def _read(self, timeout: float) -> dict:
        result: list = []
        reader = threading.Thread(target=lambda: result.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        if not result or not result[0]:
            raise AssertionError(f"the app did not answer (exit {self.proc.poll()}):\n{self.stderr()}")
        return json.loads(result[0])

    def ask(self, command: str, timeout: float = 30) -> dict:
        with self.lock:
            self.proc.stdin.write(command + "\n")
            self.proc.stdin.flush()
            answer = self._read(timeout)
        assert "error" not in answer, answer
        return answer

    def state(self) -> dict:
        return self.ask("state")

    def screenshot(self, name: str, tmp_path: Path, tray: bool = True) -> None:
        """Save the window and the tray bar; check they are real pictures, not black."""
        folder = Path(SCREENSHOTS) if SCREENSHOTS else tmp_path
        folder.mkdir(parents=True, exist_ok=True)
        window = self.ask(f"grab_window {folder / (name + '.png')}")
        assert window["width"] > 400 and window["colours"] > 20, window
        if not tray:
            return
        x, y, w, h = self.desktop.tray_bar  # trayer starts 2 px wide and grows leftwards: take its right end
        right = x + w
        width = min(right, 240)
        tray = self.ask(f"grab_screen {folder / (name + '-tray.png')} {right - width} {y} {width} {h}")
        assert tray["width"] == width and tray["colours"] > 2, tray

    def quit(self) -> None:
        if self.proc.poll() is None:
            try:
                self.ask("quit")
            except (AssertionError, BrokenPipeError, OSError):
                pass
            child_process.end(self.proc, 15, sig=None)
        self.proc.stdin.close()
        self.proc.stdout.close()


@pytest.fixture
def start_app(desktop, tmp_path):
    apps: list[RunningApp] = []

    def start(*args: str, settings: str = "", env: dict | None = None) -> RunningApp:
        app = RunningApp(desktop, tmp_path, *args, settings=settings, extra_env=env)
        apps.append(app)
        return app

    yield start
    for app in apps:
        app.quit()
        assert "QThread: Destroyed while thread is still running" not in app.stderr()
        assert app.proc.returncode == 0, app.stderr()


def wait_state(app: RunningApp, condition, timeout: float, what: str) -> dict:
    seen = {}

    def check():
        seen["state"] = app.state()
        return condition(seen["state"])

    try:
        wait_for(check, timeout, what, interval=0.1)
    except AssertionError as exc:
        state = dict(seen.get("state", {}))
        state["top"] = state.get("top", [])[:3]
        raise AssertionError(f"{exc}; last state {state}") from None
    return seen["state"]


def test_demo_threats_reach_the_table_notify_and_fail_over(desktop, start_app, tmp_path):
    ring = tmp_path / "ring" / "kindly-guard.shm"
    ring.parent.mkdir(mode=0o700)
    app = start_app("--demo", "--shm-path", str(ring))

    # (the status line gains its latency with the reader's first latency report, which may come
    # a moment after the first rows)
    state = wait_state(app, lambda s: s["rows"] >= 5 and s["transport"] == "shm"
                       and s["status"].startswith("KindlyGuard (SHM "), 30,
                       "threats from the demo writer in the table over shared memory, with their latency")
    assert state["badge"] == "Shared memory"
    assert state["tray_available"] and state["tray_visible"], state
    assert state["demo_running"]
    assert all(len(row) == 6 and row[1] in ("Low", "Medium", "High", "Critical") for row in state["top"])
    if desktop.tray == "sni":  # our icon registered with the StatusNotifierWatcher
        assert app.proc.pid in desktop.sni_item_pids()

    # The demo sends High and Critical threats every few seconds: one becomes a real Notify on the bus.
    calls = wait_for(desktop.notify_calls, 30, "a Notify call on the session bus")
    assert notify_field(calls[0], 0) == "KindlyGuard Monitor"
    summary = notify_field(calls[0], 2)
    assert "threat" in summary, summary
    wait_for(lambda: summary in desktop.notifications_shown(), 10, "dunst to show the notification")
    app.screenshot(f"main-window-{desktop.tray}", tmp_path)
    assert app.ask("tab 1")["tab"] == "Latency"
    app.screenshot(f"latency-{desktop.tray}", tmp_path, tray=False)
    app.ask("tab 0")

    # Everything shown is in the history too: the History window finds it.
    def history_listed():
        shown = app.ask("history")
        return shown if shown["rows"] > 0 and "match" in shown["status"] else None

    assert wait_for(history_listed, 20, "the History window to list the stored threats")["visible"]
    folder = Path(SCREENSHOTS) if SCREENSHOTS else tmp_path
    grab = app.ask(f"grab_history {folder / f'history-{desktop.tray}.png'}")
    assert grab["width"] > 400 and grab["colours"] > 20, grab

    # Remove the ring: the reader sees the file gone and moves to the demo's WebSocket.
    ring.unlink()
    state = wait_state(app, lambda s: s["transport"] == "websocket", 15, "the badge to switch to WebSocket")
    assert state["badge"] == "WebSocket"
    assert "replaced" in state["reason"] or "ring" in state["reason"], state["reason"]
    rows_then = state["rows"]
    wait_state(app, lambda s: s["rows"] > rows_then, 30, "threats to keep coming over the WebSocket")


def test_burst_is_one_summary_and_hostile_text_stays_escaped(desktop, start_app, tmp_path):
    ring = tmp_path / "ring" / "kindly-guard.shm"
    ring.parent.mkdir(mode=0o700)
    writer = HeartbeatWriter(ring)
    # One notification per 3 s at most (the default is 20 s: this test would wait a minute)
    app = start_app("--shm-path", str(ring), settings="[notify]\nmin_interval_s=3\n")
    try:
        wait_state(app, lambda s: s["transport"] == "shm", 30, "the app to attach to the ring")
        # earlier tests' notifications off the screen, so ours is the one at position 0 for dunstctl
        subprocess.run(["dunstctl", "close-all"], env=desktop.env, check=True, timeout=10)
        before = len(desktop.notify_calls())
        now_us = time.time_ns() // 1000
        hostile = f"invoice_{RLO}fdp.exe"  # reads "invoice_exe.pdf" if the override is obeyed
        writer.publish([Threat(THREAT_TYPE_NUMBER["UnicodeBiDi"], HIGH, True, f"mcp:tools/{RLO}call", hostile,
                               now_us)])
        calls = wait_for(lambda: desktop.notify_calls()[before:], 30, "the High threat's Notify call")
        first = calls[0]
        assert RLO not in first
        assert "⟨U+202E⟩" in notify_field(first, 3), first

        # Clicking the notification (dunst's default action) opens the hidden window on that threat.
        app.ask("hide")
        wait_state(app, lambda s: not s["window_visible"], 10, "the window to hide")
        subprocess.run(["dunstctl", "action", "0"], env=desktop.env, check=True, timeout=10)
        state = wait_state(app, lambda s: s["window_visible"] and "fdp.exe" in s["selected_details"], 15,
                           "the clicked notification to open the window on its threat")
        assert "invoice_⟨U+202E⟩fdp.exe" in state["selected_details"]

        # One more High threat: the moment its notification is out, a 3 s window starts.
        writer.publish([Threat(THREAT_TYPE_NUMBER["PathTraversal"], HIGH, True, "mcp:fs", "../../etc/passwd",
                               now_us)])
        calls = wait_for(lambda: desktop.notify_calls()[before + 1:], 30, "the second High threat's Notify call")
        assert notify_field(calls[0], 2) == "High threat blocked: PathTraversal"
        # A burst inside that window, in four batches: 9 High and 3 Critical from two sources, one summary.
        burst = [Threat(THREAT_TYPE_NUMBER["InjectionAttempt"], CRITICAL if i % 4 == 0 else HIGH, False,
                        f"mcp:server-{i % 2}", f"burst {i}", now_us + i) for i in range(12)]
        for i in range(0, 12, 3):
            writer.publish(burst[i:i + 3])
        calls = wait_for(lambda: desktop.notify_calls()[before + 2:], 30, "the burst's summary")
        assert notify_field(calls[0], 2) == "12 new threats, 3 critical, none blocked"
        assert notify_field(calls[0], 3) == "mcp:server-0 ×6 · mcp:server-1 ×6"
        # And nothing else follows: one more High threat, published now, is the next notification,
        # alone (anything else still pending would be merged into it, or shown before it).
        writer.publish([Threat(THREAT_TYPE_NUMBER["SuspiciousPattern"], HIGH, True, "mcp:last", "rm -rf ~",
                               now_us)])
        calls = wait_for(lambda: desktop.notify_calls()[before + 3:], 30, "the last High threat's Notify call")
        assert [notify_field(c, 2) for c in calls] == ["High threat blocked: SuspiciousPattern"], calls

        state = wait_state(app, lambda s: s["rows"] == 15, 15, "all 15 threats in the table")
        hostile_rows = [r for r in state["top"] if "fdp.exe" in r[4]]
        assert len(hostile_rows) == 1
        assert hostile_rows[0][4] == "invoice_⟨U+202E⟩fdp.exe"
        assert hostile_rows[0][3] == "mcp:tools/⟨U+202E⟩call"
        assert not any(RLO in cell for row in state["top"] for cell in row)
        row = state["top"].index(hostile_rows[0])
        details = app.ask(f"details {row}")["text"]
        assert "invoice_⟨U+202E⟩fdp.exe" in details and RLO not in details
        app.screenshot(f"hostile-text-{desktop.tray}", tmp_path)
    finally:
        writer.close()


@pytest.mark.parametrize("late_tray", ["sni", "xembed"])
def test_no_tray_then_a_tray_host_appears(late_tray, tmp_path):
    """No tray at start: a normal window that says so once and quits when closed.
    A tray host that starts later (common at login) still gets the icon."""
    missing = missing_programs(late_tray)
    if missing:
        message = f"needs Debian packages {' '.join(missing)} (bash packaging/system-deps.sh --test)"
        if os.environ.get("KGMON_REQUIRE_DESKTOP") == "1":
            pytest.fail(message)
        pytest.skip(message)
    with DesktopSession(tray="none") as desktop:
        ring = tmp_path / "ring" / "kindly-guard.shm"
        ring.parent.mkdir(mode=0o700)
        app = RunningApp(desktop, tmp_path, "--shm-path", str(ring))
        try:
            state = wait_state(app, lambda s: s["window_visible"], 20, "the window")
            assert not state["tray_available"] and not state["tray_visible"]
            assert "No system tray found" in app.ask("status_message")["text"]
            desktop.start_tray(late_tray)
            state = wait_state(app, lambda s: s["tray_visible"], 20, f"the icon in the late {late_tray} tray")
            if late_tray == "sni":
                assert app.proc.pid in desktop.sni_item_pids()
        finally:
            app.quit()
        assert app.proc.returncode == 0, app.stderr()


def test_no_notification_server_falls_back_and_says_so(qtbot, monkeypatch):
    """A session bus with no org.freedesktop.Notifications: the notification the
    desktop path could not deliver comes back and is counted as undelivered (no
    tray here either), and the reason is kept for the logs."""
    from kindlyguard_monitor.gui.desktop_notifications import DesktopNotifications
    from kindlyguard_monitor.gui.notifier import Notifier
    from kindlyguard_monitor.gui.notify_policy import NotificationPolicy

    missing = missing_programs("none")
    if missing:
        message = f"needs Debian packages {' '.join(missing)} (bash packaging/system-deps.sh --test)"
        if os.environ.get("KGMON_REQUIRE_DESKTOP") == "1":
            pytest.fail(message)
        pytest.skip(message)
    with DesktopSession(tray="none", notifier=False) as desktop:
        monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", desktop.env["DBUS_SESSION_BUS_ADDRESS"])
        server = DesktopNotifications()
        try:
            notifier = Notifier(None, policy=NotificationPolicy(), desktop=server)
            notifier.offer([Threat(THREAT_TYPE_NUMBER["PathTraversal"], CRITICAL, True, "mcp:fs", "x", 1)])
            qtbot.waitUntil(lambda: notifier.undelivered == 1, timeout=10000)
            assert notifier.shown_count == 0
            assert not server.available and "no notification server" in server.error
            assert desktop.notify_calls() == []
        finally:
            server.close()
