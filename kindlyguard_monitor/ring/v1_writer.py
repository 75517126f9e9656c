"""A writer of the Shield's v1 ring that behaves as the Shield's own does
(`kgmon demo --format v1`, the tests, the bench). Quirks kept on purpose,
from the upstream source (ipc/shm.rs, ipc/platform.rs):

- the folder is created with the process umask (0755 usually), never chmod-ed;
  the file is opened read-write (created if missing), sized, then set to 0600;
- the lock file `kindly-guard.lock` (NAME.lock for another NAME.shm) is created
  exclusively with the pid and a newline; a stale one (dead pid) is replaced;
  a live one is ignored and the writer goes on anyway; it is removed on close;
- an existing header with the right magic and version is kept as it is: the
  positions, events_written and even writer_pid (the first writer's) carry
  over a writer restart; anything else is initialised (the data area is not
  cleared);
- the heartbeat is unix seconds, stored at initialisation and on each write;
- positions wrap at the data area's size (not a multiple of 344). The event
  that does not fit before the end is written across it: upstream writes its
  tail past the end of its mapping (undefined behaviour: another mapping's
  memory or a crash). Here the part that fits is written and the tail is
  dropped, which is what a reader of the file sees either way; the next event
  starts at (pos + 344) mod D, as upstream's;
- "full" is `next > read_pos and write_pos < read_pos` (read_pos belongs to
  the upstream consuming reader): the new event is dropped;
- source and details are cut at 64 and 256 bytes, even mid-character.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import time
from pathlib import Path

from kindlyguard_monitor.ring import v1
from kindlyguard_monitor.ring.paths import lock_path_for


class V1Writer:
    def __init__(self, path: str | os.PathLike, size: int = v1.LINUX_FILE_SIZE):
        if size < v1.HEADER_SIZE + v1.EVENT_SIZE:
            raise ValueError(f"a v1 ring needs at least {v1.HEADER_SIZE + v1.EVENT_SIZE} bytes")
        self.path = Path(path)
        self.size = size
        self.data_size = size - v1.HEADER_SIZE
        self.dropped = 0  # "full": refused because the consumer's read_pos was in the way
        self.cut_short = 0  # written across the end of the file (tail lost)
        self.path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        self.lock_path = self._take_lock()
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0),
                     0o644)
        try:
            os.ftruncate(fd, size)
            os.chmod(self.path, 0o600)
            self._map = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)
        self._u64 = {name: ctypes.c_uint64.from_buffer(self._map, off)
                     for name, (off, fmt) in v1.FIELDS.items() if fmt == "<Q"}
        self.initialised = False
        magic, version = (ctypes.c_uint32.from_buffer(self._map, 0).value,
                          ctypes.c_uint32.from_buffer(self._map, 4).value)
        if magic != v1.MAGIC or version != v1.VERSION:
            self._init_header()

    def _take_lock(self) -> Path | None:
        lock = lock_path_for(self.path)
        for _ in range(2):
            try:
                fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pid, _, _ = v1.read_lock(self.path)
                if pid is not None and v1.process_alive(pid):
                    return None  # another instance: upstream logs it and carries on without the lock
                try:
                    lock.unlink()
                except OSError:
                    return None
                continue
            except OSError:
                return None
            with os.fdopen(fd, "w") as f:
                f.write(f"{os.getpid()}\n")
            return lock
        return None

    def _init_header(self) -> None:
        m = self._map
        ctypes.c_uint32.from_buffer(m, 0).value = v1.MAGIC
        ctypes.c_uint32.from_buffer(m, 4).value = v1.VERSION
        for name in ("total_size", "write_pos", "read_pos", "events_written", "events_read", "last_heartbeat"):
            self._u64[name].value = 0
        self._u64["total_size"].value = self.size
        self._u64["last_heartbeat"].value = int(time.time())
        ctypes.c_uint32.from_buffer(m, 768).value = os.getpid()
        self.initialised = True

    @property
    def events_written(self) -> int:
        return self._u64["events_written"].value

    # The demo's writer interface (as kindlyguard_monitor.ring.writer.RingWriter's)
    generation = None  # v1 has none
    write_seq = events_written

    def publish(self, threats) -> int:
        """Write each Threat as upstream's write_threat does (stamped now, as it does); returns how many went in."""
        return sum(self.write(t.threat_type, t.severity, t.blocked, t.source, t.details) for t in threats)

    def tick(self) -> None:
        """Nothing: the v1 heartbeat moves only when an event is written."""

    @staticmethod
    def event_bytes(timestamp_us: int, threat_type: int, severity: int, blocked: bool, source, details) -> bytes:
        src = (source.encode("utf-8") if isinstance(source, str) else bytes(source))[:v1.SOURCE_LEN]
        det = (details.encode("utf-8") if isinstance(details, str) else bytes(details))[:v1.DETAILS_LEN]
        b = 1 if blocked else 0
        return v1.EVENT.pack(timestamp_us, threat_type, severity, b, src, det,
                             v1.checksum(timestamp_us, threat_type, severity, b, src, det))

    def write(self, threat_type: int, severity: int, blocked: bool, source, details,
              timestamp_us: int | None = None) -> bool:
        """Write one event as upstream's write_threat does; False if "full" dropped it."""
        ts = time.time_ns() // 1000 if timestamp_us is None else timestamp_us
        return self.write_raw(self.event_bytes(ts, threat_type, severity, blocked, source, details))

    def write_raw(self, event: bytes) -> bool:
        """Write 344 prepared bytes (tests: a wrong checksum) at write_pos."""
        u = self._u64
        pos = u["write_pos"].value
        nxt = (pos + v1.EVENT_SIZE) % self.data_size
        read = u["read_pos"].value
        if nxt > read and pos < read:
            self.dropped += 1
            return False
        start = v1.HEADER_SIZE + pos
        fits = min(v1.EVENT_SIZE, self.size - start)
        self._map[start:start + fits] = event[:fits]
        if fits < v1.EVENT_SIZE:
            self.cut_short += 1
        u["write_pos"].value = nxt  # upstream: Release store
        u["events_written"].value += 1  # upstream: fetch_add(Relaxed), one writer
        u["last_heartbeat"].value = int(time.time())
        return True

    def close(self, remove_lock: bool = True) -> None:
        """Unmap and, as upstream's Drop, remove the lock file (only if we made it)."""
        if self._map is None:
            return
        self._u64 = {}
        try:
            self._map.flush()
            self._map.close()
        except BufferError:  # a ctypes view still alive somewhere: the kernel unmaps at exit
            pass
        self._map = None
        if remove_lock and self.lock_path is not None:
            try:
                self.lock_path.unlink()
            except OSError:
                pass
