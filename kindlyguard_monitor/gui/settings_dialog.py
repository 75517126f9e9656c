"""The Settings dialog: edits every setting in kindlyguard_monitor.gui.settings, and on OK saves them
and turns start-at-login on or off."""

from __future__ import annotations

import os
from typing import Callable

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from kindlyguard_monitor.gui import autostart, palette, theme
from kindlyguard_monitor.gui import settings as S
from kindlyguard_monitor.textsafe import visible
from kindlyguard_monitor.threats import SEVERITIES
from kindlyguard_monitor.vocabulary import DEFAULT_WS_URL
from kindlyguard_monitor.transport.urls import ws_url_problem

WS_SCHEMES = ("ws://", "wss://")


def _platform_ring_default() -> str:
    try:
        from kindlyguard_monitor.ring.paths import default_ring_path

        return str(default_ring_path(None))
    except Exception:
        return ""


def _ws_default() -> str:
    try:
        from kindlyguard_monitor.transport.ws_client import default_ws_url

        return default_ws_url(None)
    except Exception:
        return DEFAULT_WS_URL


def validate_ws_url(text: str) -> str | None:
    """None if fine ("" = the default), else a plain-text reason."""
    text = text.strip()
    if not text:
        return None
    lowered = text.lower()
    if not lowered.startswith(WS_SCHEMES):
        return "The WebSocket URL must start with ws:// or wss://."
    if len(text) <= len(text.split("://", 1)[0]) + 3 or any(ch.isspace() for ch in text):
        return "The WebSocket URL needs a host, and no spaces."
    problem = ws_url_problem(text)  # a port out of range, a broken [IPv6] address...
    return f"Not a usable WebSocket URL: {problem.split(' is not a WebSocket URL: ', 1)[-1]}." if problem else None


def file_problem(path: str, what: str) -> str | None:
    """Why the file at `path` (the user's text; ~ is their home) cannot be used; None when it can
    be read. Only its name is kept in the settings: nothing here reads what it holds."""
    full = os.path.expanduser(path)
    if not os.path.exists(full):
        return f"The {what} {path} does not exist."
    if not os.path.isfile(full):
        return f"The {what} {path} is not a file."
    if not os.access(full, os.R_OK):
        return f"The {what} {path} cannot be read (its permissions do not let you)."
    return None


def validate_forwarding(enabled: bool, url: str, creds: str, nkey: str = "", ca: str = "") -> str | None:
    """None if the forwarding settings can be saved, else a plain-text reason. A URL carrying
    user:password@ (or a token) is refused: secrets belong in a creds or NKey seed file, never in the
    settings. The files are `kgmon forward`'s --creds, --nkey and --ca."""
    url, creds, nkey, ca = url.strip(), creds.strip(), nkey.strip(), ca.strip()
    if not enabled and not url:
        return None
    from urllib.parse import urlsplit

    from kindlyguard_monitor.fleet.connect import split_urls, url_problem

    if enabled and not url:
        return "Forwarding needs the NATS server's URL (nats://host:4222 or tls://host:4222)."
    problem = url_problem(url)
    if problem:
        return f"Not a usable NATS URL: {problem}."
    if any("@" in (urlsplit(u).netloc or "") for u in split_urls(url)):
        return "Put the NATS credentials in a creds file, not in the URL (the settings file keeps no secrets)."
    if creds and nkey:
        return "Give a creds file or an NKey seed file, not both (the server knows this machine by one of them)."
    for path, what in ((creds, "creds file"), (nkey, "NKey seed file"), (ca, "CA file")):
        if path and (problem := file_problem(path, what)):
            return problem
    return None


