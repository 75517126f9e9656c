"""The flood writer: a process of its own that writes a flood's threats into the history, so
that storing them does not take the app's GIL from the reader.

Why: with the reader at 200,000 events/s and the store's thread in the app's process, the two
threads took turns at the GIL: the store wrote 110,000-185,000 threats/s while the reader read
(the machine's two cores 40% idle) and fell 70,000-250,000 behind in 2 s; the same store in a
process of its own wrote 325,000-384,000/s beside the same reader (docs/benchmarks.md, "The
history beside the reader").

What it takes: a transaction of the store's writer thread (kindlyguard_monitor.history.writer)
that is a flood's (more than store.flood_waiting, by default COMPACT_WAITING, threats waiting as
it starts) and holds only ring threats (compact rows, packed: records.PackedRows). Everything else (a trickle, WebSocket threats, gap
rows, seen marks, the indexes behind the writes, retention, checkpoints) stays on the writer
thread's own connection. The thread waits for the answer (without the GIL), so the two
connections never write at once, and each transaction is whole in one of them.

The process is `kgmon _history-writer PATH` (child_process.kgmon_command: a source tree, an
install or a frozen app), started by a flood and ended once idle for IDLE_S (or when the store
closes). It opens
the file the store has opened, checked and migrated (db.open_flood_writer) and does nothing but
these transactions. Requests and answers are marshal'd tuples, each after its length (4 bytes),
on its stdin and stdout; both ends are this program's. It ends when its stdin ends: the store
closing, or the app killed (it then finishes and commits the transaction it was given).

Failures: an SQLite error in the process comes back as the same sqlite3 exception class and
code, and the store handles it as its own (a full disk, a damaged file). A process that cannot
start, dies, or answers nonsense raises Unavailable: the store writes that transaction itself
(INSERT OR IGNORE: whatever the process may have committed is not stored twice) and does not
use the process again for RETRY_S.
"""

from __future__ import annotations

import marshal
import signal
import sqlite3
import struct
import subprocess
import sys
import time
from pathlib import Path

from kindlyguard_monitor import child_process
from kindlyguard_monitor.history import db, inserts
from kindlyguard_monitor.history.pending import Pending, compacted
from kindlyguard_monitor.history.records import PackedRows
from kindlyguard_monitor.vocabulary import FLOOD_WRITER_COMMAND

RETRY_S = 30.0  # after the process failed: the store writes floods itself this long
# A process with nothing to do this long ends: it holds SQLite's page cache and a flood's buffers
# (70-80 MiB resident after a flood here); the next flood starts another (about 0.2 s).
IDLE_S = 10.0
_LENGTH = struct.Struct(">I")
MAX_MESSAGE = 1 << 30


class Unavailable(Exception):
    """The flood writer cannot be used now (it did not start, died, or answered nonsense)."""


def send(stream, message: tuple) -> None:
    data = marshal.dumps(message)
    stream.write(_LENGTH.pack(len(data)))
    stream.write(data)
    stream.flush()


def receive(stream) -> tuple | None:
    """The next message, or None at the end of the stream; ValueError for one that is not a message."""
    head = stream.read(_LENGTH.size)
    if not head:
        return None
    if len(head) < _LENGTH.size:
        raise ValueError("a message cut short")
    size = _LENGTH.unpack(head)[0]
    if size > MAX_MESSAGE:
        raise ValueError(f"a message of {size:,} bytes")
    data = stream.read(size)
    if len(data) < size:
        raise ValueError("a message cut short")
    message = marshal.loads(data)
    if type(message) is not tuple or not message:
        raise ValueError("not a message")
    return message


def request_items(batches: list[Pending]) -> tuple | None:
    """The batches as the process takes them, (transport, generation, packed rows, count) each;
    None when one is not made of ring threats (it is written by the store's own connection)."""
    items = []
    for b in batches:
        b = compacted(b, packed=True)
        if not b.compact:
            return None
        rows = b.events if type(b.events) is PackedRows else PackedRows(tuple(b.events))
        items.append((str(b.transport), b.generation, rows.data, len(rows)))
    return tuple(items)


