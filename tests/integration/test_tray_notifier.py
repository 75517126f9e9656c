"""Tray icon, notifier, icons and single instance, on Qt's offscreen platform.

Offscreen has no system tray: these tests cover the no-tray behaviour, the
menu, the icons and the notifier's timing with an injected display backend.
The real tray paths (StatusNotifierItem, XEmbed) need an Xvfb desktop.
"""

from __future__ import annotations

import socket
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace

import pytest
from PySide6.QtCore import QDir
from PySide6.QtWidgets import QSystemTrayIcon

from kindlyguard_monitor.gui import resources
from kindlyguard_monitor.gui.notifier import Notifier
from kindlyguard_monitor.gui.notify_policy import NotificationPolicy
from kindlyguard_monitor.gui.single_instance import SingleInstance
from kindlyguard_monitor.gui.tray import STATES, TrayController
from kindlyguard_monitor.threats import CRITICAL, HIGH, Threat

REPO = Path(__file__).resolve().parents[2]
ICONS = ["shield-protected", "shield-threat", "shield-degraded", "shield-disconnected", "kindlyguard"]
SVG_NS = "{http://www.w3.org/2000/svg}"


# ---- icons and resources ----


@pytest.mark.parametrize("name", ICONS)
def test_icon_is_valid_svg(name):
    root = ET.parse(resources.icon_path(name)).getroot()
    assert root.tag == f"{SVG_NS}svg"
    assert root.get("viewBox") == "0 0 64 64"
    assert list(root.iter(f"{SVG_NS}image")) == []  # no raster


@pytest.mark.parametrize("name", ICONS)
def test_icon_loads_at_several_sizes(qapp, name):
    qicon = resources.icon(name)
    assert not qicon.isNull()
    for size in (16, 22, 32, 64, 256, 512):
        pixmap = qicon.pixmap(size, size)
        assert not pixmap.isNull(), (name, size)
        assert pixmap.width() == size


def test_resources_found_in_source_tree(monkeypatch):
    monkeypatch.delenv(resources.ENV_VAR, raising=False)
    assert resources.resources_dir() == REPO / "resources"
    assert resources.icon_path("kindlyguard") == REPO / "resources" / "icons" / "kindlyguard.svg"
    assert resources.icon_path("kindlyguard.svg") == resources.icon_path("kindlyguard")


def test_resources_env_override(monkeypatch, tmp_path):
    (tmp_path / "icons").mkdir()
    (tmp_path / "icons" / "kindlyguard.svg").write_bytes(
        (REPO / "resources" / "icons" / "kindlyguard.svg").read_bytes())
    monkeypatch.setenv(resources.ENV_VAR, str(tmp_path))
    assert resources.icon_path("kindlyguard") == tmp_path / "icons" / "kindlyguard.svg"
    with pytest.raises(FileNotFoundError, match="missing"):
        resources.icon_path("no-such-icon")


def test_resources_pyinstaller_fallback(monkeypatch, tmp_path):
    monkeypatch.setenv(resources.ENV_VAR, str(tmp_path / "nothing-here"))
    monkeypatch.setattr("sys._MEIPASS", str(tmp_path), raising=False)
    dirs = resources.resource_dirs()
    assert dirs[0] == tmp_path / "nothing-here"
    assert dirs[-1] == tmp_path / "resources"


# ---- tray controller ----


@pytest.fixture
def tray(qtbot):
    t = TrayController()
    yield t
    t.deleteLater()


def test_no_tray_offscreen_emits_missing_once(qtbot):
    t = TrayController()
    assert t.available() is False
    assert QSystemTrayIcon.isSystemTrayAvailable() is False
    emitted = []
    t.tray_missing.connect(lambda: emitted.append(1))
    qtbot.waitUntil(lambda: emitted == [1])
    t._emit_missing()  # another chance to emit: still once
    t._check_tray()  # the poll: still no tray, nothing appears
    assert emitted == [1]
    assert t._poll.isActive()  # keeps watching for a tray host
    assert t.is_visible() is False
    assert t.show_message("t", "b") is False


def test_menu_texts(tray):
    texts = [a.text() for a in tray.menu.actions() if not a.isSeparator()]
    assert texts == ["Show/Hide window", "Pause notifications", "Mark all as seen", "Turn protection off/on",
                     "Start demo writer", "History…", "Settings…", "Quit"]
    pause = [a.text() for a in tray.pause_menu.actions() if not a.isSeparator()]
    assert pause == ["15 minutes", "1 hour", "Until resumed", "Resume"]
    assert tray.tray.contextMenu() is tray.menu


