"""The real desktop app, started the way `kgmon` starts it, plus a control line
on stdin/stdout so an end-to-end test can ask what the user would see.

    python tests/e2e_app.py [kgmon's GUI options, e.g. --demo --shm-path P]

It calls kindlyguard_monitor.gui.launch.run() itself (the same settings, single-instance check,
window, tray, notifier and reader thread as `kgmon`) and, once the app is up,
answers one JSON line on stdout per command line on stdin:

    state                    rows, the top rows' texts, badge, status bar, tray, notifier counts
    grab_window PATH         the window's pixels from the X server, saved as PNG
    grab_screen PATH X Y W H a region of the screen (the tray bar), saved as PNG
    details ROW              the details pane's text after selecting that row
    tab N                    show the details (0) or latency (1) tab
    status_message           the status bar's temporary message
    history                  open the History window; its rows and status line
    grab_history PATH        the History window's pixels
    hide                     hide the window (what closing it does with a tray)
    show                     show it again (the tray's Show/Hide)
    quit                     quit the app as the tray's Quit does
    look                     theme, palette colours, device pixel ratio, the histogram's layout
    focus                    the focused widget, the active and modal windows, the window's X id
    focus_walk N             press Tab N times (QTest, real key events) and name each widget reached

Nothing here changes what the app does; it only reads the widgets.
"""

from __future__ import annotations

import faulthandler
import json
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PySide6.QtCore import QObject, Qt, Signal  # noqa: E402
from PySide6.QtGui import QGuiApplication, QImage, QPalette  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from kindlyguard_monitor.cli.main import build_parser  # noqa: E402
from kindlyguard_monitor.gui import launch  # noqa: E402


def _reply(obj) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _image_facts(img: QImage) -> dict:
    """Enough to tell a real grab from a black or empty one."""
    if img.isNull():
        return {"width": 0, "height": 0, "colours": 0}
    small = img.scaled(64, 64)
    colours = {small.pixel(x, y) for x in range(small.width()) for y in range(small.height())}
    return {"width": img.width(), "height": img.height(), "colours": len(colours)}


