"""An idle app costs nothing (issue 15 item 4): attached to a live writer (a real
process keeping its heartbeat) that publishes nothing, with the window hidden,
the GUI thread gets no timer event, no queued signal from the reader and no
paint over a real idle period. Counted with an event filter on the application,
not timed: one timer that ticks, one counter update, one repaint fails it."""

from __future__ import annotations

import pytest
from conftest import free_port
from PySide6.QtCore import QEvent, QEventLoop, QObject, QTimer, Slot

from kindlyguard_monitor.bench.ring_bench import WriterProcess
from kindlyguard_monitor.history.store import HistoryStore

IDLE_MS = 2500  # longer than every period the app had: 250 ms tick, 1 s rate, 2 s history size
WATCHED = {QEvent.Type.Timer: "timer", QEvent.Type.MetaCall: "queued signal",
           QEvent.Type.Paint: "paint", QEvent.Type.UpdateRequest: "update request"}


class EventCounter(QObject):
    """Counts the watched events sent to the app's objects (those under `roots`): other tests'
    leftovers in the shared QApplication are not this app's business."""

    def __init__(self, roots: list, ignore: set[int]):
        super().__init__()
        self.roots = roots
        self.ignore = ignore  # id() of receivers whose events are the test's own
        self.seen: list[str] = []

    def _ours(self, obj) -> bool:
        while obj is not None:
            if any(obj is root for root in self.roots):
                return True
            obj = obj.parent()
        return False

    def eventFilter(self, watched, event) -> bool:
        kind = WATCHED.get(event.type())
        if kind is not None and id(watched) not in self.ignore and self._ours(watched):
            self.seen.append(f"{kind} for {type(watched).__name__} {watched.objectName()!r}")
        return False


class Collector(QObject):
    """The reader's counters as the GUI thread receives them (a queued connection to this object)."""

    def __init__(self):
        super().__init__()
        self.seen: list = []
        self.latency = 0  # each counters emission is followed by one latency emission

    @Slot(object)
    def take(self, counters) -> None:
        self.seen.append(counters)

    @Slot(object)
    def take_latency(self, _snapshot) -> None:
        self.latency += 1


@pytest.mark.slow  # about 10 s: start, a quiet ring, 2.5 s watched
def test_a_hidden_app_on_a_quiet_ring_gets_no_timer_signal_or_paint(qtbot, qapp, ring_path, tmp_path):
    from kindlyguard_monitor.gui.app import MonitorApp

    writer = WriterProcess(str(ring_path))
    monitor = MonitorApp(qapp, str(ring_path), f"ws://127.0.0.1:{free_port()}", demo=False,
                         history=HistoryStore(tmp_path / "h" / "history.sqlite3"))
    collector = Collector()
    counters = collector.seen
    monitor.reader.counters.connect(collector.take)
    monitor.reader.latency.connect(collector.take_latency)
    end = QTimer()
    end.setSingleShot(True)
    loop = QEventLoop()
    end.timeout.connect(loop.quit)
    # The tray polls for a tray host only while none exists (the offscreen platform here has none).
    counter = EventCounter([monitor, monitor.window, monitor.tray, monitor.notifier],
                           {id(end), id(loop), id(monitor.tray._poll), id(collector)})
    try:
        monitor.start(show_window=False)
        qtbot.waitUntil(lambda: monitor.window.transport == "shm", timeout=15000)
        monitor.window.hide()  # shown by start() when there is no tray
        # The reader's last counters say 0 events/s and it has gone quiet; take what is queued.
        qtbot.waitUntil(lambda: bool(counters) and counters[-1].events_per_s == 0 and monitor.reader._stats_quiet
                        and collector.latency == len(counters), timeout=15000)
        qapp.processEvents()
        quiet_from = len(counters)
        qapp.installEventFilter(counter)
        try:
            end.start(IDLE_MS)
            loop.exec()  # a real idle period: the writer is alive, nothing is published
        finally:
            qapp.removeEventFilter(counter)
        assert writer.proc.poll() is None, "the writer must stay alive (a live, quiet ring)"
        assert monitor.window.transport == "shm"
        assert counter.seen == [], f"the idle app was woken: {counter.seen[:10]}"
        assert len(counters) == quiet_from, "the reader emitted counters while nothing changed"
        assert not monitor.pacer.timer.isActive()
    finally:
        monitor.shutdown()
        writer.close()
