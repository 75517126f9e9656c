"""The pure-Python ring v2 (kindlyguard_monitor/ring/pyring.py) against the spec, byte for byte."""

from __future__ import annotations

import os
import platform
import struct
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kindlyguard_monitor import child_process
from kindlyguard_monitor.ring.errors import RingError, Status
from kindlyguard_monitor.ring.paths import lock_path_for
from kindlyguard_monitor.ring.pyring import (
    HEADER_SIZE,
    MAGIC,
    OFF_HEADER_CRC,
    OFF_HEARTBEAT_MONO,
    OFF_SLOT_COUNT,
    OFF_SLOT_SIZE,
    OFF_STATE,
    OFF_WAITERS,
    OFF_WRITE_SEQ,
    SLOT_TEXT_OFFSET,
    SOURCE_MAX,
    PyEvent,
    PyReader,
    PyWriter,
    crc32c,
    decode_slot,
    encode_slot,
    read_header,
)
from kindlyguard_monitor.threats import CRITICAL, HIGH, LOW, MEDIUM, Threat

REPO = Path(__file__).resolve().parents[2]
IS_ROOT = os.geteuid() == 0


def threat(i: int, **kw) -> Threat:
    """A deterministic threat for event i, so a reader can check any event it gets."""
    fields = dict(
        threat_type=i % 8,
        severity=1 + i % 4,
        blocked=i % 3 == 0,
        source=f"src-{i}",
        details=f"détails n°{i} ✓ " + "x" * (i % 50),
        timestamp_unix_us=1_700_000_000_000_000 + i,
    )
    fields.update(kw)
    return Threat(**fields)


def same(ev: PyEvent, n: int, t: Threat) -> bool:
    return (ev.seq, ev.threat_type, ev.severity, ev.blocked, ev.source, ev.details, ev.timestamp_unix_us) == (
        n, t.threat_type, t.severity, t.blocked, t.source, t.details, t.timestamp_unix_us)


def fix_header_crc(w: PyWriter) -> None:
    """After set_header_field on line 0: make header_crc right again, so only the field is wrong."""
    with open(w.path, "rb") as f:
        w.set_header_field(OFF_HEADER_CRC, "I", crc32c(f.read(56)))


def reads(path, status: Status) -> RingError:
    with pytest.raises(RingError) as info:
        PyReader.open(path)
    assert info.value.status == status, info.value
    assert info.value.detail or status in (Status.NOT_FOUND,), "detail says what is wrong"
    return info.value


@pytest.fixture
def writer(ring_dir):
    w = PyWriter.create(ring_dir / "test.shm", slot_size=256, slot_count=16)
    yield w
    w.close()


# ---- format ----

def test_crc32c_vector_and_incremental():
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(b"") == 0
    assert crc32c(b"6789", crc32c(b"12345")) == 0xE3069283


def test_header_is_laid_out_as_the_spec_says(ring_dir):
    path = ring_dir / "kindly-guard.shm"
    with PyWriter.create(path, slot_size=512, slot_count=32, generation=0x1122334455667788) as w:
        data = path.read_bytes()
        assert len(data) == 4096 + 32 * 512
        magic, version, hsize, ssize, scount, flags, gen, pid, r0, created, r1, hcrc, r2 = struct.unpack_from(
            "<IIIIIIQIIQQII", data)
        assert (magic, version, hsize, ssize, scount, flags) == (0x4B474D53, 2, 4096, 512, 32, 1)
        assert data[:4] == b"SMGK"  # "KGMS" as a little-endian u32
        assert (gen, pid, r0, r1, r2) == (0x1122334455667788, os.getpid(), 0, 0, 0)
        assert abs(created - time.time_ns()) < 60e9
        assert hcrc == crc32c(data[:56])
        write_seq, = struct.unpack_from("<Q", data, 128)
        hb_mono, hb_unix = struct.unpack_from("<QQ", data, 256)
        state, = struct.unpack_from("<I", data, 640)
        assert write_seq == 0 and state == 1
        assert 0 <= time.monotonic_ns() - hb_mono < 5e9 and abs(hb_unix - time.time_ns()) < 5e9
        # Everything else in the header is zero, and every slot is "never written".
        known = [(0, 64), (128, 136), (256, 272), (640, 644)]
        rest = bytearray(data[:HEADER_SIZE])
        for a, b in known:
            rest[a:b] = bytes(b - a)
        assert rest == bytes(HEADER_SIZE)
        assert data[HEADER_SIZE:] == bytes(32 * 512)
        # File 0600 and no temp file left; lock file beside it.
        assert path.stat().st_mode & 0o777 == 0o600
        assert sorted(p.name for p in ring_dir.iterdir()) == ["kindly-guard.lock", "kindly-guard.shm"]
        assert lock_path_for(path).exists()
        assert w.generation == 0x1122334455667788 and w.slot_size == 512 and w.slot_count == 32
        h = read_header(path)
        assert h["magic"] == MAGIC and h["file_size"] == len(data) and h["header_crc_ok"] and h["state"] == 1


