"""The history database's schema: numbered migrations, applied in order.

`PRAGMA user_version` is the number of the last migration applied (0: an
empty file). `migrate()` brings any older database up to `SCHEMA_VERSION`,
each migration in its own transaction together with its new user_version,
so a crash in the middle leaves the database at the previous version, never
half-way. A database newer than this code (user_version > SCHEMA_VERSION,
written by a later kgmon) raises `NewerSchema`: the opener leaves it as it is (kindlyguard_monitor.history.db).

To change the schema, append a migration; never edit one that shipped.

Columns, as stored:

- threats.key: 16 bytes (generation, seq as two big-endian u64) for a
  numbered threat, or a 20-byte BLAKE2b digest of its content otherwise
  (kindlyguard_monitor.history.records): the two kinds can never collide, their lengths differ.
- time_us: the threat's wall-clock time (µs since the epoch), what searches,
  paging and retention go by. stored_at: when it was committed (µs).
- generation: the writer's generation as 16 lowercase hex digits (it is a
  u64, which SQLite's signed integers cannot hold), NULL when unknown.
- seq: the writer's event number, NULL when unknown (or above 2**63 - 1).
- gaps: where the history knows it has a hole: `kind` 'reader' (the reader
  counted missed or corrupt events) or 'store_overflow' (the store fell so
  far behind that it dropped the oldest threats waiting to be written).
- threats.seen: 1 when the user marked that threat seen; every row up to
  meta 'seen_upto' (a row id) is seen too ("mark all as seen" writes one
  number, not a million rows).
- threats.host: the workstation a threat came from, in the fleet view's
  history (fleet-history.sqlite); '' for this machine's own threats.
- meta: named integers: 'seen_upto', 'text_upto' (the last row id the
  text index holds: kindlyguard_monitor.history.text_index) and 'ix_upto'
  (every row up to it is in the severity and type indexes).
- threats.ix: 1 when the row is in the severity and type indexes (partial
  indexes); 0 for a row stored during a flood and not in them yet
  (kindlyguard_monitor.history.late_index).
- sources: every distinct source stored (a superset: rows deleted by
  retention leave theirs until the next retention rebuilds it), so a
  search for a source never seen answers at once without a scan.
- threats_text: the substring index (FTS5, trigram tokenizer, detail=none,
  external content = threats) over source and details. It is not a
  numbered migration: SQLite builds without FTS5 or trigram (before 3.34)
  have none and search by scanning; `ensure_text_index()` creates it when
  the SQLite in use can.
"""

from __future__ import annotations

import sqlite3

AUTO_VACUUM_INCREMENTAL = 2  # PRAGMA auto_vacuum value
PAGE_SIZE = 16384  # a new file's: inserts measured about 15% faster than with 4096

# Each migration: the statements that take the schema from version n-1 to n.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: the tables, the unique key, and the time index that newest-first paging and retention use.
    (
        """CREATE TABLE threats (
            id INTEGER PRIMARY KEY,
            key BLOB NOT NULL UNIQUE,
            time_us INTEGER NOT NULL,
            type INTEGER NOT NULL,
            severity INTEGER NOT NULL,
            blocked INTEGER NOT NULL,
            flags INTEGER NOT NULL DEFAULT 0,
            source TEXT NOT NULL,
            details TEXT NOT NULL,
            transport TEXT NOT NULL,
            generation TEXT,
            seq INTEGER,
            stored_at INTEGER NOT NULL
        )""",
        "CREATE INDEX threats_time ON threats(time_us)",
        """CREATE TABLE gaps (
            id INTEGER PRIMARY KEY,
            time_us INTEGER NOT NULL,
            transport TEXT NOT NULL,
            generation TEXT,
            missed INTEGER NOT NULL,
            corrupt INTEGER NOT NULL,
            kind TEXT NOT NULL
        )""",
        "CREATE INDEX gaps_time ON gaps(time_us)",
    ),
    # 2: indexes for the History view's type and severity filters, ending in time_us so
    # a filter on one type or severity pages newest first without a sort, however rare
    # it is. (No index on source: it costs a fifth of the store rate; docs/history.md.)
    (
        "CREATE INDEX threats_severity_time ON threats(severity, time_us)",
        "CREATE INDEX threats_type_time ON threats(type, time_us)",
    ),
    # 3: seen state, the distinct sources, and the meta numbers. Old rows keep every
    # value; the text index for them is built afterwards, in chunks, by the writer.
    (
        "ALTER TABLE threats ADD COLUMN seen INTEGER NOT NULL DEFAULT 0",
        "CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID",
        "INSERT INTO meta (name, value) VALUES ('seen_upto', 0), ('text_upto', 0)",
        "CREATE TABLE sources (source TEXT PRIMARY KEY) WITHOUT ROWID",
        "INSERT OR IGNORE INTO sources (source) SELECT DISTINCT source FROM threats",
    ),
    # 4: the workstation a threat came from, for the fleet view's own history (issue 16);
    # '' for this machine's threats, so every older row keeps its meaning.
    (
        "ALTER TABLE threats ADD COLUMN host TEXT NOT NULL DEFAULT ''",
    ),
    # 5: the severity and type indexes hold the rows marked ix = 1 (partial indexes): during a
    # flood the writer stores rows with ix = 0 (the table, the unique key and the time index only)
    # and marks them behind the writes (kindlyguard_monitor.history.late_index). Every older row is
    # marked (the column's default); 'ix_upto' (every row up to it is marked) starts at the newest.
    (
        "ALTER TABLE threats ADD COLUMN ix INTEGER NOT NULL DEFAULT 1",
        "INSERT INTO meta (name, value) SELECT 'ix_upto', coalesce(max(id), 0) FROM threats",
        "DROP INDEX threats_severity_time",
        "CREATE INDEX threats_severity_time ON threats(severity, time_us) WHERE ix = 1",
        "DROP INDEX threats_type_time",
        "CREATE INDEX threats_type_time ON threats(type, time_us) WHERE ix = 1",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)


