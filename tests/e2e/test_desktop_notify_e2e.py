"""Notifications a person can live with, end to end on the real desktop of
test_desktop_e2e (Xvfb, a private session bus, a real tray host, dunst) with
the real app and a real ring writer (issue 14 item 9):

- a threat whose text carries `file:///etc/passwd` and `http://evil.example/x`
  reaches dunst defanged (`file[:]///etc/passwd`, `hxxp[:]//evil[.]example/x`),
  and dunst itself finds no URL in it (`dunst -print` lists the URLs it would
  open from a notification: none; the same text sent raw lists both);
- critical urgency only for a Critical threat the Shield did not block;
- the desktop's do-not-disturb (dunstctl set-paused, which dunst 1.9 offers as
  its `paused` property; the `Inhibited` property where a server has it) holds
  notifications, and one summary comes when it ends.

Both run with the default calm interval (20 s between notifications).
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from kindlyguard_monitor.threats import CRITICAL, HIGH, THREAT_TYPE_NUMBER, Threat
from conftest import REPO, wait_for
from desktop import DesktopSession, missing_programs
from test_desktop_e2e import HeartbeatWriter, desktop, notify_field, start_app, wait_state  # noqa: F401

pytestmark = [pytest.mark.desktop, pytest.mark.timeout(180)]


def dunstctl(desktop, *args: str) -> str:
    return subprocess.run(["dunstctl", *args], env=desktop.env, check=True, timeout=10, capture_output=True,
                          text=True).stdout


def urgency(call: str) -> int:
    """The urgency hint's byte in a Notify call as dbus-monitor prints it."""
    lines = call.splitlines()
    for i, line in enumerate(lines):
        if 'string "urgency"' in line:
            return int(lines[i + 1].split()[-1])
    raise AssertionError(f"no urgency hint in {call}")


def ours(desktop) -> list[str]:
    """The app's Notify calls on the bus."""
    return [c for c in desktop.notify_calls() if notify_field(c, 0) == "KindlyGuard Monitor"]


def dunst_block(desktop, summary: str) -> str | None:
    """What `dunst -print` printed for the notification with this summary (its `urls:`
    part lists the links dunst found in it, the ones its context menu opens)."""
    for block in desktop.notifications_shown().split("\n}\n"):
        if f"\tsummary: '{summary}'" in block:
            return block
    return None


def send_raw(desktop, summary: str, body: str) -> None:
    """A Notify call straight from gdbus, nothing defanged: the control."""
    subprocess.run(["gdbus", "call", "--session", "--dest", "org.freedesktop.Notifications", "--object-path",
                    "/org/freedesktop/Notifications", "--method", "org.freedesktop.Notifications.Notify",
                    "control", "0", "", summary, body, "[]", "{}", "5000"],
                   env=desktop.env, check=True, timeout=10, capture_output=True)


@pytest.fixture
def ring_writer(tmp_path):
    ring = tmp_path / "ring" / "kindly-guard.shm"
    ring.parent.mkdir(mode=0o700)
    writer = HeartbeatWriter(ring)
    yield ring, writer
    writer.close()