class Control(QObject):
    command = Signal(str)

    def __init__(self, monitor) -> None:
        super().__init__()
        self.monitor = monitor
        self.command.connect(self.handle, Qt.ConnectionType.QueuedConnection)
        threading.Thread(target=self._read_stdin, daemon=True).start()

    def _read_stdin(self) -> None:
        for line in sys.stdin:
            self.command.emit(line.strip())
        self.command.emit("quit")

    def handle(self, line: str) -> None:
        name, *args = line.split()
        try:
            _reply(getattr(self, "do_" + name)(*args))
        except Exception as exc:  # a broken command must not kill the app under test
            _reply({"error": f"{type(exc).__name__}: {exc}"})

    def do_state(self) -> dict:
        m = self.monitor
        w, model = m.window, m.window.model
        shown = [c for c in range(w.proxy.columnCount()) if not w.table.isColumnHidden(c)]  # what a person sees
        rows = []
        for r in range(min(40, w.proxy.rowCount())):
            rows.append([w.proxy.index(r, c).data() for c in shown])
        return {
            "rows": model.rowCount(),
            "top": rows,
            "headers": [w.proxy.headerData(c, Qt.Orientation.Horizontal) for c in shown],
            "transport": w.transport,
            "badge": w.badge.text(),
            "reason": w.reason_label.text(),
            "status": w.status_label.text(),
            "window_visible": w.isVisible(),
            "window_active": w.isActiveWindow(),
            "tray_available": m.tray.available(),
            "tray_visible": m.tray.is_visible(),
            "tray_tooltip": m.tray.tooltip(),
            "tray_state": m.tray.state,
            "protection_action": [m.tray.action_protection.text(), m.tray.action_protection.isEnabled()],
            "protection_enabled": m.protection.enabled,
            "modal": QApplication.activeModalWidget().windowTitle() if QApplication.activeModalWidget() else None,
            "notifications_shown": m.notifier.shown_count,
            "notifications_undelivered": m.notifier.undelivered,
            "notifications_pending": m.notifier.policy.pending,
            "notifications_inhibited": m.notifier.policy.inhibited,
            "notify_timer_active": m.notifier.timer.isActive(),
            "desktop_notifications": bool(m.desktop_notifications and m.desktop_notifications.available),
            "demo_running": m.demo.running,
            "selected_details": w.details.text.toPlainText() if w.table.selectionModel().hasSelection() else "",
            "title": w.windowTitle(),
            "unseen": m.feed.unseen,
            "restored_label": w.counter_labels["restored"].text(),
            "session_label": w.counter_labels["total"].text(),
            "history_label": w.history_label.text(),
        }

    def do_look(self) -> dict:
        """What the window looks like: light or dark, the colours in use, the histogram's texts."""
        from kindlyguard_monitor.gui import palette

        m = self.monitor
        pal = QApplication.palette()
        lay = m.window.histogram.last_layout
        return {
            "setting": m.theme.setting,
            "scheme": m.theme.scheme,
            "palette": palette.current().name,
            "system_scheme": str(QGuiApplication.styleHints().colorScheme()),
            "window_colour": pal.color(QPalette.ColorRole.Window).name(),
            "base_colour": pal.color(QPalette.ColorRole.Base).name(),
            "text_colour": pal.color(QPalette.ColorRole.WindowText).name(),
            "badge_style": m.window.badge.styleSheet(),
            "dpr": m.window.devicePixelRatio(),
            "histogram": None if lay is None else {
                "size": [m.window.histogram.width(), m.window.histogram.height()],
                "plot": [lay.plot.x(), lay.plot.y(), lay.plot.width(), lay.plot.height()],
                "texts": [[t.kind, t.text, t.rect.x(), t.rect.y(), t.rect.width(), t.rect.height()]
                          for t in lay.texts],
            },
        }

    def _describe(self, w) -> dict | None:
        if w is None:
            return None
        return {"class": type(w).__name__, "name": w.accessibleName(), "window": w.window().windowTitle()}

    def do_toggle_demo(self) -> dict:
        """The tray menu's Start/Stop demo writer."""
        self.monitor.toggle_demo()
        return {"demo_running": self.monitor.demo.running}

    def do_focus(self) -> dict:
        modal = QApplication.activeModalWidget()
        active = QApplication.activeWindow()
        return {"focus": self._describe(QApplication.focusWidget()),
                "active": active.windowTitle() if active else None,
                "modal": modal.windowTitle() if modal else None,
                "winid": int(self.monitor.window.winId()),
                "search": self.monitor.window.search.text(),
                "rows_shown": self.monitor.window.proxy.rowCount(),
                "history_visible": bool(self.monitor.history_window and self.monitor.history_window.isVisible()),
                "help_visible": bool(self.monitor.help_dialog and self.monitor.help_dialog.isVisible())}

    def do_focus_walk(self, presses: str) -> dict:
        reached = []
        for _ in range(int(presses)):
            target = QApplication.focusWidget() or QApplication.activeWindow() or self.monitor.window
            QTest.keyClick(target, Qt.Key.Key_Tab)
            reached.append(self._describe(QApplication.focusWidget()))
        return {"reached": reached}

    def do_details(self, row: str) -> dict:
        w = self.monitor.window
        w.table.selectRow(int(row))
        return {"text": w.details.text.toPlainText()}

    def do_status_message(self) -> dict:
        """The status bar's temporary message (what the app says once, e.g. no tray)."""
        return {"text": self.monitor.window.statusBar().currentMessage()}

    def do_show(self) -> dict:
        """Show the window, as the tray's Show/Hide does."""
        self.monitor.show_window()
        return {"shown": True}

    def do_hide(self) -> dict:
        """Hide the window, as closing it does when a tray exists."""
        self.monitor.window.hide()
        return {"hidden": True}

    def do_history(self) -> dict:
        """Open the History window (File › History…) and say what it shows."""
        self.monitor.open_history()
        h = self.monitor.history_window
        return {"visible": h.isVisible(), "rows": h.model.rowCount(), "status": h.status.text()}

    def do_grab_history(self, path: str) -> dict:
        h = self.monitor.history_window
        img = h.screen().grabWindow(h.winId()).toImage()
        img.save(path)
        return _image_facts(img)

    def do_tab(self, index: str) -> dict:
        """Show the details (0) or the latency (1) tab, as a click on it would."""
        self.monitor.window.tabs.setCurrentIndex(int(index))
        return {"tab": self.monitor.window.tabs.tabText(int(index))}

    def do_grab_window(self, path: str) -> dict:
        w = self.monitor.window
        img = w.screen().grabWindow(w.winId()).toImage()
        img.save(path)
        return _image_facts(img)

    def do_grab_screen(self, path: str, x: str, y: str, width: str, height: str) -> dict:
        screen = QGuiApplication.primaryScreen()
        img = screen.grabWindow(0, int(x), int(y), int(width), int(height)).toImage()
        img.save(path)
        return _image_facts(img)

    def do_quit(self) -> dict:
        # A quit that hangs prints where every thread is, for the test's failure message.
        faulthandler.dump_traceback_later(10, exit=False)
        self.monitor.quit()  # what the tray's Quit does
        return {"quitting": True}


def main() -> int:
    args = build_parser().parse_args(sys.argv[1:])
    holder = {}

    def started(monitor) -> None:
        holder["control"] = Control(monitor)
        _reply({"started": True})

    return launch.run(args, started=started)


if __name__ == "__main__":
    sys.exit(main())