def test_protection_unavailable_shows_reason(tray):
    reason = "the Shield's WebSocket is not reachable"
    tray.set_protection_available(False, reason)
    assert not tray.action_protection.isEnabled()
    assert tray.action_protection.text() == f"Turn protection off/on ({reason})"
    assert tray.action_protection.toolTip() == reason
    tray.set_protection_available(True, "")
    assert tray.action_protection.isEnabled()
    assert tray.action_protection.text() == "Turn protection off/on"


def test_demo_text_flips(tray):
    tray.set_demo_running(True)
    assert tray.action_demo.text() == "Stop demo writer"
    tray.set_demo_running(False)
    assert tray.action_demo.text() == "Start demo writer"


def test_actions_emit_signals(tray, qtbot):
    for signal, action in ((tray.toggle_window, tray.action_window), (tray.toggle_protection, tray.action_protection),
                           (tray.toggle_demo, tray.action_demo), (tray.settings_requested, tray.action_settings),
                           (tray.quit_requested, tray.action_quit), (tray.resume_notifications, tray.action_resume)):
        with qtbot.waitSignal(signal, timeout=1000):
            action.trigger()
    tray.set_unseen(2)  # Mark all as seen: only while something is unseen
    with qtbot.waitSignal(tray.mark_all_seen, timeout=1000):
        tray.action_mark_seen.trigger()
    for text, seconds in (("15 minutes", 900), ("1 hour", 3600), ("Until resumed", None)):
        with qtbot.waitSignal(tray.pause_notifications, timeout=1000) as blocker:
            tray.pause_actions[text].trigger()
        assert blocker.args == [seconds]


def test_activation_toggles_window(tray, qtbot):
    with qtbot.waitSignal(tray.toggle_window, timeout=1000):
        tray.tray.activated.emit(QSystemTrayIcon.ActivationReason.Trigger)
    with qtbot.assertNotEmitted(tray.toggle_window):
        tray.tray.activated.emit(QSystemTrayIcon.ActivationReason.Context)


def test_tooltip_counts_are_plain_text(tray):
    tray.set_counts(42, 40, 3, 5)
    tray.set_unseen(7)
    first, second = tray.tooltip().splitlines()[:2]
    assert first == "KindlyGuard Monitor — 7 unseen"
    assert second == "This session: 42 threats (40 blocked), 3 critical, 5 high"
    assert tray.tray.toolTip() == tray.tooltip()
    assert "<" not in tray.tooltip() and "&" not in tray.tooltip()
    tray.set_counts(1, 0, 0, 1)
    tray.set_unseen(0)
    assert tray.tooltip().startswith("KindlyGuard Monitor — nothing unseen\nThis session: 1 threat (0 blocked)")


def test_state_changes_icon(tray, qtbot):
    keys = {}
    for state in ("protected", "degraded", "disconnected"):
        tray.set_state(state)
        assert tray.state == state
        assert STATES[state][1] in tray.tooltip()
        keys[state] = tray.tray.icon().cacheKey()
    assert len(set(keys.values())) == 3
    tray.set_state("degraded")
    tray.set_unseen(3)
    tray.set_state("threat")  # the alert: until everything is seen
    assert tray.state == "threat" and tray.action_mark_seen.isEnabled()
    assert tray.tray.icon().cacheKey() not in keys.values()
    tray.set_state("protected")  # the transport changes while the alert shows
    tray.set_unseen(1)
    assert tray.state == "threat"
    tray.set_unseen(0)  # all seen: back to normal
    assert tray.state == "protected" and not tray.action_mark_seen.isEnabled()
    assert tray.tray.icon().cacheKey() == keys["protected"]
    with pytest.raises(ValueError):
        tray.set_state("bogus")


def test_host_appearing_recreates_icon(tray, qtbot, monkeypatch):
    old = tray.tray
    monkeypatch.setattr(QSystemTrayIcon, "isSystemTrayAvailable", staticmethod(lambda: True))
    with qtbot.waitSignal(tray.tray_appeared, timeout=1000):
        tray._check_tray()
    assert tray.tray is not old
    assert not tray._poll.isActive()
    assert tray.tray.contextMenu() is tray.menu


# ---- notifier ----


