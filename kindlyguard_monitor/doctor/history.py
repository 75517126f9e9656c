"""The threat history: there, readable, intact, writable; read only, never repaired here."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

from kindlyguard_monitor.doctor.findings import FAIL, INFO, OK, Finding, counted


def check_history(path: str | os.PathLike | None = None) -> Finding:
    """The threat history: there, a history, readable, intact (quick_check), writable, how big.
    It only reads: what the app would refuse or move aside is said, never done here."""
    from kindlyguard_monitor.history import db, query
    from kindlyguard_monitor.history.schema import NewerSchema

    where = db.history_path(path)
    elsewhere = f"or set {db.PATH_ENV} to another file"
    try:
        exists = db.check_path(where)
    except db.Refused as exc:
        return Finding("history", FAIL, str(exc), f"point {db.PATH_ENV} at a file, such as "
                       f"{where / db.FILE_NAME if where.is_dir() else '~/kindlyguard-history.sqlite3'}")
    except OSError as exc:
        return Finding("history", FAIL, f"the threat history {where} cannot be looked at: {exc.strerror or exc}",
                       f"check the folders above it, {elsewhere}")
    if not exists:
        if os.access(_nearest_dir(where), os.W_OK):
            return Finding("history", INFO, f"no threat history yet at {where}; kgmon starts it when it starts")
        return Finding("history", FAIL, f"the threat history cannot be created at {where}: the folder is not "
                       "writable", f"make {_nearest_dir(where)} writable, {elsewhere}")
    if not db.is_sqlite(where):
        if db.is_ours(where):
            return Finding("history", FAIL, f"the threat history {where} is damaged (not an SQLite database)",
                           "kgmon moves it aside (history.sqlite3.corrupt-<time>) and starts a new one at its "
                           "next start")
        return Finding("history", FAIL, f"the threat history {where} is not an SQLite database; kgmon leaves "
                       "it as it is and keeps no history", f"move that file away, {elsewhere}")
    try:
        with contextlib.closing(db.open_reader(where)) as conn:
            verdict = conn.execute("PRAGMA quick_check").fetchone()[0]
            if verdict != "ok":
                raise sqlite3.DatabaseError(verdict)
            db.check_contents(conn)  # ours, and a version this kgmon knows
            rows = query.count(conn)
            holes = conn.execute("SELECT count(*), coalesce(sum(missed), 0), coalesce(sum(corrupt), 0) "
                                 "FROM gaps").fetchone()
    except NewerSchema as exc:
        return Finding("history", FAIL, f"the threat history {where}: {exc}; kgmon leaves it as it is",
                       f"use that newer kgmon, {elsewhere}")
    except db.Unusable as exc:
        return Finding("history", FAIL, f"the threat history {where}: {exc}; kgmon leaves it as it is",
                       f"point {db.PATH_ENV} at another file")
    except sqlite3.Error as exc:
        if db.is_ours(where) and db.writable(where):
            advice = "kgmon moves it aside (history.sqlite3.corrupt-<time>) and starts a new one at its next start"
        else:
            advice = f"kgmon leaves it as it is (not provably its own file, or read-only): move it away, {elsewhere}"
        return Finding("history", FAIL, f"the threat history at {where} cannot be read: {exc}", advice)
    if not db.writable(where):
        real = Path(os.path.realpath(where))
        return Finding("history", FAIL, f"the threat history at {where} is read-only: shown, not saved "
                       f"(new threats are not kept)",
                       f"make {real.parent} and {real.name} writable for this user, {elsewhere}")
    message = (f"threat history {where}: {counted(rows, 'threat')}, "
               f"{db.size_bytes(where) / 2**20:.1f} MiB, intact")
    if holes[0]:
        message += f"; {counted(holes[0], 'known hole')} ({holes[1]} missed, {holes[2]} corrupt events not kept)"
    return Finding("history", OK, message)


def _nearest_dir(path) -> str:
    """The nearest existing folder at or above path's folder."""
    folder = os.path.dirname(os.path.abspath(path))
    while folder and not os.path.isdir(folder):
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    return folder
