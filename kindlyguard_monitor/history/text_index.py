"""The substring index: SQLite's FTS5 with the trigram tokenizer over source and details.

The index (`threats_text`, kindlyguard_monitor.history.schema) holds every
three-character piece of each row's source and details, case-folded as FTS5
folds (Unicode simple case folding: É finds é, Σ finds σ; ß does not find
"ss"). A needle of three characters or more is found through the rows that
hold all of its trigrams; the search then checks each such row exactly
(kindlyguard_monitor.history.query), so the index only narrows, never decides.
`detail=none` keeps no positions: half the size and three times the
indexing speed of `detail=full`, and the exact check makes positions needless.

The index is filled behind the writer, not in its transactions: a row costs
the trigram index about ten times what it costs the table (docs/history.md,
measured), so storing at the reader's full rate and indexing in the same
transaction cannot both hold. Rows are indexed in id order, in chunks of
`CHUNK`, on the writer thread whenever nothing else waits; meta 'text_upto'
is the last row id indexed. Searches use the index for rows up to it and
check the rows above it one by one (none once the writer caught up: a
realistic rate is indexed within one commit interval).
"""

from __future__ import annotations

import sqlite3
import time
from collections import Counter

from kindlyguard_monitor.history import db
from kindlyguard_monitor.history.schema import TEXT_CONTENT, TEXT_INDEX, TEXT_VOCAB, has_text_index

CHUNK = 2000  # rows per indexing transaction (about 0.1-0.2 s here): short, so a write never waits long
MAX_TRIGRAMS = 4  # a longer needle is looked up by 4 of its trigrams (the rarest), then checked exactly
COMMON_SHARE = 0.05  # a trigram in more of the rows than this narrows little and costs much
MIN_CHARS = 3  # shorter needles have no trigram of their own: see prefix_query()
MAX_PREFIX_TERMS = 64  # a shorter needle beginning more distinct trigrams is common: scan newest first
SAMPLE_ROWS = 500  # the newest rows whose trigrams estimate how common a trigram is
SAMPLE_TTL_S = 300.0
_samples: dict[str, tuple[float, Counter, int]] = {}  # database file: (when, trigram counts, rows sampled)


def upto(conn: sqlite3.Connection) -> int | None:
    """The last row id the index holds, or None when there is no index (an old SQLite)."""
    if not has_text_index(conn):
        return None
    row = conn.execute("SELECT value FROM meta WHERE name = 'text_upto'").fetchone()
    return int(row[0]) if row else 0


def index_some(conn: sqlite3.Connection, limit: int = CHUNK) -> int:
    """Index up to `limit` rows above 'text_upto', in one transaction; returns how many."""
    start = upto(conn)
    if start is None:
        return 0
    last = db.next_chunk_end(conn, start, limit)
    if last is None:
        return 0
    with db.immediate(conn):
        n = conn.execute(f"INSERT INTO {TEXT_INDEX} (rowid, source, details) SELECT id, source, details "
                         f"FROM {TEXT_CONTENT} WHERE id > ? AND id <= ?", (start, last)).rowcount
        conn.execute("UPDATE meta SET value = ? WHERE name = 'text_upto'", (last,))
    return n


def backlog(conn: sqlite3.Connection) -> int:
    """Rows stored but not yet indexed (0 without an index)."""
    start = upto(conn)
    if start is None:
        return 0
    return conn.execute("SELECT count(*) FROM threats WHERE id > ?", (start,)).fetchone()[0]


def forget(conn: sqlite3.Connection, ids_sql: str, params: tuple = ()) -> None:
    """Take the rows `id IN (ids_sql)` out of the index, before they are deleted (an
    external-content index must be told each row's old text). Rows above 'text_upto'
    were never indexed and are left alone. Runs in the caller's transaction."""
    start = upto(conn)
    if start:
        conn.execute(f"INSERT INTO {TEXT_INDEX} ({TEXT_INDEX}, rowid, source, details) "
                     f"SELECT 'delete', id, source, details FROM {TEXT_CONTENT} WHERE id IN ({ids_sql}) AND id <= ?",
                     params + (start,))


