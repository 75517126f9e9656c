"""The severity and type indexes, filled behind the writes during a flood (issue 15).

The two indexes that filter searches by severity and type
(kindlyguard_monitor.history.schema, migration 5) are partial: they hold the
rows marked `ix = 1`. In ordinary times the writer stores every row with
`ix = 1`, indexed in its own transaction. While the store is behind (a flood:
more than store.DEFER_WAITING threats wait) it stores rows with `ix = 0`: the
table, the unique key (dedupe) and the time index (newest first, time ranges,
paging, retention) only, so the store keeps up with the reader. Once threats
stopped arriving for a moment (marking a row costs more than indexing it at
once: not while the reader needs the CPU), `index_some()` marks the next CHUNK
of them `ix = 1` per transaction, which puts them in the two indexes.

meta 'ix_upto' is the highest row id below which every row is marked; rows
not marked are all above it. A search with a severity or type filter
(kindlyguard_monitor.history.query) reads two parts: the rows in the indexes
(`ix = 1`, through them, as before) and the tail (`id > ix_upto AND ix = 0`),
so it is never wrong while the indexes catch up, only slower for a large tail.
Every other search reads the table as it always did. A history written
before migration 5 (read-only, not migrated) has no `ix` column: `upto()` is
None and it is searched as it always was.
"""

from __future__ import annotations

import sqlite3

from kindlyguard_monitor.history import db

CHUNK = 20_000  # rows per catching-up transaction (about 40-100 ms here): short, so a write never waits long
INDEXED = "ix = 1"  # the partial indexes' WHERE: a query names it literally, so SQLite may use them
TAIL = "id > ? AND ix = 0"  # the rows not in them yet (parameter: upto())


def has_column(conn: sqlite3.Connection) -> bool:
    return any(r[1] == "ix" for r in conn.execute("PRAGMA table_info(threats)"))


def upto(conn: sqlite3.Connection) -> int | None:
    """Every row up to this id is in the severity and type indexes; None for a file without the `ix` column."""
    row = conn.execute("SELECT value FROM meta WHERE name = 'ix_upto'").fetchone() \
        if has_column(conn) else None
    return None if row is None else int(row[0])


def tail_empty(conn: sqlite3.Connection, start: int) -> bool:
    """No row above `start` waits to be indexed (a seek in the table's row ids: quick)."""
    return conn.execute(f"SELECT 1 FROM threats WHERE {TAIL} LIMIT 1", (start,)).fetchone() is None


def backlog(conn: sqlite3.Connection) -> int:
    """Rows stored and not yet in the severity and type indexes."""
    start = upto(conn)
    if start is None:
        return 0
    return conn.execute(f"SELECT count(*) FROM threats WHERE {TAIL}", (start,)).fetchone()[0]


def advance(conn: sqlite3.Connection) -> None:
    """Move the mark to the newest row when no row above it waits to be indexed (in the caller's
    transaction; the check stops at the first such row: quick), so the tail a search reads stays
    empty in ordinary times."""
    conn.execute("UPDATE meta SET value = (SELECT coalesce(max(id), 0) FROM threats) WHERE name = 'ix_upto' "
                 "AND NOT EXISTS (SELECT 1 FROM threats WHERE id > meta.value AND ix = 0)")


def index_some(conn: sqlite3.Connection, limit: int = CHUNK) -> tuple[int, bool]:
    """Put up to `limit` rows above 'ix_upto' in the indexes, in one transaction; returns how
    many, and whether that was all (no row above the new mark)."""
    start = upto(conn)
    if start is None:
        return 0, True
    last = db.next_chunk_end(conn, start, limit)
    if last is None:
        return 0, True
    with db.immediate(conn):
        n = conn.execute("UPDATE threats SET ix = 1 WHERE id > ? AND id <= ? AND ix = 0", (start, last)).rowcount
        conn.execute("UPDATE meta SET value = ? WHERE name = 'ix_upto'", (last,))
    return n, tail_empty(conn, last)
