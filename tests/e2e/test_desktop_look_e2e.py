"""Light, dark, 200 % and the keyboard, end to end on the real desktop of test_desktop_e2e (Xvfb, a
private session bus, a real tray host, dunst) with the real app and the demo writer (issue 14 items 6
and 10):

- the desktop asks for dark (Qt's GTK platform theme with GTK_THEME=Adwaita:dark: Qt's colour-scheme
  hint says Dark) and the app, set to follow the system, is dark: its palette, its badge; set to Light
  it is light on the same desktop;
- at QT_SCALE_FACTOR=2 (a bigger screen of its own) the window is drawn at twice the pixels;
- in each, the latency histogram at its real size has no text over text, bars or lines;
- Tab walks every control of the main window (real key events through QTest) and each has an
  accessible name; Ctrl+F, Esc, Ctrl+H, Ctrl+, F1 and Ctrl+W work from real X key presses (xdotool);
  Ctrl+Q quits.

Screenshots (main-window-dark, latency-dark, main-window-light, main-window-200, latency-200; with the
SNI tray) go where `make screenshots` points KGMON_SCREENSHOT_DIR.
"""

from __future__ import annotations

import itertools
import subprocess

import pytest
from PySide6.QtCore import QRectF

from kindlyguard_monitor.gui import palette as P
from conftest import wait_for
from desktop import DesktopSession, missing_programs
from test_desktop_e2e import RunningApp, desktop, start_app, wait_state  # noqa: F401

pytestmark = [pytest.mark.desktop, pytest.mark.timeout(240)]

DARK_DESKTOP = {"QT_QPA_PLATFORMTHEME": "gtk3", "GTK_THEME": "Adwaita:dark", "NO_AT_BRIDGE": "1",
                "GSETTINGS_BACKEND": "memory"}


def theme_settings(value: str) -> str:
    return f"[appearance]\ntheme={value}\n"


def check_histogram(app) -> dict:
    """Show the latency tab; its texts at the real size overlap nothing."""
    app.ask("tab 1")

    def drawn():
        look = app.ask("look")
        h = look["histogram"]
        return look if h and any(t[0] == "marker" for t in h["texts"]) else None

    look = wait_for(drawn, 30, "the histogram drawn with data")
    h = look["histogram"]
    rects = [(t[0], t[1], QRectF(*t[2:])) for t in h["texts"]]
    plot = QRectF(*h["plot"])
    for (ka, ta, a), (kb, tb, b) in itertools.combinations(rects, 2):
        assert not a.intersects(b), f"{ka} {ta!r} overlaps {kb} {tb!r}"
    for kind, text, r in rects:
        assert not r.intersects(plot), f"{kind} {text!r} is on the bars"
    legend = " ".join(t[1] for t in h["texts"] if t[0] == "legend")
    assert "to screen" in legend or "transport" in legend, legend
    assert sum(t[0] == "ytick" for t in h["texts"]) >= 2
    return look


def test_dark_desktop_light_setting_and_200_percent(desktop, start_app, tmp_path):
    ring = tmp_path / "ring" / "kindly-guard.shm"
    ring.parent.mkdir(mode=0o700)

    # 1. The desktop is dark; the app follows the system (the default).
    app = start_app("--demo", "--shm-path", str(ring), env=DARK_DESKTOP)
    wait_state(app, lambda s: s["rows"] >= 5 and s["transport"] == "shm", 30, "threats over shared memory")
    look = app.ask("look")
    assert look["system_scheme"].endswith("Dark"), look
    assert (look["setting"], look["scheme"], look["palette"]) == ("system", "dark", "dark")
    assert look["window_colour"] == P.DARK_PALETTE.window and look["base_colour"] == P.DARK_PALETTE.base
    assert P.DARK_PALETTE.badge["shm"][0] in look["badge_style"]
    shots = desktop.tray == "sni"  # the README's pictures: one tray's are enough
    if shots:
        app.screenshot("main-window-dark", tmp_path)
    check_histogram(app)
    if shots:
        app.screenshot("latency-dark", tmp_path, tray=False)
    app.quit()

    # 2. The same dark desktop, the user's setting Light: light.
    app = start_app("--demo", "--shm-path", str(ring), env=DARK_DESKTOP, settings=theme_settings("light"))
    wait_state(app, lambda s: s["rows"] >= 5 and s["transport"] == "shm", 30, "threats over shared memory")
    look = app.ask("look")
    assert (look["setting"], look["scheme"]) == ("light", "light")
    assert look["window_colour"] == P.LIGHT_PALETTE.window
    if shots:
        app.screenshot("main-window-light", tmp_path, tray=False)
    check_histogram(app)


