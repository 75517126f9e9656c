"""Keyboard use and screen-reader names for the app's windows (issue 14 item 10).

Shortcuts (the File menu's are set where the menu is built, gui/app.py):
  Ctrl+F       to the filter field (its text selected)
  Esc          in the filter field with text: clear it; elsewhere: close the window
  Ctrl+W       close the window (the main window goes to the tray when there is one)
  Ctrl+H       History…          Ctrl+,  Settings…          Ctrl+Q  Quit
  Ctrl+Shift+A Mark all as seen (acknowledge every threat so far)
  ↑ ↓ PgUp PgDn Home End   move through the feed (the details follow the selection)
  Enter        in the feed: the selected threat's details, focused for reading

Tab and Shift+Tab reach every control: the feed and the details text give Tab
back (no cell-to-cell or tab-character moves), and every control that takes
focus has an accessible name (`name_controls`): the ones below by their
attribute, any other from its own text, placeholder, label buddy or tooltip.
`unnamed()` lists what still has none (the tests assert it is empty).

Kept out of main_window.py (it looks the widgets up by attribute, and skips
what a window does not have), so the window's own layout stays its business.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt, Slot
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (QAbstractButton, QAbstractItemView, QLabel, QLineEdit, QPlainTextEdit,
                               QTabBar, QTabWidget, QTextEdit, QWidget)

# attribute path on the main window -> accessible name
MAIN_WINDOW_NAMES = {
    "search": "Filter threats by source and details",
    "severity_combo": "Show threats of at least this severity",
    "type_combo": "Show threats of this type",
    "pause_button": "Pause scrolling of the threat feed",
    "mark_seen_button": "Mark all threats as seen",
    "table": "Threat feed, newest first",
    "tabs": "Threat details and latency",
    "details.text": "Details of the selected threat",
    "details.copy_button": "Copy the selected threat's details",
    "details.mute_button": "Mute notifications from the selected threat's source",
    "histogram": "Latency histogram",
}
# attribute path on the History window -> accessible name
HISTORY_NAMES = {
    "text": "Search threat details",
    "source": "Search threat sources",
    "severity": "Minimum severity",
    "type": "Threat type",
    "blocked": "Blocked or allowed",
    "period": "Time period",
    "since": "From date and time",
    "until": "Until date and time",
    "table": "Stored threats",
}

SHORTCUTS = {"history": "Ctrl+H", "settings": "Ctrl+,", "quit": "Ctrl+Q", "find": "Ctrl+F", "close": "Ctrl+W",
             "mark_all_seen": "Ctrl+Shift+A"}


def _resolve(root: QObject, path: str):
    obj = root
    for part in path.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj if isinstance(obj, QWidget) else None


def takes_focus(w: QWidget) -> bool:
    return bool(w.focusPolicy() & Qt.FocusPolicy.TabFocus)


def _derived_name(w: QWidget) -> str:
    """A name from what the widget shows: its text, placeholder, the label naming it, its tooltip."""
    text = ""
    if isinstance(w, QAbstractButton):
        text = w.text().replace("&&", "\0").replace("&", "").replace("\0", "&")
    elif isinstance(w, QLineEdit):
        text = w.placeholderText()
    elif isinstance(w, QTabBar) and isinstance(w.parent(), QTabWidget):
        parent_name = w.parent().accessibleName()
        text = f"{parent_name} tabs" if parent_name else "Tabs"
    if not text:
        window = w.window()
        for label in window.findChildren(QLabel):
            if label.buddy() is w and label.text():
                text = label.text().replace("&", "").rstrip(":")
                break
    if not text:
        text = w.toolTip()
    return " ".join(text.split())


def name_controls(root: QWidget, names: dict[str, str] | None = None) -> None:
    """Give every control under `root` that takes focus an accessible name."""
    for path, name in (names or {}).items():
        w = _resolve(root, path)
        if w is not None and not w.accessibleName():
            w.setAccessibleName(name)
    for w in root.findChildren(QWidget):
        if takes_focus(w) and not w.accessibleName():
            name = _derived_name(w)
            if name:
                w.setAccessibleName(name)


def unnamed(root: QWidget) -> list[QWidget]:
    """Controls that take focus and have no accessible name (hidden ones, such as a closed
    combo box's popup list, aside)."""
    return [w for w in root.findChildren(QWidget)
            if takes_focus(w) and w.isVisibleTo(root) and not w.accessibleName()]


def tab_friendly(root: QWidget) -> None:
    """Tab leaves tables and read-only text instead of moving inside them."""
    for view in root.findChildren(QAbstractItemView):
        view.setTabKeyNavigation(False)
    for edit in [*root.findChildren(QPlainTextEdit), *root.findChildren(QTextEdit)]:
        if edit.isReadOnly():
            edit.setTabChangesFocus(True)


class _MainWindowKeys(QObject):
    """Ctrl+F, Esc, and Enter (Return) in the feed (an event filter on the table): show the selected
    threat's details and focus them. A child of the window that reaches it by parent(): the window is
    kept nowhere else, and the shortcuts call slots of this QObject, not closures over the window
    (the connection would hold the window for ever; window -> filter -> window would be a cycle
    freed by the cyclic GC on whatever thread runs it, destroying widgets off the GUI thread)."""

    @Slot()
    def find(self) -> None:
        search = self.parent().search
        search.setFocus(Qt.FocusReason.ShortcutFocusReason)
        search.selectAll()

    @Slot()
    def escape(self) -> None:
        window = self.parent()
        if window.search.hasFocus() and window.search.text():
            window.search.clear()
        else:
            window.close()

    def eventFilter(self, obj, event) -> bool:
        if event.type() == QEvent.Type.KeyPress and event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            w = self.parent()
            if w.table.selectionModel().hasSelection():
                w.tabs.setCurrentWidget(w.details)
                w.details.text.setFocus(Qt.FocusReason.ShortcutFocusReason)
                return True
        return False


def install_main_window(window) -> None:
    """Ctrl+F, Esc, Ctrl+W and Enter in the feed on the main window; names; Tab that leaves views."""
    keys = window._enter_filter = _MainWindowKeys(window)
    window._keyboard_shortcuts = [
        QShortcut(QKeySequence(SHORTCUTS["find"]), window, keys.find),
        QShortcut(QKeySequence(Qt.Key.Key_Escape), window, keys.escape),
        QShortcut(QKeySequence(SHORTCUTS["close"]), window, window.close),
    ]
    window.table.installEventFilter(keys)
    tab_friendly(window)
    name_controls(window, MAIN_WINDOW_NAMES)


def install_closing_window(window, names: dict[str, str] | None = None) -> None:
    """Esc and Ctrl+W close a secondary window (History); its controls get names."""
    window._keyboard_shortcuts = [
        QShortcut(QKeySequence(Qt.Key.Key_Escape), window, window.close),
        QShortcut(QKeySequence(SHORTCUTS["close"]), window, window.close),
    ]
    tab_friendly(window)
    name_controls(window, names)


def install_dialog(dialog) -> None:
    """A dialog closes on Esc by itself (QDialog); Ctrl+W too, and its controls get names."""
    dialog._keyboard_shortcuts = [QShortcut(QKeySequence(SHORTCUTS["close"]), dialog, dialog.reject)]
    name_controls(dialog)


