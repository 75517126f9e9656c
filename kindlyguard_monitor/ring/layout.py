"""Format v2 in Python: the layout (native/kg_layout.h as constants and structs), its
CRC-32C, and reading a ring's header by name.

Production code that needs a fact about the bytes takes it from here: doctor and
follow read the header without the C reader's health checks. The pure-Python
reader and writer for tests (pyring.py) build on the same definitions.
"""

from __future__ import annotations

import os
import struct

from .errors import RingError, Status

# ---- layout (spec "Layout"; kg_layout.h) ----
MAGIC = 0x4B474D53  # "KGMS" as a little-endian u32
VERSION = 2
HEADER_SIZE = 4096
SLOT_SIZE_MIN, SLOT_SIZE_MAX, SLOT_SIZE_DEFAULT = 256, 65536, 512
SLOT_COUNT_MIN, SLOT_COUNT_MAX, SLOT_COUNT_DEFAULT = 16, 1 << 20, 4096
FLAG_CRC32C = 1
STATE_RUNNING, STATE_CLOSED = 1, 2
HEARTBEAT_PERIOD_NS = 500_000_000
HEARTBEAT_STALE_NS = 3_000_000_000

# Header line 0: written once before the rename.
OFF_MAGIC, OFF_VERSION, OFF_HEADER_SIZE, OFF_SLOT_SIZE = 0, 4, 8, 12
OFF_SLOT_COUNT, OFF_FLAGS, OFF_GENERATION, OFF_WRITER_PID = 16, 20, 24, 32
OFF_CREATED_UNIX_NS, OFF_HEADER_CRC = 40, 56
HEADER_CRC_LEN = 56  # header_crc covers bytes 0..55
# Hot fields, each on its own 128-byte line.
OFF_WRITE_SEQ = 128
OFF_HEARTBEAT_MONO = 256
OFF_HEARTBEAT_UNIX = 264
OFF_WAKE_SEQ = 384
OFF_WAITERS = 512
OFF_STATE = 640
OFF_WRITER_DROPPED = 768
OFF_WRITER_TRUNCATED = 776

# Slot fields.
SLOT_OFF_SEQ, SLOT_OFF_PUBLISH_MONO, SLOT_OFF_TIMESTAMP, SLOT_OFF_THREAT_TYPE = 0, 8, 16, 24
SLOT_OFF_SEVERITY, SLOT_OFF_BLOCKED, SLOT_OFF_FLAGS = 28, 29, 30
SLOT_OFF_SOURCE_LEN, SLOT_OFF_DETAILS_LEN, SLOT_OFF_CRC = 32, 34, 36
SLOT_TEXT_OFFSET = 40
SOURCE_MAX = 64
EVENT_FLAG_SOURCE_TRUNCATED, EVENT_FLAG_DETAILS_TRUNCATED = 1, 2

# magic version header_size slot_size slot_count flags generation writer_pid
# reserved created_unix_ns reserved header_crc reserved
_LINE0 = struct.Struct("<IIIIIIQIIQQII")
# seq publish_mono timestamp threat_type severity blocked flags reserved
# source_len details_len crc
_SLOT = struct.Struct("<QQQIBBBBHHI")
_SLOT_CRC_HEAD = struct.Struct("<QQIBBBBHH")  # bytes 8..35, what the slot crc starts with
assert _LINE0.size == 64 and _SLOT.size == SLOT_TEXT_OFFSET and _SLOT_CRC_HEAD.size == 28

_U64 = (1 << 64) - 1


def details_max(slot_size: int) -> int:
    """Most bytes of details a slot holds (408 for 512-byte slots)."""
    return slot_size - SLOT_TEXT_OFFSET - SOURCE_MAX


# ---- CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) ----
def _crc_table() -> tuple[int, ...]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ (0x82F63B78 if c & 1 else 0)
        table.append(c)
    return tuple(table)


_CRC_TABLE = _crc_table()


def crc32c(data: bytes, crc: int = 0) -> int:
    """CRC-32C of data; pass a previous result as crc to continue it."""
    c = (crc & 0xFFFFFFFF) ^ 0xFFFFFFFF
    table = _CRC_TABLE
    for b in bytes(data):
        c = table[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


# ---- the header, by name ----
_HOT_FIELDS = (
    ("write_seq", OFF_WRITE_SEQ, "Q"), ("heartbeat_mono_ns", OFF_HEARTBEAT_MONO, "Q"),
    ("heartbeat_unix_ns", OFF_HEARTBEAT_UNIX, "Q"), ("wake_seq", OFF_WAKE_SEQ, "I"),
    ("waiters", OFF_WAITERS, "I"), ("state", OFF_STATE, "I"),
    ("writer_dropped", OFF_WRITER_DROPPED, "Q"), ("writer_truncated", OFF_WRITER_TRUNCATED, "Q"),
)


def read_head(path: str, size: int, directory_status: Status = Status.NOT_REGULAR) -> tuple[bytes, int]:
    """(the first `size` bytes, the file's size) of a ring file, for both formats'
    read_header; RingError NOT_FOUND, `directory_status` for a directory, else IO."""
    try:
        with open(path, "rb") as f:
            return f.read(size), os.fstat(f.fileno()).st_size
    except FileNotFoundError:
        raise RingError(Status.NOT_FOUND, path) from None
    except IsADirectoryError:
        raise RingError(directory_status, path, "it is a directory") from None
    except OSError as e:
        raise RingError(Status.IO, path, e.strerror or str(e)) from e


def read_header(path) -> dict:
    """Every header field by its spec name, plus file_size and header_crc_ok.
    Checks nothing but that the file holds line 0 (64 bytes); hot fields past
    the end of a short file are None."""
    path = os.fspath(path)
    page, file_size = read_head(path, HEADER_SIZE)
    if len(page) < _LINE0.size:
        raise RingError(Status.BAD_SIZE, path, f"file is {len(page)} bytes, less than the 64-byte header line")
    names = ("magic", "version", "header_size", "slot_size", "slot_count", "flags", "generation",
             "writer_pid", None, "created_unix_ns", None, "header_crc", None)
    out = {k: v for k, v in zip(names, _LINE0.unpack_from(page, 0)) if k}
    for name, off, fmt in _HOT_FIELDS:
        fits = off + struct.calcsize(fmt) <= len(page)
        out[name] = struct.unpack_from("<" + fmt, page, off)[0] if fits else None
    out["file_size"] = file_size
    out["header_crc_ok"] = crc32c(page[:HEADER_CRC_LEN]) == out["header_crc"]
    return out
