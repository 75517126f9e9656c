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
import time

import pytest

from kindlyguard_monitor.threats import CRITICAL, HIGH, THREAT_TYPE_NUMBER, Threat
from conftest import wait_for
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
