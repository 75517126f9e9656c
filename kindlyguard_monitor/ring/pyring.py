"""A pure-Python reader and writer of the shared-memory threat ring, format v2.

The contract is docs/shm-ring-v2.md (native/kg_layout.h is the same
layout as C structs). The C library in native/ is the real writer and reader;
this module exists so tests can check it byte for byte, and so
the two implementations can check each other. Linux/macOS only (mmap, flock).

Memory ordering. CPython has no fences. What this module does have:
- `memoryview(m).cast("Q")[i] = v` / `... [i]` is one aligned 8-byte store /
  load (the spec's notes: never `struct.pack_into` for write_seq or a slot's
  seq, it writes byte by byte and readers see garbage positions);
- on x86-64 (TSO) stores become visible in program order and loads are not
  reordered with other loads, which is exactly what the seqlock needs. On
  arm64 nothing here orders them: a Python reader there may, rarely, copy a
  torn slot; the CRC then counts it corrupt instead of delivering it.
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import secrets
import stat
import struct
import time
from typing import NamedTuple

from .errors import RingError, Status
from .paths import lock_path_for
from ..threats import Threat
# The layout, its CRC and the header reader live in layout.py; imported here by their old names too.
from .layout import (  # noqa: F401
    MAGIC,
    VERSION,
    HEADER_SIZE,
    SLOT_SIZE_MIN,
    SLOT_SIZE_MAX,
    SLOT_SIZE_DEFAULT,
    SLOT_COUNT_MIN,
    SLOT_COUNT_MAX,
    SLOT_COUNT_DEFAULT,
    FLAG_CRC32C,
    STATE_RUNNING,
    STATE_CLOSED,
    HEARTBEAT_PERIOD_NS,
    HEARTBEAT_STALE_NS,
    OFF_MAGIC,
    OFF_VERSION,
    OFF_HEADER_SIZE,
    OFF_SLOT_SIZE,
    OFF_SLOT_COUNT,
    OFF_FLAGS,
    OFF_GENERATION,
    OFF_WRITER_PID,
    OFF_CREATED_UNIX_NS,
    OFF_HEADER_CRC,
    HEADER_CRC_LEN,
    OFF_WRITE_SEQ,
    OFF_HEARTBEAT_MONO,
    OFF_HEARTBEAT_UNIX,
    OFF_WAKE_SEQ,
    OFF_WAITERS,
    OFF_STATE,
    OFF_WRITER_DROPPED,
    OFF_WRITER_TRUNCATED,
    SLOT_OFF_SEQ,
    SLOT_OFF_PUBLISH_MONO,
    SLOT_OFF_TIMESTAMP,
    SLOT_OFF_THREAT_TYPE,
    SLOT_OFF_SEVERITY,
    SLOT_OFF_BLOCKED,
    SLOT_OFF_FLAGS,
    SLOT_OFF_SOURCE_LEN,
    SLOT_OFF_DETAILS_LEN,
    SLOT_OFF_CRC,
    SLOT_TEXT_OFFSET,
    SOURCE_MAX,
    EVENT_FLAG_SOURCE_TRUNCATED,
    EVENT_FLAG_DETAILS_TRUNCATED,
    _LINE0,
    _SLOT,
    _SLOT_CRC_HEAD,
    _U64,
    details_max,
    crc32c,
    read_header,
)


def _is_pow2_in(v: int, lo: int, hi: int) -> bool:
    return lo <= v <= hi and v & (v - 1) == 0


# ---- one slot ----
class PyEvent(NamedTuple):
    seq: int  # the event number n (the slot's seq field holds 2n+2)
    publish_mono_ns: int
    timestamp_unix_us: int
    threat_type: int  # 0..7; other stored values read as 0 (Unknown)
    severity: int  # 1..4
    blocked: bool
    flags: int  # bit 0 source truncated, bit 1 details truncated
    source: str
    details: str


def _truncate_utf8(b: bytes, limit: int) -> tuple[bytes, bool]:
    """Cut valid UTF-8 to at most limit bytes, never inside a character."""
    if len(b) <= limit:
        return b, False
    cut = limit
    while cut > 0 and (b[cut] & 0xC0) == 0x80:  # b[cut] is a continuation byte
        cut -= 1
    return b[:cut], True


def encode_slot(n: int, slot_size: int, threat: Threat, publish_mono_ns: int) -> tuple[bytes, int]:
    """The complete bytes of slot for event n (seq = 2n+2), and its event flags."""
    if slot_size < SLOT_TEXT_OFFSET + SOURCE_MAX:
        raise ValueError(f"slot_size {slot_size} cannot hold a slot")
    if not 1 <= threat.severity <= 4:
        raise ValueError(f"severity {threat.severity} is not 1..4")
    # Lone surrogates cannot be UTF-8: they become "?".
    source, cut_s = _truncate_utf8(threat.source.encode("utf-8", "replace"), SOURCE_MAX)
    details, cut_d = _truncate_utf8(threat.details.encode("utf-8", "replace"), details_max(slot_size))
    flags = (EVENT_FLAG_SOURCE_TRUNCATED if cut_s else 0) | (EVENT_FLAG_DETAILS_TRUNCATED if cut_d else 0)
    threat_type = threat.threat_type if 0 <= threat.threat_type <= 7 else 0  # reads as Unknown anyway
    head = _SLOT_CRC_HEAD.pack(
        min(max(publish_mono_ns, 0), _U64),
        min(max(threat.timestamp_unix_us, 0), _U64),  # clamped: a u64 cannot hold more
        threat_type, threat.severity, 1 if threat.blocked else 0, flags, 0, len(source), len(details),
    )
    text = source + details
    crc = crc32c(text, crc32c(head))
    raw = struct.pack("<Q", 2 * n + 2) + head + struct.pack("<I", crc) + text
    return raw + bytes(slot_size - len(raw)), flags


def decode_slot(raw: bytes, n: int, slot_size: int) -> PyEvent | str:
    """Validate a copied slot for event n: a PyEvent, "lapped" (the slot does not
    hold complete event n) or "corrupt". Never raises, whatever the bytes."""
    if slot_size < SLOT_TEXT_OFFSET or len(raw) < slot_size:
        return "corrupt"
    seq, pub, ts, ttype, sev, blocked, flags, _res, slen, dlen, crc = _SLOT.unpack_from(raw, 0)
    if seq != 2 * n + 2:
        return "lapped"
    if slen > SOURCE_MAX or dlen > details_max(slot_size) or SLOT_TEXT_OFFSET + slen + dlen > slot_size:
        return "corrupt"
    if not 1 <= sev <= 4:
        return "corrupt"
    text = bytes(raw[SLOT_TEXT_OFFSET : SLOT_TEXT_OFFSET + slen + dlen])
    if crc32c(text, crc32c(bytes(raw[8:36]))) != crc:
        return "corrupt"
    return PyEvent(
        n, pub, ts, ttype if ttype <= 7 else 0, sev, blocked != 0, flags,
        text[:slen].decode("utf-8", "replace"), text[slen:].decode("utf-8", "replace"),
    )


# ---- health checks shared by reader and writer ----
def _check_dir(directory: str, path: str) -> None:
    try:
        st = os.stat(directory)
    except OSError as e:
        raise RingError(Status.IO, path, f"directory {directory}: {e.strerror}") from e
    if st.st_mode & 0o022:
        raise RingError(Status.UNSAFE_DIR, path, f"directory {directory} has mode {stat.S_IMODE(st.st_mode):04o}")
    if st.st_uid != os.geteuid():
        raise RingError(Status.UNSAFE_DIR, path, f"directory {directory} is owned by uid {st.st_uid}")


def _check_regular(st: os.stat_result, path: str) -> None:
    if stat.S_ISLNK(st.st_mode):
        raise RingError(Status.NOT_REGULAR, path, "it is a symbolic link")
    if not stat.S_ISREG(st.st_mode):
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else f"file type 0o{stat.S_IFMT(st.st_mode):o}"
        raise RingError(Status.NOT_REGULAR, path, f"it is {kind}")


def _check_file(st: os.stat_result, path: str) -> None:
    """Ours, no group/other bits, at least a header long."""
    if st.st_uid != os.geteuid():
        raise RingError(Status.WRONG_OWNER, path, f"owner uid {st.st_uid}, this process runs as uid {os.geteuid()}")
    if st.st_mode & 0o077:
        raise RingError(Status.UNSAFE_MODE, path, f"mode {stat.S_IMODE(st.st_mode):04o}")
    if st.st_size < HEADER_SIZE:
        raise RingError(Status.BAD_SIZE, path, f"file is {st.st_size} bytes, less than the {HEADER_SIZE}-byte header")


def _check_header(page: bytes, file_size: int, path: str) -> dict:
    """Line 0 of the header: magic, version, crc, sizes, then the exact file size."""
    (magic, version, header_size, slot_size, slot_count, flags, generation, writer_pid, _r0,
     created, _r1, header_crc, _r2) = _LINE0.unpack_from(page, 0)
    if magic != MAGIC:
        raise RingError(Status.BAD_MAGIC, path, f"magic 0x{magic:08X}, expected 0x{MAGIC:08X}")
    if version != VERSION:
        raise RingError(Status.BAD_VERSION, path, f"version {version}")
    computed = crc32c(page[:HEADER_CRC_LEN])
    if computed != header_crc:
        raise RingError(Status.BAD_HEADER, path, f"header_crc 0x{header_crc:08X}, bytes 0..55 give 0x{computed:08X}")
    if header_size != HEADER_SIZE:
        raise RingError(Status.BAD_HEADER, path, f"header_size {header_size}, expected {HEADER_SIZE}")
    if not flags & FLAG_CRC32C:
        raise RingError(Status.BAD_HEADER, path, f"flags 0x{flags:x}: CRC-32C bit not set")
    if not _is_pow2_in(slot_size, SLOT_SIZE_MIN, SLOT_SIZE_MAX):
        raise RingError(Status.BAD_HEADER, path, f"slot_size {slot_size}: not a power of two in 256..65536")
    if not _is_pow2_in(slot_count, SLOT_COUNT_MIN, SLOT_COUNT_MAX):
        raise RingError(Status.BAD_HEADER, path, f"slot_count {slot_count}: not a power of two in 16..1048576")
    if generation == 0:
        raise RingError(Status.BAD_HEADER, path, "generation 0")
    expected = HEADER_SIZE + slot_count * slot_size
    if file_size != expected:
        raise RingError(Status.BAD_SIZE, path, f"file is {file_size} bytes, header says {expected}")
    return {"slot_size": slot_size, "slot_count": slot_count, "generation": generation, "writer_pid": writer_pid}


def _stale(heartbeat_mono_ns: int) -> bool:
    # Older than 3 s. A heartbeat in the future counts as fresh, as in the C
    # reader (it is "younger than 3 s"; the spec says no more).
    return time.monotonic_ns() - heartbeat_mono_ns > HEARTBEAT_STALE_NS


def _liveness(state: int, heartbeat_mono_ns: int, writer_pid: int, path: str) -> None:
    """CLOSED if the writer said so, STALE if its heartbeat is more than 3 s old."""
    if state == STATE_CLOSED:
        raise RingError(Status.CLOSED, path, "state 2")
    if state != STATE_RUNNING:
        raise RingError(Status.BAD_HEADER, path, f"state {state}")
    if _stale(heartbeat_mono_ns):
        age = (time.monotonic_ns() - heartbeat_mono_ns) / 1e9
        raise RingError(Status.STALE, path, f"last heartbeat {age:.1f} s ago, writer pid {writer_pid}")


# ---- writer ----
class PyWriter:
    """One writer of a ring: creates it (temp file + rename, under the lock) and publishes."""

    def __init__(self, path: str, m: mmap.mmap, lock_fd: int, slot_size: int, slot_count: int, generation: int):
        self._path, self._m, self._lock_fd = path, m, lock_fd
        self._slot_size, self._slot_count, self._generation = slot_size, slot_count, generation
        self._q = memoryview(m).cast("Q")  # 8-byte atomic view: write_seq, seq, heartbeat, counters
        self._i = memoryview(m).cast("I")  # 4-byte atomic view: wake_seq, waiters, state
        self._next = 0  # number of the next event
        self._last_heartbeat = 0
        self._closed = False

    @classmethod
    def create(cls, path, slot_size: int = SLOT_SIZE_DEFAULT, slot_count: int = SLOT_COUNT_DEFAULT,
               generation: int | None = None) -> "PyWriter":
        path = os.path.abspath(os.fspath(path))
        if not _is_pow2_in(slot_size, SLOT_SIZE_MIN, SLOT_SIZE_MAX):
            raise RingError(Status.INVALID, path, f"slot_size {slot_size}: not a power of two in 256..65536")
        if not _is_pow2_in(slot_count, SLOT_COUNT_MIN, SLOT_COUNT_MAX):
            raise RingError(Status.INVALID, path, f"slot_count {slot_count}: not a power of two in 16..1048576")
        if generation is None:
            generation = 0
            while generation == 0:
                generation = secrets.randbits(64)
        elif not 0 < generation <= _U64:
            raise RingError(Status.INVALID, path, f"generation {generation}: must be a non-zero u64")

        directory = os.path.dirname(path)
        try:
            if not os.path.isdir(directory):
                os.makedirs(directory, mode=0o700, exist_ok=True)
                os.chmod(directory, 0o700)  # exactly 0700, whatever the umask
        except OSError as e:
            raise RingError(Status.IO, path, f"cannot create {directory}: {e.strerror}") from e
        _check_dir(directory, path)  # a writer in an unsafe directory writes what no reader accepts

        lock_path = str(lock_path_for(path))
        try:
            lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as e:
            raise RingError(Status.IO, path, f"lock file {lock_path}: {e.strerror}") from e
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock_fd)
            raise RingError(Status.LOCKED, path, f"lock {lock_path} is held by a running writer") from None

        tmp = f"{path}.{os.getpid()}.tmp"
        m = None
        try:
            try:
                os.unlink(tmp)  # left by a crashed writer that had our pid; we hold the lock
            except FileNotFoundError:
                pass
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            try:
                os.fchmod(fd, 0o600)
                size = HEADER_SIZE + slot_count * slot_size
                os.ftruncate(fd, size)  # zero-filled: every slot's seq is 0, "never written"
                m = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
            finally:
                os.close(fd)
            w = cls(path, m, lock_fd, slot_size, slot_count, generation)
            try:
                w._write_header()
                os.rename(tmp, path)  # readers see the old file, this one, or none: never half of one
            except BaseException:
                w._q.release()
                w._i.release()
                raise
            return w
        except BaseException as e:
            if m is not None:
                m.close()
            try:
                os.unlink(tmp)
            except OSError:
                pass
            os.close(lock_fd)  # releases the lock
            if isinstance(e, OSError):
                raise RingError(Status.IO, path, f"creating {tmp}: {e.strerror or e}") from e
            raise

    def _write_header(self) -> None:
        line0 = bytearray(_LINE0.pack(MAGIC, VERSION, HEADER_SIZE, self._slot_size, self._slot_count, FLAG_CRC32C,
                                      self._generation, os.getpid() & 0xFFFFFFFF, 0, time.time_ns(), 0, 0, 0))
        struct.pack_into("<I", line0, OFF_HEADER_CRC, crc32c(bytes(line0[:HEADER_CRC_LEN])))  # magic included
        self._m[4:64] = line0[4:]
        self._q[OFF_WRITE_SEQ // 8] = 0
        self._i[OFF_STATE // 4] = STATE_RUNNING
        self.heartbeat()
        # Magic last: a file with a magic is a whole file (the rename that
        # follows is a syscall, which orders these stores before it anyway).
        self._i[OFF_MAGIC // 4] = MAGIC

    def _live(self) -> None:
        if self._closed:
            raise ValueError("writer is closed")

    def publish(self, threats: list[Threat]) -> int:
        """Publish the threats as one batch (one write_seq store); returns how many.
        Threats whose severity is not 1..4 are refused and counted in writer_dropped."""
        self._live()
        q, m, size, mask = self._q, self._m, self._slot_size, self._slot_count - 1
        n = self._next
        for threat in threats:
            if not (isinstance(threat.severity, int) and 1 <= threat.severity <= 4):
                q[OFF_WRITER_DROPPED // 8] += 1  # only the writer stores it: load+store is enough
                continue
            raw, flags = encode_slot(n, size, threat, time.monotonic_ns())
            if flags:
                q[OFF_WRITER_TRUNCATED // 8] += 1
            base = HEADER_SIZE + (n & mask) * size
            # Odd mark first: a reader that copies while the payload changes
            # sees seq move and drops the copy. The spec's fence(release) here
            # pairs with the reader's fence(acquire) after its copy; CPython
            # has none, x86-64 keeps these stores in program order.
            q[base // 8] = 2 * n + 1
            m[base + 8 : base + size] = raw[8:]
            q[base // 8] = 2 * n + 2  # release: the payload is complete
            n += 1
        published = n - self._next
        if published:
            self._next = n
            # One 8-byte store after the batch's last slot (seq_cst in C; on
            # x86-64 ordered after the slot stores above).
            q[OFF_WRITE_SEQ // 8] = n
            if self._i[OFF_WAITERS // 4] > 0:
                self._i[OFF_WAKE_SEQ // 4] = (self._i[OFF_WAKE_SEQ // 4] + 1) & 0xFFFFFFFF
                # A Python writer cannot FUTEX_WAKE. A reader about to sleep
                # sees wake_seq changed and does not sleep; one already asleep
                # wakes at its futex timeout (100 ms) and finds the events.
        if time.monotonic_ns() - self._last_heartbeat >= HEARTBEAT_PERIOD_NS:
            self.heartbeat()
        return published

    def heartbeat(self) -> None:
        """Store both heartbeat clocks; call at least every 500 ms while idle."""
        self._live()
        self._last_heartbeat = time.monotonic_ns()
        self._q[OFF_HEARTBEAT_MONO // 8] = self._last_heartbeat
        self._q[OFF_HEARTBEAT_UNIX // 8] = time.time_ns()

    def close(self) -> None:
        """state = 2, bump wake_seq (readers' futex timeout stands in for the wake), unlock, unmap."""
        if self._closed:
            return
        self._closed = True
        self._i[OFF_STATE // 4] = STATE_CLOSED
        self._i[OFF_WAKE_SEQ // 4] = (self._i[OFF_WAKE_SEQ // 4] + 1) & 0xFFFFFFFF
        self._q.release()
        self._i.release()
        self._m.close()
        fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        os.close(self._lock_fd)

    def __enter__(self) -> "PyWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- for tests --
    def write_raw_slot(self, index: int, raw: bytes) -> None:
        """Overwrite slot index with raw bytes (at most slot_size), seq included."""
        self._live()
        if not 0 <= index < self._slot_count or len(raw) > self._slot_size:
            raise ValueError("slot index or length out of range")
        base = HEADER_SIZE + index * self._slot_size
        self._m[base : base + len(raw)] = raw

    def read_raw_slot(self, index: int) -> bytes:
        self._live()
        if not 0 <= index < self._slot_count:
            raise ValueError("slot index out of range")
        base = HEADER_SIZE + index * self._slot_size
        return self._m[base : base + self._slot_size]

    def set_header_field(self, offset: int, fmt: str, value: int) -> None:
        """Store value at offset with struct format fmt (little-endian). No crc update."""
        self._live()
        if not 0 <= offset <= HEADER_SIZE - struct.calcsize("<" + fmt):
            raise ValueError("outside the header")
        struct.pack_into("<" + fmt, self._m, offset, value)

    generation = property(lambda self: self._generation)
    path = property(lambda self: self._path)
    slot_size = property(lambda self: self._slot_size)
    slot_count = property(lambda self: self._slot_count)

    @property
    def write_seq(self) -> int:
        self._live()
        return self._q[OFF_WRITE_SEQ // 8]


# ---- reader ----
class PyReader:
    """One reader: attaches after every health check, then reads from its cursor."""

    @classmethod
    def open(cls, path, start: str = "oldest") -> "PyReader":
        path = os.path.abspath(os.fspath(path))
        if start not in ("oldest", "newest"):
            raise RingError(Status.INVALID, path, f"start {start!r}: must be 'oldest' or 'newest'")
        try:
            lst = os.lstat(path)
        except FileNotFoundError:
            raise RingError(Status.NOT_FOUND, path) from None
        except OSError as e:
            raise RingError(Status.IO, path, e.strerror) from e
        _check_regular(lst, path)
        _check_dir(os.path.dirname(path), path)
        _check_file(lst, path)
        try:
            fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            raise RingError(Status.NOT_FOUND, path) from None
        except OSError as e:
            if e.errno == errno.ELOOP:  # a link was swapped in after the lstat
                raise RingError(Status.NOT_REGULAR, path, "it is a symbolic link") from None
            raise RingError(Status.IO, path, e.strerror) from e
        header = None
        try:
            st = os.fstat(fd)
            # Again, on the file we hold: the path may have changed since lstat.
            _check_regular(st, path)
            _check_file(st, path)
            # Every check runs on a plain read: nothing is mapped until all pass.
            page = os.pread(fd, HEADER_SIZE, 0)
            if len(page) < HEADER_SIZE:
                raise RingError(Status.BAD_SIZE, path, f"file is {len(page)} bytes, less than the header")
            info = _check_header(page, st.st_size, path)
            state, = struct.unpack_from("<I", page, OFF_STATE)
            heartbeat, = struct.unpack_from("<Q", page, OFF_HEARTBEAT_MONO)
            _liveness(state, heartbeat, info["writer_pid"], path)
            # The header page read-write (only `waiters` is ever written by a
            # reader), the whole file read-only for the slots.
            header = mmap.mmap(fd, HEADER_SIZE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
            whole = mmap.mmap(fd, st.st_size, mmap.MAP_SHARED, mmap.PROT_READ)
        except BaseException as e:
            if header is not None:
                header.close()
            if isinstance(e, OSError):
                raise RingError(Status.IO, path, e.strerror or str(e)) from e
            raise
        finally:
            os.close(fd)
        return cls(path, header, whole, (st.st_dev, st.st_ino), info, start)

    def __init__(self, path, header, whole, identity, info, start):
        self.path = path
        self._header, self._whole, self._identity = header, whole, identity
        self._hq = memoryview(header).cast("Q")  # atomic 8-byte loads of write_seq, heartbeat
        self._hi = memoryview(header).cast("I")  # atomic 4-byte loads of state
        self._sq = memoryview(whole).cast("Q")  # atomic 8-byte loads of slot seq
        self.slot_size, self.slot_count = info["slot_size"], info["slot_count"]
        self.generation, self.writer_pid = info["generation"], info["writer_pid"]
        self.delivered = self.missed = self.corrupt = 0
        self._closed = False
        w = self.write_seq
        self.cursor = max(0, w - self.slot_count) if start == "oldest" else w

    def _live(self) -> None:
        if self._closed:
            raise ValueError("reader is closed")

    @property
    def write_seq(self) -> int:
        self._live()
        return self._hq[OFF_WRITE_SEQ // 8]

    def read_batch(self, max_events: int = 1024) -> list[PyEvent]:
        """Up to max_events events from the cursor (the spec's "Reading from
        cursor r"); never waits. Every event number passed over is counted once
        as delivered, missed or corrupt."""
        self._live()
        size, count, r = self.slot_size, self.slot_count, self.cursor
        events: list[PyEvent] = []
        while len(events) < max_events:
            w = self._hq[OFF_WRITE_SEQ // 8]  # acquire: pairs with the writer's write_seq store
            if w <= r:  # nothing new (w < r only if the file lies: read nothing)
                break
            if w - r > count:  # the writer has overwritten everything from r on
                self.missed += (w - count) - r
                r = w - count
            base = HEADER_SIZE + (r & (count - 1)) * size
            s1 = self._sq[base // 8]  # acquire: pairs with the writer's even-mark store
            if s1 != 2 * r + 2:  # lapped (or being written)
                self.missed += 1
                r += 1
                continue
            raw = self._whole[base : base + size]  # the copy
            # fence(acquire) in C: keeps the copy before the re-load below.
            # x86-64 never reorders loads with loads; CPython offers nothing more.
            if self._sq[base // 8] != s1:  # torn: the writer came back during the copy
                self.missed += 1
                r += 1
                continue
            result = decode_slot(raw, r, size)
            if isinstance(result, PyEvent):
                events.append(result)
                self.delivered += 1
            elif result == "lapped":  # cannot happen after the check above; counted anyway
                self.missed += 1
            else:
                self.corrupt += 1
            r += 1
        self.cursor = r
        return events

    def health(self) -> Status:
        """OK, or why this mapping is no longer worth reading. In the C reader's
        order: CLOSED, then STALE, then REPLACED (another file, or none, at the path)."""
        self._live()
        if self._hi[OFF_STATE // 4] == STATE_CLOSED:
            return Status.CLOSED
        if _stale(self._hq[OFF_HEARTBEAT_MONO // 8]):
            return Status.STALE
        try:
            st = os.lstat(self.path)
        except OSError:
            return Status.REPLACED
        return Status.OK if (st.st_dev, st.st_ino) == self._identity else Status.REPLACED

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for view in (self._hq, self._hi, self._sq):
            view.release()
        self._header.close()
        self._whole.close()

    def __enter__(self) -> "PyReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
