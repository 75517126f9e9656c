"""The single instance is per desktop session, not per user (issue 12): two
displays of one user each get their app; a second launch on the same display
raises the first window. Offscreen, with distinct session variables."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from pathlib import Path

import pytest

from conftest import OutputWatcher, start_kgmon, wait_for

from kindlyguard_monitor.gui.single_instance import SingleInstance, default_name, session_key


def session(runtime: Path, display: str | None = None, wayland: str | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "SESSIONNAME")}
    env.update(XDG_RUNTIME_DIR=str(runtime), QT_QPA_PLATFORM="offscreen")
    if display:
        env["DISPLAY"] = display
    if wayland:
        env["WAYLAND_DISPLAY"] = wayland
    return env


@pytest.fixture
def run():
    """A private runtime folder with a short path (a socket's path holds 108 bytes)."""
    d = Path(tempfile.mkdtemp(prefix="r", dir=os.environ["XDG_RUNTIME_DIR"]))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_the_name_follows_the_display(run):
    one, two = session(run, ":1"), session(run, ":2")
    assert default_name(one) == default_name(dict(one)), "stable"
    assert default_name(one) != default_name(two)
    assert default_name(one).startswith(str(run) + os.sep), "in the user's private runtime folder"
    assert default_name(session(run, ":1", "wayland-0")) != default_name(one), "Wayland's display first"
    assert session_key({"DISPLAY": ":0"}) != session_key({"DISPLAY": "_0"})
    assert "/" not in session_key({"DISPLAY": "../../x:0"})
    no_runtime = {k: v for k, v in one.items() if k != "XDG_RUNTIME_DIR"}
    assert os.sep not in default_name(no_runtime), "else a name in the temp folder"
    assert os.sep not in default_name(session(run / ("x" * 100), ":1")), "and when the path would be too long"


def test_two_displays_two_instances_one_display_one(qtbot, run):
    first = SingleInstance(default_name(session(run, ":71")))
    other_display = SingleInstance(default_name(session(run, ":72")))
    try:
        assert first.acquire() is True
        assert other_display.acquire() is True, "another display of the same user gets its own app"
        again = SingleInstance(default_name(session(run, ":71")))
        with qtbot.waitSignal(first.activation_requested, timeout=5000):
            assert again.acquire() is False, "a second launch on the same display raises the first"
        with qtbot.assertNotEmitted(other_display.activation_requested, wait=200):
            pass
    finally:
        first.release()
        other_display.release()


def test_real_apps_on_two_displays(tmp_path, run):
    """Two `kgmon` processes of one user on two displays both run; a third on the
    first display exits at once, saying the app is running there."""
    apps = []
    for display in (":81", ":82"):
        env = session(run, display)
        proc = start_kgmon("--shm-path", tmp_path / "ring" / "kindly-guard.shm", env=env)
        watcher = OutputWatcher(proc)
        wait_for(lambda: os.path.exists(default_name(env)) or proc.poll() is not None, 60, f"the app on {display}")
        assert proc.poll() is None, watcher.stderr
        apps.append((proc, watcher))
    third = start_kgmon("--shm-path", tmp_path / "ring" / "kindly-guard.shm", env=session(run, ":81"))
    third_out = OutputWatcher(third)
    assert third_out.wait_exit(60) == 0
    assert "already running" in third_out.stderr
    for proc, watcher in apps:
        assert proc.poll() is None, "both first apps still run"
        proc.send_signal(signal.SIGTERM)
        assert watcher.wait_exit(60) == 0, watcher.stderr
    assert not any(run.iterdir()), "each app removed its socket"