def test_writer_creates_missing_directory_0700(tmp_path):
    os.chmod(tmp_path, 0o700)
    path = tmp_path / "new" / "r.shm"
    with PyWriter.create(path, slot_size=256, slot_count=16):
        assert (tmp_path / "new").stat().st_mode & 0o777 == 0o700


def test_generation_is_random_and_non_zero(ring_dir):
    gens = set()
    for _ in range(3):
        with PyWriter.create(ring_dir / "g.shm", slot_size=256, slot_count=16) as w:
            gens.add(w.generation)
            with PyReader.open(w.path) as r:
                assert r.generation == w.generation != 0 and r.writer_pid == os.getpid()
    assert len(gens) == 3


def test_slot_bytes():
    t = Threat(5, HIGH, True, "src", "détail", 123)
    raw, flags = encode_slot(7, 256, t, 999)
    assert len(raw) == 256 and flags == 0
    seq, pub, ts, tt, sev, blocked, fl, res, slen, dlen, crc = struct.unpack_from("<QQQIBBBBHHI", raw)
    assert (seq, pub, ts, tt, sev, blocked, fl, res) == (16, 999, 123, 5, HIGH, 1, 0, 0)
    assert (slen, dlen) == (3, len("détail".encode()))
    assert raw[40 : 40 + slen + dlen] == "srcdétail".encode()
    assert crc == crc32c(raw[40 : 40 + slen + dlen], crc32c(raw[8:36]))
    assert raw[40 + slen + dlen :] == bytes(256 - 40 - slen - dlen)
    assert decode_slot(raw, 7, 256) == PyEvent(7, 999, 123, 5, HIGH, True, 0, "src", "détail")
    assert decode_slot(raw, 8, 256) == "lapped"
    assert decode_slot(raw[:255], 7, 256) == "corrupt"


# ---- reading ----

def test_write_n_then_read_n(writer):
    threats = [threat(i) for i in range(10)]
    assert writer.publish(threats[:3]) == 3
    assert writer.publish(threats[3:]) == 7
    assert writer.write_seq == 10
    with PyReader.open(writer.path) as r:
        assert r.cursor == 0 and r.write_seq == 10
        events = r.read_batch()
        assert len(events) == 10 and all(same(e, i, threats[i]) for i, e in enumerate(events))
        assert (r.delivered, r.missed, r.corrupt, r.cursor) == (10, 0, 0, 10)
        assert r.read_batch() == []
        writer.publish([threat(10)])
        assert [e.seq for e in r.read_batch()] == [10]


def test_read_batch_respects_max_events(writer):
    writer.publish([threat(i) for i in range(10)])
    with PyReader.open(writer.path) as r:
        assert [e.seq for e in r.read_batch(4)] == [0, 1, 2, 3]
        assert [e.seq for e in r.read_batch(100)] == list(range(4, 10))


def test_start_newest_sees_only_new_events(writer):
    writer.publish([threat(i) for i in range(5)])
    with PyReader.open(writer.path, start="newest") as r:
        assert r.cursor == 5 and r.read_batch() == []
        writer.publish([threat(5), threat(6)])
        assert [e.seq for e in r.read_batch()] == [5, 6]
        assert r.missed == 0


def test_wrap_around_new_reader_replays_what_the_ring_holds(writer):
    # slot_count 16, 100 events: the ring holds 84..99; a new reader starts at
    # max(0, 100 - 16) = 84, so nothing it could have read is missed.
    for i in range(100):
        writer.publish([threat(i)])
    with PyReader.open(writer.path, start="oldest") as r:
        assert r.cursor == 84
        events = r.read_batch()
        assert [e.seq for e in events] == list(range(84, 100))
        assert all(same(e, e.seq, threat(e.seq)) for e in events)
        assert (r.delivered, r.missed, r.corrupt) == (16, 0, 0)


def test_reader_lapped_midway_counts_exactly_what_it_missed(writer):
    with PyReader.open(writer.path) as r:
        writer.publish([threat(i) for i in range(10)])
        assert [e.seq for e in r.read_batch(4)] == [0, 1, 2, 3]
        writer.publish([threat(i) for i in range(10, 40)])  # write_seq 40, ring holds 24..39
        events = r.read_batch()
        assert [e.seq for e in events] == list(range(24, 40))
        assert (r.delivered, r.missed, r.corrupt, r.cursor) == (20, 20, 0, 40)
        assert r.delivered + r.missed + r.corrupt == writer.write_seq


