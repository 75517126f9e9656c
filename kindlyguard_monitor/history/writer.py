"""The history's writer thread: the one connection that writes, and what it does.

HistoryStore (kindlyguard_monitor.history.store) is the API the app calls from any
thread; this mixin is the loop its thread runs: wait for a job, then write a
transaction (threats, gap rows, seen marks, new sources), fill the indexes
left behind (late_index after a flood, text_index) when nothing waits,
checkpoint the WAL once idle, apply retention. Opening, failures and the
shared state are the store's (`self`); the queue's bookkeeping is
kindlyguard_monitor.history.pending.
"""

from __future__ import annotations

import logging
import sqlite3
import time

from kindlyguard_monitor.history import db, flood_writer, inserts, late_index, query, retention, text_index
from kindlyguard_monitor.history.pending import Mark

log = logging.getLogger("kindlyguard_monitor.history.store")

INDEX_QUIET_S = 0.25  # a big text-index backlog waits until threats stopped arriving this long
IDLE_CHECKPOINT_S = 1.0  # idle this long after writing: checkpoint and truncate the WAL
_MARK_SEEN = ("UPDATE threats SET seen = 1 WHERE key = ? AND seen = 0 "
              "AND id > (SELECT value FROM meta WHERE name = 'seen_upto')")
_MARK_ALL_SEEN = "UPDATE meta SET value = (SELECT coalesce(max(id), 0) FROM threats) WHERE name = 'seen_upto'"
_INSERT_GAP = "INSERT INTO gaps (time_us, transport, generation, missed, corrupt, kind) VALUES (?, ?, ?, ?, ?, ?)"