class SettingsDialog(QDialog):
    """`applied(settings)` is emitted after OK has saved the settings."""

    applied = Signal(object)

    def __init__(self, settings: S.Settings | None = None, parent: QWidget | None = None,
                 autostart_apply: Callable[[bool], None] | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("KindlyGuard Monitor Settings")
        self._settings = settings
        self._autostart_apply = autostart_apply or (lambda on: autostart.apply(on))
        self._build_transport_fields()
        self._build_notification_fields()
        self._build_reader_and_window_fields()
        self._build_forwarding_fields()
        self._build_error_label()
        form = self._build_form()
        self._build_technical()
        self._build_buttons()
        self._lay_out(form)
        if settings is not None:
            self.load(settings)

    # --- building the form (in this order: the widgets are created in it) ---------------

    def _build_transport_fields(self) -> None:
        """Where the Shield is: its ring file and its WebSocket URL."""
        self.ring_path_edit = QLineEdit()
        default_ring = _platform_ring_default()
        self.ring_path_edit.setPlaceholderText(f"Default: {default_ring}" if default_ring else "Platform default")

        self.ws_url_edit = QLineEdit()
        self.ws_url_edit.setPlaceholderText(f"Default: {_ws_default()}")
        self.ws_url_edit.textChanged.connect(self._clear_error)

    def _build_notification_fields(self) -> None:
        """From which severity, and how often at most, a notification is shown."""
        self.threshold_combo = QComboBox()
        for level in range(S.THRESHOLD_MIN, S.THRESHOLD_MAX + 1):
            self.threshold_combo.addItem(SEVERITIES[level], level)

        self.interval_spin = QSpinBox()
        self.interval_spin.setRange(S.INTERVAL_MIN, S.INTERVAL_MAX)
        self.interval_spin.setSuffix(" s")
        self.interval_spin.setToolTip("Threats that arrive in between are summed up in the next notification.")

    def _build_reader_and_window_fields(self) -> None:
        """The reader's spin, the rows the window keeps, start at login and the colours."""
        self.spin_us_spin = QDoubleSpinBox()
        self.spin_us_spin.setRange(S.SPIN_US_MIN, S.SPIN_US_MAX)
        self.spin_us_spin.setDecimals(1)
        self.spin_us_spin.setSuffix(" µs")

        self.feed_size_spin = QSpinBox()
        self.feed_size_spin.setRange(S.FEED_SIZE_MIN, S.FEED_SIZE_MAX)
        self.feed_size_spin.setSingleStep(1000)
        self.feed_size_spin.setGroupSeparatorShown(True)

        self.start_at_login_check = QCheckBox("Start KindlyGuard Monitor when I log in")

        self.theme_combo = QComboBox()
        for text, value in theme.CHOICES:
            self.theme_combo.addItem(text, value)
        self.theme_combo.setToolTip("System follows the desktop's light or dark setting.")

    def _build_forwarding_fields(self) -> None:
        """Forwarding this machine's threats to the fleet (docs/fleet.md): a URL and a creds file's path."""
        self.forward_check = QCheckBox("Forward threats to a NATS server")
        self.forward_check.setToolTip("Every threat this monitor stores is published to the fleet's JetStream "
                                      "stream, exactly once (docs/fleet.md).")
        self.forward_url_edit = QLineEdit()
        self.forward_url_edit.setPlaceholderText("nats://fleet.example:4222 or tls://…")
        self.forward_creds_edit = QLineEdit()
        self.forward_creds_edit.setPlaceholderText("Path of a NATS .creds file (optional)")
        self.forward_nkey_edit = QLineEdit()
        self.forward_nkey_edit.setPlaceholderText("Path of an NKey seed file (optional; or a creds file)")
        self.forward_nkey_edit.setToolTip("The file that holds this workstation's NKey seed (SU…), as "
                                          "`kgmon forward --nkey`. Only its path is kept in the settings.")
        self.forward_ca_edit = QLineEdit()
        self.forward_ca_edit.setPlaceholderText("Path of a CA file (optional; default: the system's CAs)")
        self.forward_ca_edit.setToolTip("The CA the NATS server's TLS certificate is checked against, as "
                                        "`kgmon forward --ca`; giving it turns TLS on.")
        self.forward_edits = (self.forward_url_edit, self.forward_creds_edit, self.forward_nkey_edit,
                              self.forward_ca_edit)
        for w in (self.forward_check, *self.forward_edits):
            (w.toggled if w is self.forward_check else w.textChanged).connect(self._clear_error)

    def _build_error_label(self) -> None:
        self.error_label = QLabel()
        self.error_label.setTextFormat(Qt.TextFormat.PlainText)  # never render text as HTML
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet(f"color: {palette.current().error};")
        self.error_label.setVisible(False)

    def _build_form(self) -> QFormLayout:
        """The plain settings, shown first."""
        form = QFormLayout()
        form.addRow("Notify from severity:", self.threshold_combo)
        form.addRow("At most one notification every:", self.interval_spin)
        form.addRow("Colours:", self.theme_combo)
        form.addRow("Threats listed in the window:", self.feed_size_spin)
        form.addRow("", self.start_at_login_check)
        form.addRow("", self.forward_check)
        form.addRow("NATS server URL:", self.forward_url_edit)
        form.addRow("NATS creds file:", self.forward_creds_edit)
        form.addRow("NATS NKey seed file:", self.forward_nkey_edit)
        form.addRow("NATS TLS CA file:", self.forward_ca_edit)
        return form

    def _build_technical(self) -> None:
        """Where the Shield is and how it is read, under a "Technical details" toggle."""
        self.spin_us_spin.setToolTip("How long the reader keeps the CPU busy waiting for the next threat before "
                                     "it sleeps: more is faster under load, 0 saves the most power.")
        self.technical = QWidget()
        technical = QFormLayout(self.technical)
        technical.setContentsMargins(0, 0, 0, 0)
        technical.addRow("Shield's shared-memory ring file:", self.ring_path_edit)
        technical.addRow("Shield's WebSocket URL:", self.ws_url_edit)
        technical.addRow("Reader spin before sleeping:", self.spin_us_spin)
        self.technical.setVisible(False)
        self.technical_button = QToolButton()
        self.technical_button.setText("Technical details")
        self.technical_button.setCheckable(True)
        self.technical_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.technical_button.setArrowType(Qt.ArrowType.RightArrow)
        self.technical_button.setAccessibleName("Show technical settings")
        self.technical_button.toggled.connect(self._show_technical)

    def _build_buttons(self) -> None:
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)

    def _lay_out(self, form: QFormLayout) -> None:
        """Plain settings first; where the Shield is and how it is read under "Technical details"."""
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.technical_button)
        layout.addWidget(self.technical)
        layout.addWidget(self.error_label)
        layout.addWidget(self.buttons)

    # --- settings <-> fields ---------------------------------------------------------

    def load(self, settings: S.Settings) -> None:
        self._settings = settings
        self.ring_path_edit.setText(settings.ring_path)
        self.ws_url_edit.setText(settings.ws_url)
        index = self.threshold_combo.findData(settings.notify_threshold)
        self.threshold_combo.setCurrentIndex(index if index >= 0 else 0)
        self.interval_spin.setValue(settings.notify_interval_s)
        self.spin_us_spin.setValue(settings.spin_us)
        self.feed_size_spin.setValue(settings.feed_size)
        self.start_at_login_check.setChecked(settings.start_at_login)
        index = self.theme_combo.findData(settings.theme)
        self.theme_combo.setCurrentIndex(index if index >= 0 else 0)
        self.forward_check.setChecked(settings.forward)
        self.forward_url_edit.setText(settings.forward_url)
        self.forward_creds_edit.setText(settings.forward_creds)
        self.forward_nkey_edit.setText(settings.forward_nkey)
        self.forward_ca_edit.setText(settings.forward_ca)
        self._clear_error()

    def save(self, settings: S.Settings) -> None:
        settings.ring_path = self.ring_path_edit.text().strip()
        settings.ws_url = self.ws_url_edit.text().strip()
        settings.notify_threshold = int(self.threshold_combo.currentData())
        settings.notify_interval_s = int(self.interval_spin.value())
        settings.spin_us = float(self.spin_us_spin.value())
        settings.feed_size = int(self.feed_size_spin.value())
        settings.start_at_login = self.start_at_login_check.isChecked()
        settings.theme = str(self.theme_combo.currentData())
        settings.forward = self.forward_check.isChecked()
        settings.forward_url = self.forward_url_edit.text().strip()
        settings.forward_creds = self.forward_creds_edit.text().strip()
        settings.forward_nkey = self.forward_nkey_edit.text().strip()
        settings.forward_ca = self.forward_ca_edit.text().strip()
        settings.sync()

    # --- errors ------------------------------------------------------------------------

    def _show_technical(self, shown: bool) -> None:
        self.technical.setVisible(shown)
        self.technical_button.setArrowType(Qt.ArrowType.DownArrow if shown else Qt.ArrowType.RightArrow)

    def show_error(self, message: str) -> None:
        if message and not self.technical.isVisible():
            self.technical_button.setChecked(True)  # the fields the error is about
        self.error_label.setText(visible(message))
        self.error_label.setVisible(True)

    def _clear_error(self, *_: object) -> None:
        self.error_label.clear()
        self.error_label.setVisible(False)

    def _forwarding_field(self, problem: str) -> QLineEdit:
        """The field a forwarding problem is about (the focus goes there)."""
        for edit, words in ((self.forward_nkey_edit, "The NKey seed file"), (self.forward_nkey_edit, "not both"),
                            (self.forward_creds_edit, "The creds file"), (self.forward_ca_edit, "The CA file")):
            if problem.startswith(words) or words == "not both" and words in problem:
                return edit
        return self.forward_url_edit

    def error_text(self) -> str:
        return self.error_label.text() if not self.error_label.isHidden() else ""

    # --- OK ------------------------------------------------------------------------------

    def accept(self) -> None:
        problem = validate_ws_url(self.ws_url_edit.text())
        if problem:
            self.show_error(problem)
            self.ws_url_edit.setFocus()
            return
        problem = validate_forwarding(self.forward_check.isChecked(),
                                      *(e.text() for e in self.forward_edits))
        if problem:
            self.show_error(problem)
            self._forwarding_field(problem).setFocus()
            return
        settings = self._settings if self._settings is not None else S.Settings()
        try:
            self._autostart_apply(self.start_at_login_check.isChecked())
        except (OSError, ValueError) as exc:
            self.show_error(f"Could not change start at login: {exc}")
            return
        self.save(settings)
        self._settings = settings
        self.applied.emit(settings)
        super().accept()