TEXT_INDEX = "threats_text"
TEXT_CONTENT = "threats_text_content"
TEXT_VOCAB = "threats_text_vocab"
# What the index holds per row: source and details, each followed by two U+0001, so that every
# occurrence of a one- or two-character needle begins a trigram (at the end of a field too),
# which kindlyguard_monitor.history.query finds through the vocabulary (TEXT_VOCAB).
# A NUL becomes U+0001 too: FTS5's tokenizer stops at a NUL, and text hidden after one must be
# found. SQLite's replace() cannot replace a NUL, so this is a function of ours (register_functions),
# on every connection kgmon opens; the view is read only to fill and empty the index.
_TEXT_CONTENT_DDL = (f"CREATE VIEW {TEXT_CONTENT} AS SELECT id, kg_indexed_text(source) AS source, "
                     "kg_indexed_text(details) AS details FROM threats")
_TEXT_INDEX_DDL = (f"CREATE VIRTUAL TABLE {TEXT_INDEX} USING fts5(source, details, content='{TEXT_CONTENT}', "
                   "content_rowid='id', tokenize='trigram case_sensitive 0', detail=none, columnsize=0)")
_TEXT_VOCAB_DDL = f"CREATE VIRTUAL TABLE {TEXT_VOCAB} USING fts5vocab({TEXT_INDEX}, 'row')"


def indexed_text(value) -> str:
    """A field as the text index holds it: NUL as U+0001, then two U+0001."""
    return ("" if value is None else str(value)).replace("\x00", "\x01") + "\x01\x01"


def register_functions(conn: sqlite3.Connection) -> None:
    conn.create_function("kg_indexed_text", 1, indexed_text, deterministic=True)


class NewerSchema(Exception):
    """The database was written by a newer kgmon (its user_version is above ours)."""

    def __init__(self, version: int):
        super().__init__(f"it was written by a newer kgmon (schema version {version}; this one knows "
                         f"up to {SCHEMA_VERSION})")
        self.version = version


def user_version(conn: sqlite3.Connection) -> int:
    return conn.execute("PRAGMA user_version").fetchone()[0]


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the database up to SCHEMA_VERSION; returns the version it had.

    `conn` must be in autocommit mode (isolation_level=None). A new file gets
    its page size and incremental auto-vacuum before the first table is
    created; a database made without auto-vacuum (by hand, or by an old tool)
    is converted once, by VACUUM.
    """
    version = user_version(conn)
    if version > SCHEMA_VERSION:
        raise NewerSchema(version)
    if conn.execute("PRAGMA auto_vacuum").fetchone()[0] != AUTO_VACUUM_INCREMENTAL:
        empty = conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()[0] == 0
        if empty:
            conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
        conn.execute(f"PRAGMA auto_vacuum = {AUTO_VACUUM_INCREMENTAL}")
        if not empty:
            conn.execute("VACUUM")  # only VACUUM changes auto_vacuum once tables exist
    for number in range(version + 1, SCHEMA_VERSION + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in MIGRATIONS[number - 1]:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    return version


def text_index_supported() -> bool:
    """Can this SQLite build the text index (FTS5 with the trigram tokenizer, SQLite >= 3.34)?"""
    try:
        conn = sqlite3.connect(":memory:")
        try:
            conn.execute(_TEXT_INDEX_DDL.replace(f"content='{TEXT_CONTENT}', content_rowid='id', ", ""))
            conn.execute(_TEXT_VOCAB_DDL)
            return True
        finally:
            conn.close()
    except sqlite3.Error:
        return False


def has_text_index(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_schema WHERE name = ?", (TEXT_INDEX,)).fetchone() is not None


def ensure_text_index(conn: sqlite3.Connection) -> bool:
    """Create the (empty) text index when this SQLite can and it is missing; True when it exists.
    Its rows are added by kindlyguard_monitor.history.text_index, from meta 'text_upto' on."""
    if has_text_index(conn):
        return True
    if not text_index_supported():
        return False
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(_TEXT_CONTENT_DDL)
        conn.execute(_TEXT_INDEX_DDL)
        conn.execute(_TEXT_VOCAB_DDL)
        conn.execute("UPDATE meta SET value = 0 WHERE name = 'text_upto'")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return True
