"""HistoryStore: every threat delivered, written to the history by one thread of its own.

The reader hands batches to `submit()`, which only appends them to a queue
(never blocks, never touches the disk); the writer thread takes what is
waiting, up to `batch_rows` threats per transaction, and inserts it with
INSERT OR IGNORE on the threat's key (kindlyguard_monitor.history.records), so a replay or
a transport switch stores nothing twice. `lag()` says how many threats wait.
A trickle is gathered for `commit_interval_s` (50 ms) before it is written,
so 1,000 threats a second cost 20 commits, not 1,000; `flush()` skips the wait.
If the process is killed, what is lost is what had not been committed: the
transaction being written and what waited in memory (normally under 50 ms
of threats); everything committed stays (kindlyguard_monitor.history.db on durability).

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

Retention: threats (and gap rows) older than `max_age_days` and, beyond
`max_rows`, the oldest threats are deleted, in chunks, when the store
starts and every `retention_interval_s`, then `PRAGMA incremental_vacuum`
gives the free pages back to the file system. Between those runs, rows
above `max_rows` by 5% are trimmed as they come (without vacuum: the file
is about to grow again).

Searching is not done here: open a reader connection (`open_reader()`) and
use kindlyguard_monitor.history.query; WAL lets readers run while the writer writes.
"""

from __future__ import annotations

import logging
import sqlite3
import struct
import threading
import time
from collections import deque
from typing import Callable, Iterable, NamedTuple

from kindlyguard_monitor.history import db
from kindlyguard_monitor.history.records import THREAT_COLUMNS, generation_text, sanitize_row, threat_rows
from kindlyguard_monitor.vocabulary import Transport

log = logging.getLogger(__name__)

DAY_US = 86_400 * 1_000_000
DEFAULT_MAX_AGE_DAYS = 90.0
DEFAULT_MAX_ROWS = 1_000_000
DEFAULT_MAX_PENDING = 1_000_000  # threats waiting; about 250 bytes each in memory
DEFAULT_BATCH_ROWS = 50_000  # threats per transaction
COMMIT_INTERVAL_S = 0.05  # fewer than batch_rows waiting: gather this long, so a trickle is not a commit each
RETENTION_INTERVAL_S = 3600.0
DELETE_CHUNK = 20_000  # rows per retention DELETE (one short transaction each)
MAX_PENDING_GAPS = 10_000  # beyond this, new gap records are merged into the last one
RETRY_FIRST_S, RETRY_MAX_S = 0.5, 30.0
READ_ONLY_TEXT = "history is read-only: shown, not saved"

_INSERT_THREAT = (f"INSERT OR IGNORE INTO threats ({', '.join(THREAT_COLUMNS)}) "
                  f"VALUES ({', '.join('?' * len(THREAT_COLUMNS))})")
_INSERT_GAP = "INSERT INTO gaps (time_us, transport, generation, missed, corrupt, kind) VALUES (?, ?, ?, ?, ?, ?)"
# What SQLite's binding raises for a value it cannot hold; the rows are sanitized and retried.
_ROW_ERRORS = (ValueError, OverflowError, TypeError, AttributeError, struct.error, sqlite3.InterfaceError,
               sqlite3.ProgrammingError)


def wall_clock_us() -> int:
    return time.time_ns() // 1000


class _Pending(NamedTuple):
    """A batch as submitted, not yet converted to rows."""

    transport: str
    generation: int | None
    events: list | tuple


class RetentionResult(NamedTuple):
    threats_deleted: int
    gaps_deleted: int
    vacuumed: bool


