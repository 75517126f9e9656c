"""Where the history lives and how it is opened: path, pragmas, checks, moving a bad file aside.

- `history_path(explicit)`: the argument, else $KINDLYGUARD_HISTORY_PATH, else
  history.sqlite3 in the user's data directory (platformdirs).
- `open_writer(path)`: the writer's connection, checked (`PRAGMA quick_check`)
  and migrated. Errors that are not the file's fault (disk full, I/O error,
  locked, a folder that cannot be created) are raised as they are: the
  caller retries later. Two answers are final (the caller does not retry):
  `ReadOnly` (an intact history this process cannot write: read it with
  `open_reader`, store nothing) and `Refused` (not a history this code may
  use or replace: a folder, a device, a link to nothing, a file that is not
  an SQLite database, another program's database, a newer kgmon's history;
  str() says what to do).
- The user's files are never touched: a file is moved aside (renamed to
  `history.sqlite3.corrupt-YYYYmmdd-HHMMSS`, with its -wal and -shm) only
  when SQLite itself says it is damaged (SQLITE_CORRUPT, SQLITE_NOTADB, a
  failed `quick_check`) AND the monitor can tell the file is its own: a
  regular file (never a symbolic link or what it points to, never a folder
  or device) that is either an SQLite database with one of our schema
  versions in its header, or sits at the default path in the monitor's own
  data folder. Everything else is left exactly as it is (`may_move_aside`).
- `open_reader(path)`: a connection for searching; never creates a file,
  never writes (PRAGMA query_only). WAL lets it read while the writer
  writes. A history in a folder this process cannot write is still read
  (read-only, then immutable when SQLite cannot create its -shm there).

Durability: journal_mode=WAL with synchronous=NORMAL. A commit is in the WAL
file when COMMIT returns, so killing the process (kill -9) loses nothing
committed; a power cut or OS crash can lose the last transactions (the WAL
is synced at checkpoints, not at every commit) but never corrupts the file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import stat
import time
from pathlib import Path

from kindlyguard_monitor.history.schema import (SCHEMA_VERSION, NewerSchema, ensure_text_index, migrate,
                                                register_functions)
from kindlyguard_monitor.vocabulary import ENV_HISTORY_PATH

log = logging.getLogger(__name__)

PATH_ENV = ENV_HISTORY_PATH
FILE_NAME = "history.sqlite3"
BUSY_TIMEOUT_MS = 5000
WAL_LIMIT_BYTES = 16 << 20  # the WAL is truncated to this after a checkpoint
WAL_AUTOCHECKPOINT_PAGES = 1000  # SQLite's default, stated: a checkpoint after every 16 MiB of WAL
CACHE_KIB = 32 << 10  # the writer's page cache: index inserts stay in memory

# Primary SQLite result codes (sqlite3.Error.sqlite_errorcode & 0xff).
SQLITE_ERROR, SQLITE_PERM, SQLITE_BUSY, SQLITE_LOCKED = 1, 3, 5, 6
SQLITE_READONLY, SQLITE_IOERR, SQLITE_CORRUPT, SQLITE_FULL = 8, 10, 11, 13
SQLITE_CANTOPEN, SQLITE_NOTADB = 14, 26
SQLITE_MAGIC = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite database
_USER_VERSION_AT = 60  # PRAGMA user_version: a big-endian u32 in the database header
_ADVICE = f"set {PATH_ENV} to a file in a folder you can write, such as ~/kindlyguard-history.sqlite3"


class Unusable(Exception):
    """The file at the history path is not a history this code can use; str() says why.
    `damaged`: SQLite itself says the file is damaged (it may be moved aside if it is ours)."""

    def __init__(self, message: str, damaged: bool = False):
        super().__init__(message)
        self.damaged = damaged


class Refused(Exception):
    """Not a history this code may use or replace; nothing was changed. str(): why, and what to do."""


class ReadOnly(Exception):
    """An intact history this process cannot write: it can be read (open_reader), nothing stored."""


def history_path(explicit: str | os.PathLike | None = None) -> Path:
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get(PATH_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    return default_path()


def default_path() -> Path:
    """history.sqlite3 in the monitor's own data folder (which only the monitor writes)."""
    import platformdirs

    return platformdirs.user_data_path("kindlyguard-monitor", "KindlyGuard") / FILE_NAME


