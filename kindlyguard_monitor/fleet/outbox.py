"""The local history as the forwarder's outbox: rows after the cursor, and the cursor itself.

The history (history/) stores every threat once, in row order; the forwarder
reads the rows after the last one the stream acknowledged and publishes them.
The cursor lives in the history file, in its own table (`fleet_forward`),
created if missing and never part of the history's schema migrations, so it
moves with the file: a damaged history moved aside takes its cursor with it,
and a new history starts forwarding from its first row (under a new
`history_id`; the stream's duplicate window and the threats' own keys keep a
threat forwarded by the old file from appearing twice).

    fleet_forward(stream PRIMARY KEY, history_id, threat_row, gap_row, acked_at_us, forwarded, state)

threat_row / gap_row: every threat (gap) row up to this one is in the stream.
state: the forwarder's last word ("forwarding to …" or "not forwarding: <why>"), for
`kgmon doctor` and the status bar; server URLs in it never carry a password.
The forwarder writes this table through its own connection (SQLite's busy
timeout waits for the app's history writer); it never writes anything else.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import time
from pathlib import Path
from typing import NamedTuple

from kindlyguard_monitor.history import db
from kindlyguard_monitor.history.records import SELECT_COLUMNS, StoredThreat, stored_threat

TABLE = "fleet_forward"
_CREATE = (f"CREATE TABLE IF NOT EXISTS {TABLE} (stream TEXT PRIMARY KEY, history_id TEXT NOT NULL, "
           "threat_row INTEGER NOT NULL, gap_row INTEGER NOT NULL, acked_at_us INTEGER NOT NULL, "
           "forwarded INTEGER NOT NULL, state TEXT NOT NULL DEFAULT '')")
GAP_SELECT = "id, time_us, transport, generation, missed, corrupt, kind"
# What message.ThreatEncoder takes: the threat's columns without stored_at, no StoredThreat made.
RAW_COLUMNS = "id, key, time_us, type, severity, blocked, flags, source, details, transport, generation, seq"


class NotReady(Exception):
    """No history to forward from (yet); str() says why in one sentence."""


class Cursor(NamedTuple):
    history_id: str
    threat_row: int  # the last threat row the stream acknowledged (with every one before it)
    gap_row: int
    acked_at_us: int  # when the cursor last moved (0: never)
    forwarded: int  # threats and gaps acknowledged through this cursor, all time


class Status(NamedTuple):
    """What `kgmon doctor` and the status bar say: "Forwarding: N waiting / last acknowledged at …"."""

    waiting: int
    acked_at_us: int
    forwarded: int
    state: str


def now_us() -> int:
    return time.time_ns() // 1000


def open_outbox(path: str | os.PathLike) -> sqlite3.Connection:
    """A connection to an existing history that may write the cursor table (never creates the file)."""
    where = Path(path)
    try:
        if not db.check_path(where):
            raise NotReady(f"there is no threat history at {where} yet (kgmon creates it when it starts)")
    except db.Refused as exc:
        raise NotReady(str(exc)) from None
    try:
        conn = sqlite3.connect(f"file:{where}?mode=rw", uri=True, isolation_level=None,
                               timeout=db.BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
    except sqlite3.Error as exc:
        raise NotReady(f"the threat history {where} cannot be opened for writing the forwarding cursor: {exc}") \
            from None
    try:
        conn.execute(f"PRAGMA busy_timeout = {db.BUSY_TIMEOUT_MS}")
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")}
        if not {"threats", "gaps"} <= tables:
            raise NotReady(f"{where} is not a threat history (it has no threats and gaps tables)")
        conn.execute(_CREATE)
    except sqlite3.Error as exc:
        conn.close()
        raise NotReady(f"the threat history {where} cannot be used for forwarding: {exc}") from None
    except NotReady:
        conn.close()
        raise
    return conn


def load(conn: sqlite3.Connection, stream: str) -> Cursor:
    row = conn.execute(f"SELECT history_id, threat_row, gap_row, acked_at_us, forwarded FROM {TABLE} "
                       "WHERE stream = ?", (stream,)).fetchone()
    if row is not None:
        return Cursor(*row)
    cursor = Cursor(secrets.token_hex(8), 0, 0, 0, 0)
    conn.execute(f"INSERT OR IGNORE INTO {TABLE} (stream, history_id, threat_row, gap_row, acked_at_us, forwarded) "
                 "VALUES (?, ?, ?, ?, ?, ?)", (stream, *cursor))
    return load(conn, stream)


def save(conn: sqlite3.Connection, stream: str, cursor: Cursor) -> None:
    conn.execute(f"UPDATE {TABLE} SET threat_row = ?, gap_row = ?, acked_at_us = ?, forwarded = ? "
                 "WHERE stream = ? AND history_id = ?",
                 (cursor.threat_row, cursor.gap_row, cursor.acked_at_us, cursor.forwarded, stream, cursor.history_id))


def save_state(conn: sqlite3.Connection, stream: str, state: str) -> None:
    conn.execute(f"UPDATE {TABLE} SET state = ? WHERE stream = ?", (state[:500], stream))


def threats_after(conn: sqlite3.Connection, row: int, limit: int) -> list[tuple[bytes, StoredThreat]]:
    """(key, threat) for the threat rows after `row`, in row order."""
    rows = conn.execute(f"SELECT {SELECT_COLUMNS} FROM threats WHERE id > ? ORDER BY id LIMIT ?",
                        (row, limit)).fetchall()
    return [(bytes(r[1]), stored_threat(r)) for r in rows]


def threat_rows_after(conn: sqlite3.Connection, row: int, limit: int) -> list[tuple]:
    """The threat rows after `row`, in row order, as RAW_COLUMNS (the forwarder's hot path)."""
    return conn.execute(f"SELECT {RAW_COLUMNS} FROM threats WHERE id > ? ORDER BY id LIMIT ?", (row, limit)).fetchall()


def gaps_after(conn: sqlite3.Connection, row: int, limit: int) -> list[tuple]:
    return conn.execute(f"SELECT {GAP_SELECT} FROM gaps WHERE id > ? ORDER BY id LIMIT ?", (row, limit)).fetchall()


def waiting(conn: sqlite3.Connection, cursor: Cursor) -> int:
    """Threats and gaps in the history the stream has not acknowledged."""
    t = conn.execute("SELECT count(*) FROM threats WHERE id > ?", (cursor.threat_row,)).fetchone()[0]
    g = conn.execute("SELECT count(*) FROM gaps WHERE id > ?", (cursor.gap_row,)).fetchone()[0]
    return t + g


def status(path: str | os.PathLike, stream: str) -> Status | None:
    """The forwarding state of a history, read-only; None when it was never forwarded (or cannot be read)."""
    try:
        conn = db.open_reader(path)
    except Exception:  # no history, unreadable: the history's own doctor line says why
        return None
    try:
        row = conn.execute(f"SELECT history_id, threat_row, gap_row, acked_at_us, forwarded, state FROM {TABLE} "
                           "WHERE stream = ?", (stream,)).fetchone()
        if row is None:
            return None
        cursor = Cursor(*row[:5])
        return Status(waiting(conn, cursor), cursor.acked_at_us, cursor.forwarded, row[5])
    except sqlite3.Error:
        return None
    finally:
        conn.close()
