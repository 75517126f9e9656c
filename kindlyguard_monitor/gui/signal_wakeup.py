"""Lets Python's signal handlers (Ctrl-C, SIGTERM) run while Qt's event loop
sleeps, without a timer that wakes it 4 times a second for nothing (an idle
tray app's cost). Used by kindlyguard_monitor.gui.launch.run()."""

from __future__ import annotations

import signal
import socket

from PySide6.QtCore import QObject, QSocketNotifier, Slot


class SignalWakeup(QObject):
    """The C-level handler writes to a socket (signal.set_wakeup_fd), a
    QSocketNotifier wakes the loop, and any Python code run then lets the
    interpreter call the handler."""

    def __init__(self):
        super().__init__()
        self._rx, self._tx = socket.socketpair()
        self._rx.setblocking(False)
        self._tx.setblocking(False)
        self._previous = signal.set_wakeup_fd(self._tx.fileno(), warn_on_full_buffer=False)
        self._notifier = QSocketNotifier(self._rx.fileno(), QSocketNotifier.Type.Read, self)
        self._notifier.activated.connect(self._drain)

    @Slot()
    def _drain(self) -> None:
        try:
            while self._rx.recv(64):
                pass
        except (BlockingIOError, InterruptedError):
            pass

    def close(self) -> None:
        self._notifier.setEnabled(False)
        signal.set_wakeup_fd(self._previous)
        self._rx.close()
        self._tx.close()
