"""Acknowledging threats as a person would, end to end on the real desktop of test_desktop_e2e (Xvfb,
a private session bus, a real tray host, dunst) with the real app and the demo writer (issue 14
items 2 and 4): the unseen count shows in the tray's tooltip (read from the StatusNotifierItem over
the bus, as the tray host reads it) and the window title, and the tray icon is the alert; Ctrl+Shift+A
marks all as seen: the count goes to 0 and the icon back to normal. Restarted on the same history,
the restored rows are still seen, carry their date, stay below this session's new (unseen) rows and
are counted apart from them."""

from __future__ import annotations

import re

import pytest

from test_desktop_e2e import desktop, start_app, wait_state  # noqa: F401
from test_desktop_look_e2e import xkey

from kindlyguard_monitor.gui.row_look import UNSEEN_MARK

pytestmark = [pytest.mark.desktop, pytest.mark.timeout(180)]
DATED = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d$")


def host_tooltip(desktop, app) -> str:
    """The tooltip as the tray host sees it: the StatusNotifierItem's ToolTip over the bus (SNI),
    else (XEmbed: the host draws no tooltip of ours) the one the tray icon carries."""
    if desktop.tray == "sni":
        return desktop.sni_item_property(app.proc.pid, "ToolTip") or ""
    return app.state()["tray_tooltip"]


def host_icon(desktop, app) -> str:
    """The icon the tray host shows: the StatusNotifierItem's IconName and IconPixmap (SNI), else the state."""
    if desktop.tray == "sni":
        return "".join(desktop.sni_item_property(app.proc.pid, p) or "" for p in ("IconName", "IconPixmap"))
    return app.state()["tray_state"]


def test_mark_all_seen_by_keyboard_and_seen_state_kept_across_a_restart(desktop, start_app, tmp_path):
    ring = tmp_path / "ring" / "kindly-guard.shm"
    ring.parent.mkdir(mode=0o700)
    app = start_app("--demo", "--shm-path", str(ring))
    # The demo's High and Critical threats: unseen, the alert icon, the count in the title and the tray.
    state = wait_state(app, lambda s: s["unseen"] >= 2 and s["tray_state"] == "threat", 40,
                       "unseen threats and the tray's alert icon")
    assert re.fullmatch(r"KindlyGuard Monitor — \d+ unseen", state["title"]), state["title"]
    assert re.search(r"\d+ unseen", host_tooltip(desktop, app)), host_tooltip(desktop, app)
    assert state["session_label"].startswith("This session: ")
    alert_icon = host_icon(desktop, app)
    assert alert_icon

    app.ask("toggle_demo")  # the tray's Stop demo writer: nothing new arrives while we look
    wait_state(app, lambda s: not s["demo_running"], 15, "the demo writer to stop")
    xkey(desktop, app.ask("focus")["winid"], "ctrl+shift+a")
    state = wait_state(app, lambda s: s["unseen"] == 0 and s["tray_state"] != "threat", 15,
                       "Ctrl+Shift+A to mark all as seen")
    assert state["title"] == "KindlyGuard Monitor"
    assert state["tray_state"] in ("protected", "degraded", "disconnected")  # the transport's own icon
    wait_state(app, lambda s: "nothing unseen" in host_tooltip(desktop, app), 10,
               "the tray host's tooltip to say nothing is unseen")
    assert host_icon(desktop, app) != alert_icon  # the host shows the normal icon again
    rows = state["rows"]
    # every threat of this (first) session is kept, and the label says so once the writer has it
    wait_state(app, lambda s: s["history_label"].startswith(f"Kept in history: {rows:,} threats, "), 10,
               "the history label to count what is kept")
    app.quit()

    # Restarted on the same history, the demo on again: the restored rows come back seen, dated and
    # below this session's new (unseen) ones; the counts keep the two apart.
    app = start_app("--demo", "--shm-path", str(ring))
    state = wait_state(app, lambda s: s["rows"] > rows and s["restored_label"], 40,
                       "the feed restored from the history, and new threats above it")
    assert state["restored_label"] == f"Before this session: {rows:,} (from the history)"
    app.ask("toggle_demo")  # stopped: the counters (redrawn at most every 250 ms while threats stream) settle
    wait_state(app, lambda s: not s["demo_running"], 15, "the demo writer to stop")

    def settled(s):
        m = re.fullmatch(r"This session: (\d+) threats?", s["session_label"])
        return (m is not None and int(m.group(1)) == s["unseen"]
                and s["title"] == f"KindlyGuard Monitor — {s['unseen']} unseen")

    state = wait_state(app, settled, 10, "the session counter and the title to catch up with the feed")
    session = int(re.fullmatch(r"This session: (\d+) threats?", state["session_label"]).group(1))
    assert state["unseen"] == session > 0, state  # only this session's threats need the user
    assert state["title"] == f"KindlyGuard Monitor — {session} unseen"
    times = [row[0] for row in state["top"]]
    new = [t for t in times if t.startswith(UNSEEN_MARK)]
    old = times[len(new):]
    assert len(new) == min(session, len(times)) and not any(DATED.match(t) for t in new), times
    assert old and all(DATED.match(t) for t in old), times  # dated, seen, below this session's rows
    assert re.search(rf"\b{session} unseen", host_tooltip(desktop, app))
    assert state["history_label"].startswith("Kept in history: ")
    if desktop.tray == "sni":  # the README's picture
        app.screenshot("restored-seen", tmp_path)
