"""The threat history in the running app: start-up, the feed restored from it,
its size and errors in the status bar, and the History window.

At start the window is shown at once; the store opens (and checks, and
migrates) on its own thread, and `ready` is emitted once the newest threats
are back in the feed, or after HISTORY_WAIT_S when the history cannot say:
the app starts reading only then, so a restored threat read again live is
recognised, not news. Restored threats count as earlier: no notification, not
in this session's counters.
"""

from __future__ import annotations

import concurrent.futures
import logging
import time

from PySide6.QtCore import QObject, QTimer, Signal, Slot

from kindlyguard_monitor.fleet import status as fleet_status
from kindlyguard_monitor.gui.history_window import HistoryWindow
from kindlyguard_monitor.gui.main_window import MainWindow
from kindlyguard_monitor.gui.resources import icon
from kindlyguard_monitor.history import query as history_query
from kindlyguard_monitor.history.store import READ_ONLY_TEXT, HistoryStore
from kindlyguard_monitor.vocabulary import Transport

log = logging.getLogger(__name__)
HISTORY_WAIT_S = 5.0  # the most the reader waits at start for the history to open
HISTORY_SIZE_REFRESH_MS = 2000
READY_POLL_MS = 20


class _StoreEvents(QObject):
    """Brings the history store's callbacks (its own thread) to the GUI thread."""

    error = Signal(object)  # message, or None when writing works again
    forwarding = Signal(object, int)  # the forwarding line (or None) and the threats waiting, read off the GUI thread


