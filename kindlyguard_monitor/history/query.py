"""Searching the history: a Filter becomes parameterised SQL; pages go newest first.

Every value a user typed travels as an SQL parameter; the SQL text is built
only from this module's own fragments, so quotes, `%`, `_`, `--`, SQL
keywords or bidirectional characters in a search are just characters.

Filter semantics:

- text: a substring of `details` or `source`; nothing in it is a wildcard.
  Case-insensitive: an ASCII needle folds A-Z only (instr(lower(...))), a
  needle with any other character folds both sides with Python's
  str.lower() (É finds é, Σ finds σ; ß does not find "ss"); every other
  character matches exactly, U+202E only U+202E.
- types: any of these threat type numbers (empty: every type).
- min_severity: at least this severity (1 Low .. 4 Critical; 0 or 1: all).
- blocked: True only blocked, False only allowed, None both.
- source: exactly this source (case-sensitive); for part of a source use text.
- since_us (inclusive) / until_us (exclusive): the threat's wall-clock time.
- host: exactly this workstation (the fleet view's history); None: every host.

How a text or source search stays fast (docs/history.md, "Searching"):
first the newest PROBE_ROWS rows that pass the other filters are checked
one by one: a common needle fills its page there. Otherwise the rows are
narrowed by the trigram index (kindlyguard_monitor.history.text_index: the
rows holding every trigram of the needle, plus the rows not indexed yet)
and each is checked exactly. A source never stored answers from the
`sources` table at once. Needles under three characters have no trigram:
they are found by scanning (newest first, so a common one is quick).

The severity and type indexes hold every row but those stored during a flood
and not caught up yet (kindlyguard_monitor.history.late_index): a read with a
severity or type filter goes through them for the rows they hold and reads
that tail apart (`_newest`).

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

from kindlyguard_monitor.history import db, late_index, text_index
from kindlyguard_monitor.history.records import GAP_COLUMNS, SELECT_COLUMNS, Gap, StoredThreat, gap, stored_threat
from kindlyguard_monitor.history.schema import TEXT_INDEX

DEFAULT_PAGE = 200
PROBE_ROWS = 20_000  # newest rows checked one by one when the index finds many (tests set 0)
FEW_CANDIDATES = 10_000  # the index narrows to fewer rows than this: sort those, no probe
CHECK_CHUNK = 250  # candidates' rows read and checked at a time, in time order
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_ORDER = " ORDER BY time_us DESC, id DESC"

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
    host: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "types", frozenset(int(t) for t in self.types))


class Page(NamedTuple):
    rows: list[StoredThreat]  # newest first
    next_cursor: Cursor | None  # pass as `before` for the next page; None: this was the last


def _clause(terms: list[str]) -> str:
    return " WHERE " + " AND ".join(terms) if terms else ""


def _checks(f: Filter) -> tuple[list[str], list]:
    """The terms no ordinary index serves (text, source), checked row by row."""
    terms: list[str] = []
    params: list = []
    if f.text:
        if len(f.text) < text_index.MIN_CHARS:  # no index: a scan, so no lower() copy of every row
            spellings = text_index.case_variants(f.text)
            terms.append("(" + " OR ".join(["instr(details, ?) > 0 OR instr(source, ?) > 0"] * len(spellings)) + ")")
            params += [v for v in spellings for _ in (0, 1)]
        elif f.text.isascii():
            terms.append("(instr(lower(details), ?) > 0 OR instr(lower(source), ?) > 0)")
            params += [f.text.translate(_ASCII_LOWER)] * 2
        else:
            terms.append("(kg_contains(details, ?) OR kg_contains(source, ?))")
            params += [f.text.lower()] * 2
    if f.source is not None:
        terms.append("source = ?")
        params.append(f.source)
    return terms, params


def _indexed_terms(f: Filter, before: Cursor | None) -> tuple[list[str], list]:
    """The terms the time, type and severity indexes serve, and the paging cursor."""
    terms: list[str] = []
    params: list = []
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
    if f.host is not None:
        terms.append("host = ?")
        params.append(f.host)
    if f.since_us is not None:
        terms.append("time_us >= ?")
        params.append(int(f.since_us))
    if f.until_us is not None:
        terms.append("time_us < ?")
        params.append(int(f.until_us))
    if before is not None:
        terms.append("(time_us, id) < (?, ?)")
        params += [int(before[0]), int(before[1])]
    return terms, params


def _contains(text, needle) -> bool:
    return text is not None and needle in str(text).lower()


def _prepare(conn: sqlite3.Connection) -> None:
    conn.create_function("kg_contains", 2, _contains, deterministic=True)


def _never_seen_source(conn: sqlite3.Connection, f: Filter) -> bool:
    """A source filter naming a source the history never stored (answered without a scan)."""
    if f.source is None or not _has_table(conn, "sources"):
        return False
    return conn.execute("SELECT 1 FROM sources WHERE source = ?", (f.source,)).fetchone() is None


def _columns(conn: sqlite3.Connection) -> str:
    """SELECT_COLUMNS and the host: schema 4's column, '' from an older file read as it is."""
    has_host = any(r[1] == "host" for r in conn.execute("PRAGMA table_info(threats)"))
    return SELECT_COLUMNS + (", host" if has_host else ", '' AS host")


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?", (name,)).fetchone() \
        is not None


