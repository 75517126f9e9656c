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
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QTimer, Signal, Slot

from kindlyguard_monitor.gui.main_window import MainWindow
from kindlyguard_monitor.gui.resources import icon
from kindlyguard_monitor.history import query as history_query
from kindlyguard_monitor.history.store import READ_ONLY_TEXT, HistoryStore
from kindlyguard_monitor.vocabulary import Transport

if TYPE_CHECKING:  # opened on demand (File › History…): imported then, not at start
    from kindlyguard_monitor.gui.history_window import HistoryWindow

log = logging.getLogger(__name__)
HISTORY_WAIT_S = 5.0  # the most the reader waits at start for the history to open
HISTORY_SIZE_REFRESH_MS = 2000
HISTORY_FIRST_REFRESH_MS = 300  # after a quiet spell: the count catches up with a trickle at once
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
        # arrive (note_activity) and when the window is shown, and again until the writer has
        # settled (its WAL checkpointed: what is shown is what is on disk); never on an idle clock.
        self._size_timer = QTimer(self)
        self._size_timer.setSingleShot(True)
        self._size_timer.setInterval(HISTORY_SIZE_REFRESH_MS)
        self._size_timer.timeout.connect(self._timed_refresh)
        window.shown.connect(self.show_size)
        self._waited_since = 0.0
        self._stopped = False
        self._timed_at = 0.0  # monotonic time of the timer's last refresh

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
            try:  # the seen state the history kept for them, and how many it holds unseen in all
                unseen_ids = history_query.unseen_ids(store.path, min(t.row_id for t in threats))
                unseen_total = store.unseen
            except Exception as exc:
                log.warning("could not read the seen state from the history: %s", exc)
                unseen_ids, unseen_total = set(), None
            window.show_restored([t.event(Transport.HISTORY) for t in threats],
                                 [t.key for t in threats if t.row_id in unseen_ids], unseen_total)
        log.info("feed restored from the history: %d threats in %.0f ms", len(threats),
                 (time.perf_counter() - started) * 1000)
        self.show_size()

    def note_activity(self) -> None:
        """Threats arrived: refresh the size label within HISTORY_FIRST_REFRESH_MS, and at most once
        per HISTORY_SIZE_REFRESH_MS while they keep coming (window shown only)."""
        if self.store is None or self._stopped or not self.window.isVisible():
            return
        # the next refresh: soon, but not sooner than HISTORY_SIZE_REFRESH_MS after the last one
        due_ms = max(HISTORY_FIRST_REFRESH_MS,
                     int((self._timed_at + HISTORY_SIZE_REFRESH_MS / 1000 - time.monotonic()) * 1000))
        timer = self._size_timer
        if not timer.isActive() or timer.remainingTime() > due_ms:
            timer.start(due_ms)

    @Slot()
    def _timed_refresh(self) -> None:
        self._timed_at = time.monotonic()
        self.show_size()

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
                from kindlyguard_monitor.fleet import status as fleet_status  # on the worker, after start

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
        # What is kept and what it takes on disk: the database and its WAL (kept small by checkpoints).
        text = f"Kept in history: {store.kept:,} threats, {store.size_bytes() / 2**20:.1f} MiB on disk"
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
        if not store.settled and store.saving and not store.error and not self._size_timer.isActive():
            self._size_timer.start(HISTORY_SIZE_REFRESH_MS)  # again once the writer is idle: the WAL checkpointed, the size on disk

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
            from kindlyguard_monitor.gui.history_window import HistoryWindow

            self.history_window = HistoryWindow(self.store.path, fleet=self.fleet)
            self.history_window.setWindowIcon(icon("kindlyguard"))
        self.store.flush(0.2)  # what just arrived is searchable (a store far behind is not waited for)
        self.history_window.show()
        self.history_window.raise_()
        self.history_window.activateWindow()