def test_slot_being_rewritten_counts_as_missed(writer):
    writer.publish([threat(i) for i in range(16)])
    with PyReader.open(writer.path) as r:
        # The writer is half-way through event 16 in slot 0: seq is 2*16+1.
        raw, _ = encode_slot(16, 256, threat(16), 0)
        writer.write_raw_slot(0, struct.pack("<Q", 33) + raw[8:])
        events = r.read_batch()
        assert [e.seq for e in events] == list(range(1, 16))
        assert (r.delivered, r.missed, r.corrupt) == (15, 1, 0)


def test_writer_stores_in_the_spec_order(writer):
    # Spy on the writer's stores: odd mark, payload (bytes 8..end), even mark
    # for each slot, then write_seq once for the whole batch.
    log = []
    real_q, real_m = writer._q, writer._m

    class Q:
        def __getitem__(self, i):
            return real_q[i]

        def __setitem__(self, i, v):
            if i not in (OFF_HEARTBEAT_MONO // 8, OFF_HEARTBEAT_MONO // 8 + 1):
                log.append(("seq", i, v))
            real_q[i] = v

    class M:
        def __getitem__(self, k):
            return real_m[k]

        def __setitem__(self, k, v):
            log.append(("payload", k.start, k.stop))
            real_m[k] = v

    writer._q, writer._m = Q(), M()
    try:
        writer.publish([threat(0), threat(1)])
    finally:
        writer._q, writer._m = real_q, real_m
    s0, s1 = HEADER_SIZE, HEADER_SIZE + 256
    assert log == [
        ("seq", s0 // 8, 1), ("payload", s0 + 8, s0 + 256), ("seq", s0 // 8, 2),
        ("seq", s1 // 8, 3), ("payload", s1 + 8, s1 + 256), ("seq", s1 // 8, 4),
        ("seq", OFF_WRITE_SEQ // 8, 2),
    ]


def test_torn_copy_counts_as_missed(writer):
    # The writer comes back to slot 1 while the reader copies it: the second
    # load of seq differs from the first, so the copy is dropped as missed.
    writer.publish([threat(i) for i in range(3)])
    with PyReader.open(writer.path) as r:
        real = r._sq
        index = (HEADER_SIZE + 256) // 8
        loads = []

        class Torn:
            def __getitem__(self, i):
                if i == index:
                    loads.append(i)
                    return real[i] if len(loads) == 1 else 2 * 17 + 1
                return real[i]

        r._sq = Torn()
        try:
            events = r.read_batch()
        finally:
            r._sq = real
        assert [e.seq for e in events] == [0, 2] and len(loads) == 2
        assert (r.delivered, r.missed, r.corrupt) == (2, 1, 0)


def test_corrupt_slot_is_skipped_and_counted(writer):
    writer.publish([threat(i) for i in range(5)])
    raw = bytearray(writer.read_raw_slot(2))
    raw[SLOT_TEXT_OFFSET + 1] ^= 0x01  # one bit of the source text
    writer.write_raw_slot(2, bytes(raw))
    with PyReader.open(writer.path) as r:
        events = r.read_batch()
        assert [e.seq for e in events] == [0, 1, 3, 4]
        assert all(same(e, e.seq, threat(e.seq)) for e in events)
        assert (r.delivered, r.missed, r.corrupt) == (4, 0, 1)


def _recrc(raw: bytearray) -> bytes:
    slen, dlen = struct.unpack_from("<HH", raw, 32)
    struct.pack_into("<I", raw, 36, crc32c(bytes(raw[40 : 40 + slen + dlen]), crc32c(bytes(raw[8:36]))))
    return bytes(raw)


@pytest.mark.parametrize(
    "offset, fmt, value",
    [(28, "B", 0), (28, "B", 5), (32, "H", SOURCE_MAX + 1), (34, "H", 256 - 104 + 1), (32, "H", 0xFFFF)],
    ids=["severity-0", "severity-5", "source_len-65", "details_len-too-long", "source_len-huge"],
)
def test_bad_fields_with_a_good_crc_are_corrupt(offset, fmt, value):
    raw = bytearray(encode_slot(3, 256, threat(3), 1)[0])
    struct.pack_into("<" + fmt, raw, offset, value)
    assert decode_slot(_recrc(raw), 3, 256) == "corrupt"


def test_unknown_threat_type_reads_as_unknown():
    raw = bytearray(encode_slot(0, 256, threat(0), 1)[0])
    struct.pack_into("<I", raw, 24, 99)
    ev = decode_slot(_recrc(raw), 0, 256)
    assert isinstance(ev, PyEvent) and ev.threat_type == 0


def test_truncation_at_utf8_boundary(writer):
    # 256-byte slots: details hold 256 - 104 = 152 bytes, source 64.
    source = "s" * 63 + "€"  # bytes 63..65 are one character: cut back to 63
    details = "d" * 150 + "😀" + "tail"  # bytes 150..153 are one character: cut back to 150
    fits = "f" * 152  # exactly full: not truncated
    writer.publish([
        Threat(4, CRITICAL, True, source, details, 1),
        Threat(4, LOW, False, "ok", fits, 2),
        Threat(4, LOW, False, "é" * 32, "é" * 76, 3),  # exactly 64 and 152 bytes
    ])
    with PyReader.open(writer.path) as r:
        cut, full, exact = r.read_batch()
    assert cut.source == "s" * 63 and cut.details == "d" * 150 and cut.flags == 3
    assert (full.details, full.flags) == (fits, 0)
    assert (exact.source, exact.details, exact.flags) == ("é" * 32, "é" * 76, 0)
    assert read_header(writer.path)["writer_truncated"] == 1
    _, flags = encode_slot(0, 256, Threat(0, LOW, False, "x" * 65, "", 0), 0)
    assert flags == 1


def test_invalid_severity_is_dropped_by_the_writer(writer):
    assert writer.publish([threat(0), threat(1, severity=0), threat(2, severity=5), threat(3)]) == 2
    h = read_header(writer.path)
    assert (h["writer_dropped"], h["write_seq"]) == (2, 2)
    with PyReader.open(writer.path) as r:
        assert [(e.seq, e.source) for e in r.read_batch()] == [(0, "src-0"), (1, "src-3")]


def test_wake_seq_bumped_only_when_someone_waits(writer):
    writer.publish([threat(0)])
    assert read_header(writer.path)["wake_seq"] == 0
    writer.set_header_field(OFF_WAITERS, "I", 1)
    writer.publish([threat(1)])
    assert read_header(writer.path)["wake_seq"] == 1
    writer.publish([])  # nothing published: nobody to wake
    assert read_header(writer.path)["wake_seq"] == 1


def test_close_marks_closed_and_wakes(ring_dir):
    w = PyWriter.create(ring_dir / "c.shm", slot_size=256, slot_count=16)
    w.close()
    w.close()  # idempotent
    h = read_header(ring_dir / "c.shm")
    assert (h["state"], h["wake_seq"]) == (2, 1)
    reads(ring_dir / "c.shm", Status.CLOSED)


# ---- hostile and broken files ----

def test_missing(ring_dir):
    reads(ring_dir / "nothing.shm", Status.NOT_FOUND)


def test_symlink(writer, ring_dir):
    link = ring_dir / "link.shm"
    link.symlink_to(writer.path)
    reads(link, Status.NOT_REGULAR)


def test_directory_at_path(ring_dir):
    (ring_dir / "d.shm").mkdir(mode=0o700)
    reads(ring_dir / "d.shm", Status.NOT_REGULAR)


@pytest.mark.parametrize("mode", [0o660, 0o604, 0o640, 0o601])
def test_file_mode_with_group_or_other_bits(writer, mode):
    os.chmod(writer.path, mode)
    err = reads(writer.path, Status.UNSAFE_MODE)
    assert f"mode {mode:04o}" in err.detail


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o702])
def test_directory_writable_by_others(writer, ring_dir, mode):
    os.chmod(ring_dir, mode)
    err = reads(writer.path, Status.UNSAFE_DIR)
    assert f"mode {mode:04o}" in err.detail


def test_group_readable_directory_is_fine(writer, ring_dir):
    os.chmod(ring_dir, 0o750)
    PyReader.open(writer.path).close()


@pytest.mark.skipif(not IS_ROOT, reason="chown to another uid needs root")
def test_file_of_another_owner(writer):
    os.chown(writer.path, 12345, -1)
    err = reads(writer.path, Status.WRONG_OWNER)
    assert "owner uid 12345" in err.detail


@pytest.mark.skipif(not IS_ROOT, reason="chown to another uid needs root")
def test_directory_of_another_owner(writer, ring_dir):
    os.chown(ring_dir, 12345, -1)
    err = reads(writer.path, Status.UNSAFE_DIR)
    assert "uid 12345" in err.detail


def test_bad_magic(writer):
    writer.set_header_field(0, "I", 0x12345678)
    fix_header_crc(writer)
    assert "magic 0x12345678" in reads(writer.path, Status.BAD_MAGIC).detail


def test_version_1(writer):
    writer.set_header_field(4, "I", 1)
    fix_header_crc(writer)
    assert "version 1" in reads(writer.path, Status.BAD_VERSION).detail


def test_bad_header_crc(writer):
    writer.set_header_field(40, "Q", 42)  # created_unix_ns changed, crc not updated
    assert "header_crc" in reads(writer.path, Status.BAD_HEADER).detail


@pytest.mark.parametrize(
    "offset, value, words",
    [
        (OFF_SLOT_COUNT, 3, "slot_count 3"),
        (OFF_SLOT_COUNT, 8, "slot_count 8"),
        (OFF_SLOT_SIZE, 1 << 20, "slot_size 1048576"),
        (OFF_SLOT_SIZE, 128, "slot_size 128"),
        (8, 8192, "header_size 8192"),
        (20, 0, "flags"),
    ],
)
def test_absurd_header_fields(writer, offset, value, words):
    writer.set_header_field(offset, "I", value)
    fix_header_crc(writer)
    assert words in reads(writer.path, Status.BAD_HEADER).detail


def test_generation_zero(writer):
    writer.set_header_field(24, "Q", 0)
    fix_header_crc(writer)
    reads(writer.path, Status.BAD_HEADER)


def test_truncated_file(writer, ring_dir):
    hostile = ring_dir / "short.shm"
    data = Path(writer.path).read_bytes()
    fd = os.open(hostile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, data[:-256])  # one slot short
    os.close(fd)
    assert f"file is {len(data) - 256} bytes, header says {len(data)}" in reads(hostile, Status.BAD_SIZE).detail


def test_file_longer_than_header_says(writer):
    with open(writer.path, "ab") as f:
        f.write(b"\0" * 256)
    reads(writer.path, Status.BAD_SIZE)


@pytest.mark.parametrize("size", [0, 63, 4095])
def test_file_under_4096_bytes(writer, ring_dir, size):
    hostile = ring_dir / "tiny.shm"
    fd = os.open(hostile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, Path(writer.path).read_bytes()[:size])
    os.close(fd)
    assert f"file is {size} bytes" in reads(hostile, Status.BAD_SIZE).detail


def test_stale_heartbeat(writer):
    writer.set_header_field(OFF_HEARTBEAT_MONO, "Q", max(0, time.monotonic_ns() - 10_000_000_000))
    reads(writer.path, Status.STALE)
    writer.heartbeat()
    PyReader.open(writer.path).close()


def test_closed_state(writer):
    writer.set_header_field(OFF_STATE, "I", 2)
    reads(writer.path, Status.CLOSED)


@pytest.mark.parametrize("state", [0, 3])
def test_unknown_state(writer, state):
    writer.set_header_field(OFF_STATE, "I", state)
    assert f"state {state}" in reads(writer.path, Status.BAD_HEADER).detail


def test_heartbeat_in_the_future_is_fresh(writer):
    writer.set_header_field(OFF_HEARTBEAT_MONO, "Q", time.monotonic_ns() + 10_000_000_000)
    with PyReader.open(writer.path) as r:
        assert r.health() == Status.OK


def test_read_header_of_tiny_or_missing_file(ring_dir):
    (ring_dir / "t").write_bytes(b"KGMS")
    with pytest.raises(RingError) as info:
        read_header(ring_dir / "t")
    assert info.value.status == Status.BAD_SIZE
    with pytest.raises(RingError) as info:
        read_header(ring_dir / "none")
    assert info.value.status == Status.NOT_FOUND
    (ring_dir / "h").write_bytes(bytes(100))
    h = read_header(ring_dir / "h")
    assert h["file_size"] == 100 and h["write_seq"] is None and not h["header_crc_ok"]


# ---- writers and replacement ----

def test_second_writer_is_locked_out(writer):
    with pytest.raises(RingError) as info:
        PyWriter.create(writer.path, slot_size=256, slot_count=16)
    assert info.value.status == Status.LOCKED and str(lock_path_for(writer.path)) in info.value.detail
    writer.close()  # lock released: a new writer may start
    PyWriter.create(writer.path, slot_size=256, slot_count=16).close()


def test_writer_refuses_unsafe_directory(tmp_path):
    d = tmp_path / "open"
    d.mkdir()
    os.chmod(d, 0o777)
    with pytest.raises(RingError) as info:
        PyWriter.create(d / "r.shm", slot_size=256, slot_count=16)
    assert info.value.status == Status.UNSAFE_DIR


def test_invalid_writer_arguments(ring_dir):
    for kw in (dict(slot_size=300), dict(slot_count=8), dict(generation=0)):
        with pytest.raises(RingError) as info:
            PyWriter.create(ring_dir / "x.shm", **kw)
        assert info.value.status == Status.INVALID


def test_health_stale_then_closed(writer):
    r = PyReader.open(writer.path)
    try:
        assert r.health() == Status.OK
        writer.set_header_field(OFF_HEARTBEAT_MONO, "Q", max(0, time.monotonic_ns() - 10_000_000_000))
        assert r.health() == Status.STALE
        writer.heartbeat()
        assert r.health() == Status.OK
        writer.close()
        assert r.health() == Status.CLOSED
    finally:
        r.close()


def test_health_replaced(ring_dir):
    # A live writer's file is renamed over by another ring (as a restarted
    # writer does after a crash): the old mapping is no longer the ring.
    path = ring_dir / "kindly-guard.shm"
    w1 = PyWriter.create(path, slot_size=256, slot_count=16)
    w2 = PyWriter.create(ring_dir / "other.shm", slot_size=256, slot_count=16)
    r = PyReader.open(path)
    try:
        w1.publish([threat(0)])
        assert r.health() == Status.OK
        os.rename(w2.path, path)
        assert r.health() == Status.REPLACED
        assert [e.seq for e in r.read_batch()] == [0]  # the old mapping still reads
        with PyReader.open(path) as r2:
            assert r2.generation == w2.generation != r.generation and r2.health() == Status.OK
        os.unlink(path)
        assert r.health() == Status.REPLACED  # nothing at the path any more
    finally:
        r.close()
        w1.close()
        w2.close()


# ---- fuzz ----

@settings(max_examples=500, deadline=None)
@given(raw=st.binary(max_size=1024), n=st.integers(), slot_size=st.integers())
def test_decode_slot_never_raises_on_random_bytes(raw, n, slot_size):
    result = decode_slot(raw, n, slot_size)
    assert isinstance(result, PyEvent) or result in ("lapped", "corrupt")


@settings(max_examples=300, deadline=None)
@given(n=st.integers(0, 2**62), flips=st.lists(st.tuples(st.integers(0, 255), st.integers(1, 255)), max_size=4),
       source=st.text(max_size=80), details=st.text(max_size=200))
def test_decode_slot_on_damaged_valid_slots(n, flips, source, details):
    t = Threat(3, MEDIUM, False, source, details, 5)
    raw, flags = encode_slot(n, 256, t, 7)
    ev = decode_slot(raw, n, 256)
    assert isinstance(ev, PyEvent)
    assert t.source.encode("utf-8", "replace").startswith(ev.source.encode())
    assert t.details.encode("utf-8", "replace").startswith(ev.details.encode())
    damaged = bytearray(raw)
    for pos, xor in flips:
        damaged[pos] ^= xor
    result = decode_slot(bytes(damaged), n, 256)
    slen, dlen = struct.unpack_from("<HH", raw, 32)
    if any(8 <= pos < 40 + slen + dlen for pos, _ in flips) and damaged[:8] == raw[:8]:
        # CRC-32C detects every error of up to 3 bits and most others; a
        # handful of byte flips that survives would be astronomically unlikely.
        assert result == "corrupt" or result == ev
    assert isinstance(result, PyEvent) or result in ("lapped", "corrupt")


# ---- a writer in another process, racing the reader ----

WRITER_SCRIPT = textwrap.dedent(
    """
    import sys, random
    from kindlyguard_monitor.ring.pyring import PyWriter
    from kindlyguard_monitor.threats import Threat
    path, total = sys.argv[1], int(sys.argv[2])
    w = PyWriter.create(path, slot_size=256, slot_count=16)
    print("ready", flush=True)
    sys.stdin.readline()
    rnd = random.Random(1)
    n = 0
    while n < total:
        k = min(rnd.randint(1, 24), total - n)
        w.publish([Threat(i % 8, 1 + i % 4, i % 3 == 0, f"src-{i}", f"détails n°{i} ✓ " + "x" * (i % 50),
                          1_700_000_000_000_000 + i) for i in range(n, n + k)])
        n += k
    w.close()
    """
)


def test_racing_writer_process_every_event_accounted_for(ring_dir):
    path = ring_dir / "race.shm"
    total = 5000
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-c", WRITER_SCRIPT, str(path), str(total)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout.readline().strip() == "ready"
        r = PyReader.open(path)
        proc.stdin.write("go\n")
        proc.stdin.flush()
        last = -1

        def check(events):
            nonlocal last
            for e in events:
                assert e.seq > last and same(e, e.seq, threat(e.seq))
                last = e.seq
            return events

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if not check(r.read_batch(64)) and r.health() == Status.CLOSED:
                check(r.read_batch())  # drain what came before the close
                break
        assert r.write_seq == total
        assert r.delivered + r.missed + r.corrupt == total
        assert r.delivered > 0
        if platform.machine() in ("x86_64", "AMD64"):
            assert r.corrupt == 0  # on x86-64 the seqlock alone never lets a torn copy through
        r.close()
    finally:
        proc.stdin.close()  # a writer still waiting for "go" ends on EOF
        child_process.end(proc, 30, sig=None)
    assert proc.returncode == 0


# ---- the C implementation (kindlyguard_monitor._ring) and this one check each other ----

try:
    from kindlyguard_monitor import _ring
except ImportError:  # not built: the pure-Python tests above still run
    _ring = None

needs_c = pytest.mark.skipif(_ring is None, reason="the C binding kindlyguard_monitor._ring is not built")

CROSS_THREATS = [
    threat(0),
    threat(1, source="s" * 63 + "€", details="d" * 150 + "😀" + "tail"),  # both cut at a boundary
    threat(2, source="é" * 32, details="é" * 76),  # exactly full
    threat(3, threat_type=7, details=""),
    threat(4, details="\u202e\u200b bidi and zero-width"),
]


def c_tuple(t: Threat) -> tuple:
    return (t.timestamp_unix_us, t.threat_type, t.severity, t.blocked, t.source, t.details)


@needs_c
def test_c_writes_the_same_bytes_as_encode_slot(ring_dir):
    path = ring_dir / "c.shm"
    w = _ring.Writer(str(path), slot_size=256, slot_count=16)
    try:
        assert w.publish([c_tuple(t) for t in CROSS_THREATS]) == len(CROSS_THREATS)
        data = path.read_bytes()
        for n, t in enumerate(CROSS_THREATS):
            slot = data[HEADER_SIZE + n * 256 : HEADER_SIZE + (n + 1) * 256]
            publish_mono, = struct.unpack_from("<Q", slot, 8)
            assert slot == encode_slot(n, 256, t, publish_mono)[0], f"slot {n}"
        h = read_header(path)
        assert (h["magic"], h["version"], h["header_size"], h["flags"], h["header_crc_ok"]) == (MAGIC, 2, 4096, 1, True)
        assert (h["write_seq"], h["writer_truncated"], h["state"]) == (len(CROSS_THREATS), 1, 1)
        with PyReader.open(path) as r:
            events = r.read_batch()
            assert r.generation == w.generation and r.writer_pid == os.getpid()
        assert [(e.source, e.details, e.flags) for e in events] == [
            (d.source, d.details, d.flags) for d in (decode_slot(encode_slot(n, 256, t, 0)[0], n, 256)
                                                     for n, t in enumerate(CROSS_THREATS))]
    finally:
        w.close()
    assert read_header(path)["state"] == 2


@needs_c
def test_c_reader_reads_what_python_writes(writer):
    writer.publish(CROSS_THREATS + [threat(i) for i in range(5, 40)])  # 40 events on 16 slots
    r = _ring.Reader(str(writer.path), start="oldest")
    try:
        events = r.poll(timeout=0)
        assert [e.seq for e in events] == list(range(24, 40))
        for e in events:
            t = threat(e.seq)
            assert (e.source, e.details, e.threat_type, e.severity, bool(e.blocked), e.timestamp_unix_us) == (
                t.source, t.details, t.threat_type, t.severity, t.blocked, t.timestamp_unix_us)
        assert (r.delivered, r.missed, r.corrupt, r.generation) == (16, 0, 0, writer.generation)
        writer.publish([threat(i) for i in range(40, 44)])  # slots 8..11
        raw = bytearray(writer.read_raw_slot(42 % 16))
        raw[SLOT_TEXT_OFFSET] ^= 0x20
        writer.write_raw_slot(42 % 16, bytes(raw))
        assert [e.seq for e in r.poll(timeout=0)] == [40, 41, 43]
        assert (r.corrupt, r.health()) == (1, Status.OK)
    finally:
        r.close()


@needs_c
def test_locks_exclude_each_other_across_implementations(ring_dir):
    path = ring_dir / "l.shm"
    with PyWriter.create(path, slot_size=256, slot_count=16):
        with pytest.raises(_ring.Error) as info:
            _ring.Writer(str(path), slot_size=256, slot_count=16)
        assert info.value.args[0] == Status.LOCKED
    w = _ring.Writer(str(path), slot_size=256, slot_count=16)
    try:
        with pytest.raises(RingError) as info2:
            PyWriter.create(path, slot_size=256, slot_count=16)
        assert info2.value.status == Status.LOCKED
    finally:
        w.close()


HOSTILE = {
    "symlink": lambda w, d: (d / "x.shm").symlink_to(w.path),
    "mode-0640": lambda w, d: os.chmod(w.path, 0o640),
    "dir-0777": lambda w, d: os.chmod(d, 0o777),
    "magic": lambda w, d: (w.set_header_field(0, "I", 0x12345678), fix_header_crc(w)),
    "version-1": lambda w, d: (w.set_header_field(4, "I", 1), fix_header_crc(w)),
    "header-crc": lambda w, d: w.set_header_field(40, "Q", 1),
    "slot_count-3": lambda w, d: (w.set_header_field(OFF_SLOT_COUNT, "I", 3), fix_header_crc(w)),
    "slot_size-2^20": lambda w, d: (w.set_header_field(OFF_SLOT_SIZE, "I", 1 << 20), fix_header_crc(w)),
    "longer": lambda w, d: open(w.path, "ab").write(b"\0" * 256),
    "stale": lambda w, d: w.set_header_field(OFF_HEARTBEAT_MONO, "Q", max(0, time.monotonic_ns() - 10**10)),
    "closed": lambda w, d: w.set_header_field(OFF_STATE, "I", 2),
    "state-0": lambda w, d: w.set_header_field(OFF_STATE, "I", 0),
    "generation-0": lambda w, d: (w.set_header_field(24, "Q", 0), fix_header_crc(w)),
    "short": lambda w, d: os.truncate(w.path, 4096 + 15 * 256),  # the writer touches no slot after this
}
if IS_ROOT:
    HOSTILE["owner-12345"] = lambda w, d: os.chown(w.path, 12345, -1)


@needs_c
@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_c_and_python_readers_refuse_the_same_way(writer, ring_dir, case):
    HOSTILE[case](writer, ring_dir)
    path = ring_dir / "x.shm" if case == "symlink" else Path(writer.path)
    with pytest.raises(RingError) as py:
        PyReader.open(path)
    with pytest.raises(_ring.Error) as c:
        _ring.Reader(str(path))
    assert Status(c.value.args[0]) == py.value.status, (c.value.args, py.value.detail)


@needs_c
@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=600), seed=st.integers(0, 2**32 - 1))
def test_crc32c_matches_c(data, seed):
    assert crc32c(data) == _ring.crc32c(data) == _ring.crc32c(data, 0, True)
    assert crc32c(data, seed) == _ring.crc32c(data, seed)


