"""One threat in full, as plain text.

Source and details are attacker-controlled: they go through
kindlyguard_monitor.textsafe.visible(keep_newlines=True), and the text box is a plain-text
QPlainTextEdit (never rich text), so "<b>x</b>" shows as typed and a
right-to-left override shows as ⟨U+202E⟩. "Copy" copies exactly what is shown.
"""

from __future__ import annotations

import datetime

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFontDatabase, QGuiApplication
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPlainTextEdit, QPushButton, QVBoxLayout, QWidget

from kindlyguard_monitor.event import ThreatEvent
from kindlyguard_monitor.textsafe import visible
from kindlyguard_monitor.threats import severity_name, threat_type_name


def iso_time(timestamp_unix_us: int) -> str:
    try:
        return datetime.datetime.fromtimestamp(int(timestamp_unix_us) / 1e6).astimezone().isoformat(
            timespec="microseconds")
    except (OverflowError, OSError, ValueError):
        return f"? ({timestamp_unix_us} µs since the epoch)"


def _identity(row: ThreatEvent) -> str:
    if row.seq is not None:
        return f"generation {row.generation}, seq {row.seq}"
    return f"id {visible(row.text_id())}"  # the server's id, else the content key


def row_text(row: ThreatEvent) -> str:
    """The full plain-text description of `row` (what the pane shows and Copy copies)."""
    return "\n".join((
        f"Time:      {iso_time(row.timestamp_unix_us)}",
        f"Severity:  {severity_name(row.severity)}",
        f"Type:      {threat_type_name(row.threat_type)}",
        f"Blocked:   {'Yes' if row.blocked else 'No'}",
        f"Transport: {row.transport}",
        f"Event:     {_identity(row)}",
        f"Source:    {visible(row.source, keep_newlines=True)}",
        "Details:",
        visible(row.details, keep_newlines=True),
    ))


class DetailsPane(QWidget):
    """The selected threat in full, with Copy; with `muting`, also a toggle that
    mutes (or unmutes) notifications from the threat's source."""

    mute_toggled = Signal(str, bool)  # source, muted

    def __init__(self, parent=None, muting: bool = False):
        super().__init__(parent)
        self.row: ThreatEvent | None = None
        self.is_muted = lambda source: False  # the owner says which sources are muted
        self.text = QPlainTextEdit(self)
        self.text.setReadOnly(True)
        self.text.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.text.setPlaceholderText("Select a threat to see it in full.")
        self.stats = QLabel(self)
        self.stats.setTextFormat(Qt.TextFormat.PlainText)
        self.copy_button = QPushButton("Copy", self)
        self.copy_button.setEnabled(False)
        self.copy_button.clicked.connect(self.copy)
        self.mute_button = QPushButton("Mute notifications from this source", self)
        self.mute_button.setCheckable(True)
        self.mute_button.setEnabled(False)
        self.mute_button.setVisible(muting)
        self.mute_button.clicked.connect(self._mute_clicked)
        bottom = QHBoxLayout()
        bottom.addWidget(self.stats, 1)
        bottom.addWidget(self.mute_button)
        bottom.addWidget(self.copy_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.text, 1)
        layout.addLayout(bottom)

    def show_row(self, row: ThreatEvent | None) -> None:
        self.row = row
        if row is None:
            self.text.setPlainText("")
            self.stats.setText("")
            self.copy_button.setEnabled(False)
            self.mute_button.setEnabled(False)
            self.mute_button.setChecked(False)
            return
        self.text.setPlainText(row_text(row))
        self.stats.setText(f"Details: {len(row.details)} code points as received")
        self.copy_button.setEnabled(True)
        self.mute_button.setEnabled(True)
        self.mute_button.setChecked(bool(self.is_muted(row.source)))

    def _mute_clicked(self, checked: bool) -> None:
        if self.row is not None:
            self.mute_toggled.emit(self.row.source, bool(checked))

    def plain_text(self) -> str:
        return self.text.toPlainText()

    def copy(self) -> None:
        if self.row is not None:
            QGuiApplication.clipboard().setText(row_text(self.row))  # exactly what is shown
