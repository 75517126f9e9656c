"""Turning protection off and on as a person would, end to end on the real desktop of
test_desktop_e2e (Xvfb, a private session bus, a real tray host, dunst) with the real app and the
demo writer, whose WebSocket server toggles protection and tells every client (issue 14 item 3):

the File menu by keyboard (Alt+F, the item that says "Turn protection off…"), a confirmation that
Esc cancels (nothing sent: the Shield stays on), then Alt+T in it; the Shield confirms, and the badge
says "Protection OFF", the tray icon has its own state and tooltip, dunst shows "Protection is off";
the same item now says "Turn protection on", asks nothing, and everything comes back.
"""

from __future__ import annotations

import subprocess

import pytest

from conftest import wait_for
from test_desktop_e2e import desktop, start_app, wait_state  # noqa: F401
from test_desktop_look_e2e import xkey

pytestmark = [pytest.mark.desktop, pytest.mark.timeout(180)]


def choose_protection_in_file_menu(desktop, winid: int) -> None:
    """Alt+F opens File on its first item (History…); up twice, past Quit, is the protection item."""
    xkey(desktop, winid, "alt+f")
    subprocess.run(["xdotool", "key", "--delay", "60", "Up", "Up", "Return"], env=desktop.env, check=True,
                   timeout=10)


def answer_dialog(desktop, title: str, *keys: str) -> None:
    ids = wait_for(lambda: subprocess.run(["xdotool", "search", "--name", title], env=desktop.env,
                                          capture_output=True, text=True, timeout=10).stdout.split(), 10,
                   f"the {title!r} window")
    xkey(desktop, int(ids[0]), *keys)


def test_turn_protection_off_and_on(desktop, start_app, tmp_path):
    ring = tmp_path / "ring" / "kindly-guard.shm"
    ring.parent.mkdir(mode=0o700)
    app = start_app("--demo", "--shm-path", str(ring))
    state = wait_state(app, lambda s: s["protection_action"] == ["Turn protection off…", True], 30,
                       "the Shield's status (protection on) over its WebSocket")
    assert state["protection_enabled"] is True and "OFF" not in state["badge"]
    winid = app.ask("focus")["winid"]

    # Esc in the confirmation: nothing happens.
    choose_protection_in_file_menu(desktop, winid)
    wait_state(app, lambda s: s["modal"] == "Turn protection off?", 10, "the confirmation")
    answer_dialog(desktop, "Turn protection off?", "Escape")
    state = wait_state(app, lambda s: s["modal"] is None, 10, "the confirmation to close")
    assert state["protection_action"] == ["Turn protection off…", True] and state["protection_enabled"] is True

    # Alt+T: turned off, once the Shield says so.
    choose_protection_in_file_menu(desktop, winid)
    wait_state(app, lambda s: s["modal"] == "Turn protection off?", 10, "the confirmation")
    answer_dialog(desktop, "Turn protection off?", "alt+t")
    state = wait_state(app, lambda s: s["protection_enabled"] is False, 15, "the Shield to confirm protection off")
    assert state["badge"].startswith("Protection OFF · ")
    assert state["tray_state"] == "protection_off"  # above a threat's 10 s flash too
    assert "Protection is OFF" in state["tray_tooltip"]
    assert state["protection_action"] == ["Turn protection on", True]
    wait_for(lambda: "summary: 'Protection is off'" in desktop.notifications_shown(), 15,
             "dunst to show \"Protection is off\"")
    if desktop.tray == "sni":  # the README's picture
        app.screenshot("protection-off", tmp_path)

    # Back on: no question asked.
    choose_protection_in_file_menu(desktop, winid)
    state = wait_state(app, lambda s: s["protection_enabled"] is True, 15, "the Shield to confirm protection on")
    assert state["modal"] is None and not state["badge"].startswith("Protection OFF")
    assert state["tray_state"] != "protection_off"
    assert state["protection_action"] == ["Turn protection off…", True]
    wait_for(lambda: "summary: 'Protection is back on'" in desktop.notifications_shown(), 15,
             "dunst to show \"Protection is back on\"")