DETAILS_100 = ("abcdefghijklmnopqrstuvwxyz" * 4)[:100]  # what run_paced writes


@needs_c
def test_python_reader_racing_the_c_writer_at_full_speed(ring_dir):
    # The C writer publishes with the GIL released; the Python
    # seqlock reader is lapped constantly and must still account for every
    # event and never deliver a torn one.
    path = ring_dir / "fast.shm"
    w = _ring.Writer(str(path), slot_size=256, slot_count=16)
    total = 200_000
    r = PyReader.open(path)

    def write():  # 1 s paced at 100k/s (the reader mostly keeps up), then flat out (it mostly cannot)
        w.run_paced(100_000, total // 2, batch_max=8, details_len=100)
        w.run_paced(0, total // 2, batch_max=8, details_len=100)

    t = threading.Thread(target=write)
    t.start()
    try:
        last = -1
        while t.is_alive() or r.cursor < total:
            for e in r.read_batch(64):
                assert e.seq > last and (e.source, e.details) == ("bench:c-writer", DETAILS_100)
                last = e.seq
    finally:
        t.join()
        w.close()
        r.close()
    assert r.delivered + r.missed + r.corrupt == total
    assert r.delivered > 0
    if platform.machine() in ("x86_64", "AMD64"):
        assert r.corrupt == 0


@needs_c
def test_c_and_python_health_agree(ring_dir):
    path = ring_dir / "kindly-guard.shm"
    w1 = PyWriter.create(path, slot_size=256, slot_count=16)
    w2 = PyWriter.create(ring_dir / "next.shm", slot_size=256, slot_count=16)
    py, c = PyReader.open(path), _ring.Reader(str(path))
    try:
        def both() -> tuple[Status, Status]:
            return py.health(), Status(c.health())

        assert both() == (Status.OK, Status.OK)
        w1.set_header_field(OFF_HEARTBEAT_MONO, "Q", max(0, time.monotonic_ns() - 10_000_000_000))
        assert both() == (Status.STALE, Status.STALE)
        w1.heartbeat()
        os.rename(w2.path, path)
        assert both() == (Status.REPLACED, Status.REPLACED)
        w1.close()
        assert both() == (Status.CLOSED, Status.CLOSED)
    finally:
        py.close()
        c.close()
        w1.close()
        w2.close()
