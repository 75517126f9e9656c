"""Retention: the history keeps threats for `max_age_days` and at most `max_rows` of them.

Threats (and gap rows) older than the cutoff go first, then the oldest
threats (by their own time) beyond `max_rows`, `DELETE_CHUNK` rows per short
transaction, each taken out of the text index first (an external-content
FTS5 index must be told a row's old text: kindlyguard_monitor.history.text_index).
Then the `sources` table is rebuilt (it may only ever hold too many), the
index and seen marks are kept at or below the highest row id, and with
`vacuum` the free pages go back to the file system (`PRAGMA
incremental_vacuum`) and the WAL is truncated. Runs on the writer thread.
"""

from __future__ import annotations

import sqlite3
from typing import NamedTuple

from kindlyguard_monitor.history import db, text_index

DELETE_CHUNK = 20_000  # rows per retention DELETE (one short transaction each)


class RetentionResult(NamedTuple):
    threats_deleted: int
    gaps_deleted: int
    vacuumed: bool


def apply(conn: sqlite3.Connection, cutoff_us: int, max_rows: int, vacuum: bool) -> tuple[RetentionResult, int]:
    """Delete what is too old or too many; returns the result and the threats left."""
    deleted = _delete_chunks(conn, "SELECT id FROM threats WHERE time_us < ? ORDER BY time_us LIMIT ?",
                             (cutoff_us,), None)
    gaps = conn.execute("DELETE FROM gaps WHERE time_us < ?", (cutoff_us,)).rowcount
    rows = conn.execute("SELECT count(*) FROM threats").fetchone()[0]
    excess = rows - max_rows
    if excess > 0:
        deleted += _delete_chunks(conn, "SELECT id FROM threats ORDER BY time_us, id LIMIT ?", (), excess)
    if deleted:
        _in_transaction(conn, "DELETE FROM sources",
                        "INSERT OR IGNORE INTO sources (source) SELECT DISTINCT source FROM threats")
    vacuumed = False
    if vacuum and (deleted or gaps or conn.execute("PRAGMA freelist_count").fetchone()[0]):
        # One page per step, and each step returns an empty row that makes execute()
        # stop after the first: executescript() steps a statement to the end.
        conn.executescript("PRAGMA incremental_vacuum")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        vacuumed = True
    return RetentionResult(deleted, gaps, vacuumed), rows - max(0, excess)


def _in_transaction(conn: sqlite3.Connection, *statements: str, params: tuple = ()) -> int:
    """Run statements in one transaction; returns the last one's rowcount."""
    n = 0
    with db.immediate(conn):
        for sql in statements:
            n = conn.execute(sql, params if "?" in sql else ()).rowcount
    return n


def _delete_chunks(conn: sqlite3.Connection, select_ids: str, params: tuple, total: int | None) -> int:
    """Delete the rows `select_ids` names (last parameter: the chunk size) until a chunk comes
    back short, or `total` rows are gone. Each chunk is its own short transaction."""
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS doomed (id INTEGER PRIMARY KEY)")
    deleted = 0
    while total is None or deleted < total:
        chunk = DELETE_CHUNK if total is None else min(DELETE_CHUNK, total - deleted)
        with db.immediate(conn):
            conn.execute("DELETE FROM temp.doomed")
            conn.execute(f"INSERT INTO temp.doomed (id) {select_ids}", params + (chunk,))
            text_index.forget(conn, "SELECT id FROM temp.doomed")
            n = conn.execute("DELETE FROM threats WHERE id IN (SELECT id FROM temp.doomed)").rowcount
            text_index.clamp_marks(conn)
        deleted += n
        if n < chunk:
            break
    return deleted