def clamp_marks(conn: sqlite3.Connection) -> None:
    """After deleting rows: no mark may stay above the highest row id, or SQLite would give
    a new row an id at or below it (it reuses max(id) + 1) and that row would count as
    indexed or seen (ix_upto: kindlyguard_monitor.history.late_index). Runs in the caller's transaction."""
    conn.execute("UPDATE meta SET value = min(value, (SELECT coalesce(max(id), 0) FROM threats)) "
                 "WHERE name IN ('text_upto', 'seen_upto', 'ix_upto')")


def prefix_query(conn: sqlite3.Connection, needle: str) -> str | None:
    """An FTS5 MATCH expression for a needle of one or two characters: any of the indexed
    trigrams it begins (every occurrence begins one: the index pads each field with two
    U+0001), as the vocabulary lists them, case-folded. "" when none does (nothing indexed
    holds it); None when more than MAX_PREFIX_TERMS do (a common needle: scan)."""
    low = needle.lower()
    high = low[:-1] + chr(ord(low[-1]) + 1)
    terms = [r[0] for r in conn.execute(f"SELECT term FROM {TEXT_VOCAB} WHERE term >= ? AND term < ? LIMIT ?",
                                        (low, high, MAX_PREFIX_TERMS + 1))]
    if len(terms) > MAX_PREFIX_TERMS:
        return None
    return " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)


def trigram_query(*needles: str, frequency=None) -> str | None:
    """An FTS5 MATCH expression: trigrams of every needle, ANDed, each a quoted string; None
    when no needle has three characters. Any subset of a needle's trigrams finds all its rows
    (the search checks each exactly), and a common trigram costs its whole list (a trigram in
    every row: about 50 ms a million rows, measured), so with `frequency(trigram)` (the share
    of rows that hold it, estimated) the rarest MAX_TRIGRAMS of each needle are used, leaving
    out those in more than COMMON_SHARE of the rows unless nothing rarer is left."""
    terms: list[str] = []
    for needle in needles:
        grams = list(dict.fromkeys(needle[i:i + 3] for i in range(len(needle) - 2)))
        if not grams:
            continue
        if frequency is not None:
            share = {g: frequency(g.lower()) for g in grams}
            grams.sort(key=lambda g: share[g])
            rare = [g for g in grams if share[g] <= COMMON_SHARE]
            grams = (rare or grams[:1])[:MAX_TRIGRAMS]
        elif len(grams) > MAX_TRIGRAMS:
            step = (len(grams) - 1) / (MAX_TRIGRAMS - 1)
            grams = list(dict.fromkeys(grams[round(i * step)] for i in range(MAX_TRIGRAMS)))
        terms += ['"' + g.replace('"', '""') + '"' for g in grams]
    return " AND ".join(terms) if terms else None


def trigram_share(conn: sqlite3.Connection):
    """How common each trigram is, estimated from the newest SAMPLE_ROWS rows (cached per
    database file for SAMPLE_TTL_S): a function from a trigram to the share of rows with it."""
    path = conn.execute("PRAGMA database_list").fetchone()[2]
    now = time.monotonic()
    cached = _samples.get(path)
    if cached is None or now - cached[0] > SAMPLE_TTL_S:
        counts: Counter = Counter()
        rows = conn.execute("SELECT source, details FROM threats ORDER BY id DESC LIMIT ?", (SAMPLE_ROWS,)).fetchall()
        for source, details in rows:
            text = f"{source}\x01{details}".lower()
            counts.update({text[i:i + 3] for i in range(len(text) - 2)})
        if len(_samples) > 16:
            _samples.clear()
        cached = _samples[path] = (now, counts, max(1, len(rows)))
    _, counts, n = cached
    return lambda gram: counts.get(gram, 0) / n


def case_variants(needle: str) -> list[str]:
    """Every spelling of a short needle that folds to it (each character lower or upper case)."""
    spellings = [""]
    for ch in needle:
        forms = dict.fromkeys(f for f in (ch, ch.lower(), ch.upper()) if len(f) == 1)
        spellings = [s + f for s in spellings for f in forms]
    return list(dict.fromkeys(spellings))