def check_path(path: Path) -> bool:
    """Is there a file at `path` (False: nothing there yet)? Raises Refused for what is
    there but is no file (a folder, a device, a pipe, a link to nothing) and OSError
    when the path itself cannot be looked at (a name too long, a folder we may not enter)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise Refused(f"the threat history {path} is a symbolic link to {os.readlink(path)}, which does "
                          f"not exist; kgmon does not create files through links: {_ADVICE}") from None
        return False
    if stat.S_ISDIR(st.st_mode):
        raise Refused(f"the threat history {path} is a folder, not a file; kgmon leaves it as it is: set "
                      f"{PATH_ENV} to a file, such as {Path(path) / FILE_NAME}")
    if not stat.S_ISREG(st.st_mode):
        raise Refused(f"the threat history {path} is not a regular file (a device, pipe or socket); kgmon "
                      f"leaves it as it is: {_ADVICE}")
    return True


def _header(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(100)
    except OSError:
        return b""


def is_sqlite(path: Path) -> bool:
    """Does the file start as every SQLite database does (or is it empty: a new one)?"""
    head = _header(path)
    return not head or head.startswith(SQLITE_MAGIC)


def is_ours(path: Path) -> bool:
    """Can the monitor tell the file at `path` is its own history? A regular file, not a
    link, that is an SQLite database whose header carries one of our schema versions,
    or any regular file at the default path (the monitor's own data folder)."""
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return False  # a link (or anything else): never ours to rename
    except OSError:
        return False
    head = _header(path)
    if head.startswith(SQLITE_MAGIC) and len(head) >= _USER_VERSION_AT + 4:
        version = int.from_bytes(head[_USER_VERSION_AT:_USER_VERSION_AT + 4], "big")
        if 1 <= version <= SCHEMA_VERSION:
            return True
    try:
        return Path(path).absolute() == default_path().absolute()
    except OSError:
        return False


def may_move_aside(path: Path, exc: Unusable) -> bool:
    """The rule (docs/history.md): only a damaged file that is provably the monitor's own."""
    return exc.damaged and is_ours(path)


def writable(path: Path) -> bool:
    """Can this process write the history file and create its -wal and -shm beside it?
    (os.access also says no to root on a read-only mount or an immutable file.)"""
    real = Path(os.path.realpath(path))
    return os.access(real, os.W_OK) and os.access(real.parent, os.W_OK | os.X_OK)


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
    """What the history takes on disk: the database file and its WAL, as they are now
    (the writer keeps the WAL small: kindlyguard_monitor.history.store checkpoints it)."""
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
    register_functions(conn)
    return conn


def _prepare(path: Path, max_page_count: int | None) -> sqlite3.Connection:
    """Connect, check and migrate; raises Unusable for a file at fault (or not ours)."""
    existed = path.exists() and path.stat().st_size > 0
    conn = _connect(path, "rwc")
    try:
        if existed:
            check_contents(conn)
        migrate(conn)  # first: a new file's page size cannot change once it is in WAL mode
        conn.execute("PRAGMA journal_mode = WAL").fetchall()
        _writer_settings(conn, max_page_count)
        ensure_text_index(conn)
        return conn
    except NewerSchema as exc:
        conn.close()
        raise Unusable(str(exc)) from exc
    except sqlite3.Error as exc:
        conn.close()
        if existed and is_corruption(exc):
            raise Unusable(f"it is not a usable history ({exc})", damaged=True) from exc
        raise
    except BaseException:
        conn.close()
        raise


def _writer_settings(conn: sqlite3.Connection, max_page_count: int | None) -> None:
    """What a connection that writes sets for itself (these settings are not kept in the file)."""
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute(f"PRAGMA journal_size_limit = {WAL_LIMIT_BYTES}")
    conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}")
    conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
    conn.execute("PRAGMA temp_store = MEMORY")
    if max_page_count is not None:
        conn.execute(f"PRAGMA max_page_count = {int(max_page_count)}").fetchall()


def open_flood_writer(path: Path) -> sqlite3.Connection:
    """The flood writer's own connection (kindlyguard_monitor.history.flood_writer) to a history the
    store's writer opened, checked and migrated: the same settings, nothing checked or changed,
    never created (mode=rw). Raises sqlite3.Error."""
    conn = _connect(path, "rw")
    try:
        _writer_settings(conn, None)
        return conn
    except BaseException:
        conn.close()
        raise


def check_contents(conn: sqlite3.Connection) -> None:
    """An existing file: intact (quick_check), and a history (ours, or empty)? Raises Unusable."""
    result = conn.execute("PRAGMA quick_check").fetchall()
    if result != [("ok",)]:
        first = "; ".join(str(r[0]) for r in result[:3])
        raise Unusable(f"its integrity check failed ({first})", damaged=True)
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")}
    if version > SCHEMA_VERSION:
        raise NewerSchema(version)
    if (version == 0 and tables) or (version > 0 and not {"threats", "gaps"} <= tables):
        raise Unusable("it is another program's SQLite database, not a threat history")