def _candidates(conn: sqlite3.Connection, f: Filter) -> tuple[str, list] | None:
    """Row ids that may match the text and source (the trigram index, and the rows above
    what it holds), as a subquery; None when the index cannot narrow this search."""
    upto = text_index.upto(conn)
    if upto is None or "\x00" in f.text or "\x00" in (f.source or ""):
        return None  # (FTS5 reads a NUL as the end of the text: such needles are found by a scan)
    parts: list[str] = []
    long_needles = [n for n in (f.text, f.source) if n and len(n) >= text_index.MIN_CHARS]
    if long_needles:
        parts.append(text_index.trigram_query(*long_needles, frequency=text_index.trigram_share(conn)))
    if f.text and len(f.text) < text_index.MIN_CHARS:
        short = text_index.prefix_query(conn, f.text)
        if short == "":  # no indexed row holds it: only the rows not indexed yet may
            return "SELECT id AS cid FROM threats WHERE id > ?", [upto]
        if short is not None:
            parts.append(f"({short})")
    if not parts:
        return None
    return (f"SELECT rowid AS cid FROM {TEXT_INDEX} WHERE {TEXT_INDEX} MATCH ? "
            "UNION ALL SELECT id FROM threats WHERE id > ?"), [" AND ".join(parts), upto]


def _parts(conn: sqlite3.Connection, f: Filter) -> list[tuple[list[str], list]]:
    """The table as the severity and type indexes see it, for a filter on either: the rows they hold
    (`ix = 1`, named so SQLite uses them), and the rows stored during a flood that they do not hold
    yet, when there are any. One part, the whole table, for any other filter (the time index holds
    every row) and for a file from before them."""
    start = late_index.upto(conn) if f.types or f.min_severity > 1 else None
    if start is None:
        return [([], [])]
    indexed = ([late_index.INDEXED], [])
    return [indexed] if late_index.tail_empty(conn, start) else [indexed, ([late_index.TAIL], [start])]


def _newest(conn: sqlite3.Connection, f: Filter, what: str, terms: list[str], params: list,
            limit: int | None) -> tuple[str, list]:
    """SELECT `what` (with id and time_us) FROM threats WHERE `terms` (of `f`), newest first, at most
    `limit` rows (None: all): each part of the table (_parts) through its own plan, merged."""
    lim = [] if limit is None else [limit]
    parts = _parts(conn, f)
    if len(parts) == 1:
        part, part_params = parts[0]
        return (f"SELECT {what} FROM threats{_clause(part + terms)}{_ORDER}{' LIMIT ?' * len(lim)}",
                part_params + params + lim)
    sql, values = [], []
    for part, part_params in parts:
        sql.append(f"SELECT * FROM (SELECT {what} FROM threats{_clause(part + terms)}{_ORDER}{' LIMIT ?' * len(lim)})")
        values += part_params + params + lim
    return " UNION ALL ".join(sql) + _ORDER + " LIMIT ?" * len(lim), values + lim


def _select(conn: sqlite3.Connection, what: str, f: Filter, before: Cursor | None,
            limit: int | None) -> tuple[str, list]:
    """SELECT `what` (with id and time_us) for a filter, newest first: through the index's candidates
    when it narrows, else a scan."""
    terms, params = _indexed_terms(f, before)
    check, check_params = _checks(f)
    cands = _candidates(conn, f) if check else None
    if cands is None:
        return _newest(conn, f, what, terms + check, params + check_params, limit)
    sql, cparams = cands
    return (f"SELECT {what} FROM ({sql}) AS c CROSS JOIN threats ON threats.id = c.cid"
            f"{_clause(terms + check)}{_ORDER}{' LIMIT ?' if limit is not None else ''}",
            cparams + params + check_params + ([] if limit is None else [limit]))


def _many_candidates(conn: sqlite3.Connection, f: Filter) -> bool | None:
    """Does the index narrow this text or source search to FEW_CANDIDATES rows or more?
    Counting stops there, so asking costs little either way. None: no text or source, or
    the index cannot narrow it (then a scan newest first, which stops when the page is full)."""
    if not (f.text or f.source is not None):
        return None
    cands = _candidates(conn, f)
    if cands is None:
        return None
    sql, params = cands
    n = conn.execute(f"SELECT count(*) FROM ({sql} LIMIT ?)", params + [FEW_CANDIDATES]).fetchone()[0]
    return n >= FEW_CANDIDATES