class AppHistory(QObject):
    ready = Signal()  # the feed is restored (or the history could not be waited for): start reading

    def __init__(self, store: HistoryStore | None, window: MainWindow, parent=None, fleet: bool = False):
        super().__init__(parent)
        self.fleet = fleet  # `kgmon --fleet`: the fleet's own history (a Host column in the History window)
        self.store = store  # every threat on disk (its own writer thread), or None
        self.window = window
        self.history_window: HistoryWindow | None = None
        self._events = _StoreEvents(self)
        self._events.error.connect(self._on_error)
        self._events.forwarding.connect(self._on_forwarding)
        # "Forwarding: N waiting / …" is read from SQLite (1-10 ms) on this worker, never on the GUI thread.
        self._forwarding_text: str | None = None
        self._forwarding_worker: concurrent.futures.ThreadPoolExecutor | None = None
        self._forwarding_asked = False
        self._forwarding_waiting = 0
        self.forwarding_on = False  # the app's own forwarder runs (app_fleet.apply_forwarding)
        self._poll = QTimer(self)
        self._poll.setInterval(READY_POLL_MS)
        self._poll.timeout.connect(self._check_ready)
        # The size label follows the threats stored: refreshed once a while after threats
        # arrive (note_activity) and when the window is shown, never on an idle clock.
        self._size_timer = QTimer(self)
        self._size_timer.setSingleShot(True)
        self._size_timer.setInterval(HISTORY_SIZE_REFRESH_MS)
        self._size_timer.timeout.connect(self.show_size)
        window.shown.connect(self.show_size)
        self._waited_since = 0.0
        self._stopped = False

    def start(self) -> None:
        """Open the store; `ready` follows once the feed is restored."""
        self.store.on_error = self._events.error.emit  # called on the store's thread
        self.store.start()
        self._waited_since = time.monotonic()
        self._poll.start()

    def stop(self) -> None:
        """No more timers, and no `ready` from now on (the app is quitting)."""
        self._stopped = True
        self._poll.stop()
        self._size_timer.stop()

    def close(self) -> None:
        """Stop, let the History window's worker end, write what the store still holds and close it."""
        self.stop()
        if self._forwarding_worker is not None:
            self._forwarding_worker.shutdown(wait=True, cancel_futures=True)
            self._forwarding_worker = None
        if self.history_window is not None:
            self.history_window.close_worker()
        if self.store is not None:
            self.store.close()

    @Slot()
    def _check_ready(self) -> None:
        if self._stopped:  # quit before the history was ready: start nothing now
            self._poll.stop()
            return
        if self.store.ready.is_set() or time.monotonic() - self._waited_since > HISTORY_WAIT_S:
            self._poll.stop()
            self.restore_feed()
            self.ready.emit()

    def restore_feed(self) -> None:
        """The newest threats from the history into the feed."""
        store, window = self.store, self.window
        if not store.wait_ready(0):  # opened, checked and migrated: usable
            window.show_message(f"The threat history is not available: {store.error or 'still opening'}", 30000)
            return
        if store.notice:
            log.warning("%s", store.notice)
            window.show_message(store.notice, 60000)
        started = time.perf_counter()
        try:
            threats = history_query.recent(store.path, window.model.max_rows())
        except Exception as exc:  # a history that cannot be read must not stop the app
            log.warning("could not restore the feed from the history: %s", exc)
            return
        if threats:
            window.show_restored([t.event(Transport.HISTORY) for t in threats])
        log.info("feed restored from the history: %d threats in %.0f ms", len(threats),
                 (time.perf_counter() - started) * 1000)
        self.show_size()

    def note_activity(self) -> None:
        """Threats arrived: refresh the size label within HISTORY_SIZE_REFRESH_MS (window shown only)."""
        if self.store is not None and not self._stopped and not self._size_timer.isActive() \
                and self.window.isVisible():
            self._size_timer.start()

    @Slot()
    def show_size(self) -> None:
        """The history's size (and backlog, or why it cannot write) in the status bar; the
        forwarding line as last read, and a fresh read of it asked of the worker."""
        store = self.store
        if store is None or self._stopped or not self.window.isVisible():
            return
        self._show_size()
        self._ask_forwarding(store.path)

    def _ask_forwarding(self, path) -> None:
        if self._forwarding_asked:  # one read at a time: its answer shows the newest state anyway
            return
        if self._forwarding_worker is None:
            self._forwarding_worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="kgmon-forwarding")
        self._forwarding_asked = True
        emit = self._events.forwarding.emit

        def read():
            try:
                emit(*fleet_status.read(path))
            except Exception as exc:  # never raised into Qt
                log.debug("forwarding status: %s", exc)
                emit(None, 0)

        self._forwarding_worker.submit(read)

    @Slot(object, int)
    def _on_forwarding(self, text, waiting: int) -> None:
        self._forwarding_asked = False
        if self._stopped:
            return
        if text != self._forwarding_text:
            self._forwarding_text = text
            self._show_size()
        # The app's forwarder on and not done (or not started yet), or the count moving (a `kgmon
        # forward` at work): look again soon. Otherwise nothing is polled: the next threats ask again.
        busy = self.forwarding_on and (text is None or waiting)
        if (busy or (waiting and waiting != self._forwarding_waiting)) and not self._size_timer.isActive():
            self._size_timer.start()
        self._forwarding_waiting = waiting

    def _show_size(self) -> None:
        store = self.store
        if store is None or self._stopped or not self.window.isVisible():
            return
        text = f"History {store.size_bytes() / 2**20:.1f} MiB"
        lag = store.lag()
        if lag:
            text += f", {lag:,} waiting"
        if store.read_only:  # the error says why; the label says what it means
            text += " — " + READ_ONLY_TEXT
        elif store.error:
            text += " — not saving: " + store.error
        forwarding = self._forwarding_text  # issue 16: None unless this history is forwarded
        if forwarding:
            text += " · " + forwarding
        self.window.set_history_status(text, bool(store.error))

    @Slot(object)
    def _on_error(self, message) -> None:
        if message:
            log.warning("history: %s", message)
        self.show_size()

    def open_window(self) -> None:
        """File › History…: search, page and export what is stored."""
        if self.store is None:
            self.window.show_message("No threat history in this session.", 10000)
            return
        if self.history_window is None:
            self.history_window = HistoryWindow(self.store.path, fleet=self.fleet)
            self.history_window.setWindowIcon(icon("kindlyguard"))
        self.store.flush(0.2)  # what just arrived is searchable (a store far behind is not waited for)
        self.history_window.show()
        self.history_window.raise_()
        self.history_window.activateWindow()
