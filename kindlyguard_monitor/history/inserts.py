"""Putting threats into the history: the INSERTs of one write, on any connection.

The store's writer thread (kindlyguard_monitor.history.writer) calls
write_threats() inside its transaction; so does the flood writer's process
(kindlyguard_monitor.history.flood_writer), on its own connection to the same file.
Nothing here opens, commits or keeps anything.
"""

from __future__ import annotations

import logging
import sqlite3
import struct

from kindlyguard_monitor.history import late_index
from kindlyguard_monitor.history.pending import Pending, compacted
from kindlyguard_monitor.history.records import (COMPACT_COLUMNS, SHARED_COLUMNS, THREAT_COLUMNS, compact_params,
                                                 compact_rows, generation_text, sanitize_row, threat_rows)
from kindlyguard_monitor.vocabulary import Transport

log = logging.getLogger("kindlyguard_monitor.history.store")

_INSERT_THREAT = (f"INSERT OR IGNORE INTO threats ({', '.join(THREAT_COLUMNS)}) "
                  f"VALUES ({', '.join('?' * len(THREAT_COLUMNS))})")
ROWS_PER_INSERT = 100  # compact rows per INSERT statement: SQLite takes them in one step, one GIL release
# What is left of a batch goes 10 rows, then 1 row, a statement: a statement per remainder size
# (1-99) was prepared once each, and those prepares (GIL released and taken back each) were
# 10% of the writer's samples in a 2 s flood.
INSERT_SIZES = (ROWS_PER_INSERT, 10, 1)
_insert_sql: dict[int, str] = {}
# The columns a whole batch shares (?1-?4 of a multi-row INSERT): the row's ix is 1 (in the
# severity and type indexes at once) or 0 (during a flood: indexed behind the writes, late_index).
BATCH_COLUMNS = SHARED_COLUMNS + ("ix",)
# Sources of the rows just inserted, in SQL: the GIL is free meanwhile (a Python loop over
# 50,000 events here held it for milliseconds, and the reader's submit() waited).
_INSERT_SOURCES = "INSERT OR IGNORE INTO sources (source) SELECT DISTINCT source FROM threats WHERE id > ?"
# What SQLite's binding raises for a value it cannot hold; the rows are sanitized and retried.
_ROW_ERRORS = (ValueError, OverflowError, TypeError, AttributeError, struct.error, sqlite3.InterfaceError,
               sqlite3.ProgrammingError)


def write_threats(conn: sqlite3.Connection, batches: list[Pending], stored_at: int, late: bool) -> tuple[int, int]:
    """In the caller's transaction: every batch INSERT OR IGNOREd, the new rows' sources added and
    (unless `late`) the severity/type index mark moved up; returns (rows inserted, threats that could
    not be stored at all). `late`: ring threats go in the table, the key and the time index only
    (ix = 0); kindlyguard_monitor.history.late_index puts them in the other two later."""
    before = conn.total_changes
    last_id = conn.execute("SELECT coalesce(max(id), 0) FROM threats").fetchone()[0]
    skipped = sum(insert_batch(conn, b, stored_at, late) for b in batches)
    inserted = conn.total_changes - before
    if inserted:
        conn.execute(_INSERT_SOURCES, (last_id,))
        if not late:
            late_index.advance(conn)
    return inserted, skipped


def insert_batch(conn: sqlite3.Connection, b: Pending, stored_at: int, late: bool) -> int:
    """INSERT OR IGNORE one batch; returns how many threats could not be stored at all.

    Ring threats (compact rows, text from C: valid UTF-8) take the fast path: multi-row
    INSERTs whose parameters are made in C. Other rows are made as SQLite asks for them (a
    generator: no second copy of the batch). A row SQLite refuses to bind (a ring number
    beyond 64 signed bits) makes the batch go again, every row sanitized."""
    b = compacted(b)  # here, on the writer's thread, unless submit() did it (the store was behind)
    if b.compact:
        try:
            _insert_compact(conn, b, stored_at, late)
            return 0
        except _ROW_ERRORS:
            pass
        rows = compact_rows(b.transport, b.generation, b.events, stored_at)
        try:
            conn.executemany(_INSERT_THREAT, rows)
            return 0
        except _ROW_ERRORS:
            log.exception("%d threats the history cannot store were dropped", len(b.events))
            return len(b.events)
    fast = b.transport == Transport.SHM  # text from the C reader: valid UTF-8
    for sanitize in (False, True):
        rows = threat_rows(b.transport, b.generation, b.events, stored_at, careful=sanitize or not fast)
        try:
            conn.executemany(_INSERT_THREAT, map(sanitize_row, rows) if sanitize else rows)
            return 0
        except _ROW_ERRORS:
            if sanitize:
                log.exception("%d threats the history cannot store were dropped", len(b.events))
    return len(b.events)


def _insert_compact(conn: sqlite3.Connection, b: Pending, stored_at: int, late: bool) -> None:
    """Compact rows, ROWS_PER_INSERT to a statement: sqlite3 releases the GIL for each step of a
    statement and takes it back after, so one row per step gave the reader thread the GIL, and
    made this thread wait for it, once per threat (a third of its time under load)."""
    columns = compact_params(b.events)
    shared = [str(b.transport), generation_text(b.generation), stored_at, 0 if late else 1]
    n, start = len(b.events), 0
    for per in INSERT_SIZES:  # three statements, prepared once: a batch of 257 is 2 x 100, 5 x 10, 7 x 1
        end = start + (n - start) // per * per
        if end > start:
            conn.executemany(_multi_insert(per), _statements(shared, columns, start, end, per))
            start = end


def _multi_insert(rows: int) -> str:
    """INSERT OR IGNORE of `rows` compact rows: ?1-?4 the batch's columns, then the rows' values a
    column at a time (COMPACT_COLUMNS: every row's time, then every row's type, ...)."""
    sql = _insert_sql.get(rows)
    if sql is None:
        shared = len(BATCH_COLUMNS)
        tuples = []
        for r in range(rows):
            params = [f"?{shared + c * rows + r + 1}" for c in range(len(COMPACT_COLUMNS))] + \
                [f"?{c + 1}" for c in range(shared)]
            tuples.append("(" + ", ".join(params) + ")")
        sql = _insert_sql[rows] = (f"INSERT OR IGNORE INTO threats ({', '.join(COMPACT_COLUMNS + BATCH_COLUMNS)}) "
                                   f"VALUES {', '.join(tuples)}")
    return sql


def _statements(shared: list, columns: list[list], start: int, end: int, per: int):
    """The parameters of each `per`-row INSERT for rows start..end (a list per statement)."""
    for i in range(start, end, per):
        params = shared.copy()
        for column in columns:
            params += column[i:i + per]
        yield params