class FakeClock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def threat(source="tool-a", severity=HIGH, details="x", key=None):
    ev = Threat(0, severity, True, source, details, 0)
    if key is None:
        return ev
    return SimpleNamespace(**ev._asdict(), key=key)


def test_notifier_one_notification_per_interval(qtbot):
    clock = FakeClock()
    shown = []
    n = Notifier(policy=NotificationPolicy(min_interval_s=3.0, clock=clock), show=shown.append)
    n.offer([threat(key=1)])
    qtbot.waitUntil(lambda: len(shown) == 1, timeout=2000)  # the first shows at once
    assert shown[0].count == 1 and shown[0].key == 1
    assert shown[0].plain_text

    # A flood inside the interval: nothing now, then ONE merged notification.
    clock.t += 0.5
    n.offer([threat(source=f"s{i}", key=10 + i) for i in range(50)])
    clock.t += 1.0
    n.offer([threat(severity=CRITICAL, key=99)])
    assert n.timer.isActive()
    assert 1000 <= n.timer.remainingTime() <= 1500  # due 3 s after the first, at t+3.0
    n.deliver_due()  # the timer firing early would show nothing
    assert len(shown) == 1
    clock.t += 1.5
    n.deliver_due()
    assert len(shown) == 2
    assert shown[1].count == 51 and shown[1].key == 99
    assert n.shown_count == 2 and n.last_notification is shown[1]
    assert not n.timer.isActive()  # nothing pending: no timer
    n.deliver_due()
    assert len(shown) == 2


def test_notifier_without_tray_counts_undelivered(qtbot):
    n = Notifier(policy=NotificationPolicy(clock=FakeClock()))
    n.offer([threat()])
    qtbot.waitUntil(lambda: n.undelivered == 1, timeout=2000)
    assert n.shown_count == 0


def test_notifier_offscreen_tray_is_not_visible(qtbot):
    t = TrayController()
    n = Notifier(t, policy=NotificationPolicy(clock=FakeClock()))
    n.offer([threat()])
    qtbot.waitUntil(lambda: n.undelivered == 1, timeout=2000)
    assert n.shown_count == 0


def test_message_clicked_opens_event(qtbot):
    t = TrayController()
    n = Notifier(t, policy=NotificationPolicy(clock=FakeClock()), show=lambda note: True)
    with qtbot.assertNotEmitted(n.open_event):
        t.tray.messageClicked.emit()  # nothing shown yet
    n.offer([threat(key=("ring", 7))])
    qtbot.waitUntil(lambda: n.shown_count == 1, timeout=2000)
    with qtbot.waitSignal(n.open_event, timeout=1000) as blocker:
        t.tray.messageClicked.emit()
    assert blocker.args == [("ring", 7)]
    with qtbot.waitSignal(n.open_event, timeout=1000) as blocker:
        n.on_message_clicked()
    assert blocker.args == [("ring", 7)]


def test_notifier_pause_drops_and_stops_timer(qtbot):
    clock = FakeClock()
    shown = []
    n = Notifier(policy=NotificationPolicy(clock=clock), show=shown.append)
    n.offer([threat()])
    qtbot.waitUntil(lambda: len(shown) == 1, timeout=2000)
    n.policy.pause(None)
    n.offer([threat()])
    assert not n.timer.isActive()
    n.policy.resume()
    clock.t += 30
    n.offer([threat()])
    qtbot.waitUntil(lambda: len(shown) == 2, timeout=2000)


# ---- single instance ----


@pytest.fixture
def instance_name(tmp_path):
    return f"kgmon-test-{tmp_path.name}"[:80]


def test_single_instance(qtbot, instance_name):
    first = SingleInstance(instance_name)
    assert first.acquire() is True
    try:
        second = SingleInstance(instance_name)
        with qtbot.waitSignal(first.activation_requested, timeout=5000):
            assert second.acquire() is False
        assert second.server is None
    finally:
        first.release()
    third = SingleInstance(instance_name)
    assert third.acquire() is True  # released: free again
    third.release()


def test_stale_socket_does_not_block(qtbot, instance_name):
    path = Path(QDir.tempPath()) / instance_name
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))  # a killed instance leaves its socket file, with nobody listening
    s.close()
    assert path.exists()
    inst = SingleInstance(instance_name)
    try:
        assert inst.acquire() is True
        second = SingleInstance(instance_name)
        with qtbot.waitSignal(inst.activation_requested, timeout=5000):
            assert second.acquire() is False
    finally:
        inst.release()
    assert not path.exists()
