"""What the reader delivered, taken in slices: at most CHUNK_EVENTS threats per
turn of the event loop, so a flood never holds the loop longer than one slice
(timers, input and painting get turns between). The usual case, a few threats,
is handed on at once, without an extra turn of the loop.

A QObject owned by the app (its Qt parent); it hands each slice on by a
signal, never by a reference to the app, so the two make no reference cycle.
"""

from __future__ import annotations

from collections import deque

from PySide6.QtCore import QObject, QTimer, Signal, Slot

# The most threats taken in one turn of the event loop (~10 µs of Python each with the
# feed, the notifier and the table): a flood is taken in slices, never in one long stall.
CHUNK_EVENTS = 1000


class FloodPacer(QObject):
    sliced = Signal(object, bool)  # (batches of at most CHUNK_EVENTS threats, True for the last slice)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._backlog: deque = deque()  # delivered batches not yet taken
        self._backlog_events = 0
        self.timer = QTimer(self)  # 0 ms: the next slice on the next turn of the event loop
        self.timer.setInterval(0)
        self.timer.timeout.connect(self._drain)

    def offer(self, batches: list) -> None:
        """Queue what the reader delivered; slices follow, one per turn of the loop."""
        for batch in batches:
            self._backlog.append(batch)
            self._backlog_events += len(batch.events)
        if self._backlog_events <= CHUNK_EVENTS and not self.timer.isActive():
            self._drain()  # the usual case, a few threats: at once, no extra turn of the loop
        elif not self.timer.isActive():
            self.timer.start()

    def stop(self) -> None:
        self.timer.stop()

    @Slot()
    def _drain(self) -> None:
        chunk, room = [], CHUNK_EVENTS
        while self._backlog and room > 0:
            batch = self._backlog.popleft()
            if len(batch.events) > room:  # split: the rest waits at the front
                self._backlog.appendleft(batch._replace(events=batch.events[room:]))
                batch = batch._replace(events=batch.events[:room])
            chunk.append(batch)
            room -= len(batch.events)
            self._backlog_events -= len(batch.events)
        if not self._backlog:
            self.timer.stop()
        elif not self.timer.isActive():
            self.timer.start()
        if chunk:
            self.sliced.emit(chunk, not self._backlog)