def test_hostile_urls_reach_dunst_defanged_and_urgency_is_for_what_needs_the_user(desktop, start_app,
                                                                                   ring_writer):
    ring, writer = ring_writer
    app = start_app("--shm-path", str(ring))
    wait_state(app, lambda s: s["transport"] == "shm", 30, "the app to attach to the ring")
    before = len(ours(desktop))
    details = "fetched http://evil.example/x then read file:///etc/passwd (see www.evil.example)"
    writer.publish([Threat(THREAT_TYPE_NUMBER["PathTraversal"], CRITICAL, False, "mcp:fetch https://cdn.evil.example",
                           details, time.time_ns() // 1000)])
    call = wait_for(lambda: ours(desktop)[before:], 30, "the Critical threat's Notify call")[0]
    assert notify_field(call, 2) == "Critical threat detected: PathTraversal"
    body = notify_field(call, 3)
    assert body == ("mcp:fetch hxxps[:]//cdn[.]evil[.]example — fetched hxxp[:]//evil[.]example/x then read "
                    "file[:]///etc/passwd (see www[.]evil[.]example)"), body
    assert "://" not in call and "www.evil" not in call
    assert urgency(call) == 2  # Critical, and the Shield did not block it: it needs the user

    shown = wait_for(lambda: dunst_block(desktop, "Critical threat detected: PathTraversal"), 10,
                     "dunst to show it")
    assert "hxxp[:]//evil[.]example/x" in shown and "file[:]///etc/passwd" in shown
    assert "urls:" not in shown, shown  # dunst found nothing to open
    send_raw(desktop, "control", details)  # the same text not defanged: dunst finds both links
    control = wait_for(lambda: dunst_block(desktop, "control"), 10, "dunst to show the control")
    assert "urls:" in control and "http://evil.example/x" in control and "file:///etc/passwd" in control
    assert len(ours(desktop)) == before + 1


def test_do_not_disturb_holds_notifications_then_one_summary(desktop, start_app, ring_writer):
    ring, writer = ring_writer
    app = start_app("--shm-path", str(ring))
    wait_state(app, lambda s: s["transport"] == "shm", 30, "the app to attach to the ring")
    before = len(ours(desktop))
    dunstctl(desktop, "set-paused", "true")  # what a do-not-disturb button on a dunst panel does
    try:
        wait_state(app, lambda s: s["notifications_inhibited"], 10, "the app to see do-not-disturb")
        now_us = time.time_ns() // 1000
        writer.publish([Threat(THREAT_TYPE_NUMBER["InjectionAttempt"], CRITICAL if i == 0 else HIGH, i != 2,
                               f"mcp:server-{i}", f"while away {i}", now_us + i) for i in range(3)])
        state = wait_state(app, lambda s: s["rows"] == 3, 15, "the three threats in the table")
        assert state["notifications_pending"] == 3 and not state["notify_timer_active"], state
        assert ours(desktop)[before:] == []
    finally:
        dunstctl(desktop, "set-paused", "false")
    call = wait_for(lambda: ours(desktop)[before:], 15, "the summary after do-not-disturb")[0]
    assert notify_field(call, 2) == "3 new threats, 1 critical, 2 blocked, 1 allowed"
    assert urgency(call) == 1  # the one Critical threat was blocked: nothing there needs the user at once
    state = wait_state(app, lambda s: not s["notifications_inhibited"], 10, "do-not-disturb off")
    assert state["notifications_pending"] == 0


def test_the_specifications_inhibited_property_is_followed(qtbot, monkeypatch):
    """A notification server with the specification's `Inhibited` property (tests/inhibiting_notify_server.py,
    a real D-Bus service; dunst 1.9 has only its own `paused`): on at connect, nothing is sent; its
    PropertiesChanged (with the value, then with the name invalidated) turns it off, on and off again."""
    from kindlyguard_monitor.gui.desktop_notifications import DesktopNotifications
    from kindlyguard_monitor.gui.notifier import Notifier
    from kindlyguard_monitor.gui.notify_policy import NotificationPolicy
    if missing_programs("none"):
        pytest.skip(f"needs Debian packages {' '.join(missing_programs('none'))}")
    with DesktopSession(tray="none", notifier=False) as session:
        server = subprocess.Popen([sys.executable, str(REPO / "tests" / "inhibiting_notify_server.py"), "true"],
                                  env=session.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        lines: list[str] = []
        threading.Thread(target=lambda: [lines.append(x.strip()) for x in server.stdout], daemon=True).start()
        client = None
        try:
            wait_for(lambda: "ready" in lines, 10, "the stand-in notification server")
            monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", session.env["DBUS_SESSION_BUS_ADDRESS"])
            client = DesktopNotifications()
            notifier = Notifier(None, policy=NotificationPolicy(min_interval_s=3), desktop=client)
            qtbot.waitUntil(lambda: client.inhibit_source is not None and notifier.policy.inhibited, timeout=10000)
            assert client.inhibit_source == ("org.freedesktop.Notifications", "Inhibited")
            notifier.offer([Threat(THREAT_TYPE_NUMBER["PathTraversal"], HIGH, True, "mcp:fs", "x", 1)] * 2)
            assert notifier.policy.pending == 2 and not notifier.timer.isActive()

            def command(text: str) -> None:
                server.stdin.write(text + "\n")
                server.stdin.flush()

            command("inhibit false")  # PropertiesChanged with the new value
            qtbot.waitUntil(lambda: any(x.startswith("notify ") for x in lines), timeout=10000)
            assert [x for x in lines if x.startswith("notify ")] == ["notify 2 new threats, all blocked"]
            assert not notifier.policy.inhibited and notifier.policy.pending == 0
            command("invalidate true")  # PropertiesChanged naming it invalidated: read again
            qtbot.waitUntil(lambda: notifier.policy.inhibited, timeout=10000)
            command("invalidate false")
            qtbot.waitUntil(lambda: not notifier.policy.inhibited, timeout=10000)
        finally:
            if client is not None:
                client.close()
            server.stdin.close()
            server.terminate()
            server.wait(10)