def _few_candidates(conn: sqlite3.Connection, f: Filter, before: Cursor | None, want: int) -> list:
    """The first `want` matches among the index's candidates, in two steps: the candidates that
    pass the indexed filters, sorted by time reading only the start of each row; then their
    rows, in that order, CHECK_CHUNK at a time, checked exactly until `want` pass (reading a
    long details text, and checking it, only for the rows the page needs)."""
    sql, cparams = _candidates(conn, f)
    terms, params = _indexed_terms(f, before)
    ordered = [r[0] for r in conn.execute(
        f"SELECT threats.id FROM ({sql}) AS c CROSS JOIN threats ON threats.id = c.cid{_clause(terms)}{_ORDER}",
        cparams + params)]
    check, check_params = _checks(f)
    rows: list = []
    for i in range(0, len(ordered), CHECK_CHUNK):
        chunk = ordered[i:i + CHECK_CHUNK]
        rows += conn.execute(f"SELECT {_columns(conn)} FROM threats WHERE id IN ({', '.join('?' * len(chunk))})"
                             f" AND {' AND '.join(check)}{_ORDER}", chunk + check_params).fetchall()
        if len(rows) >= want:
            break
    return rows[:want]


def _probe(conn: sqlite3.Connection, f: Filter, before: Cursor | None, want: int) -> list | None:
    """The first `want` matches if they are among the newest PROBE_ROWS rows that pass
    the indexed filters (or those are all there is); None when that does not settle it."""
    if PROBE_ROWS < want * 2:
        return None
    terms, params = _indexed_terms(f, before)
    check, check_params = _checks(f)
    window, window_params = _newest(conn, f, _columns(conn), terms, params, PROBE_ROWS)
    rows = conn.execute(f"SELECT * FROM ({window}){_clause(check)} LIMIT ?",
                        window_params + check_params + [want]).fetchall()
    if len(rows) >= want:
        return rows
    window, window_params = _newest(conn, f, "id, time_us", terms, params, PROBE_ROWS)
    seen = conn.execute(f"SELECT count(*) FROM ({window})", window_params).fetchone()[0]
    return rows if seen < PROBE_ROWS else None


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
    with connection(database) as conn:
        _prepare(conn)
        if _never_seen_source(conn, f):
            return Page([], None)
        many = _many_candidates(conn, f)
        rows = _probe(conn, f, before, limit + 1) if many else None
        if rows is None and many is False:
            rows = _few_candidates(conn, f, before, limit + 1)
        if rows is None:
            sql, params = _select(conn, _columns(conn), f, before, limit + 1)
            rows = conn.execute(sql, params).fetchall()
    more = len(rows) > limit
    threats = [stored_threat(r) for r in rows[:limit]]
    cursor = (threats[-1].timestamp_unix_us, threats[-1].row_id) if more else None
    return Page(threats, cursor)


def iterate(database: Database, f: Filter = Filter()) -> Iterator[StoredThreat]:
    """Every matching threat, newest first, streamed from one read snapshot (for export)."""
    with connection(database) as conn:
        _prepare(conn)
        if _never_seen_source(conn, f):
            return
        sql, params = _select(conn, _columns(conn), f, None, None)
        cur = conn.execute(sql, params)
        try:
            while rows := cur.fetchmany(1000):
                for r in rows:
                    yield stored_threat(r)
        finally:
            cur.close()


def count(database: Database, f: Filter = Filter()) -> int:
    with connection(database) as conn:
        _prepare(conn)
        if _never_seen_source(conn, f):
            return 0
        terms, params = _indexed_terms(f, None)
        check, check_params = _checks(f)
        cands = _candidates(conn, f) if check else None
        if cands is not None:
            sql, cparams = cands
            return conn.execute(f"SELECT count(*) FROM ({sql}) AS c CROSS JOIN threats ON threats.id = c.cid"
                                f"{_clause(terms + check)}", cparams + params + check_params).fetchone()[0]
        return sum(conn.execute(f"SELECT count(*) FROM threats{_clause(part + terms + check)}",
                                part_params + params + check_params).fetchone()[0]
                   for part, part_params in _parts(conn, f))


def unseen_count(database: Database) -> int:
    """Threats the user has not marked seen (kindlyguard_monitor.history.store: mark_seen,
    mark_all_seen). Counts the rows above the 'seen_upto' mark, so it is quick once
    everything was marked seen; a history from before seen state (schema 2) counts all."""
    with connection(database) as conn:
        if not _has_table(conn, "meta"):
            return conn.execute("SELECT count(*) FROM threats").fetchone()[0]
        return conn.execute("SELECT count(*) FROM threats WHERE id > (SELECT value FROM meta WHERE "
                            "name = 'seen_upto') AND seen = 0").fetchone()[0]


def unseen_ids(database: Database, since_id: int) -> set[int]:
    """The row ids from `since_id` up that the user has not marked seen (the restored feed's
    seen state: a scan of what is above both `since_id` and the 'seen_upto' mark)."""
    with connection(database) as conn:
        if not _has_table(conn, "meta"):
            return {r[0] for r in conn.execute("SELECT id FROM threats WHERE id >= ?", (int(since_id),))}
        return {r[0] for r in conn.execute(
            "SELECT id FROM threats WHERE id >= ? AND id > (SELECT value FROM meta WHERE name = 'seen_upto') "
            "AND seen = 0", (int(since_id),))}


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
