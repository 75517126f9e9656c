"""One threat in full, as plain text.

Source and details are attacker-controlled: they go through
kindlyguard_monitor.textsafe.visible(keep_newlines=True), and the text box is a plain-text
QPlainTextEdit (never rich text), so "<b>x</b>" shows as typed and a
right-to-left override shows as ⟨U+202E⟩. "Copy" copies exactly what is shown.

Plain words first (when, how bad, what kind and what that means, blocked or
not, where from, what was sent); the internals (transport, event numbers, the
length as received) sit under a "Technical details" disclosure, closed by
default. Copy takes both.
"""

from __future__ import annotations

import datetime

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFontDatabase, QGuiApplication, QTextOption
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPlainTextEdit, QPushButton, QToolButton, QVBoxLayout, QWidget

from kindlyguard_monitor.event import ThreatEvent
from kindlyguard_monitor.gui.help import TYPE_MEANING
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


def plain_text(row: ThreatEvent) -> str:
    """What a person needs: when, how bad, what kind (and what that means), blocked, from where, what."""
    type_name = threat_type_name(row.threat_type)
    host = (f"Host:      {visible(row.host)}",) if getattr(row, "host", "") else ()  # the fleet view
    return "\n".join(host + (
        f"Time:      {iso_time(row.timestamp_unix_us)}",
        f"Severity:  {severity_name(row.severity)}",
        f"Type:      {type_name} — {TYPE_MEANING.get(type_name, TYPE_MEANING['Unknown'])}",
        f"Blocked:   {'Yes — the Shield stopped it' if row.blocked else 'No — reported, but let through'}",
        f"Source:    {visible(row.source, keep_newlines=True)}",
        "Details:",
        visible(row.details, keep_newlines=True),
    ))


def technical_text(row: ThreatEvent) -> str:
    """The internals: how it came, which event it is, its length as received."""
    return "\n".join((
        f"Transport: {row.transport}",
        f"Event:     {_identity(row)}",
        f"Length:    {len(row.details)} code points of details as received",
    ))


def row_text(row: ThreatEvent) -> str:
    """The full plain-text description of `row` (what the pane shows and Copy copies)."""
    return plain_text(row) + "\n\nTechnical details:\n" + technical_text(row)


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
        # wrapped, never cut: long lines break at words, and a long run without spaces anywhere
        self.text.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        self.text.setWordWrapMode(QTextOption.WrapMode.WrapAtWordBoundaryOrAnywhere)
        self.text.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.technical = QLabel(self)  # the internals, under the disclosure
        self.technical.setTextFormat(Qt.TextFormat.PlainText)
        self.technical.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.technical.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.technical.setVisible(False)
        self.technical_button = QToolButton(self)
        self.technical_button.setText("Technical details")
        self.technical_button.setCheckable(True)
        self.technical_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.technical_button.setArrowType(Qt.ArrowType.RightArrow)
        self.technical_button.setAccessibleName("Show technical details")
        self.technical_button.toggled.connect(self._show_technical)
        self.copy_button = QPushButton("Copy", self)
        self.copy_button.setEnabled(False)
        self.copy_button.clicked.connect(self.copy)
        self.mute_button = QPushButton("Mute notifications from this source", self)
        self.mute_button.setCheckable(True)
        self.mute_button.setEnabled(False)
        self.mute_button.setVisible(muting)
        self.mute_button.clicked.connect(self._mute_clicked)
        bottom = QHBoxLayout()
        bottom.addWidget(self.technical_button)
        bottom.addStretch(1)
        bottom.addWidget(self.mute_button)
        bottom.addWidget(self.copy_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.text, 1)
        layout.addWidget(self.technical)
        layout.addLayout(bottom)

    def show_row(self, row: ThreatEvent | None) -> None:
        self.row = row
        if row is None:
            self.text.setPlainText("")
            self.technical.setText("")
            self.copy_button.setEnabled(False)
            self.mute_button.setEnabled(False)
            self.mute_button.setChecked(False)
            return
        self.text.setPlainText(plain_text(row))
        self.technical.setText(technical_text(row))
        self.copy_button.setEnabled(True)
        self.mute_button.setEnabled(True)
        self.mute_button.setChecked(bool(self.is_muted(row.source)))

    def _show_technical(self, shown: bool) -> None:
        self.technical.setVisible(shown)
        self.technical_button.setArrowType(Qt.ArrowType.DownArrow if shown else Qt.ArrowType.RightArrow)
        self.technical_button.setAccessibleName("Hide technical details" if shown else "Show technical details")

    def _mute_clicked(self, checked: bool) -> None:
        if self.row is not None:
            self.mute_toggled.emit(self.row.source, bool(checked))

    def plain_text(self) -> str:
        return self.text.toPlainText()

    def copy(self) -> None:
        if self.row is not None:
            QGuiApplication.clipboard().setText(row_text(self.row))  # exactly what is shown
