"""What the main window says about the connection and the counts: the
transport badge (with the latency and the reason), the counters row
(this session's threats, blocked, per severity, events/s, missed, corrupt;
the threats listed from before this session; the unseen count and "Mark all
as seen"), the status bar (transport, history, the Shield's status) and the
window title's count (unseen). Every number says what it counts (issue 14 item 4).

A QObject owned by the window (its Qt parent): it reaches the window through
parent(), never through an attribute of its own, so the window and this object
make no reference cycle. Labels are refreshed only while the window is shown.
"""

from __future__ import annotations

import time
from collections import deque

from PySide6.QtCore import QObject, Qt, QTimer, Slot
from PySide6.QtWidgets import QHBoxLayout, QLabel, QMainWindow, QPushButton, QVBoxLayout, QWidget

from kindlyguard_monitor.feed import Feed
from kindlyguard_monitor.gui import palette
from kindlyguard_monitor.gui.histogram_widget import format_ns
from kindlyguard_monitor.gui.row_look import plain_tooltip
from kindlyguard_monitor.textsafe import elide, visible
from kindlyguard_monitor.threats import CRITICAL, HIGH, LOW, MEDIUM
from kindlyguard_monitor.vocabulary import Transport

# transport -> (badge text, palette.badge key, status-bar name); colours: gui/palette.py
BADGES = {
    Transport.SHM: ("Shared memory", "shm", "SHM"),
    Transport.WEBSOCKET: ("WebSocket", "websocket", "WebSocket"),
    Transport.DISCONNECTED: ("Disconnected (retrying)", "disconnected", None),
    Transport.FLEET: ("Fleet", "shm", "Fleet"),  # the badge then says the reason: "Fleet: nats://… (3 hosts)"
}
SHM_V1_BADGE = "Shared memory · Shield format v1, polled"  # the Shield's own ring: no wake-up, we poll it
REASON_LIMIT = 90
RATE_WINDOW_S = 1.0
# While threats stream the counters and the title are redrawn at most this often (the
# first arrival after a pause at once): at 60 deliveries a second each refresh re-laid
# the counters row and re-set the window title, a fifth of the GUI thread's Python.
LABELS_INTERVAL_S = 0.25
COUNTERS = ("total", "blocked", "Low", "Medium", "High", "Critical", "rate", "missed", "corrupt", "restored")
MARK_ALL_SEEN = "Mark all as seen"


def plain_label(text: str = "", parent=None) -> QLabel:
    label = QLabel(text, parent)
    label.setTextFormat(Qt.TextFormat.PlainText)
    return label


