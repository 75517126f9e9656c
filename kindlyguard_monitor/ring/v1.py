"""The Shield's own ring, format v1 (docs/shm-ring-v1.md): its facts, its
header, and whether its writer is alive.

The C reader (kindlyguard_monitor._ring.V1Reader, native/kg_v1_reader.c) does the reading,
read-only; this module answers what C should not: is anybody still writing?
v1's heartbeat is in whole seconds and moves only when an event is written,
so it cannot say that a quiet writer is alive. What can:

- the lock file beside the ring (`kindly-guard.lock`), created exclusively by
  the writer with its pid and removed when it exits cleanly. No lock file:
  the writer shut down (CLOSED). A lock file whose pid is not running, or is
  a process started after the lock file was written (the pid was reused):
  the writer died (STALE);
- without a lock file, the header's writer_pid (upstream sets it only when
  it initialises the header, so after a writer restart it names the first
  writer, not the current one: it is the fallback, not the rule);
- while a lock file exists, a write in the last two seconds (heartbeat, or
  events_written moving) proves life whatever the pids say: a writer in
  another pid namespace (a container sharing /dev/shm) has a pid that means
  nothing here. No lock file and no running header pid: it shut down.
"""

from __future__ import annotations

import os
import stat
import struct
import time
from typing import NamedTuple

import psutil

from kindlyguard_monitor.ring.errors import RingError, Status
from kindlyguard_monitor.ring.layout import read_head
from kindlyguard_monitor.ring.paths import lock_path_for

MAGIC = 0x4B474D53
VERSION = 1
HEADER_SIZE = 896
EVENT_SIZE = 344
SOURCE_LEN = 64
DETAILS_LEN = 256
LINUX_FILE_SIZE = 2 * 1024 * 1024  # what the Shield creates on Linux (1 MiB on macOS and Windows)
RECENT_WRITE_S = 2  # a write this recent proves the writer alive (the heartbeat is in whole seconds)

# offset, struct format: the header's fields (x86_64: usize is 8 bytes)
FIELDS = {
    "magic": (0, "<I"),
    "version": (4, "<I"),
    "total_size": (8, "<Q"),
    "write_pos": (128, "<Q"),
    "read_pos": (256, "<Q"),
    "events_written": (384, "<Q"),
    "events_read": (512, "<Q"),
    "last_heartbeat": (640, "<Q"),
    "writer_pid": (768, "<I"),
}
# event: timestamp_us, threat_type, severity, blocked, source, details, (2 pad), checksum, (2 + 2 pad)
EVENT = struct.Struct("<QIBB64s256s2xI4x")
assert EVENT.size == EVENT_SIZE


def peek_version(path: str | os.PathLike) -> int | None:
    """The version of the KindlyGuard ring at `path` (1 or 2 or another), or None
    when it is not a regular file starting with the magic. Never follows a link,
    never blocks on a FIFO; the real checks are the C reader's."""
    try:
        fd = os.open(os.fspath(path), os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        head = os.read(fd, 8)
    except OSError:
        return None
    finally:
        os.close(fd)
    if len(head) < 8:
        return None
    magic, version = struct.unpack("<II", head)
    return version if magic == MAGIC else None


def read_header(path: str | os.PathLike) -> dict:
    """Every v1 header field by name, plus file_size. RingError if unreadable."""
    path = os.fspath(path)
    page, file_size = read_head(path, HEADER_SIZE, directory_status=Status.IO)  # v1 reports a directory as IO
    if len(page) < HEADER_SIZE:
        raise RingError(Status.BAD_SIZE, path, f"file is {len(page)} bytes, less than the {HEADER_SIZE}-byte v1 header")
    out = {name: struct.unpack_from(fmt, page, off)[0] for name, (off, fmt) in FIELDS.items()}
    out["file_size"] = file_size
    return out


def checksum(timestamp_us: int, threat_type: int, severity: int, blocked: int, source: bytes, details: bytes) -> int:
    """The spec's wrapping sum (source and details as stored: padded or not, NULs add nothing)."""
    return ((timestamp_us & 0xFFFFFFFF) + threat_type + severity + blocked + sum(source) + sum(details)) & 0xFFFFFFFF


def read_lock(path: str | os.PathLike) -> tuple[int | None, float | None, bool]:
    """(pid, lock file mtime, exists) of the writer's lock file beside the ring."""
    lock = lock_path_for(path)
    try:
        fd = os.open(lock, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        return None, None, False
    except OSError:
        return None, None, True
    try:
        st = os.fstat(fd)
        data = os.read(fd, 32) if stat.S_ISREG(st.st_mode) else b""
    except OSError:
        return None, None, True
    finally:
        os.close(fd)
    try:
        pid = int(data.strip())
    except ValueError:
        pid = None
    return (pid if pid and pid > 0 else None), st.st_mtime, True


def process_alive(pid: int, started_by: float | None = None) -> bool:
    """Is `pid` a live (not zombie) process here, started no later than
    `started_by` (unix time, +1 s of slack) when given? Unknown counts as alive."""
    try:
        p = psutil.Process(pid)
        if p.status() == psutil.STATUS_ZOMBIE:
            return False
        return started_by is None or p.create_time() <= started_by + 1.0
    except psutil.NoSuchProcess:
        return False
    except (psutil.AccessDenied, ValueError, OSError):
        return True


class WriterState(NamedTuple):
    alive: bool
    closed: bool  # gone cleanly (no lock file): CLOSED rather than STALE
    pid: int | None  # the pid we judged by
    reason: str  # one sentence: who, and why we think so


def writer_state(path: str | os.PathLike, header: dict, now: float | None = None) -> WriterState:
    """Is a writer alive on the v1 ring at `path`, whose header is `header`?"""
    now = time.time() if now is None else now
    lock = lock_path_for(path).name
    recent = header.get("last_heartbeat", 0) >= int(now) - RECENT_WRITE_S
    pid, mtime, exists = read_lock(path)
    if pid is not None:
        if process_alive(pid, started_by=mtime):
            return WriterState(True, False, pid, f"the writer (pid {pid}, from {lock}) is running")
        if recent:
            return WriterState(True, False, pid, f"the writer (pid {pid}) is not visible from here but wrote "
                               "in the last seconds (another pid namespace?)")
        return WriterState(False, False, pid, f"the writer (pid {pid}, from {lock}) has exited")
    header_pid = header.get("writer_pid") or None
    if header_pid and process_alive(header_pid):
        how = "its lock file holds no pid" if exists else f"no {lock}"
        return WriterState(True, False, header_pid, f"the writer (pid {header_pid}, from the header; {how}) is running")
    if exists:
        if recent:
            return WriterState(True, False, header_pid, "a writer wrote in the last seconds")
        return WriterState(False, False, header_pid, f"no writer: {lock} holds no pid and the header's pid "
                           f"{header_pid} is not running")
    return WriterState(False, True, header_pid, f"the writer shut down (no {lock}; the header's pid "
                       f"{header_pid} is not running)")
