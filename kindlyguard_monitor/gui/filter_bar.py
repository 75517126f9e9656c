"""The main window's filter bar: severity, type, blocked or not, the host (fleet view), the text
filter (debounced), the "7 of 265" match count and Pause scrolling. It sets the
filter proxy (gui/threat_filter.py); the Overview tab's clicks set it too.

A QObject owned by the window (its Qt parent); it holds the proxy and the
model, never the window, so the two make no reference cycle.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, QTimer, Slot
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLineEdit, QPushButton, QVBoxLayout, QWidget

from kindlyguard_monitor.gui.status_display import plain_label
from kindlyguard_monitor.gui.threat_filter import ThreatFilterModel
from kindlyguard_monitor.gui.threat_model import ThreatTableModel
from kindlyguard_monitor.textsafe import visible
from kindlyguard_monitor.threats import CRITICAL, HIGH, LOW, MEDIUM, SEVERITIES, THREAT_TYPES

FILTER_DEBOUNCE_MS = 150


class FilterBar(QObject):
    def __init__(self, window: QWidget, central: QWidget, root: QVBoxLayout,
                 proxy: ThreatFilterModel, model: ThreatTableModel):
        super().__init__(window)
        self.proxy, self.model = proxy, model
        self.severity_combo = QComboBox(central)
        for number in (LOW, MEDIUM, HIGH, CRITICAL):
            self.severity_combo.addItem(f"≥ {SEVERITIES[number]}", number)
        self.type_combo = QComboBox(central)
        self.type_combo.addItem("All types", None)
        for number, name in enumerate(THREAT_TYPES):
            self.type_combo.addItem(name, number)
        self.blocked_combo = QComboBox(central)  # as the History window says it
        for label, value in (("Blocked or not", None), ("Blocked", True), ("Not blocked", False)):
            self.blocked_combo.addItem(label, value)
        self.blocked_combo.setToolTip("Show threats the Shield blocked, those it did not, or both")
        self.blocked_combo.setAccessibleName("Show blocked or not blocked threats")
        self.host_combo = QComboBox(central)  # the fleet view only (set_hosts_visible): hosts as they appear
        self.host_combo.addItem("All hosts", None)
        self.host_combo.setToolTip("Show one workstation's threats, or every host's")
        self.host_combo.setAccessibleName("Show threats from one host")
        self.host_combo.setVisible(False)
        self._hosts: set[str] = set()
        self.search = QLineEdit(central)
        self.search.setPlaceholderText("Filter source and details…")
        self.search.setClearButtonEnabled(True)
        self.match_label = plain_label("", central)  # "7 of 265" while a filter hides some
        self.match_label.setToolTip("Threats matching the filters, of those in the feed")
        self.pause_button = QPushButton("Pause scrolling", central)
        self.pause_button.setCheckable(True)
        self._search_timer = QTimer(self)
        self._search_timer.setSingleShot(True)
        self._search_timer.setInterval(FILTER_DEBOUNCE_MS)
        self._search_timer.timeout.connect(self._apply_search)
        self.severity_combo.currentIndexChanged.connect(self._apply_severity)
        self.type_combo.currentIndexChanged.connect(self._apply_type)
        self.blocked_combo.currentIndexChanged.connect(self._apply_blocked)
        self.host_combo.currentIndexChanged.connect(self._apply_host)
        self.search.textChanged.connect(self._search_changed)
        bar = QHBoxLayout()
        bar.addWidget(plain_label("Severity:", central))
        bar.addWidget(self.severity_combo)
        bar.addWidget(self.type_combo)
        bar.addWidget(self.blocked_combo)
        bar.addWidget(self.host_combo)
        bar.addWidget(self.search, 1)
        bar.addWidget(self.match_label)
        bar.addWidget(self.pause_button)
        root.addLayout(bar)

    @Slot(str)
    def filter_source(self, source: str) -> None:
        """Show the threats from `source` (the Overview's top sources): its visible form,
        which the text filter matches as it matches the raw text."""
        self._search_timer.stop()
        self.search.blockSignals(True)
        self.search.setText(visible(source))
        self.search.blockSignals(False)
        self._apply_search()

    @Slot(int)
    def filter_type(self, number: int) -> None:
        index = self.type_combo.findData(int(number))
        if index >= 0:
            self.type_combo.setCurrentIndex(index)

    @Slot(bool)
    def filter_blocked(self, blocked: bool) -> None:
        self.blocked_combo.setCurrentIndex(self.blocked_combo.findData(bool(blocked)))

    def set_hosts_visible(self, shown: bool) -> None:
        self.host_combo.setVisible(bool(shown))

    def add_hosts(self, events) -> None:
        """The fleet view: hosts not seen before join the host filter's list (sorted)."""
        new = {e.host for e in events} - self._hosts
        for host in sorted(new):
            self._hosts.add(host)
            names = [self.host_combo.itemData(i) for i in range(1, self.host_combo.count())]
            at = 1 + sum(1 for n in names if n.casefold() < host.casefold())
            self.host_combo.insertItem(at, visible(host) or "(this machine)", host)

    @Slot(str)
    def filter_host(self, host: str) -> None:
        index = self.host_combo.findData(host)
        if index >= 0:
            self.host_combo.setCurrentIndex(index)

    def clear(self) -> None:
        self.severity_combo.setCurrentIndex(0)
        self.type_combo.setCurrentIndex(0)
        self.blocked_combo.setCurrentIndex(0)
        self.host_combo.setCurrentIndex(0)
        self._search_timer.stop()
        self.search.blockSignals(True)
        self.search.clear()
        self.search.blockSignals(False)
        self.proxy.set_min_severity(self.severity_combo.currentData())
        self.proxy.set_types(None)
        self.proxy.set_blocked(None)
        self.proxy.set_host(None)
        self.proxy.set_text("")
        self.show_match_count()

    def show_match_count(self) -> None:
        """'7 of 265' while a filter hides some threats; nothing otherwise."""
        if self.proxy.is_filtered():
            text = f"{self.proxy.rowCount():,} of {self.model.rowCount():,}"
        else:
            text = ""
        if self.match_label.text() != text:
            self.match_label.setText(text)

    @Slot(int)
    def _apply_severity(self, _index: int) -> None:
        self.proxy.set_min_severity(self.severity_combo.currentData())
        self.show_match_count()

    @Slot(str)
    def _search_changed(self, _text: str) -> None:
        self._search_timer.start()  # debounced: the filter applies once typing pauses

    @Slot()
    def _apply_search(self) -> None:
        self.proxy.set_text(self.search.text())
        self.show_match_count()

    @Slot(int)
    def _apply_type(self, _index: int) -> None:
        number = self.type_combo.currentData()
        self.proxy.set_types(None if number is None else {number})
        self.show_match_count()

    @Slot(int)
    def _apply_host(self, _index: int) -> None:
        self.proxy.set_host(self.host_combo.currentData())
        self.show_match_count()

    @Slot(int)
    def _apply_blocked(self, _index: int) -> None:
        self.proxy.set_blocked(self.blocked_combo.currentData())
        self.show_match_count()
