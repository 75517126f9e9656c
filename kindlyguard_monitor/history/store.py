"""HistoryStore: every threat delivered, written to the history by one thread of its own.

The reader hands batches to `submit()`, which only appends them to a queue
(never blocks, never touches the disk); the writer thread takes what is
waiting, up to `batch_rows` threats per transaction, and inserts it with
INSERT OR IGNORE on the threat's key (kindlyguard_monitor.history.records), so a replay or
a transport switch stores nothing twice; during a flood, a process of its own
writes the ring threats (kindlyguard_monitor.history.flood_writer), off the
reader's GIL. `lag()` says how many threats wait. A trickle is gathered for
`commit_interval_s` (50 ms), so 1,000 threats a second cost 20 commits, not
1,000; `flush()` skips the wait. If the process is killed, what had not been
committed is lost (normally under 50 ms of threats; kindlyguard_monitor.history.db).

Nothing is lost silently:

- `record_counters()` turns growth of the reader's missed/corrupt counters
  into gap rows ("reader");
- if more than `max_pending` threats wait (the disk is slow or full), the
  oldest are dropped, counted in `dropped` and recorded as a gap row
  ("store_overflow");
- a write that fails (disk full, I/O error) keeps its threats queued and is
  retried with a growing pause (0.5 s doubling to 30 s); `error` holds the
  sentence to show and `on_error(message)` is called (from the writer
  thread) when it appears or changes, and with None when writing works again;
- a database found damaged is moved aside with a `notice`, and a new one
  started, when it is provably the monitor's own (kindlyguard_monitor.history.db);
- a history that cannot be written (`read_only`: "history is read-only:
  shown, not saved") or may not be used at all (a folder, another
  program's file, a newer kgmon's history: `refused`) is final: nothing is
  stored, nothing retried, nothing moved; what is submitted is counted in
  `not_saved`.

Retention (kindlyguard_monitor.history.retention) runs when the store
starts and every `retention_interval_s`; between runs, rows above
`max_rows` by 5% are trimmed as they come (without vacuum: the file is
about to grow again).

Behind the writes, when nothing waits, the writer puts a flood's rows in the
severity and type indexes (kindlyguard_monitor.history.late_index) and
fills the text index (kindlyguard_monitor.history.text_index) in chunks, and once idle for
`IDLE_CHECKPOINT_S` it checkpoints the WAL with TRUNCATE, so the size on
disk (`size_bytes()`) is the history's and not a WAL's high-water mark;
closing does the same.

Seen state: `mark_seen(keys)` and `mark_all_seen()` queue behind what was
submitted before them; `unseen` is the count the tray shows (exact after each commit).

The queue is kindlyguard_monitor.history.pending, the writer thread's loop
kindlyguard_monitor.history.writer; this module is the API and the thread's
opening, failures and closing. Searching: `open_reader()` and
kindlyguard_monitor.history.query (WAL lets readers run while the writer writes).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from typing import Callable, Iterable

from kindlyguard_monitor.event import EventKey
from kindlyguard_monitor.history import db, flood_writer
from kindlyguard_monitor.history.pending import Mark, PendingQueue, compacted, pending
from kindlyguard_monitor.history.records import generation_text
from kindlyguard_monitor.history.retention import RetentionResult
from kindlyguard_monitor.history.writer import WriterThread

log = logging.getLogger(__name__)

DAY_US = 86_400 * 1_000_000
DEFAULT_MAX_AGE_DAYS = 90.0
DEFAULT_MAX_ROWS = 1_000_000
DEFAULT_MAX_PENDING = 1_000_000  # threats waiting; about 180-250 bytes each in memory
DEFAULT_BATCH_ROWS = 50_000  # threats per transaction
COMPACT_WAITING = 10_000  # more threats than this waiting (a flood): submit() queues ring batches compact
DEFER_WAITING = 50_000  # more than this waiting as a transaction starts (behind by a full one): index later
COMMIT_INTERVAL_S = 0.05  # fewer than batch_rows waiting: gather this long, so a trickle is not a commit each
RETENTION_INTERVAL_S = 3600.0
RETRY_FIRST_S, RETRY_MAX_S = 0.5, 30.0
READ_ONLY_TEXT = "history is read-only: shown, not saved"

def wall_clock_us() -> int:
    return time.time_ns() // 1000


class HistoryStore(WriterThread):
    def __init__(self, path=None, *, max_age_days: float = DEFAULT_MAX_AGE_DAYS, max_rows: int = DEFAULT_MAX_ROWS,
                 max_pending: int = DEFAULT_MAX_PENDING, batch_rows: int = DEFAULT_BATCH_ROWS,
                 retention_interval_s: float = RETENTION_INTERVAL_S, commit_interval_s: float = COMMIT_INTERVAL_S,
                 on_error: Callable[[str | None], None] | None = None,
                 max_page_count: int | None = None, now_us: Callable[[], int] = wall_clock_us,
                 index_text: bool = True, defer_waiting: int = DEFER_WAITING, catch_up: bool = True,
                 flood_process: bool = True):
        """`path`: the database (default: kindlyguard_monitor.history.db.history_path()). `max_page_count`
        caps the file's size in pages (writes beyond it fail as on a full disk; tests
        use it). `now_us`: the wall clock, in µs, for retention and gap times.
        `index_text=False` leaves the text index unfilled (tests of the unindexed path).
        `defer_waiting`: with more threats waiting than this, a transaction's ring threats go into
        the severity and type indexes behind the writes (kindlyguard_monitor.history.late_index);
        `catch_up=False` leaves them out of those indexes (tests of the searches' two parts).
        `flood_process`: with more than COMPACT_WAITING threats waiting as a transaction starts, its ring
        threats are written by a process of its own (kindlyguard_monitor.history.flood_writer);
        False: by the writer thread, like any other."""
        self.path = db.history_path(path)
        self.max_age_us = int(max_age_days * DAY_US)
        self.max_rows = max(0, int(max_rows))
        self.batch_rows = max(1, int(batch_rows))
        self.retention_interval_s = retention_interval_s
        self.commit_interval_s = commit_interval_s
        self.on_error = on_error
        self.now_us = now_us
        self.index_text = index_text
        self.defer_waiting = max(-1, int(defer_waiting))
        self.catch_up = catch_up
        # Shared with the writer thread, under _cond.
        self._cond = threading.Condition()
        self._pending = PendingQueue(max(1, int(max_pending)))
        self._flush_target = 0  # a flush() waits for finished to reach this: write without gathering
        self._stopping = False
        self._retention_wanted = False
        self._retention_runs = 0
        self._retry_at: float | None = None  # after a failure: when to try again
        self._retry_delay = RETRY_FIRST_S
        self._page_limit = max_page_count
        self._page_limit_changed = max_page_count is not None
        self._counter_base = (0, 0, 0)
        self._thread: threading.Thread | None = None
        self._flood_writer = flood_writer.FloodWriter(self.path, enabled=flood_process)
        self.flood_waiting = COMPACT_WAITING  # more waiting as a transaction starts: the flood writer's
        # The writer thread's own.
        self._conn: sqlite3.Connection | None = None
        self._file_rows = 0  # threats in the file (exact after retention, counted up by inserts)
        self._text_backlog = 0  # rows not in the text index yet
        self._late_backlog = 0  # rows not in the severity and type indexes yet (at least)
        self._wal_dirty_at: float | None = None  # monotonic time of the first write since the last checkpoint
        self._last_write = 0.0
        self.ready = threading.Event()  # set once the file is opened (or opening failed)
        # For the app to show (written by the writer thread).
        self.notice: str | None = None  # the old file was unusable and moved aside
        self.saving = True  # False once the history turned out read-only or refused: final
        self.read_only = False  # an intact history this process cannot write: shown, not saved
        self.refused: str | None = None  # why the path is not a history we may use (nothing touched)
        self.not_saved = 0  # threats submitted while not saving
        self.error: str | None = None  # writing fails now; None when it works
        self.stored = 0  # threats inserted
        self.duplicates = 0  # threats ignored: already stored
        self.transactions = 0  # committed
        self.checkpoints = 0  # idle or closing WAL truncations done
        self.unseen = 0  # threats stored and not marked seen (exact after each commit)
        self.last_retention: RetentionResult | None = None

    # ---- any thread

    @property
    def dropped(self) -> int:
        """Threats dropped because too many waited (or that SQLite would not take)."""
        return self._pending.dropped

    @property
    def kept(self) -> int:
        """Threats in the file (as the writer last counted them)."""
        return self._file_rows

    @property
    def settled(self) -> bool:
        """Nothing waits to be written and the WAL is checkpointed: the size on disk is final for now."""
        with self._cond:
            return not self._pending.waiting() and self._wal_dirty_at is None

    @property
    def flood_transactions(self) -> int:
        """Transactions the flood writer's process wrote (the rest: the writer thread)."""
        return self._flood_writer.transactions

    def flood_writer_cpu_s(self) -> float:
        """The flood writer process's CPU time so far (0 when it is not running)."""
        return self._flood_writer.cpu_seconds()

    @property
    def max_pending(self) -> int:
        return self._pending.max_pending

    def start(self) -> "HistoryStore":
        """Start the writer thread: it opens (checks, migrates) the file and applies retention."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="history-writer", daemon=True)
            self._thread.start()
        return self

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait until the writer has opened the file (or failed to); True when it is usable."""
        self.ready.wait(timeout)
        return self.ready.is_set() and (self._conn is not None or self.read_only)

    def submit(self, batches: Iterable) -> None:
        """Queue kindlyguard_monitor.transport.items.Batch-es (or one Batch) to be stored. Never blocks on the disk:
        it appends them to a queue; the writer thread does the rest. While more than COMPACT_WAITING
        threats wait (a flood), a ring batch waits as compact rows packed into bytes (records.PackedRows):
        a long queue of Python objects is walked by the collector in the reader's thread, the GIL held,
        while the ring overwrites what the reader has not read (docs/benchmarks.md)."""
        if isinstance(batches, tuple) and hasattr(batches, "events"):
            batches = (batches,)
        if self.saving:
            behind = self._pending.waiting() > COMPACT_WAITING  # read without the lock: a hint
            batches = [compacted(b, packed=True) if behind else pending(b) for b in batches]
        with self._cond:
            if not self.saving:
                n = sum(len(b.events) for b in batches)
                self.not_saved += n
                self._pending.submitted += n
                self._pending.finished += n
                return
            if self._pending.add_batches(batches):
                self._cond.notify_all()

    def record_counters(self, delivered: int, missed: int, corrupt: int, transport: str,
                        generation: int | None = None) -> None:
        """Store a gap row when the reader's cumulative missed or corrupt count grew.
        Counters that went down belong to a new reader: they count from zero again."""
        with self._cond:
            base = self._counter_base
            if delivered < base[0] or missed < base[1] or corrupt < base[2]:
                base = (0, 0, 0)
            self._counter_base = (delivered, missed, corrupt)
            grew_missed, grew_corrupt = missed - base[1], corrupt - base[2]
            if (grew_missed > 0 or grew_corrupt > 0) and self.saving:
                self._pending.add_gap((self.now_us(), str(transport), generation_text(generation), grew_missed,
                                       grew_corrupt, "reader"))
                self._cond.notify_all()

    def mark_seen(self, keys: Iterable) -> None:
        """Mark these threats seen (their EventKeys, or the keys' packed bytes), after everything
        submitted before; a key not stored (yet) is ignored."""
        keys = tuple(k.packed() if isinstance(k, EventKey) else bytes(k) for k in keys)
        if keys:
            self._add_mark(Mark(keys))

    def mark_all_seen(self) -> None:
        """Mark every threat submitted so far seen (one number in the file, however many)."""
        self._add_mark(Mark(None))

    def _add_mark(self, mark: Mark) -> None:
        with self._cond:
            if self.saving:
                self._pending.add_mark(mark)
                self._cond.notify_all()

    def lag(self) -> int:
        """Threats submitted and not yet committed (or dropped): how far behind the store is."""
        with self._cond:
            return self._pending.waiting()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything submitted so far is committed (or dropped); False on timeout."""
        with self._cond:
            q = self._pending
            target = q.submitted
            if self._thread is None or not self._thread.is_alive():
                return q.finished >= target
            self._flush_target = max(self._flush_target, target)
            self._cond.notify_all()
            return self._cond.wait_for(lambda: q.finished >= target or self._stopping, timeout) \
                and q.finished >= target

    def wait_indexed(self, timeout: float | None = None) -> bool:
        """Wait until every row stored is in the indexes (the text index, and the time, severity and
        type indexes after a flood); False on timeout, or while one is not being filled."""
        with self._cond:
            self._cond.wait_for(lambda: self._stopping or ((self._text_backlog == 0 or not self.index_text)
                                                           and (self._late_backlog == 0 or not self.catch_up)), timeout)
            return self._text_backlog == 0 and self._late_backlog == 0

    def retain_now(self, timeout: float | None = None) -> RetentionResult | None:
        """Apply retention (with vacuum) now, on the writer thread; its result, or None on timeout."""
        with self._cond:
            runs = self._retention_runs
            self._retention_wanted = True
            self._cond.notify_all()
            if not self._cond.wait_for(lambda: self._retention_runs > runs or self._stopping, timeout):
                return None
            return self.last_retention if self._retention_runs > runs else None

    def set_max_page_count(self, pages: int | None) -> None:
        """Change the file's size cap (see __init__) and retry a failed write at once."""
        with self._cond:
            self._page_limit = pages
            self._page_limit_changed = True
            self._retry_at = None
            self._cond.notify_all()

    def close(self, timeout: float = 10.0) -> bool:
        """Flush (up to `timeout`), stop the writer thread, checkpoint the WAL and close the file.
        True when everything submitted was stored."""
        flushed = self.flush(timeout)
        with self._cond:
            self._stopping = True
            lost = self._pending.waiting()
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():  # waiting on the flood writer's process: end it
                self._flood_writer.stop()
                self._thread.join(timeout)
        if lost:
            log.warning("closing the threat history with %d threats not stored: %s", lost, self.error or "timeout")
        return flushed

    def size_bytes(self) -> int:
        """The history's size on disk (database and WAL files)."""
        return db.size_bytes(self.path)

    def open_reader(self) -> sqlite3.Connection:
        """A new read-only connection for kindlyguard_monitor.history.query (use it on one thread at a time)."""
        return db.open_reader(self.path)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # ---- on the writer thread: opening, failures, closing (its loop: kindlyguard_monitor.history.writer)

    def _open(self) -> bool:
        """Open the file; on failure record the error and schedule a retry (or, when
        the history is read-only or refused, stop saving for good)."""
        try:
            self._conn, notice = db.open_writer(self.path, self._page_limit)
            self._page_limit_changed = False
            if notice:
                self.notice = notice
            self._file_rows = self._conn.execute("SELECT count(*) FROM threats").fetchone()[0]
            self._recount()
            self._recovered()
            return True
        except db.ReadOnly as exc:
            self._conn = None
            self.read_only = True
            self._stop_saving(f"{READ_ONLY_TEXT}: {exc}")
            return False
        except db.Refused as exc:
            self._conn = None
            self.refused = str(exc)
            self._stop_saving(str(exc))
            return False
        except (sqlite3.Error, OSError) as exc:
            self._conn = None
            self._failed(f"cannot open the threat history {self.path}: {exc}")
            return False

    def _stop_saving(self, message: str) -> None:
        """Final: store nothing from now on, count what waited (and what comes) as not saved."""
        self._flood_writer.stop()
        self._fail(message)  # first: whoever a flush() wakes sees why
        with self._cond:
            self.saving = False
            self._retry_at = None
            self.not_saved += self._pending.discard()
            self._cond.notify_all()

    def _reopen_damaged(self, exc: sqlite3.Error) -> None:
        """The file turned out damaged while in use: close it, move it aside, start a new one."""
        log.error("the threat history %s is damaged (%s)", self.path, exc)
        self._flood_writer.stop()  # it lets go of the file before the file is moved
        conn, self._conn = self._conn, None
        try:
            conn.close()
        except sqlite3.Error:
            pass
        if not db.may_move_aside(self.path, db.Unusable(str(exc), damaged=True)):
            self.refused = (f"the threat history {self.path} is damaged ({exc}); kgmon moves aside only its "
                            "own files and leaves this one as it is")
            self._stop_saving(self.refused)
            return
        try:
            aside = db.move_aside(self.path)
            self.notice = (f"The threat history {self.path} was found damaged ({exc}). It was moved to "
                           f"{aside.name} and a new, empty history was started.")
        except OSError as move_exc:
            self._failed(f"the threat history {self.path} is damaged ({exc}) and cannot be moved aside: {move_exc}")
            return
        self._open()

    def _failed(self, message: str) -> None:
        with self._cond:
            delay = RETRY_FIRST_S if self.error is None else min(RETRY_MAX_S, self._retry_delay * 2)
            self._retry_delay = delay
            self._retry_at = time.monotonic() + delay
        self._fail(message)

    def _fail(self, message: str) -> None:
        changed = message != self.error
        if changed:
            log.warning("%s", message)
        self.error = message
        if changed:
            self._notify(message)

    def _recovered(self) -> None:
        if self.error is not None:
            log.info("the threat history works again (%s)", self.path)
            with self._cond:
                self._retry_at = None
            self.error = None
            self._notify(None)

    def _notify(self, message: str | None) -> None:
        if self.on_error is not None:
            try:
                self.on_error(message)
            except Exception:
                log.exception("on_error callback failed")
