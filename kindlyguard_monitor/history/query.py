"""Searching the history: a Filter becomes parameterised SQL; pages go newest first.

Every value a user typed travels as an SQL parameter; the SQL text is built
only from this module's own fragments, so quotes, `%`, `_`, `--`, SQL
keywords or bidirectional characters in a search are just characters.

Filter semantics:

- text: a substring of `details` or `source`, matched with instr(), so
  nothing in it is a wildcard. Case-insensitive for ASCII letters A–Z
  (SQLite's lower() folds only those); every other character matches
  exactly, U+202E only U+202E.
- types: any of these threat type numbers (empty: every type).
- min_severity: at least this severity (1 Low .. 4 Critical; 0 or 1: all).
- blocked: True only blocked, False only allowed, None both.
- source: exactly this source (case-sensitive); for part of a source use text.
- since_us (inclusive) / until_us (exclusive): the threat's wall-clock time.

Paging is by keyset, never OFFSET: rows are ordered (time_us DESC, id DESC)
and a page continues strictly after the (time_us, id) of the last row shown,
so page 1,000 costs what page 1 costs, and rows stored meanwhile neither
shift nor repeat what follows.

Every function takes a connection (kindlyguard_monitor.history.db.open_reader, used on one
thread) or a path (a connection is opened and closed for the call).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from dataclasses import dataclass, field
from typing import Iterator, NamedTuple

from kindlyguard_monitor.history import db
from kindlyguard_monitor.history.records import GAP_COLUMNS, SELECT_COLUMNS, Gap, StoredThreat, gap, stored_threat

DEFAULT_PAGE = 200
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")

Cursor = tuple[int, int]  # (time_us, row id) of the last row of a page
Database = sqlite3.Connection | str | os.PathLike


@dataclass(frozen=True)
class Filter:
    text: str = ""
    types: frozenset[int] = field(default_factory=frozenset)
    min_severity: int = 0
    blocked: bool | None = None
    source: str | None = None
    since_us: int | None = None
    until_us: int | None = None

    def __post_init__(self):
        object.__setattr__(self, "types", frozenset(int(t) for t in self.types))


class Page(NamedTuple):
    rows: list[StoredThreat]  # newest first
    next_cursor: Cursor | None  # pass as `before` for the next page; None: this was the last


def where(f: Filter, before: Cursor | None = None) -> tuple[str, list]:
    """The WHERE clause (or "") and its parameters for a filter and a paging cursor."""
    terms: list[str] = []
    params: list = []
    if f.text:
        needle = f.text.translate(_ASCII_LOWER)
        terms.append("(instr(lower(details), ?) > 0 OR instr(lower(source), ?) > 0)")
        params += [needle, needle]
    if f.types:
        types = sorted(f.types)
        terms.append(f"type IN ({', '.join('?' * len(types))})")
        params += types
    if f.min_severity > 1:
        terms.append("severity >= ?")
        params.append(int(f.min_severity))
    if f.blocked is not None:
        terms.append("blocked = ?")
        params.append(1 if f.blocked else 0)
    if f.source is not None:
        terms.append("source = ?")
        params.append(f.source)
    if f.since_us is not None:
        terms.append("time_us >= ?")
        params.append(int(f.since_us))
    if f.until_us is not None:
        terms.append("time_us < ?")
        params.append(int(f.until_us))
    if before is not None:
        terms.append("(time_us, id) < (?, ?)")
        params += [int(before[0]), int(before[1])]
    return (" WHERE " + " AND ".join(terms) if terms else ""), params


@contextlib.contextmanager
def connection(database: Database) -> Iterator[sqlite3.Connection]:
    """`database` itself if it is a connection, else a reader opened (and closed) for the block."""
    if isinstance(database, sqlite3.Connection):
        yield database
        return
    conn = db.open_reader(database)
    try:
        yield conn
    finally:
        conn.close()


def search(database: Database, f: Filter = Filter(), limit: int = DEFAULT_PAGE,
           before: Cursor | None = None) -> Page:
    """One page of matching threats, newest first, after `before` (None: from the newest)."""
    limit = max(1, int(limit))
    clause, params = where(f, before)
    sql = f"SELECT {SELECT_COLUMNS} FROM threats{clause} ORDER BY time_us DESC, id DESC LIMIT ?"
    with connection(database) as conn:
        rows = conn.execute(sql, params + [limit + 1]).fetchall()
    more = len(rows) > limit
    threats = [stored_threat(r) for r in rows[:limit]]
    cursor = (threats[-1].timestamp_unix_us, threats[-1].row_id) if more else None
    return Page(threats, cursor)


def iterate(database: Database, f: Filter = Filter()) -> Iterator[StoredThreat]:
    """Every matching threat, newest first, streamed from one read snapshot (for export)."""
    clause, params = where(f)
    sql = f"SELECT {SELECT_COLUMNS} FROM threats{clause} ORDER BY time_us DESC, id DESC"
    with connection(database) as conn:
        cur = conn.execute(sql, params)
        try:
            while rows := cur.fetchmany(1000):
                for r in rows:
                    yield stored_threat(r)
        finally:
            cur.close()


def count(database: Database, f: Filter = Filter()) -> int:
    clause, params = where(f)
    with connection(database) as conn:
        return conn.execute(f"SELECT count(*) FROM threats{clause}", params).fetchone()[0]


def recent(database: Database, n: int) -> list[StoredThreat]:
    """The newest `n` threats, oldest first (the order a feed adds them in)."""
    if n <= 0:
        return []
    page = search(database, Filter(), limit=n)
    return page.rows[::-1]


def gaps(database: Database, since_us: int | None = None, until_us: int | None = None,
         limit: int = 1000) -> list[Gap]:
    """Gap records (newest first) in [since_us, until_us)."""
    terms, params = [], []
    if since_us is not None:
        terms.append("time_us >= ?")
        params.append(int(since_us))
    if until_us is not None:
        terms.append("time_us < ?")
        params.append(int(until_us))
    clause = " WHERE " + " AND ".join(terms) if terms else ""
    with connection(database) as conn:
        rows = conn.execute(f"SELECT {GAP_COLUMNS} FROM gaps{clause} ORDER BY time_us DESC, id DESC LIMIT ?",
                            params + [max(1, int(limit))]).fetchall()
    return [gap(r) for r in rows]