class HistoryStore:
    def __init__(self, path=None, *, max_age_days: float = DEFAULT_MAX_AGE_DAYS, max_rows: int = DEFAULT_MAX_ROWS,
                 max_pending: int = DEFAULT_MAX_PENDING, batch_rows: int = DEFAULT_BATCH_ROWS,
                 retention_interval_s: float = RETENTION_INTERVAL_S, commit_interval_s: float = COMMIT_INTERVAL_S,
                 on_error: Callable[[str | None], None] | None = None,
                 max_page_count: int | None = None, now_us: Callable[[], int] = wall_clock_us):
        """`path`: the database (default: kindlyguard_monitor.history.db.history_path()). `max_page_count`
        caps the file's size in pages (writes beyond it fail as on a full disk; tests
        use it). `now_us`: the wall clock, in µs, for retention and gap times."""
        self.path = db.history_path(path)
        self.max_age_us = int(max_age_days * DAY_US)
        self.max_rows = max(0, int(max_rows))
        self.max_pending = max(1, int(max_pending))
        self.batch_rows = max(1, int(batch_rows))
        self.retention_interval_s = retention_interval_s
        self.commit_interval_s = commit_interval_s
        self.on_error = on_error
        self.now_us = now_us
        # Shared with the writer thread, under _cond. A threat waits as part of a submitted
        # batch (_queue), then in the transaction being written (_inflight).
        self._cond = threading.Condition()
        self._queue: deque[_Pending] = deque()
        self._queued = self._inflight = 0  # threats in each
        self._gaps: list[tuple] = []  # _INSERT_GAP parameters
        self._overflow = 0  # threats dropped, not yet in a gap row
        self._submitted = 0  # items accepted (a threat or a gap row each)
        self._finished = 0  # items committed or dropped
        self._flush_target = 0  # a flush() waits for _finished to reach this: write without gathering
        self._first_waiting = 0.0  # monotonic time the oldest waiting item arrived
        self._stopping = False
        self._retention_wanted = False
        self._retention_runs = 0
        self._retry_at: float | None = None  # after a failure: when to try again
        self._retry_delay = RETRY_FIRST_S
        self._page_limit = max_page_count
        self._page_limit_changed = max_page_count is not None
        self._counter_base = (0, 0, 0)
        self._thread: threading.Thread | None = None
        # The writer thread's own.
        self._conn: sqlite3.Connection | None = None
        self._file_rows = 0  # threats in the file (exact after retention, counted up by inserts)
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
        self.dropped = 0  # threats dropped because too many waited (or unstorable)
        self.transactions = 0  # committed
        self.last_retention: RetentionResult | None = None

    # ---- any thread

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
        """Queue kindlyguard_monitor.transport.manager.Batch-es (or one Batch) to be stored. Never blocks on the disk:
        it only appends references to a queue; the writer thread does the rest."""
        if isinstance(batches, tuple) and hasattr(batches, "events"):
            batches = (batches,)
        with self._cond:
            if not self.saving:
                n = sum(len(b.events) for b in batches)
                self.not_saved += n
                self._submitted += n
                self._finished += n
                return
            added = 0
            for b in batches:
                if b.events:
                    self._queue.append(_Pending(b.transport, b.generation, b.events))
                    added += len(b.events)
            if not added:
                return
            self._mark_waiting()
            self._queued += added
            self._submitted += added
            self._trim_queue()
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
                self._mark_waiting()
                self._add_gap((self.now_us(), str(transport), generation_text(generation), grew_missed,
                               grew_corrupt, "reader"))
                self._cond.notify_all()

    def lag(self) -> int:
        """Threats submitted and not yet committed (or dropped): how far behind the store is."""
        with self._cond:
            return self._waiting()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything submitted so far is committed (or dropped); False on timeout."""
        with self._cond:
            target = self._submitted
            if self._thread is None or not self._thread.is_alive():
                return self._finished >= target
            self._flush_target = max(self._flush_target, target)
            self._cond.notify_all()
            return self._cond.wait_for(lambda: self._finished >= target or self._stopping, timeout) \
                and self._finished >= target

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
        """Flush (up to `timeout`), stop the writer thread and close the file.
        True when everything submitted was stored."""
        flushed = self.flush(timeout)
        with self._cond:
            self._stopping = True
            lost = self._waiting()
            self._cond.notify_all()
        if self._thread is not None:
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

    # ---- queue bookkeeping (under _cond)

    def _waiting(self) -> int:
        return self._queued + self._inflight

    def _has_work(self) -> bool:
        return bool(self._queue or self._gaps or self._overflow)

    def _mark_waiting(self) -> None:
        if not self._has_work():
            self._first_waiting = time.monotonic()

    def _add_gap(self, row: tuple) -> None:
        self._submitted += 1
        if len(self._gaps) >= MAX_PENDING_GAPS:  # merge: counts stay exact, the row count bounded
            last = self._gaps[-1]
            self._gaps[-1] = last[:3] + (last[3] + row[3], last[4] + row[4]) + last[5:]
            self._finished += 1
        else:
            self._gaps.append(row)

    def _lose(self, n: int) -> None:
        """n threats will never be stored: count them, and record them in a store_overflow gap row."""
        if not self._overflow:
            self._submitted += 1  # the gap row that will record them
        self._overflow += n
        self._finished += n
        self.dropped += n

    def _trim_queue(self) -> None:
        """Drop the oldest waiting threats beyond max_pending.

        Why a bound: besides memory, every full collection of the cyclic GC walks
        each waiting event (with the GIL held): about 100 ms per million here."""
        excess = self._waiting() - self.max_pending
        while excess > 0 and self._queue:
            first = self._queue[0]
            cut = min(len(first.events), excess)
            if cut == len(first.events):
                self._queue.popleft()
            else:
                self._queue[0] = first._replace(events=first.events[cut:])
            self._queued -= cut
            self._lose(cut)
            excess -= cut

    def _take(self) -> list[_Pending]:
        """Up to batch_rows waiting threats, from the front, moved to in-flight."""
        batches, room = [], self.batch_rows
        while self._queue and room > 0:
            first = self._queue[0]
            if len(first.events) <= room:
                batches.append(self._queue.popleft())
            else:
                batches.append(first._replace(events=first.events[:room]))
                self._queue[0] = first._replace(events=first.events[room:])
            room -= len(batches[-1].events)
        taken = self.batch_rows - room
        self._queued -= taken
        self._inflight += taken
        return batches

    # ---- the writer thread

    def _run(self) -> None:
        try:
            if self._open():
                self._retention(vacuum=True)
            self.ready.set()  # opened, checked, migrated and trimmed (or failed: see error)
            next_retention = time.monotonic() + self.retention_interval_s
            while True:
                with self._cond:
                    while not self._stopping and not self.saving:  # read-only or refused: final
                        self._cond.wait()
                    while not self._stopping:
                        now = time.monotonic()
                        retry_due = self._retry_at is None or now >= self._retry_at
                        has_work = self._has_work()
                        gathered = now - self._first_waiting >= self.commit_interval_s \
                            or self._waiting() >= self.batch_rows or self._finished < self._flush_target
                        if retry_due and ((has_work and gathered) or self._retention_wanted
                                          or now >= next_retention or self._conn is None):
                            break
                        wake = next_retention if self._retry_at is None else min(next_retention, self._retry_at)
                        if has_work and not gathered:
                            wake = min(wake, self._first_waiting + self.commit_interval_s)
                        self._cond.wait(max(0.0, wake - now))
                    if self._stopping:
                        break
                    wanted, self._retention_wanted = self._retention_wanted, False
                if self._conn is None and not self._open():
                    with self._cond:
                        self._retention_wanted |= wanted
                    continue
                self._write()
                if wanted or time.monotonic() >= next_retention:
                    self._retention(vacuum=True)
                    next_retention = time.monotonic() + self.retention_interval_s
                    if wanted:
                        with self._cond:
                            self._retention_runs += 1
                            self._cond.notify_all()
                elif self._file_rows > self.max_rows + max(1000, self.max_rows // 20):
                    self._retention(vacuum=False)
        except Exception as exc:  # the thread must never die silently
            log.exception("the history writer stopped")
            self._fail(f"the history writer stopped: {exc}")
        finally:
            self.ready.set()
            with self._cond:
                self._stopping = True
                self._cond.notify_all()
            self._close_conn()

    def _open(self) -> bool:
        """Open the file; on failure record the error and schedule a retry (or, when
        the history is read-only or refused, stop saving for good)."""
        try:
            self._conn, notice = db.open_writer(self.path, self._page_limit)
            self._page_limit_changed = False
            if notice:
                self.notice = notice
            self._file_rows = self._conn.execute("SELECT count(*) FROM threats").fetchone()[0]
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
        self._fail(message)  # first: whoever a flush() wakes sees why
        with self._cond:
            self.saving = False
            self._retry_at = None
            n = self._waiting()
            self._queue.clear()
            self.not_saved += n
            self._finished += n + len(self._gaps) + (1 if self._overflow else 0)
            self._queued = self._inflight = 0
            self._gaps, self._overflow = [], 0
            self._cond.notify_all()

    def _close_conn(self) -> None:
        if self._conn is not None:
            try:
                self._conn.execute("PRAGMA optimize")  # refreshes the planner's statistics when useful
            except sqlite3.Error:
                pass
            try:
                self._conn.close()
            except sqlite3.Error:
                log.exception("closing the threat history")
            self._conn = None

    def _write(self) -> None:
        """One transaction: up to batch_rows waiting threats and every waiting gap row."""
        with self._cond:
            if not (self._queue or self._gaps or self._overflow):
                return
            batches = self._take()
            gaps, self._gaps = self._gaps, []
            if self._overflow:
                gaps.append((self.now_us(), "store", None, self._overflow, 0, "store_overflow"))
                self._overflow = 0
        threats = sum(len(b.events) for b in batches)
        conn = self._conn
        try:
            if self._page_limit_changed:
                self._page_limit_changed = False
                limit = self._page_limit if self._page_limit is not None else 0xFFFFFFFE
                conn.execute(f"PRAGMA max_page_count = {int(limit)}").fetchall()
            stored_at = self.now_us()
            conn.execute("BEGIN IMMEDIATE")
            before = conn.total_changes
            skipped = sum(self._insert(b, stored_at) for b in batches)
            inserted = conn.total_changes - before
            if gaps:
                conn.executemany(_INSERT_GAP, gaps)
            conn.execute("COMMIT")
            self.transactions += 1
        except sqlite3.Error as exc:
            self._rollback()
            with self._cond:  # everything goes back to the front, to be retried
                self._queue.extendleft(reversed(batches))
                self._queued += threats
                self._inflight -= threats
                self._gaps[:0] = gaps
                self._trim_queue()
            if db.is_corruption(exc):
                self._reopen_damaged(exc)
            else:
                self._failed(self._write_error(exc))
            return
        self._file_rows += inserted
        with self._cond:
            self.stored += inserted
            self.duplicates += threats - skipped - inserted
            self._inflight -= threats
            self._finished += threats - skipped + len(gaps)
            if skipped:  # counted and recorded as the store's own loss
                self._lose(skipped)
            self._cond.notify_all()
        self._recovered()

    def _insert(self, b: _Pending, stored_at: int) -> int:
        """INSERT OR IGNORE one batch; returns how many threats could not be stored at all.

        Rows are made as SQLite asks for them (a generator: no second copy of the batch).
        Ring events (from C) take the fast path; a row SQLite refuses to bind (a ring
        number beyond 64 signed bits) makes the batch go again, every row sanitized."""
        fast = b.transport == Transport.SHM  # text from the C reader: valid UTF-8
        for sanitize in (False, True):
            rows = threat_rows(b.transport, b.generation, b.events, stored_at, careful=sanitize or not fast)
            try:
                self._conn.executemany(_INSERT_THREAT, map(sanitize_row, rows) if sanitize else rows)
                return 0
            except _ROW_ERRORS:
                if sanitize:
                    log.exception("%d threats the history cannot store were dropped", len(b.events))
        return len(b.events)

    def _write_error(self, exc: sqlite3.Error) -> str:
        waiting = self.lag()
        what = "the disk is full" if db.is_disk_full(exc) else "writing failed"
        return (f"cannot store threats in {self.path}: {what} ({exc}); {waiting:,} threats wait in memory "
                f"(at most {self.max_pending:,}, then the oldest are dropped and counted)")

    def _rollback(self) -> None:
        try:
            if self._conn is not None and self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass

    def _reopen_damaged(self, exc: sqlite3.Error) -> None:
        """The file turned out damaged while in use: close it, move it aside, start a new one."""
        log.error("the threat history %s is damaged (%s)", self.path, exc)
        self._close_conn()
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

    # ---- retention (writer thread)

    def _retention(self, vacuum: bool) -> None:
        conn = self._conn
        if conn is None:
            self.last_retention = None
            return
        try:
            cutoff = self.now_us() - self.max_age_us
            deleted = self._delete_chunks(
                "DELETE FROM threats WHERE id IN (SELECT id FROM threats WHERE time_us < ? ORDER BY time_us "
                "LIMIT ?)", (cutoff,), None)
            gaps = conn.execute("DELETE FROM gaps WHERE time_us < ?", (cutoff,)).rowcount
            rows = conn.execute("SELECT count(*) FROM threats").fetchone()[0]
            excess = rows - self.max_rows
            if excess > 0:
                deleted += self._delete_chunks(
                    "DELETE FROM threats WHERE id IN (SELECT id FROM threats ORDER BY time_us, id LIMIT ?)",
                    (), excess)
            self._file_rows = rows - max(0, excess)
            vacuumed = False
            if vacuum and (deleted or gaps or conn.execute("PRAGMA freelist_count").fetchone()[0]):
                # One page per step, and each step returns an empty row that makes execute()
                # stop after the first: executescript() steps a statement to the end.
                conn.executescript("PRAGMA incremental_vacuum")
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
                vacuumed = True
            self.last_retention = RetentionResult(deleted, gaps, vacuumed)
            if deleted or gaps:
                log.info("history retention: %d threats and %d gap rows deleted", deleted, gaps)
        except sqlite3.Error as exc:
            self._rollback()
            self._fail(f"cannot apply retention to the threat history {self.path}: {exc}")

    def _delete_chunks(self, sql: str, params: tuple, total: int | None) -> int:
        """Run a chunked DELETE (last parameter: the chunk size) until it deletes less than a
        chunk, or `total` rows are gone. Each chunk is its own short transaction."""
        deleted = 0
        while total is None or deleted < total:
            chunk = DELETE_CHUNK if total is None else min(DELETE_CHUNK, total - deleted)
            n = self._conn.execute(sql, params + (chunk,)).rowcount
            deleted += n
            if n < chunk:
                break
        return deleted