class FloodWriter:
    """The store's handle on the process (used by its writer thread only). `enabled=False`: never
    usable, so every transaction stays on the writer thread (HistoryStore(flood_process=False))."""

    def __init__(self, path: Path, enabled: bool = True):
        self.path = path
        self.enabled = enabled
        self._proc: subprocess.Popen | None = None
        self._off_until = 0.0
        self._last_used = 0.0
        self.transactions = 0  # written by the process

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def cpu_seconds(self) -> float:
        """The process's CPU time so far (0 when it is not running): `kgmon bench --history` counts it."""
        import psutil

        try:
            times = psutil.Process(self.pid).cpu_times() if self.pid is not None else None
        except psutil.Error:
            return 0.0
        return times.user + times.system if times is not None else 0.0

    def idle_until(self) -> float | None:
        """When the running process will have been idle IDLE_S (monotonic); None when none runs."""
        return self._last_used + IDLE_S if self._proc is not None else None

    def usable(self) -> bool:
        return self.enabled and time.monotonic() >= self._off_until

    def write(self, items: tuple, stored_at: int, late: bool, page_limit: int) -> tuple[int, int]:
        """One transaction in the process: (threats inserted, threats that could not be stored).
        Raises the process's sqlite3.Error, or Unavailable."""
        try:
            proc = self._started()
            send(proc.stdin, ("write", page_limit, stored_at, late, items))
            answer = receive(proc.stdout)
            self._last_used = time.monotonic()
        except (OSError, ValueError, EOFError, TypeError) as exc:
            raise self._failed(f"the history's flood writer failed ({exc})") from exc
        if answer is None:
            raise self._failed(f"the history's flood writer ended (exit status {self._ended()})")
        if answer[0] == "ok" and len(answer) == 3 and all(type(n) is int and n >= 0 for n in answer[1:]):
            self.transactions += 1
            return answer[1], answer[2]
        if answer[0] == "sqlite" and len(answer) == 5:
            raise _sqlite_error(*answer[1:])
        raise self._failed("the history's flood writer answered something else than an answer")

    def stop(self) -> None:
        """End the process (its stdin closed: it ends after its transaction; killed after 10 s)."""
        proc, self._proc = self._proc, None
        if proc is not None:
            for stream in (proc.stdin, proc.stdout):
                try:
                    stream.close()
                except OSError:
                    pass
            child_process.end(proc, 10, sig=None)

    def _started(self) -> subprocess.Popen:
        if self._proc is None:
            self._proc = subprocess.Popen(child_process.kgmon_command(FLOOD_WRITER_COMMAND, str(self.path)),
                                          stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        return self._proc

    def _ended(self) -> int | None:
        return self._proc.poll() if self._proc is not None else None

    def _failed(self, why: str) -> Unavailable:
        self.stop()
        self._off_until = time.monotonic() + RETRY_S
        return Unavailable(why)


def _sqlite_error(class_name: str, code: int | None, name: str | None, message: str) -> sqlite3.Error:
    """The process's SQLite error as this process's own (db.is_corruption and is_disk_full read it)."""
    cls = getattr(sqlite3, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, sqlite3.Error)):
        cls = sqlite3.OperationalError
    exc = cls(message)
    exc.sqlite_errorcode, exc.sqlite_errorname = code, name
    return exc


# ---- in the process


def serve(path: Path, requests, answers) -> None:
    """Answer requests until `requests` ends."""
    conn: sqlite3.Connection | None = None
    page_limit = None
    try:
        while (request := receive(requests)) is not None:
            _, limit, stored_at, late, items = request
            try:
                if conn is None:
                    conn, page_limit = db.open_flood_writer(path), None
                if limit != page_limit:
                    conn.execute(f"PRAGMA max_page_count = {int(limit)}").fetchall()
                    page_limit = limit
                answer = ("ok", *_transaction(conn, stored_at, late, items))
            except sqlite3.Error as exc:
                answer = ("sqlite", type(exc).__name__, getattr(exc, "sqlite_errorcode", None),
                          getattr(exc, "sqlite_errorname", None), str(exc))
                if db.is_corruption(exc):  # the store moves the file aside: let go of it
                    conn.close()
                    conn = None
            send(answers, answer)
    finally:
        if conn is not None:
            conn.close()


def _transaction(conn: sqlite3.Connection, stored_at: int, late: bool, items: tuple) -> tuple[int, int]:
    batches = [Pending(transport, generation, PackedRows.of(data, count), True)
               for transport, generation, data, count in items]
    with db.immediate(conn):
        return inserts.write_threats(conn, batches, stored_at, late)


def main(argv: list[str]) -> int:
    """`kgmon _history-writer PATH`: serve the store on stdin and stdout."""
    if len(argv) != 1:
        print("kgmon _history-writer: the history's flood writer takes one path (the app starts it)",
              file=sys.stderr)
        return 2
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in a terminal reaches the app; it ends us
    requests, answers = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing else may write on the answers' stream
    try:
        serve(Path(argv[0]), requests, answers)
    except (ValueError, OSError) as exc:  # a broken pipe: the app is gone
        print(f"kgmon _history-writer: {exc}", file=sys.stderr)
        return 1
    return 0
