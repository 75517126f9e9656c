"""Where the history lives and how it is opened: path, pragmas, checks, moving a bad file aside.

- `history_path(explicit)`: the argument, else $KINDLYGUARD_HISTORY_PATH, else
  history.sqlite3 in the user's data directory (platformdirs).
- `open_writer(path)`: the writer's connection, checked (`PRAGMA quick_check`)
  and migrated. A file that is not a usable history (not a database, corrupt,
  truncated, unreadable, from a newer kgmon) is moved aside to
  `history.sqlite3.corrupt-YYYYmmdd-HHMMSS` with its -wal and -shm, and a new
  one is started; the returned notice says so. Errors that are not the file's
  fault (disk full, I/O error, locked) are raised as they are: the caller
  retries later.
- `open_reader(path)`: a connection for searching; never creates a file,
  never writes (PRAGMA query_only). WAL lets it read while the writer writes.

Durability: journal_mode=WAL with synchronous=NORMAL. A commit is in the WAL
file when COMMIT returns, so killing the process (kill -9) loses nothing
committed; a power cut or OS crash can lose the last transactions (the WAL
is synced at checkpoints, not at every commit) but never corrupts the file.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from pathlib import Path

from app.history.schema import NewerSchema, migrate

log = logging.getLogger(__name__)

PATH_ENV = "KINDLYGUARD_HISTORY_PATH"
FILE_NAME = "history.sqlite3"
BUSY_TIMEOUT_MS = 5000
WAL_LIMIT_BYTES = 64 << 20  # the WAL is truncated to this after a checkpoint
CACHE_KIB = 32 << 10  # the writer's page cache: index inserts stay in memory

# Primary SQLite result codes (sqlite3.Error.sqlite_errorcode & 0xff).
SQLITE_ERROR, SQLITE_PERM, SQLITE_BUSY, SQLITE_LOCKED = 1, 3, 5, 6
SQLITE_READONLY, SQLITE_IOERR, SQLITE_CORRUPT, SQLITE_FULL = 8, 10, 11, 13
SQLITE_CANTOPEN, SQLITE_NOTADB = 14, 26
# Errors that say the file itself is unusable (moving it aside helps).
_FILE_FAULTS = {SQLITE_ERROR, SQLITE_PERM, SQLITE_READONLY, SQLITE_CORRUPT, SQLITE_CANTOPEN, SQLITE_NOTADB}


class Unusable(Exception):
    """The file at the history path is not a history this code can use; str() says why."""


def history_path(explicit: str | os.PathLike | None = None) -> Path:
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get(PATH_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    import platformdirs

    return platformdirs.user_data_path("kindlyguard-monitor", "KindlyGuard") / FILE_NAME


def error_code(exc: BaseException) -> int | None:
    """The primary SQLite result code of an sqlite3 error, when it has one."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(code, int) else None


def is_disk_full(exc: BaseException) -> bool:
    return error_code(exc) == SQLITE_FULL or "disk is full" in str(exc)


def is_corruption(exc: BaseException) -> bool:
    """An error that means the database file is damaged (not a passing condition)."""
    return error_code(exc) in (SQLITE_CORRUPT, SQLITE_NOTADB)


def sidecars(path: Path) -> list[Path]:
    """The database file and the WAL-mode files that belong to it."""
    return [path, Path(f"{path}-wal"), Path(f"{path}-shm")]


def size_bytes(path: Path) -> int:
    """What the history takes on disk: the database file and its WAL."""
    total = 0
    for p in sidecars(path)[:2]:
        try:
            total += p.stat().st_size
        except OSError:
            pass
    return total


def move_aside(path: Path, now: float | None = None) -> Path:
    """Rename the database and its -wal/-shm to `<name>.corrupt-YYYYmmdd-HHMMSS[-n]`; returns the new name."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while any(p.exists() for p in sidecars(aside)):
        n += 1
        aside = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    for src, dst in zip(sidecars(path), sidecars(aside)):
        if os.path.lexists(src):
            os.replace(src, dst)
    return aside


def _connect(path: Path, uri_mode: str) -> sqlite3.Connection:
    uri = Path(path).absolute().as_uri() + f"?mode={uri_mode}"
    conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False,
                           timeout=BUSY_TIMEOUT_MS / 1000)
    return conn


def _prepare(path: Path, max_page_count: int | None) -> sqlite3.Connection:
    """Connect, check and migrate; raises Unusable for a file at fault."""
    existed = path.exists() and path.stat().st_size > 0
    try:
        conn = _connect(path, "rwc")
    except sqlite3.Error as exc:
        if existed and error_code(exc) in _FILE_FAULTS:
            raise Unusable(f"it cannot be opened ({exc})") from exc
        raise
    try:
        if existed:
            result = conn.execute("PRAGMA quick_check").fetchall()
            if result != [("ok",)]:
                first = "; ".join(str(r[0]) for r in result[:3])
                raise Unusable(f"its integrity check failed ({first})")
        migrate(conn)  # first: a new file's page size cannot change once it is in WAL mode
        conn.execute("PRAGMA journal_mode = WAL").fetchall()
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute(f"PRAGMA journal_size_limit = {WAL_LIMIT_BYTES}")
        conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
        conn.execute("PRAGMA temp_store = MEMORY")
        if max_page_count is not None:
            conn.execute(f"PRAGMA max_page_count = {int(max_page_count)}").fetchall()
        return conn
    except NewerSchema as exc:
        conn.close()
        raise Unusable(str(exc)) from exc
    except sqlite3.Error as exc:
        conn.close()
        if existed and error_code(exc) in _FILE_FAULTS:
            raise Unusable(f"it is not a usable history ({exc})") from exc
        raise
    except BaseException:
        conn.close()
        raise


def open_writer(path: Path, max_page_count: int | None = None) -> tuple[sqlite3.Connection, str | None]:
    """The writer's connection to the history at `path` (created if missing).

    Returns (connection, notice): notice is None, or a sentence for the user
    saying that the old file was unusable and where it was moved. Raises
    sqlite3.Error or OSError for what moving aside cannot fix (disk full,
    I/O error, a folder we may not write to).

    `max_page_count` caps the file, in pages (16 KiB in a file this code
    created): writes beyond it fail as a full disk would (tests use it).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        return _prepare(path, max_page_count), None
    except Unusable as exc:
        aside = move_aside(path)
        notice = (f"The threat history {path} could not be used: {exc}. It was moved to {aside.name} "
                  "and a new, empty history was started.")
        log.warning("%s", notice)
        return _prepare(path, max_page_count), notice


def open_reader(path: str | os.PathLike) -> sqlite3.Connection:
    """A read-only connection for searches (raises FileNotFoundError when there is no history)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no threat history at {path}")
    conn = _connect(path, "rw")  # "ro" cannot read a WAL database whose -shm is missing
    conn.execute("PRAGMA query_only = 1")
    return conn