class WriterThread:
    """The writer thread's half of HistoryStore (mixed into it; not used alone)."""

    def _run(self) -> None:
        try:
            if self._open():
                self._retention(vacuum=True)
            self.ready.set()  # opened, checked, migrated and trimmed (or failed: see error)
            next_retention = time.monotonic() + self.retention_interval_s
            while True:
                with self._cond:
                    job = self._wait_for_job(next_retention)
                    if job is None:
                        break
                    wanted, self._retention_wanted = self._retention_wanted, False
                if self._conn is None and not self._open():
                    with self._cond:
                        self._retention_wanted |= wanted
                    continue
                if job == "index":
                    self._index_some()
                    continue
                if job == "late":
                    self._index_late()
                    continue
                if job == "checkpoint":
                    self._checkpoint()
                    continue
                if job == "flood writer idle":
                    self._flood_writer.stop()
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

    def _wait_for_job(self, next_retention: float) -> str | None:
        """Under _cond: wait until there is something to do; "write" (also retention and
        reopening), "late" (threats stopped arriving, rows stored during a flood are not in the
        severity and type indexes yet), "index" (nothing waits, rows are not in the text index
        yet), "checkpoint" (idle since the last write), "flood writer idle" (its process has had
        nothing to do for flood_writer.IDLE_S: it ends), or None to stop."""
        q = self._pending
        while not self._stopping and not self.saving:  # read-only or refused: final
            self._cond.wait()
        while not self._stopping:
            now = time.monotonic()
            retry_due = self._retry_at is None or now >= self._retry_at
            has_work = q.has_work()
            gathered = now - q.first_waiting >= self.commit_interval_s \
                or q.waiting() >= self.batch_rows or q.finished < self._flush_target
            if retry_due and ((has_work and gathered) or self._retention_wanted
                              or now >= next_retention or self._conn is None):
                return "write"
            index_due = self._text_backlog and self.index_text and (
                self._text_backlog <= text_index.CHUNK or now >= q.last_submit + INDEX_QUIET_S)
            # (only once threats stopped arriving: marking rows costs more than indexing them at once,
            # CPU the reader needs while they arrive)
            late_due = self._late_backlog and self.catch_up and now >= q.last_submit + INDEX_QUIET_S
            if retry_due and not has_work and self._conn is not None:
                if late_due:
                    return "late"
                if index_due:
                    return "index"
                if self._wal_dirty_at is not None and now >= self._last_write + IDLE_CHECKPOINT_S:
                    return "checkpoint"
            flood_idle_at = self._flood_writer.idle_until()
            if flood_idle_at is not None and not has_work and now >= flood_idle_at:
                return "flood writer idle"
            wake = next_retention if self._retry_at is None else min(next_retention, self._retry_at)
            if flood_idle_at is not None:
                wake = min(wake, flood_idle_at)
            if has_work and not gathered:
                wake = min(wake, q.first_waiting + self.commit_interval_s)
            if self._wal_dirty_at is not None and not has_work:
                wake = min(wake, self._last_write + IDLE_CHECKPOINT_S)
            if (self._text_backlog and self.index_text and not index_due) or \
                    (self._late_backlog and self.catch_up and not late_due):
                wake = min(wake, q.last_submit + INDEX_QUIET_S)
            self._cond.wait(max(0.0, wake - now))
        return None

    def _recount(self) -> None:
        """The unseen count and the indexes' backlogs, from the file (a scan of what is above
        the marks: quick once marked or indexed)."""
        unseen = query.unseen_count(self._conn)
        backlog, late = text_index.backlog(self._conn), late_index.backlog(self._conn)
        with self._cond:
            self.unseen, self._text_backlog, self._late_backlog = unseen, backlog, late
            self._cond.notify_all()

    def _close_conn(self) -> None:
        self._flood_writer.stop()
        if self._conn is not None:
            self._checkpoint()
            try:
                self._conn.execute("PRAGMA optimize")  # refreshes the planner's statistics when useful
            except sqlite3.Error:
                pass
            try:
                self._conn.close()
            except sqlite3.Error:
                log.exception("closing the threat history")
            self._conn = None

    def _checkpoint(self) -> None:
        """Copy the WAL into the database and truncate it to nothing (when no reader holds an
        old snapshot; otherwise the next idle moment tries again)."""
        try:
            busy = self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        except sqlite3.Error as exc:
            log.info("checkpointing the threat history: %s", exc)
            busy = 1
        with self._cond:
            self._last_write = time.monotonic()  # a busy checkpoint is retried after another idle second
            if not busy:
                self._wal_dirty_at = None
                self.checkpoints += 1
                self._cond.notify_all()

    def _wrote(self) -> None:
        now = time.monotonic()
        with self._cond:
            self._last_write = now
            if self._wal_dirty_at is None:
                self._wal_dirty_at = now

    def _indexing(self, step):
        """One indexing step (a transaction of its own): its result, or None after an SQLite error
        (a damaged file is moved aside and a new one made; anything else stops the writer, said)."""
        try:
            return step(self._conn)
        except sqlite3.Error as exc:
            self._rollback()
            if db.is_corruption(exc):
                self._reopen_damaged(exc)
            else:
                self._failed(f"cannot index the threat history {self.path}: {exc}")
            return None

    def _index_some(self) -> None:
        n = self._indexing(text_index.index_some)
        if n is None:
            return
        self._wrote()
        with self._cond:
            self._text_backlog = max(0, self._text_backlog - n) if n else 0
            self._cond.notify_all()

    def _index_late(self) -> None:
        """Put the next chunk of the rows stored during a flood in the severity and type indexes."""
        done = self._indexing(late_index.index_some)
        if done is None:
            return
        n, finished = done
        self._wrote()
        with self._cond:
            self._late_backlog = 0 if finished else max(0, self._late_backlog - n)
            self._cond.notify_all()

    def _write(self) -> None:
        """One transaction: up to batch_rows waiting threats, every waiting gap row and seen mark."""
        with self._cond:
            q = self._pending
            if not q.has_work():
                return
            late = q.waiting() > self.defer_waiting  # behind (a flood): the severity and type indexes are filled later
            flood = q.waiting() > self.flood_waiting  # behind: ring threats are written by the flood writer
            batches, marks = q.take(self.batch_rows)
            gaps = q.take_gaps(lambda n: (self.now_us(), "store", None, n, 0, "store_overflow"))
        try:
            stored_at = self.now_us()
            done = self._write_in_flood_writer(batches, stored_at, late) if flood and not marks and not gaps else None
            if done is None:
                done = self._write_here(batches, marks, gaps, stored_at, late)
            inserted, skipped, newly_seen, all_seen = done
            self.transactions += 1
        except sqlite3.Error as exc:
            self._rollback()
            with self._cond:  # everything goes back to the front, to be retried
                q.put_back(batches, marks, gaps)
            if db.is_corruption(exc):
                self._reopen_damaged(exc)
            else:
                self._failed(self._write_error(exc))
            return
        self._file_rows += inserted
        self._wrote()
        with self._cond:
            threats = sum(len(b.events) for b in batches)
            self.stored += inserted
            self.duplicates += threats - skipped - inserted
            self._text_backlog += inserted
            self._late_backlog += inserted if late else 0
            self.unseen = (0 if all_seen else self.unseen + inserted) - newly_seen
            q.committed(batches, marks, gaps, skipped)
            self._cond.notify_all()
        self._recovered()

    def _write_here(self, batches: list, marks: list[Mark], gaps: list[tuple], stored_at: int,
                    late: bool) -> tuple[int, int, int, bool]:
        """The transaction on this thread's connection: (inserted, not storable, newly seen, all seen)."""
        conn = self._conn
        if self._page_limit_changed:
            self._page_limit_changed = False
            conn.execute(f"PRAGMA max_page_count = {self._page_limit_pragma()}").fetchall()
        conn.execute("BEGIN IMMEDIATE")
        inserted, skipped = inserts.write_threats(conn, batches, stored_at, late)
        if gaps:
            conn.executemany(_INSERT_GAP, gaps)
        newly_seen, all_seen = self._apply_marks(marks)
        conn.execute("COMMIT")
        return inserted, skipped, newly_seen, all_seen

    def _write_in_flood_writer(self, batches: list, stored_at: int, late: bool) -> tuple[int, int, int, bool] | None:
        """A flood's transaction of ring threats, in the flood writer's process
        (kindlyguard_monitor.history.flood_writer); None when it is not for the process
        (WebSocket threats in it), or the process cannot be used now: this thread writes it."""
        flood = self._flood_writer
        if not flood.usable():
            return None
        items = flood_writer.request_items(batches)
        if items is None:
            return None
        try:
            inserted, skipped = flood.write(items, stored_at, late, self._page_limit_pragma())
        except flood_writer.Unavailable as exc:
            log.warning("%s; the history writes floods itself for %.0f s", exc, flood_writer.RETRY_S)
            return None
        return inserted, skipped, 0, False

    def _page_limit_pragma(self) -> int:
        return int(self._page_limit) if self._page_limit is not None else 0xFFFFFFFE

    def _apply_marks(self, marks: list[Mark]) -> tuple[int, bool]:
        """Write seen marks (in the write's transaction); returns (rows newly seen, all marked)."""
        newly_seen, all_seen = 0, False
        for mark in marks:
            if mark.keys is None:
                self._conn.execute(_MARK_ALL_SEEN)
                newly_seen, all_seen = 0, True
            else:
                before = self._conn.total_changes
                self._conn.executemany(_MARK_SEEN, [(k,) for k in mark.keys])
                newly_seen += self._conn.total_changes - before
        return newly_seen, all_seen

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

    def _retention(self, vacuum: bool) -> None:
        if self._conn is None:
            self.last_retention = None
            return
        try:
            result, self._file_rows = retention.apply(self._conn, self.now_us() - self.max_age_us, self.max_rows,
                                                      vacuum)
            self.last_retention = result
            if result.threats_deleted or result.gaps_deleted:
                log.info("history retention: %d threats and %d gap rows deleted", result.threats_deleted,
                         result.gaps_deleted)
            if result.threats_deleted:
                self._recount()
            if result.vacuumed:
                with self._cond:
                    self._wal_dirty_at = None
        except sqlite3.Error as exc:
            self._rollback()
            self._fail(f"cannot apply retention to the threat history {self.path}: {exc}")