class StatusDisplay(QObject):
    def __init__(self, window: QMainWindow, central: QWidget, root: QVBoxLayout, feed: Feed):
        super().__init__(window)
        self.feed = feed
        self.transport = Transport.DISCONNECTED
        self.ring_format = 2
        self.reason = ""
        self.protection_off = False
        self.delivered = self.missed = self.corrupt = 0
        self._arrivals: deque[tuple[float, int]] = deque()  # (monotonic s, rows) over the last second
        self._transport_p50: int | None = None
        self._transport_p99: int | None = None
        self._shield: tuple[bool | None, int | None] | None = None
        self._history_failing = False
        self._build_badge_row(central, root)
        self._build_counters(central, root)
        self._build_status_bar(window)
        # Events/s decays to 0 after the last arrival: the timer runs only while the
        # window is shown and arrivals are counted, so an idle app sleeps.
        self._rate_timer = QTimer(self)
        self._rate_timer.setInterval(1000)
        self._rate_timer.timeout.connect(self._tick)
        self._labels_at = -LABELS_INTERVAL_S  # monotonic time of the last refresh for arrivals
        self._labels_timer = QTimer(self)  # the refresh deferred by LABELS_INTERVAL_S
        self._labels_timer.setSingleShot(True)
        self._labels_timer.timeout.connect(self._refresh_shown)

    def _window(self) -> QMainWindow:
        return self.parent()

    def _build_badge_row(self, central: QWidget, root: QVBoxLayout) -> None:
        """The connection badge, the transport latency, the unseen count and "Mark all as seen";
        the reason for the transport below."""
        self.badge = plain_label("", central)
        self.badge.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.badge.setMinimumWidth(180)
        self.latency_label = plain_label("", central)
        self.reason_label = plain_label("", central)
        self.reason_label.setStyleSheet("color: palette(mid);")
        # What needs the user, at the top right: the unseen count and "Mark all as seen".
        self.unseen_label = plain_label("", central)
        self.mark_seen_button = QPushButton(MARK_ALL_SEEN, central)
        self.mark_seen_button.setToolTip("Mark every threat so far as seen (Ctrl+Shift+A): the tray's alert "
                                         "icon goes back to normal")
        top = QHBoxLayout()
        top.addWidget(self.badge)
        top.addWidget(self.latency_label, 1)
        top.addWidget(self.unseen_label)
        top.addWidget(self.mark_seen_button)
        self._top = top
        root.addLayout(top)
        root.addWidget(self.reason_label)

    def _build_counters(self, central: QWidget, root: QVBoxLayout) -> None:
        """This session's threats, blocked, per severity, events/s, missed, corrupt; the threats
        listed from before this session on the badge row (the counters row has no room for it)."""
        self.counter_labels: dict[str, QLabel] = {}
        counters = QHBoxLayout()
        for name in COUNTERS:
            label = plain_label("", central)
            self.counter_labels[name] = label
            if name == "restored":
                self._top.insertWidget(2, label)  # after the badge and the latency, before the unseen count
            else:
                counters.addWidget(label)
        counters.addStretch(1)
        root.addLayout(counters)

    def _build_status_bar(self, window: QMainWindow) -> None:
        """Transport and latency, the history, the Shield's status."""
        self.status_label = plain_label("", window)
        self.history_label = plain_label("", window)
        self.shield_label = plain_label("", window)
        window.statusBar().addWidget(self.status_label, 1)
        window.statusBar().addPermanentWidget(self.history_label)
        window.statusBar().addPermanentWidget(self.shield_label)

    # ---------------------------------------------------------------- what the window is told

    def count_arrivals(self, rows: int) -> None:
        now = time.monotonic()
        self._arrivals.append((now, rows))
        if self._window().isVisible():
            wait = self._labels_at + LABELS_INTERVAL_S - now
            if wait <= 0:
                self._labels_at = now
                self._labels_timer.stop()
                self.refresh_labels()
            elif not self._labels_timer.isActive():
                self._labels_timer.start(max(1, int(wait * 1000)))
            if not self._rate_timer.isActive():
                self._rate_timer.start()

    @Slot()
    def _refresh_shown(self) -> None:
        self._labels_at = time.monotonic()
        if self._window().isVisible():
            self.refresh_labels()

    def set_transport(self, transport: str, reason: str) -> None:
        self.transport = Transport(transport) if transport in BADGES else Transport.DISCONNECTED
        self.reason = reason or ""
        if self.transport == Transport.DISCONNECTED:
            self._transport_p50 = self._transport_p99 = None
        self.show_transport()

    def set_ring_format(self, ring_format: int) -> None:
        self.ring_format = int(ring_format)
        self.show_transport()

    def set_counters(self, delivered: int, missed: int, corrupt: int) -> None:
        self.delivered, self.missed, self.corrupt = int(delivered), int(missed), int(corrupt)
        if self._window().isVisible():
            self.refresh_labels()

    def set_transport_latency(self, transport_hist) -> None:
        """The transport's p50/p99 beside the badge and in the status bar."""
        if transport_hist is not None and getattr(transport_hist, "count", 0):
            self._transport_p50 = int(transport_hist.percentile(50))
            self._transport_p99 = int(transport_hist.percentile(99))
        else:
            self._transport_p50 = self._transport_p99 = None
        self.show_transport()

    def set_shield_status(self, protection_enabled: bool | None, threats_blocked: int | None,
                          requested: bool | None = None) -> None:
        """The Shield's last status; `requested`: a toggle asked for that state and
        no status has confirmed it yet (shown as asked, not as done)."""
        self._shield = (protection_enabled, threats_blocked)
        parts = []
        if requested is not None:
            parts.append(f"Protection {'on' if protection_enabled else 'OFF'} → turning "
                         f"{'on' if requested else 'off'} (asked; not confirmed yet)")
        elif protection_enabled is not None:
            parts.append("Protection on" if protection_enabled else "Protection OFF")
        if threats_blocked is not None:  # the Shield's own counter: since the Shield started, not this session
            parts.append(f"Shield reported: {int(threats_blocked):,} blocked since it started")
        self.shield_label.setText(" · ".join(parts))

    def set_history_status(self, text: str, failing: bool = False) -> None:
        """The history's size (and backlog, or why it cannot write) in the status bar."""
        self.history_label.setText(visible(text))  # the error names a path and quotes SQLite
        self._history_failing = failing
        self.history_label.setStyleSheet(f"color: {palette.current().error};" if failing else "")

    def set_protection_off(self, off: bool) -> None:
        """The Shield says protection is off: the badge says so until it is back on."""
        self.protection_off = bool(off)
        self.show_transport()

    def refresh_colours(self) -> None:
        self.show_transport()
        self.set_history_status(self.history_label.text(), self._history_failing)

    def window_shown(self) -> None:
        self.refresh_labels()
        self.show_transport()
        if self._arrivals:
            self._rate_timer.start()

    def window_hidden(self) -> None:
        self._rate_timer.stop()  # nothing to redraw while hidden
        self._labels_timer.stop()

    # ---------------------------------------------------------------- drawing

    @Slot()
    def _tick(self) -> None:
        shown = self._window().isVisible()
        if shown:
            self.refresh_labels()
        if not self._arrivals or not shown:  # events/s shows 0 now: sleep until the next arrival
            self._rate_timer.stop()

    def events_per_second(self) -> int:
        cutoff = time.monotonic() - RATE_WINDOW_S
        while self._arrivals and self._arrivals[0][0] < cutoff:
            self._arrivals.popleft()
        return sum(n for _, n in self._arrivals)

    def refresh_labels(self) -> None:
        t = self.feed.totals
        restored = self.feed.restored
        texts = {
            "total": f"This session: {t['total']:,} threat{'' if t['total'] == 1 else 's'}",
            "blocked": f"{t['blocked']:,} blocked",
            "Low": f"Low: {t[LOW]}",
            "Medium": f"Medium: {t[MEDIUM]}",
            "High": f"High: {t[HIGH]}",
            "Critical": f"Critical: {t[CRITICAL]}",
            "rate": f"Events/s: {self.events_per_second()}",
            "missed": f"Missed: {self.missed}" + (
                f" · Not listed (flood): {self.feed.not_listed:,}" if self.feed.not_listed else ""),
            "corrupt": f"Corrupt: {self.corrupt}",
            "restored": f"Before this session: {restored:,} (from the history)" if restored else "",
        }
        for name, text in texts.items():
            self.counter_labels[name].setText(text)
        self.counter_labels["restored"].setVisible(bool(restored))
        # What needs the user: the unseen count, beside the button, and in the title (task bars
        # and window lists show it at a glance).
        unseen = self.feed.unseen
        self.unseen_label.setText(f"{unseen:,} unseen" if unseen else "All seen")
        sheet = "font-weight: bold;" if unseen else ""
        if self.unseen_label.styleSheet() != sheet:  # a style sheet re-polishes: only when it changes
            self.unseen_label.setStyleSheet(sheet)
        self.mark_seen_button.setEnabled(bool(unseen))
        self._window().setWindowTitle(f"KindlyGuard Monitor — {unseen:,} unseen" if unseen else "KindlyGuard Monitor")

    def show_transport(self) -> None:
        text, state, short = BADGES[self.transport]
        if self.transport == Transport.SHM and self.ring_format == 1:
            text, short = SHM_V1_BADGE, "SHM v1"
        reason = visible(self.reason)
        if self.transport == Transport.FLEET and reason:  # the fleet's server and hosts are the news
            text, reason = elide(reason, REASON_LIMIT), ""
        if self.protection_off:  # the Shield says so: above everything else
            text, state = f"Protection OFF · {text}", "protection_off"
        self.badge.setText(text)
        colour, ink = palette.current().badge[state]
        sheet = (f"QLabel {{ background-color: {colour}; color: {ink}; "
                 f"border-radius: 4px; padding: 4px 10px; font-weight: bold; }}")
        if self.badge.styleSheet() != sheet:  # a style sheet re-polishes the badge: only when it changes
            self.badge.setStyleSheet(sheet)
        if self._transport_p50 is not None and short is not None:
            self.latency_label.setText(f"latency p50 {format_ns(self._transport_p50)}, "
                                       f"p99 {format_ns(self._transport_p99)}")
            self.status_label.setText(f"KindlyGuard ({short} {format_ns(self._transport_p50)})")
        else:
            self.latency_label.setText("")
            self.status_label.setText(f"KindlyGuard ({short})" if short else "KindlyGuard (disconnected)")
        self.reason_label.setText(elide(reason, REASON_LIMIT))
        self.reason_label.setToolTip(plain_tooltip(self.reason) if reason else "")