def test_200_percent(tmp_path):
    """QT_SCALE_FACTOR=2 on a screen big enough for the doubled window: twice the pixels, the
    histogram's layout still clean, the tray icon drawn at 2x (an SNI tray)."""
    ring = tmp_path / "ring" / "kindly-guard.shm"
    ring.parent.mkdir(mode=0o700)
    if missing_programs("sni"):
        pytest.skip(f"needs Debian packages {' '.join(missing_programs('sni'))}")
    with DesktopSession(tray="sni", screen="2400x1600x24") as session:
        app = RunningApp(session, tmp_path, "--demo", "--shm-path", str(ring), extra_env={"QT_SCALE_FACTOR": "2"})
        try:
            wait_state(app, lambda s: s["rows"] >= 5 and s["transport"] == "shm", 30, "threats over shared memory")
            assert app.ask("look")["dpr"] == 2.0
            app.screenshot("main-window-200", tmp_path, tray=False)
            check_histogram(app)
            app.screenshot("latency-200", tmp_path, tray=False)
        finally:
            app.quit()
        assert app.proc.returncode == 0, app.stderr()


def xkey(desktop, winid: int, *keys: str) -> None:
    """Real X key events to the app's window (XTEST), as a keyboard would send them."""
    subprocess.run(["xdotool", "windowfocus", "--sync", str(winid)], env=desktop.env, check=True, timeout=10)
    subprocess.run(["xdotool", "key", "--clearmodifiers", *keys], env=desktop.env, check=True, timeout=10)


def test_keyboard_alone(desktop, start_app, tmp_path):
    ring = tmp_path / "ring" / "kindly-guard.shm"
    ring.parent.mkdir(mode=0o700)
    app = start_app("--demo", "--shm-path", str(ring))
    wait_state(app, lambda s: s["rows"] >= 5, 30, "threats in the table")
    winid = app.ask("focus")["winid"]

    # Tab from wherever the focus is, 30 times: every control on the way has a name, the main ones come by.
    xkey(desktop, winid, "ctrl+f")
    wait_for(lambda: (app.ask("focus")["focus"] or {}).get("class") == "QLineEdit", 10, "Ctrl+F to the filter")
    reached = app.ask("focus_walk 30")["reached"]
    assert all(r and r["name"] for r in reached), reached
    names = {r["name"] for r in reached}
    for must in ("Filter threats by source and details", "Show threats of at least this severity",
                 "Threat feed, newest first", "Details of the selected threat", "Pause scrolling of the threat feed"):
        assert must in names, names

    # Ctrl+F, type, Esc clears; a second Esc closes the window (to the tray).
    xkey(desktop, winid, "ctrl+f")
    wait_for(lambda: app.ask("focus")["focus"]["name"] == "Filter threats by source and details", 10,
             "Ctrl+F to the filter")
    subprocess.run(["xdotool", "type", "--delay", "20", "zzz-nothing-matches"], env=desktop.env, check=True,
                   timeout=20)
    wait_for(lambda: app.ask("focus")["rows_shown"] == 0, 10, "the filter to hide every row")
    xkey(desktop, winid, "Escape")
    wait_for(lambda: app.ask("focus")["search"] == "" and app.ask("focus")["rows_shown"] > 0, 10,
             "Esc to clear the filter")

    # Ctrl+H opens History; Esc closes it. Ctrl+, opens Settings; Esc closes it.
    xkey(desktop, winid, "ctrl+h")
    wait_for(lambda: app.ask("focus")["history_visible"], 15, "Ctrl+H to open History")
    history_id = subprocess.run(["xdotool", "search", "--name", "— History"], env=desktop.env, capture_output=True,
                                text=True, timeout=10).stdout.split()
    assert history_id
    xkey(desktop, int(history_id[0]), "Escape")
    wait_for(lambda: not app.ask("focus")["history_visible"], 10, "Esc to close History")
    xkey(desktop, winid, "ctrl+comma")
    wait_for(lambda: app.ask("focus")["modal"] == "KindlyGuard Monitor Settings", 10, "Ctrl+, to open Settings")
    dialog_id = subprocess.run(["xdotool", "search", "--name", "KindlyGuard Monitor Settings"], env=desktop.env,
                               capture_output=True, text=True, timeout=10).stdout.split()
    xkey(desktop, int(dialog_id[0]), "Escape")
    wait_for(lambda: app.ask("focus")["modal"] is None, 10, "Esc to close Settings")

    # F1: the Help page; Esc closes it.
    xkey(desktop, winid, "F1")
    wait_for(lambda: app.ask("focus")["help_visible"], 10, "F1 to open Help")
    help_id = wait_for(lambda: subprocess.run(["xdotool", "search", "--name", "KindlyGuard Monitor Help"],
                                              env=desktop.env, capture_output=True, text=True,
                                              timeout=10).stdout.split(), 10, "the Help window")
    xkey(desktop, int(help_id[0]), "Escape")
    wait_for(lambda: not app.ask("focus")["help_visible"], 10, "Esc to close Help")

    # Ctrl+W closes the window (the tray keeps the app); Ctrl+Q from the window quits.
    xkey(desktop, winid, "ctrl+w")
    wait_state(app, lambda s: not s["window_visible"], 10, "Ctrl+W to close the window")
    app.ask("show")  # back, as the tray's Show/Hide does
    wait_state(app, lambda s: s["window_visible"], 10, "the window back")
    xkey(desktop, winid, "ctrl+q")
    assert app.proc.wait(20) == 0