def open_writer(path: Path, max_page_count: int | None = None) -> tuple[sqlite3.Connection, str | None]:
    """The writer's connection to the history at `path` (created if missing).

    Returns (connection, notice): notice is None, or a sentence for the user
    saying that the old file was damaged and where it was moved. Raises
    ReadOnly or Refused (final: do not retry), or sqlite3.Error / OSError for
    what may pass (disk full, I/O error, a folder that cannot be created).

    `max_page_count` caps the file, in pages (16 KiB in a file this code
    created): writes beyond it fail as a full disk would (tests use it).
    """
    path = Path(path)
    if not check_path(path):
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    elif not is_sqlite(path):
        if is_ours(path):  # at the default path, in our own folder: our file, damaged
            return _replace_damaged(path, Unusable("it is not an SQLite database", damaged=True), max_page_count)
        raise Refused(f"the threat history {path} is not an SQLite database; kgmon leaves the file as it is: "
                      f"move it away, or set {PATH_ENV} to another file")
    elif not writable(path):
        _check_read_only(path)
        raise ReadOnly(f"the threat history {path} cannot be written ({_why_not_writable(path)})")
    try:
        return _prepare(path, max_page_count), None
    except Unusable as exc:
        return _replace_damaged(path, exc, max_page_count)


def _replace_damaged(path: Path, exc: Unusable, max_page_count: int | None) -> tuple[sqlite3.Connection, str]:
    if not may_move_aside(path, exc):
        what = "left as it is" if not exc.damaged else "left as it is (kgmon moves aside only its own files)"
        raise Refused(f"the threat history {path} cannot be used: {exc}; {what}: {_ADVICE}") from exc
    aside = move_aside(path)
    notice = (f"The threat history {path} could not be used: {exc}. It was moved to {aside.name} "
              "and a new, empty history was started.")
    log.warning("%s", notice)
    return _prepare(path, max_page_count), notice


def _why_not_writable(path: Path) -> str:
    real = Path(os.path.realpath(path))
    if not os.access(real.parent, os.W_OK | os.X_OK):
        return f"the folder {real.parent} is not writable"
    return "the file is not writable"


def _check_read_only(path: Path) -> None:
    """A history we cannot write: is it intact and ours? Raises Refused when not (never moved:
    we could not, and it is not ours to change)."""
    try:
        conn = open_reader(path)
    except sqlite3.Error as exc:
        raise Refused(f"the threat history {path} cannot be read ({exc}) nor written; kgmon leaves it as "
                      f"it is: {_ADVICE}") from exc
    try:
        check_contents(conn)
    except (Unusable, NewerSchema) as exc:
        raise Refused(f"the threat history {path} cannot be used: {exc}; it is read-only and left as it "
                      f"is: {_ADVICE}") from exc
    except sqlite3.Error as exc:
        raise Refused(f"the threat history {path} is damaged ({exc}) and read-only; kgmon leaves it as it "
                      f"is: {_ADVICE}") from exc
    finally:
        conn.close()


def open_reader(path: str | os.PathLike) -> sqlite3.Connection:
    """A read-only connection for searches. Raises FileNotFoundError when there is no
    history, Refused when the path is not a file (a folder, a device), sqlite3.Error
    when it cannot be read."""
    path = Path(path)
    if not check_path(path):
        raise FileNotFoundError(f"no threat history at {path}")
    # "rw" first: "ro" cannot read a WAL database whose -shm is missing. In a folder we may not
    # write, SQLite cannot create the -shm: then read it as immutable (what is in a -wal
    # that no writer can have checkpointed is not seen; nothing is changed).
    last: sqlite3.Error | None = None
    for mode in ("rw", "ro", "ro&immutable=1"):
        try:
            conn = _connect(path, mode)
        except sqlite3.Error as exc:
            last = exc
            continue
        try:
            conn.execute("PRAGMA query_only = 1")
            conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()  # reads the header (and -shm)
            return conn
        except sqlite3.Error as exc:
            conn.close()
            if is_corruption(exc):
                raise
            last = exc
    assert last is not None
    raise last


@contextlib.contextmanager
def immediate(conn: sqlite3.Connection):
    """One write transaction (BEGIN IMMEDIATE ... COMMIT), rolled back if anything in it raises."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def next_chunk_end(conn: sqlite3.Connection, start: int, limit: int) -> int | None:
    """The id of the `limit`th threat row above `start` (or the last one): the end of one
    indexing step's chunk; None when there is no row above it."""
    return conn.execute("SELECT max(id) FROM (SELECT id FROM threats WHERE id > ? ORDER BY id LIMIT ?)",
                        (start, limit)).fetchone()[0]
