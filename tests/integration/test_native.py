"""The C ring (native/, binding kindlyguard_monitor._ring) against the spec and the pure-Python
reference (kindlyguard_monitor/ring/pyring.py), byte for byte and field for field.

Self-contained: every fixture is defined here (names prefixed native_ so they
cannot clash with tests/conftest.py). No timing assertions except loose
"returns within 5 s" bounds on wake-ups.

Tests marked xfail(strict=True, reason="BUG: ...") document real bugs in the C
code or the binding; they turn into failures once the bug is fixed, so the
marker can be removed then.
"""

from __future__ import annotations

import gc
import os
import random
import stat
import struct
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc
from collections import Counter
from pathlib import Path

import psutil
import pytest

from kindlyguard_monitor import _ring
from kindlyguard_monitor.ring import pyring
from kindlyguard_monitor.ring.errors import RingError, Status
from kindlyguard_monitor.ring.pyring import (
    HEADER_SIZE,
    OFF_HEARTBEAT_MONO,
    SLOT_TEXT_OFFSET,
    SOURCE_MAX,
    PyEvent,
    PyReader,
    PyWriter,
    decode_slot,
    encode_slot,
    read_header,
)
from kindlyguard_monitor.threats import Threat

REPO = Path(__file__).resolve().parents[2]
WAKE_BOUND_S = 5.0  # the only timing bound used: a wake-up arrives within 5 s
SPECIAL_TEXTS = [
    "",
    "plain ascii",
    "bidi \u202e override \u202c end",
    "zero\u200bwidth\u200b\u200b",
    "nul\x00in\x00the\x00middle\x00",
    "emoji 😀🛡️👩‍👩‍👧 flags 🇫🇷",
    "mixed é € 😀 \u202e\u200b\x00",
    "\x00",
    "\u202e",
    "😀" * 16,  # exactly 64 bytes
]
EVENT_FIELDS = ("seq", "publish_mono_ns", "observe_mono_ns", "timestamp_unix_us", "threat_type", "severity",
                "blocked", "flags", "source", "details")


# ---------------------------------------------------------------- fixtures and helpers

@pytest.fixture
def native_ring_path(ring_dir) -> Path:
    return ring_dir / "r.shm"


@pytest.fixture
def native_writer(native_ring_path):
    w = _ring.Writer(str(native_ring_path), slot_size=256, slot_count=16)
    yield w
    w.close()


@pytest.fixture
def py_writer(ring_dir):
    """The pure-Python writer (ring/pyring.py) on a ring of its own, 16 slots of 256 bytes."""
    pw = PyWriter.create(ring_dir / "p.shm", slot_size=256, slot_count=16)
    yield pw
    pw.close()


def status_of(exc_info) -> int:
    return exc_info.value.args[0]


def ev_tuple(t: Threat) -> tuple:
    return (t.timestamp_unix_us, t.threat_type, t.severity, t.blocked, t.source, t.details)


def make_threat(i: int, **kw) -> Threat:
    fields = dict(threat_type=i % 8, severity=1 + i % 4, blocked=i % 3 == 0, source=f"src-{i}",
                  details=f"détails n°{i} ✓ " + "x" * (i % 50), timestamp_unix_us=1_700_000_000_000_000 + i)
    fields.update(kw)
    return Threat(**fields)


def read_slot(path, slot_size: int, index: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(HEADER_SIZE + index * slot_size)
        return f.read(slot_size)


def patch_file(path, offset: int, data: bytes) -> None:
    """pwrite into the ring file: the writer's MAP_SHARED mapping sees it (one page cache)."""
    fd = os.open(path, os.O_RDWR)
    try:
        assert os.pwrite(fd, data, offset) == len(data)
    finally:
        os.close(fd)


def recrc(raw: bytearray) -> bytes:
    """Make the slot crc right again after a field was changed (lengths clamped to the slot)."""
    slen, dlen = struct.unpack_from("<HH", raw, 32)
    text = bytes(raw[40 : 40 + slen + dlen])
    struct.pack_into("<I", raw, 36, pyring.crc32c(text, pyring.crc32c(bytes(raw[8:36]))))
    return bytes(raw)


def c_as_py(e) -> PyEvent:
    """A C Event with the fields a PyEvent has (no observe stamp)."""
    return PyEvent(e.seq, e.publish_mono_ns, e.timestamp_unix_us, e.threat_type, e.severity, e.blocked, e.flags,
                   e.source, e.details)


def expected_event(n: int, slot_size: int, t: Threat, publish_mono_ns: int) -> PyEvent:
    """What any reader must hand out for threat t published as event n (the reference encoder + decoder)."""
    raw, _ = encode_slot(n, slot_size, t, publish_mono_ns)
    ev = decode_slot(raw, n, slot_size)
    assert isinstance(ev, PyEvent)
    return ev


def run_python(code: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run code in a fresh interpreter (for crashes: a segfault must not take pytest down)."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


def wait_until(pred, timeout: float = WAKE_BOUND_S) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.005)
    return pred()


# ================================================================ CRC-32C

def test_status_codes_are_the_c_librarys():
    """errors.Status is kg_status (native/kg_status.h), name for name and number for number."""
    exported = {name[len("STATUS_"):]: getattr(_ring, name) for name in dir(_ring) if name.startswith("STATUS_")}
    assert exported == {s.name: s.value for s in Status}


@pytest.mark.parametrize("table", [False, True], ids=["hardware-or-default", "table"])
def test_crc32c_check_value(table):
    assert _ring.crc32c(b"123456789", 0, table) == 0xE3069283
    assert _ring.crc32c(b"", 0, table) == 0
    assert _ring.crc32c(b"6789", _ring.crc32c(b"12345", 0, table), table) == 0xE3069283


def test_crc32c_paths_agree_with_each_other_and_python_for_every_length():
    rng = random.Random(1234)
    for n in range(0, 301):
        data = rng.randbytes(n)
        hw = _ring.crc32c(data)
        assert hw == _ring.crc32c(data, 0, True) == pyring.crc32c(data), n
        # Unaligned starts: the 8-byte loop reads through memcpy, any offset works.
        for off in (1, 3, 7):
            buf = bytes(off) + data
            assert _ring.crc32c(memoryview(buf)[off:]) == hw, (n, off)
    # Default (keyword-less) call and the hardware flag are what the module says; on x86-64 the
    # flag follows the CPU (SSE4.2, looked up at run time).
    if sys.platform == "linux" and os.uname().machine == "x86_64":
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
        assert _ring.CRC_HARDWARE == int("sse4_2" in flags)
    else:
        assert _ring.CRC_HARDWARE in (0, 1)


def test_crc32c_incremental_matches_one_shot():
    rng = random.Random(99)
    for n in (0, 1, 7, 8, 9, 15, 16, 17, 63, 64, 65, 300):
        data = rng.randbytes(n)
        whole = pyring.crc32c(data)
        for cut in sorted({0, 1, n // 3, n // 2, n - 1, n} - {-1}):
            if not 0 <= cut <= n:
                continue
            a, b = data[:cut], data[cut:]
            assert _ring.crc32c(b, _ring.crc32c(a)) == whole
            assert _ring.crc32c(b, _ring.crc32c(a, 0, True), True) == whole
            # mixing the two paths: they continue each other's results
            assert _ring.crc32c(b, _ring.crc32c(a, 0, True)) == whole
            assert _ring.crc32c(b, _ring.crc32c(a), True) == whole
            assert pyring.crc32c(b, _ring.crc32c(a)) == whole


def test_crc32c_accepts_buffers_and_rejects_str():
    assert _ring.crc32c(bytearray(b"123456789")) == 0xE3069283
    assert _ring.crc32c(memoryview(b"123456789")) == 0xE3069283
    with pytest.raises(TypeError):
        _ring.crc32c("123456789")


# ================================================================ Histogram

def _bucket_samples() -> list[int]:
    vals = set(range(0, 300))
    for k in range(0, 41):
        p = 1 << k
        vals.update(v for v in (p - 2, p - 1, p, p + 1, p + 2) if 0 <= v < 1 << 40)
    rng = random.Random(7)
    vals.update(rng.randrange(1 << 40) for _ in range(3000))
    vals.update(int(2 ** rng.uniform(0, 40)) for _ in range(3000))
    return sorted(v for v in vals if v < 1 << 40)


def test_histogram_bucket_of_contains_value_and_is_narrow():
    prev = -1
    for v in _bucket_samples():
        idx, low, high = _ring.Histogram.bucket_of(v)
        assert low <= v <= high, (v, low, high)
        assert high - low + 1 <= max(1, low // 32), (v, low, high)
        assert 0 <= idx < _ring.HIST_BUCKETS
        assert idx >= prev, f"index not monotonic at {v}"
        prev = idx


def test_histogram_buckets_tile_the_range_exactly():
    # Walk bucket by bucket: each starts where the last ended, indexes count up by one.
    v, expected_idx = 0, 0
    while v < 1 << 40:
        idx, low, high = _ring.Histogram.bucket_of(v)
        assert (idx, low) == (expected_idx, v)
        assert _ring.Histogram.bucket_of(high)[0] == idx
        v, expected_idx = high + 1, expected_idx + 1
    assert expected_idx == _ring.HIST_BUCKETS


def test_histogram_percentiles_of_a_known_distribution():
    h = _ring.Histogram()
    n = 100_000
    for v in range(1, n + 1):
        h.record(v)
    assert (h.count, h.min, h.max) == (n, 1, n)
    assert h.mean == pytest.approx((n + 1) / 2)
    for p in (50, 90, 99, 99.9):
        exact = -(-p * n // 100)  # the value of rank ceil(p/100 * n) is that rank here
        got = h.percentile(p)
        assert abs(got - exact) <= 0.032 * exact, (p, got, exact)
        assert got >= exact  # the highest value of the bucket: never under-reports
    assert h.percentile(100) == h.max == n
    assert h.percentile(0) == h.min == 1
    # outside 0..100 is clamped
    assert h.percentile(150) == n and h.percentile(-5) == 1


def test_histogram_small_values_are_exact():
    h = _ring.Histogram()
    for v in (0, 0, 3, 31):
        h.record(v)
    assert (h.count, h.min, h.max, h.mean) == (4, 0, 31, 8.5)
    assert h.percentile(50) == 0 and h.percentile(75) == 3 and h.percentile(100) == 31
    assert h.buckets() == [(0, 0, 2), (3, 3, 1), (31, 31, 1)]


def test_histogram_empty():
    h = _ring.Histogram()
    assert (h.count, h.min, h.max, h.mean, h.percentile(50), h.buckets()) == (0, 0, 0, 0.0, 0, [])


def test_histogram_merge_adds():
    a, b = _ring.Histogram(), _ring.Histogram()
    for v in range(1, 1001):
        a.record(v)
    for v in range(5000, 7001):
        b.record(v * 3)
    merged = a.copy()
    merged.merge(b)
    assert merged.count == a.count + b.count == 1000 + 2001
    assert (merged.min, merged.max) == (1, 21000)
    assert merged.mean == pytest.approx((sum(range(1, 1001)) + 3 * sum(range(5000, 7001))) / 3001)
    counts = Counter()
    for lo, hi, c in a.buckets() + b.buckets():
        counts[(lo, hi)] += c
    assert {(lo, hi): c for lo, hi, c in merged.buckets()} == dict(counts)
    # merging an empty one changes nothing (its min is "none", not 0)
    before = (merged.count, merged.min, merged.max, merged.buckets())
    merged.merge(_ring.Histogram())
    assert (merged.count, merged.min, merged.max, merged.buckets()) == before
    # into an empty one: a copy
    e = _ring.Histogram()
    e.merge(b)
    assert (e.count, e.min, e.max, e.buckets()) == (b.count, b.min, b.max, b.buckets())
    with pytest.raises(TypeError):
        a.merge([1, 2, 3])


def test_histogram_reset_and_copy_are_independent():
    h = _ring.Histogram()
    for v in (10, 20, 30):
        h.record(v)
    c = h.copy()
    assert type(c) is _ring.Histogram and c is not h
    h.record(1000)
    assert (c.count, c.max) == (3, 30)
    c.record(5)
    assert (h.count, h.min) == (4, 10)
    h.reset()
    assert (h.count, h.min, h.max, h.mean, h.buckets(), h.percentile(99)) == (0, 0, 0, 0.0, [], 0)
    assert (c.count, c.min, c.max) == (4, 5, 30)
    h.record(7)  # usable after reset: min is not stuck at the old value
    assert (h.count, h.min, h.max) == (1, 7, 7)


def test_histogram_buckets_list_every_value_once():
    rng = random.Random(3)
    values = [int(2 ** rng.uniform(0, 39)) for _ in range(5000)] + [0, 1, 31, 32, 33]
    h = _ring.Histogram()
    for v in values:
        h.record(v)
    buckets = h.buckets()
    assert sum(c for _, _, c in buckets) == h.count == len(values)
    assert all(lo <= hi and c > 0 for lo, hi, c in buckets)
    assert all(buckets[i][1] < buckets[i + 1][0] for i in range(len(buckets) - 1)), "sorted, not overlapping"
    expected = Counter(_ring.Histogram.bucket_of(v)[1:] for v in values)
    assert {(lo, hi): c for lo, hi, c in buckets} == dict(expected)


def test_histogram_huge_values_land_in_the_last_bucket():
    last = _ring.HIST_BUCKETS - 1
    for v in (1 << 40, (1 << 40) + 1, 1 << 50, (1 << 64) - 1):
        assert _ring.Histogram.bucket_of(v)[0] == last
    h = _ring.Histogram()
    h.record(1 << 50)
    h.record((1 << 64) - 1)
    assert (h.count, h.min, h.max) == (2, 1 << 50, (1 << 64) - 1)
    assert h.buckets()[-1][2] == 2 and len(h.buckets()) == 1
    with pytest.raises(OverflowError):
        h.record(1 << 64)
    with pytest.raises(OverflowError):
        h.record(-1)
    assert h.count == 2
    h.percentile(float("nan"))  # must not crash


def test_histogram_p100_is_max_even_beyond_the_range():
    h = _ring.Histogram()
    h.record(1)
    h.record(1 << 50)
    assert h.percentile(100) == h.max == 1 << 50


# ================================================================ Writer

@pytest.mark.parametrize("slot_size, slot_count", [
    (0, 16), (1, 16), (128, 16), (255, 16), (257, 16), (384, 16), (131072, 16), (1 << 31, 16),
    (512, 0), (512, 1), (512, 8), (512, 15), (512, 17), (512, 24), (512, 1 << 21), (512, 1 << 31),
])
def test_writer_rejects_bad_sizes(native_ring_path, slot_size, slot_count):
    with pytest.raises(_ring.Error) as info:
        _ring.Writer(str(native_ring_path), slot_size=slot_size, slot_count=slot_count)
    assert status_of(info) == Status.INVALID == 16
    assert isinstance(info.value, OSError) and info.value.args[1]
    assert not native_ring_path.exists()


@pytest.mark.parametrize("slot_size, slot_count", [(256, 16), (65536, 16), (256, 1 << 20)])
def test_writer_accepts_the_limits(native_ring_path, slot_size, slot_count):
    w = _ring.Writer(str(native_ring_path), slot_size=slot_size, slot_count=slot_count)
    try:
        assert (w.slot_size, w.slot_count) == (slot_size, slot_count)
        assert native_ring_path.stat().st_size == HEADER_SIZE + slot_size * slot_count
    finally:
        w.close()


def test_writer_rejects_sizes_that_overflow_u32(native_ring_path):
    with pytest.raises((_ring.Error, OverflowError, ValueError)):
        w = _ring.Writer(str(native_ring_path), slot_size=(1 << 32) + 512, slot_count=16)
        w.close()


def test_writer_header_as_the_spec_says(ring_dir):
    path = ring_dir / "kindly-guard.shm"
    before_unix = time.time_ns()
    w = _ring.Writer(str(path), slot_size=512, slot_count=32)
    try:
        assert w.publish([ev_tuple(make_threat(i)) for i in range(5)]) == 5
        assert w.publish([(1, 1, 0, False, "s", "d")]) == 0  # dropped
        assert w.publish([(1, 1, 1, False, "s" * 70, "d")]) == 1  # truncated
        h = read_header(path)
        assert (h["magic"], h["version"], h["header_size"], h["slot_size"], h["slot_count"], h["flags"]) == (
            0x4B474D53, 2, 4096, 512, 32, 1)
        assert h["header_crc_ok"] and h["generation"] == w.generation != 0
        assert h["writer_pid"] == os.getpid() and h["file_size"] == 4096 + 32 * 512
        assert before_unix - 1e9 <= h["created_unix_ns"] <= time.time_ns() + 1e9
        assert (h["write_seq"], h["state"], h["writer_dropped"], h["writer_truncated"]) == (6, 1, 1, 1)
        assert (w.write_seq, w.dropped, w.truncated) == (6, 1, 1)
        assert 0 <= _ring.mono_ns() - h["heartbeat_mono_ns"] < 3e9
        assert abs(h["heartbeat_unix_ns"] - time.time_ns()) < 60e9
        data = path.read_bytes()[:HEADER_SIZE]
        rest = bytearray(data)
        for a, b in [(0, 64), (128, 136), (256, 272), (384, 388), (640, 644), (768, 784)]:
            rest[a:b] = bytes(b - a)
        assert rest == bytes(HEADER_SIZE), "everything else in the header is zero"
        assert struct.unpack_from("<III", data, 36)[0] == 0 and data[48:56] == bytes(8) and data[60:64] == bytes(4)
        # the file 0600, no temp file left, the lock beside it (kindly-guard.lock)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert sorted(p.name for p in ring_dir.iterdir()) == ["kindly-guard.lock", "kindly-guard.shm"]
        # PyReader accepts it
        with PyReader.open(path) as r:
            assert (r.generation, r.writer_pid, r.slot_size, r.slot_count) == (w.generation, os.getpid(), 512, 32)
    finally:
        w.close()


def test_writer_creates_directory_0700_and_file_0600(ring_dir):
    path = ring_dir / "new" / "r.shm"
    w = _ring.Writer(str(path), slot_size=256, slot_count=16)
    try:
        assert stat.S_IMODE((ring_dir / "new").stat().st_mode) == 0o700
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.stat().st_uid == os.geteuid()
    finally:
        w.close()


def test_writer_refuses_an_unsafe_directory(ring_dir):
    d = ring_dir / "open"
    d.mkdir()
    os.chmod(d, 0o777)
    with pytest.raises(_ring.Error) as info:
        _ring.Writer(str(d / "r.shm"), slot_size=256, slot_count=16)
    assert status_of(info) == Status.UNSAFE_DIR


def test_publish_returns_count_and_drops_invalid_severity(native_writer, native_ring_path):
    batch = [
        (1, 1, 1, False, "a", "ok-0"),
        (2, 1, 0, False, "b", "sev-0"),
        (3, 1, 5, False, "c", "sev-5"),
        (4, 1, 4, True, "d", "ok-1"),
        (5, 1, 255, False, "e", "sev-255"),
        (6, 1, 256, False, "f", "sev-256"),
        (7, 1, 2, False, "g", "ok-2"),
    ]
    assert native_writer.publish(batch) == 3
    assert (native_writer.dropped, native_writer.write_seq) == (4, 3)
    assert native_writer.publish([]) == 0 and native_writer.write_seq == 3
    assert native_writer.publish([(1, 1, 0, False, "", "")]) == 0
    assert native_writer.dropped == 5 and read_header(native_ring_path)["writer_dropped"] == 5
    r = _ring.Reader(str(native_ring_path))
    try:
        evs = r.poll(0)
        assert [(e.seq, e.details, e.severity) for e in evs] == [(0, "ok-0", 1), (1, "ok-1", 4), (2, "ok-2", 2)]
        assert (r.delivered, r.missed, r.corrupt, r.writer_dropped) == (3, 0, 0, 5)
    finally:
        r.close()


def test_publish_blocked_is_stored_as_0_or_1(native_writer, native_ring_path):
    # The binding converts `blocked` with "p" (truth value), so a blocked of 2
    # cannot reach kg_writer_publish's "blocked > 1 -> drop" check: it is stored
    # as 1. What must hold either way: no slot ever carries a blocked byte other
    # than 0 or 1, as pyring does for the same input.
    assert native_writer.publish([(1, 1, 1, 2, "s", "two"), (1, 1, 1, 0, "s", "zero"),
                                  (1, 1, 1, "yes", "s", "str")]) == 3
    for i, want in enumerate((1, 0, 1)):
        assert read_slot(native_ring_path, 256, i)[29] == want
    assert native_writer.dropped == 0


def test_publish_invalid_tuples_publish_nothing(native_writer):
    native_writer.publish([(1, 1, 1, False, "s", "d")])
    for bad in ([(1, 1, 1, False, "s")], [(1, 1, 1, False, "s", "d"), ("x", 1, 1, False, "s", "d")],
                [(1, 1, 1, False, 5, "d")], [(1, 1, 1, False, "s", "d", "extra")]):
        with pytest.raises(TypeError):
            native_writer.publish(bad)
    with pytest.raises(TypeError):
        native_writer.publish(5)
    with pytest.raises(UnicodeEncodeError):  # lone surrogate: not UTF-8 (pyring writes "?" instead)
        native_writer.publish([(1, 1, 1, False, "\ud800", "d")])
    assert native_writer.write_seq == 1 and native_writer.dropped == 0
    # any iterable of tuples works
    assert native_writer.publish(iter([(1, 1, 1, False, "s", "d")])) == 1


@pytest.mark.parametrize("item", [None, [1, 1, 1, False, "s", "d"]], ids=["None", "list"])
def test_publish_non_tuple_event_raises_type_error(native_writer, item):
    with pytest.raises(TypeError):
        native_writer.publish([item])
    assert native_writer.write_seq == 0


def test_publish_refuses_severity_that_wraps(native_writer):
    try:
        published = native_writer.publish([(1, 1, (1 << 32) + 2, False, "s", "d")])
    except (OverflowError, ValueError):
        published = 0
    assert published == 0 and native_writer.write_seq == 0


def test_c_writer_matches_pyring_for_out_of_range_integers(native_writer, native_ring_path):
    cases = [Threat(1, 1, False, "s", "ts", -1), Threat((1 << 32) + 3, 1, False, "s", "type", 5)]
    for n, t in enumerate(cases):
        try:
            native_writer.publish([ev_tuple(t)])
        except (OverflowError, ValueError):
            continue  # refusing is fine too
        slot = read_slot(native_ring_path, 256, n)
        pub = struct.unpack_from("<Q", slot, 8)[0]
        assert slot == encode_slot(n, 256, t, pub)[0], t


def _straddle_cases(limit: int):
    """(text, expected_kept, truncated) around a byte limit with 1- to 4-byte characters."""
    cases = [("a" * limit, "a" * limit, False), ("a" * (limit + 1), "a" * limit, True)]
    for ch in ("é", "€", "😀"):  # 2, 3, 4 bytes
        k = len(ch.encode())
        cases.append(("a" * (limit - k) + ch, "a" * (limit - k) + ch, False))  # fits exactly
        cases.append(("a" * (limit - k) + ch + "b", "a" * (limit - k) + ch, True))  # cut right after it
        for j in range(1, k):  # the character starts j bytes before the limit: it straddles it
            cases.append(("a" * (limit - j) + ch + "tail", "a" * (limit - j), True))
        cases.append((ch * (limit // k + 1), ch * (limit // k), True))
    return cases


@pytest.mark.parametrize("slot_size", [256, 512])
def test_truncation_at_utf8_boundaries(native_ring_path, slot_size):
    dmax = slot_size - 40 - 64
    w = _ring.Writer(str(native_ring_path), slot_size=slot_size, slot_count=256)
    r = _ring.Reader(str(native_ring_path))
    try:
        expect = []
        for text, kept, cut in _straddle_cases(SOURCE_MAX):
            expect.append((text, "d", kept, "d", 1 if cut else 0))
        for text, kept, cut in _straddle_cases(dmax):
            expect.append(("s", text, "s", kept, 2 if cut else 0))
        expect.append(("x" * 65, "y" * (dmax + 1), "x" * 64, "y" * dmax, 3))  # both cut: one event counted
        assert w.publish([(1, 1, 1, False, s, d) for s, d, *_ in expect]) == len(expect)
        evs = r.poll(0)
        assert len(evs) == len(expect)
        for n, (e, (s, d, ks, kd, flags)) in enumerate(zip(evs, expect)):
            assert (e.source, e.details, e.flags) == (ks, kd, flags), (n, s, d)
            slot = read_slot(native_ring_path, slot_size, n)
            slen, dlen = struct.unpack_from("<HH", slot, 32)
            assert (slen, dlen) == (len(ks.encode()), len(kd.encode()))
            assert slot[30] == flags
            # the reference writer cuts the same way
            assert slot == encode_slot(n, slot_size, Threat(1, 1, False, s, d, 1),
                                       struct.unpack_from("<Q", slot, 8)[0])[0]
        assert w.truncated == sum(1 for *_, f in expect if f) == read_header(native_ring_path)["writer_truncated"]
        assert r.writer_truncated == w.truncated
    finally:
        r.close()
        w.close()


def test_truncation_of_invalid_utf8_bytes_never_crosses_the_limit(native_ring_path):
    # "s#" also takes bytes: a writer may be handed anything. The cut stays within
    # the limit and matches pyring's cut rule (back over continuation bytes).
    w = _ring.Writer(str(native_ring_path), slot_size=256, slot_count=16)
    try:
        cases = [(b"\x80" * 100, b"\xff" * 300), (b"a" * 63 + b"\xf0\x9f", b"\xc3" * 153), (b"", b"\x80" * 153)]
        assert w.publish([(1, 1, 1, False, s, d) for s, d in cases]) == 3
        for n, (s, d) in enumerate(cases):
            slot = read_slot(native_ring_path, 256, n)
            lens = struct.unpack_from("<HH", slot, 32)
            want = (len(pyring._truncate_utf8(s, 64)[0]), len(pyring._truncate_utf8(d, 152)[0]))
            assert lens == want, (n, lens, want)
            assert lens[0] <= 64 and lens[1] <= 152
        r = _ring.Reader(str(native_ring_path))
        try:
            evs = r.poll(0)
            assert len(evs) == 3 and r.corrupt == 0
            assert evs[0].source == "" and evs[0].details == "\ufffd" * 152  # decoded with "replace"
        finally:
            r.close()
    finally:
        w.close()


@pytest.mark.parametrize("slot_size", [256, 512, 4096])
def test_c_writer_slot_bytes_equal_pyring_encode_slot(native_ring_path, slot_size):
    rng = random.Random(slot_size)
    count = 64
    w = _ring.Writer(str(native_ring_path), slot_size=slot_size, slot_count=count)
    try:
        threats = [random_threat(rng, i) for i in range(count)]
        for i in range(0, count, 8):  # several batches: every batch gets its own stamp
            assert w.publish([ev_tuple(t) for t in threats[i : i + 8]]) == 8
        for n, t in enumerate(threats):
            slot = read_slot(native_ring_path, slot_size, n)
            pub = struct.unpack_from("<Q", slot, 8)[0]
            raw, flags = encode_slot(n, slot_size, t, pub)
            assert slot == raw, (n, t)
            assert slot[30] == flags
    finally:
        w.close()


def test_writer_is_single_per_path(native_ring_path):
    w = _ring.Writer(str(native_ring_path), slot_size=256, slot_count=16)
    try:
        with pytest.raises(_ring.Error) as info:
            _ring.Writer(str(native_ring_path), slot_size=256, slot_count=16)
        assert status_of(info) == Status.LOCKED == 14
        with pytest.raises(RingError) as info2:  # the Python writer honours the same lock
            PyWriter.create(native_ring_path, slot_size=256, slot_count=16)
        assert info2.value.status == Status.LOCKED
        assert not w.closed and w.publish([(1, 1, 1, False, "s", "d")]) == 1  # the first one is untouched
    finally:
        w.close()
    pw = PyWriter.create(native_ring_path, slot_size=256, slot_count=16)
    try:
        with pytest.raises(_ring.Error) as info:
            _ring.Writer(str(native_ring_path), slot_size=256, slot_count=16)
        assert status_of(info) == Status.LOCKED
    finally:
        pw.close()


def test_writer_close_then_a_new_writer_with_a_new_generation(native_ring_path):
    w = _ring.Writer(str(native_ring_path), slot_size=256, slot_count=16)
    gen1 = w.generation
    w.publish([(1, 1, 1, False, "s", "d")])
    r = _ring.Reader(str(native_ring_path))
    w.close()
    w.close()  # idempotent
    assert w.closed
    h = read_header(native_ring_path)
    assert h["state"] == 2 and h["wake_seq"] >= 1 and h["generation"] == gen1
    assert r.health() == Status.CLOSED == 12
    assert [e.seq for e in r.poll(0)] == [0]  # what it left is still readable
    with pytest.raises(_ring.Error) as info:
        _ring.Reader(str(native_ring_path))
    assert status_of(info) == Status.CLOSED
    for name in ("generation", "dropped", "truncated"):
        with pytest.raises(ValueError):
            getattr(w, name)
    with pytest.raises(ValueError):
        w.publish([(1, 1, 1, False, "s", "d")])
    with pytest.raises(ValueError):
        w.tick()
    w2 = _ring.Writer(str(native_ring_path), slot_size=512, slot_count=32)
    try:
        assert w2.generation not in (0, gen1)
        assert read_header(native_ring_path)["generation"] == w2.generation
        assert r.health() in (Status.CLOSED, Status.REPLACED)  # the old mapping is the closed one
        r2 = _ring.Reader(str(native_ring_path))
        assert (r2.generation, r2.slot_size, r2.slot_count, r2.cursor) == (w2.generation, 512, 32, 0)
        r2.close()
    finally:
        w2.close()
        r.close()


def test_writer_tick_refreshes_the_heartbeat(native_writer, native_ring_path):
    r = _ring.Reader(str(native_ring_path))
    try:
        assert r.health() == Status.OK
        patch_file(native_ring_path, OFF_HEARTBEAT_MONO, struct.pack("<Q", _ring.mono_ns() - 10 * 10**9))
        assert r.health() == Status.STALE and r.heartbeat_age_ns() > 9 * 10**9
        # tick() refreshes at most every 125 ms: the writer ticks as a writer does, until it did
        assert wait_until(lambda: (native_writer.tick(), r.health() == Status.OK)[1], 5), "tick() never refreshed"
        assert r.heartbeat_age_ns() < 3 * 10**9
    finally:
        r.close()


def test_writer_reinit_does_not_crash():
    res = run_python("""
        import os, tempfile
        from kindlyguard_monitor import _ring
        d = tempfile.mkdtemp(); os.chmod(d, 0o700); import atexit, shutil; atexit.register(shutil.rmtree, d, True)
        p = os.path.join(d, "r.shm")
        w = _ring.Writer(p, slot_size=256, slot_count=16)
        try:
            w.__init__(p, slot_size=256, slot_count=16)
        except RuntimeError:
            pass
        try:
            w.publish([(1, 1, 1, False, "s", "d")])
        except ValueError:
            pass
        w.close()
        print("survived")
    """)
    assert res.returncode == 0 and "survived" in res.stdout, (res.returncode, res.stderr[-500:])


def test_writer_close_during_run_paced_does_not_crash():
    res = run_python("""
        import os, tempfile, threading, time
        from kindlyguard_monitor import _ring
        d = tempfile.mkdtemp(); os.chmod(d, 0o700); import atexit, shutil; atexit.register(shutil.rmtree, d, True)
        w = _ring.Writer(os.path.join(d, "r.shm"), slot_size=256, slot_count=16)
        out = []
        t = threading.Thread(target=lambda: out.append(w.run_paced(2000, 4000)))
        t.start()
        deadline = time.monotonic() + 30
        while w.write_seq == 0:  # run_paced() is publishing
            assert time.monotonic() < deadline, "run_paced() never published"
            time.sleep(0.001)
        try:
            w.close()
        except RuntimeError:
            pass
        t.join()
        print("survived")
    """)
    assert res.returncode == 0 and "survived" in res.stdout, (res.returncode, res.stderr[-500:])


# ================================================================ Reader

def random_text(rng: random.Random, max_chars: int) -> str:
    alphabet = ["a", "Z", "0", " ", "é", "ß", "€", "中", "😀", "🛡", "\u202e", "\u200b", "\x00", "\n", "\t", "'",
                "\"", "<", "\ufeff", "\U0010ffff"]
    return "".join(rng.choice(alphabet) for _ in range(rng.randrange(max_chars + 1)))


def random_threat(rng: random.Random, i: int) -> Threat:
    return Threat(
        threat_type=rng.randrange(8),
        severity=rng.randint(1, 4),
        blocked=rng.random() < 0.5,
        source=random_text(rng, rng.choice([5, 20, 40])),  # 40 chars of up to 4 bytes: often cut at 64
        details=random_text(rng, rng.choice([10, 100, 200])),  # often cut at 408 (or less)
        timestamp_unix_us=rng.choice([0, 1, 1_700_000_000_000_000 + i, (1 << 64) - 1, rng.randrange(1 << 64)]),
    )


def test_every_event_field_round_trips(native_ring_path):
    w = _ring.Writer(str(native_ring_path), slot_size=512, slot_count=64)
    r = _ring.Reader(str(native_ring_path))
    try:
        threats = []
        for i, text in enumerate(SPECIAL_TEXTS):
            threats.append(Threat(i % 8, 1 + i % 4, i % 2 == 0, text[:16] if len(text.encode()) > 64 else text, text,
                                  [0, 1, (1 << 64) - 1, 1_700_000_000_123_456][i % 4]))
        threats.append(Threat(7, 4, True, "\u202e" * 21, "\u200b" * 136, 42))  # 63 and 408 bytes
        t0 = _ring.mono_ns()
        assert w.publish([ev_tuple(t) for t in threats]) == len(threats)
        t1 = _ring.mono_ns()
        evs = r.poll(0)
        t2 = _ring.mono_ns()
        assert len(evs) == len(threats)
        for n, (e, t) in enumerate(zip(evs, threats)):
            assert type(e) is _ring.Event
            assert e.seq == n
            assert t0 <= e.publish_mono_ns <= t1
            assert e.publish_mono_ns <= e.observe_mono_ns <= t2
            assert (e.timestamp_unix_us, e.threat_type, e.severity, e.blocked, e.flags, e.source, e.details) == (
                t.timestamp_unix_us, t.threat_type, t.severity, t.blocked, 0, t.source, t.details)
            assert type(e.blocked) is bool and type(e.source) is str and type(e.details) is str
            assert tuple(e) == tuple(getattr(e, f) for f in EVENT_FIELDS)
        assert _ring.Event.n_fields == 10
        assert all(e.publish_mono_ns == evs[0].publish_mono_ns for e in evs), "one batch, one stamp"
    finally:
        r.close()
        w.close()


def test_unknown_threat_type_reads_as_unknown_from_c_writer(native_writer, native_ring_path):
    native_writer.publish([(1, 99, 2, False, "s", "d"), (1, 8, 2, False, "s", "d"), (1, 7, 2, False, "s", "d"),
                           (1, 0xFFFFFFFF, 2, False, "s", "d")])
    assert struct.unpack_from("<I", read_slot(native_ring_path, 256, 0), 24)[0] == 99  # stored as given
    r = _ring.Reader(str(native_ring_path))
    try:
        assert [e.threat_type for e in r.poll(0)] == [0, 0, 7, 0]
        assert r.corrupt == 0
    finally:
        r.close()


def test_unknown_threat_type_reads_as_unknown_from_raw_slot(py_writer):
    r = _ring.Reader(str(py_writer.path))
    py_writer.publish([make_threat(0), make_threat(1)])
    raw = bytearray(py_writer.read_raw_slot(1))
    struct.pack_into("<I", raw, 24, 99)
    hostile = recrc(raw)
    py_writer.write_raw_slot(1, hostile)
    evs = r.poll(0)
    assert [e.threat_type for e in evs] == [0, 0]  # make_threat(0) is type 0 anyway
    py = decode_slot(hostile, 1, 256)
    assert isinstance(py, PyEvent) and c_as_py(evs[1]) == py
    assert (r.delivered, r.corrupt) == (2, 0)
    r.close()


def test_start_newest_skips_existing(native_writer, native_ring_path):
    native_writer.publish([ev_tuple(make_threat(i)) for i in range(5)])
    r = _ring.Reader(str(native_ring_path), start="newest")
    try:
        assert r.cursor == 5 and r.poll(0) == []
        native_writer.publish([ev_tuple(make_threat(i)) for i in (5, 6)])
        assert [(e.seq, e.source) for e in r.poll(0)] == [(5, "src-5"), (6, "src-6")]
        assert (r.delivered, r.missed, r.corrupt) == (2, 0, 0)
    finally:
        r.close()
    with pytest.raises(ValueError):
        _ring.Reader(str(native_ring_path), start="middle")
    with pytest.raises(ValueError):
        _ring.Reader(str(native_ring_path), batch=0)


def test_replay_from_oldest_after_wrap(native_writer, native_ring_path):
    for i in range(100):
        native_writer.publish([ev_tuple(make_threat(i))])
    r = _ring.Reader(str(native_ring_path), start="oldest")
    try:
        assert r.cursor == 84 and r.write_seq == 100
        evs = r.poll(0)
        assert [e.seq for e in evs] == list(range(84, 100))
        assert all(e.source == f"src-{e.seq}" and e.details == make_threat(e.seq).details for e in evs)
        assert (r.delivered, r.missed, r.corrupt, r.cursor) == (16, 0, 0, 100)
    finally:
        r.close()


def test_lapped_midway_counts_exactly_what_was_missed(native_writer, native_ring_path):
    r = _ring.Reader(str(native_ring_path))
    try:
        native_writer.publish([ev_tuple(make_threat(i)) for i in range(10)])
        assert [e.seq for e in r.poll(0, 4)] == [0, 1, 2, 3]
        native_writer.publish([ev_tuple(make_threat(i)) for i in range(10, 40)])  # the ring holds 24..39
        evs = r.poll(0)
        assert [e.seq for e in evs] == list(range(24, 40))
        assert all(e.source == f"src-{e.seq}" for e in evs)
        assert (r.delivered, r.missed, r.corrupt, r.cursor) == (20, 20, 0, 40)
        # lapped by exactly one slot's worth
        native_writer.publish([ev_tuple(make_threat(i)) for i in range(40, 57)])
        assert [e.seq for e in r.poll(0)] == list(range(41, 57))
        assert (r.delivered, r.missed) == (36, 21)
        assert r.delivered + r.missed + r.corrupt == native_writer.write_seq
    finally:
        r.close()


def test_slot_being_rewritten_counts_as_missed(native_writer, native_ring_path):
    native_writer.publish([ev_tuple(make_threat(i)) for i in range(16)])
    r = _ring.Reader(str(native_ring_path))
    try:
        patch_file(native_ring_path, HEADER_SIZE, struct.pack("<Q", 2 * 16 + 1))  # slot 0: event 16 half-written
        assert [e.seq for e in r.poll(0)] == list(range(1, 16))
        assert (r.delivered, r.missed, r.corrupt) == (15, 1, 0)
    finally:
        r.close()


@pytest.mark.parametrize("kind", ["crc", "text-bit", "severity-0", "severity-5", "source_len-65",
                                  "details_len-153", "lengths-0xffff"])
def test_corrupt_slot_is_counted_and_the_rest_delivered(native_writer, native_ring_path, kind):
    native_writer.publish([ev_tuple(make_threat(i)) for i in range(10)])
    raw = bytearray(read_slot(native_ring_path, 256, 3))
    if kind == "crc":
        raw[36] ^= 0x80
    elif kind == "text-bit":
        raw[SLOT_TEXT_OFFSET + 2] ^= 0x01
    else:
        off, fmt, value = {"severity-0": (28, "B", 0), "severity-5": (28, "B", 5),
                           "source_len-65": (32, "H", 65), "details_len-153": (34, "H", 153),
                           "lengths-0xffff": (32, "HH", (0xFFFF, 0xFFFF))}[kind]
        struct.pack_into("<" + fmt, raw, off, *(value if isinstance(value, tuple) else (value,)))
        raw = bytearray(recrc(raw))
    patch_file(native_ring_path, HEADER_SIZE + 3 * 256, bytes(raw))
    assert decode_slot(bytes(raw), 3, 256) == "corrupt"
    r = _ring.Reader(str(native_ring_path))
    try:
        evs = r.poll(0)
        assert [e.seq for e in evs] == [0, 1, 2, 4, 5, 6, 7, 8, 9]
        assert all(e.source == f"src-{e.seq}" for e in evs)
        assert (r.delivered, r.missed, r.corrupt, r.cursor) == (9, 0, 1, 10)
    finally:
        r.close()


def test_poll_timeout_zero_never_waits(native_writer, native_ring_path):
    # A spin budget of 10 s (not adaptive): if poll(0) entered the wait at all it
    # would spin that long and count it in wait_stats.
    r = _ring.Reader(str(native_ring_path), spin_ns=10 * 10**9, adaptive=False)
    try:
        t0 = time.monotonic()
        for _ in range(100):
            assert r.poll(0) == []
            assert r.poll(timeout=-1) == []
        assert time.monotonic() - t0 < WAKE_BOUND_S
        assert r.wait_stats == (0, 0)
        native_writer.publish([(1, 1, 1, False, "s", "d")])
        assert [e.seq for e in r.poll(0)] == [0]
    finally:
        r.close()


def test_poll_max_events(native_writer, native_ring_path):
    native_writer.publish([ev_tuple(make_threat(i)) for i in range(12)])
    r = _ring.Reader(str(native_ring_path), batch=5)
    try:
        assert [e.seq for e in r.poll(0, max_events=3)] == [0, 1, 2]
        assert [e.seq for e in r.poll(0, 1)] == [3]
        assert [e.seq for e in r.poll(0, 100)] == [4, 5, 6, 7, 8]  # capped by batch=5
        assert [e.seq for e in r.poll(0, max_events=0)] == [9, 10, 11]
        assert r.poll(0, 2) == []
        assert (r.delivered, r.missed, r.corrupt) == (12, 0, 0)
    finally:
        r.close()


def test_latency_histograms_count_every_delivered_event(native_writer, native_ring_path):
    r = _ring.Reader(str(native_ring_path))
    try:
        for k in range(1, 6):
            native_writer.publish([ev_tuple(make_threat(i)) for i in range(k)])
            r.poll(0)
        native_writer.publish([ev_tuple(make_threat(i)) for i in range(40)])  # laps: some missed
        r.poll(0)
        assert r.missed > 0
        tl, dl = r.transport_latency, r.delivery_latency
        assert isinstance(tl, _ring.Histogram) and isinstance(dl, _ring.Histogram)
        assert tl.count == dl.count == r.delivered == 15 + 16
        assert tl.max < 60 * 10**9 and dl.max < 60 * 10**9  # stamps are one clock
    finally:
        r.close()


def test_health_ok_closed(native_ring_path):
    w = _ring.Writer(str(native_ring_path), slot_size=256, slot_count=16)
    r = _ring.Reader(str(native_ring_path))
    try:
        assert r.health() == Status.OK == 0
        assert 0 <= r.heartbeat_age_ns() < 3 * 10**9
        w.close()
        assert r.health() == Status.CLOSED == 12
    finally:
        r.close()
        w.close()


def test_health_replaced(ring_dir):
    path = ring_dir / "r.shm"
    w = _ring.Writer(str(path), slot_size=256, slot_count=16)
    r = _ring.Reader(str(path))
    try:
        other = PyWriter.create(ring_dir / "other.shm", slot_size=256, slot_count=16)
        os.rename(other.path, path)
        assert r.health() == Status.REPLACED == 13
        other.close()
        os.unlink(path)
        assert r.health() == Status.REPLACED  # nothing at the path at all
    finally:
        r.close()
        w.close()


def test_health_stale(py_writer):
    r = _ring.Reader(str(py_writer.path))
    assert r.health() == Status.OK
    py_writer.set_header_field(OFF_HEARTBEAT_MONO, "Q", _ring.mono_ns() - 10 * 10**9)
    assert r.health() == Status.STALE == 11
    assert r.heartbeat_age_ns() >= 10 * 10**9
    with pytest.raises(_ring.Error) as info:
        _ring.Reader(str(py_writer.path))
    assert status_of(info) == Status.STALE
    py_writer.set_header_field(OFF_HEARTBEAT_MONO, "Q", _ring.mono_ns() + 10 * 10**9)  # future: fresh, as in the spec
    assert r.health() == Status.OK
    r.close()


def _woken_poll(r, wake, what: str) -> list:
    """What a poll(timeout=30) of `r` in a thread returned when wake() was called once it slept
    (it must end)."""
    out = []
    t = threading.Thread(target=lambda: out.append(r.poll(timeout=30)))
    t.start()
    assert wait_until(lambda: r.wait_stats[1] > 0), "the poll never went to sleep"
    wake()
    t.join(WAKE_BOUND_S)
    assert not t.is_alive(), f"{what} did not end poll(timeout=30)"
    return out[0]


def test_stop_from_another_thread_ends_a_long_poll(native_writer, native_ring_path):
    for spin in (0, 50_000):
        r = _ring.Reader(str(native_ring_path), start="newest", spin_ns=spin)
        try:
            assert _woken_poll(r, r.stop, "stop()") == []
            # stopped: a poll does not wait; resume() makes it wait and read again
            assert r.poll(timeout=30) == []
            r.resume()
            native_writer.publish([(1, 1, 1, False, "s", "after")])
            assert [e.details for e in r.poll(timeout=30)] == ["after"]
        finally:
            r.close()


def test_publish_wakes_a_long_poll(native_writer, native_ring_path):
    r = _ring.Reader(str(native_ring_path), spin_ns=0)  # sleep on the futex at once
    try:
        got = _woken_poll(r, lambda: native_writer.publish([(1, 1, 1, False, "s", "wake")]), "publish")
        assert [e.details for e in got] == ["wake"]
    finally:
        r.stop()
        r.close()


def test_python_writer_wakes_a_long_poll(py_writer):
    # A Python writer cannot FUTEX_WAKE: the reader finds the event at its 100 ms futex timeout.
    r = _ring.Reader(str(py_writer.path), spin_ns=0)
    got = _woken_poll(r, lambda: py_writer.publish([make_threat(5)]), "a Python writer's publish")
    assert [(e.seq, e.source) for e in got] == [(0, "src-5")]
    r.close()


def test_writer_close_wakes_a_long_poll(native_ring_path):
    w = _ring.Writer(str(native_ring_path), slot_size=256, slot_count=16)
    r = _ring.Reader(str(native_ring_path), spin_ns=0)
    try:
        assert _woken_poll(r, w.close, "the writer's close") == []
        assert r.poll(timeout=30) == []  # closed: returns at once, not after 30 s
        assert r.health() == Status.CLOSED
    finally:
        r.close()
        w.close()


def test_concurrent_poll_and_close_raise_runtime_error(native_writer, native_ring_path):
    r = _ring.Reader(str(native_ring_path), spin_ns=0)
    try:
        out = []
        t = threading.Thread(target=lambda: out.append(r.poll(timeout=5)))
        t.start()
        assert wait_until(lambda: r.wait_stats[1] > 0)
        with pytest.raises(RuntimeError):
            r.poll(0)
        with pytest.raises(RuntimeError):
            r.close()
        assert not r.closed
        r.stop()
        t.join(WAKE_BOUND_S)
        assert not t.is_alive() and out == [[]]
        r.resume()
        native_writer.publish([(1, 1, 1, False, "s", "d")])
        assert len(r.poll(0)) == 1  # usable again
    finally:
        r.stop()
        r.close()


def test_closed_reader_raises_value_error(native_writer, native_ring_path):
    r = _ring.Reader(str(native_ring_path))
    r.close()
    r.close()  # idempotent
    assert r.closed
    for name in ("delivered", "missed", "corrupt", "cursor", "generation", "writer_pid", "slot_size", "slot_count",
                 "write_seq", "writer_dropped", "writer_truncated"):
        with pytest.raises(ValueError):
            getattr(r, name)
    for call in (lambda: r.poll(0), lambda: r.poll(1), r.health, r.heartbeat_age_ns):
        with pytest.raises(ValueError):
            call()
    r.stop()  # harmless
    r.resume()


def test_reader_reinit_during_poll_raises():
    res = run_python("""
        import os, tempfile, threading, time
        from kindlyguard_monitor import _ring
        d = tempfile.mkdtemp(); os.chmod(d, 0o700); import atexit, shutil; atexit.register(shutil.rmtree, d, True)
        w = _ring.Writer(os.path.join(d, "a.shm"), slot_size=256, slot_count=16)
        w2 = _ring.Writer(os.path.join(d, "b.shm"), slot_size=1024, slot_count=1024)
        r = _ring.Reader(os.path.join(d, "a.shm"), spin_ns=0)
        t = threading.Thread(target=lambda: r.poll(2))
        t.start()
        deadline = time.monotonic() + 30
        while r.wait_stats[1] == 0:  # the poll sleeps
            assert time.monotonic() < deadline, "the poll never went to sleep"
            time.sleep(0.001)
        try:
            r.__init__(os.path.join(d, "b.shm"))
            print("reinit accepted")
        except RuntimeError:
            print("RuntimeError")
        r.stop()
        w2.publish([(1, 1, 1, False, "s", "d")] * 5)
        t.join()
        print("survived")
    """)
    assert res.returncode == 0 and "RuntimeError" in res.stdout, (res.returncode, res.stdout, res.stderr[-500:])


def test_uninitialised_reader_does_not_crash():
    res = run_python("""
        from kindlyguard_monitor import _ring
        r = _ring.Reader.__new__(_ring.Reader)
        assert r.closed
        try:
            r.transport_latency, r.delivery_latency
        except (ValueError, AttributeError):
            pass
        print("survived")
    """)
    assert res.returncode == 0 and "survived" in res.stdout, (res.returncode, res.stderr[-500:])


def test_reader_refuses_bad_files(ring_dir):
    with pytest.raises(_ring.Error) as info:
        _ring.Reader(str(ring_dir / "none.shm"))
    assert status_of(info) == Status.NOT_FOUND
    (ring_dir / "d.shm").mkdir()
    with pytest.raises(_ring.Error) as info:
        _ring.Reader(str(ring_dir / "d.shm"))
    assert status_of(info) == Status.NOT_REGULAR
    w = _ring.Writer(str(ring_dir / "r.shm"), slot_size=256, slot_count=16)
    try:
        (ring_dir / "link.shm").symlink_to(ring_dir / "r.shm")
        with pytest.raises(_ring.Error) as info:
            _ring.Reader(str(ring_dir / "link.shm"))
        assert status_of(info) == Status.NOT_REGULAR
        os.chmod(ring_dir / "r.shm", 0o640)
        with pytest.raises(_ring.Error) as info:
            _ring.Reader(str(ring_dir / "r.shm"))
        assert status_of(info) == Status.UNSAFE_MODE
        os.chmod(ring_dir / "r.shm", 0o600)
        os.chmod(ring_dir, 0o770)
        with pytest.raises(_ring.Error) as info:
            _ring.Reader(str(ring_dir / "r.shm"))
        assert status_of(info) == Status.UNSAFE_DIR
        os.chmod(ring_dir, 0o700)
        if os.geteuid() == 0:
            os.chown(ring_dir / "r.shm", 12345, 12345)
            with pytest.raises(_ring.Error) as info:
                _ring.Reader(str(ring_dir / "r.shm"))
            assert status_of(info) == Status.WRONG_OWNER
            os.chown(ring_dir / "r.shm", 0, 0)
        _ring.Reader(str(ring_dir / "r.shm")).close()
    finally:
        os.chmod(ring_dir, 0o700)
        w.close()


def test_concurrent_c_writer_and_reader_account_for_every_event(native_ring_path):
    # run_paced publishes with the GIL released while this thread polls: torn
    # copies must be counted missed (seqlock), never corrupt, never delivered.
    count = 200_000
    w = _ring.Writer(str(native_ring_path), slot_size=256, slot_count=1024)
    r = _ring.Reader(str(native_ring_path), batch=256)
    try:
        t = threading.Thread(target=w.run_paced, args=(0, count), kwargs={"batch_max": 64, "details_len": 100})
        t.start()
        expected_details = "".join(chr(ord("a") + i % 26) for i in range(100))
        last = -1
        deadline = time.monotonic() + 60
        while (t.is_alive() or r.cursor < w.write_seq) and time.monotonic() < deadline:
            for e in r.poll(0.05):
                assert e.seq > last
                last = e.seq
                assert (e.source, e.details, e.threat_type, e.severity, e.blocked) == (
                    "bench:c-writer", expected_details, 4, 3, True)
        t.join()
        r.poll(0)
        assert w.write_seq == count
        assert r.corrupt == 0
        assert r.delivered + r.missed + r.corrupt == count and r.delivered > 0
    finally:
        r.close()
        w.close()


# ================================================================ C <-> Python, 1000 random threats

def test_python_writer_to_c_reader_1000_random_threats(ring_dir):
    rng = random.Random(20240611)
    threats = [random_threat(rng, i) for i in range(1000)]
    pw = PyWriter.create(ring_dir / "p.shm", slot_size=512, slot_count=256)
    try:
        r = _ring.Reader(str(pw.path))
        pr = PyReader.open(pw.path)
        got_c, got_py = [], []
        for i in range(0, 1000, 100):
            assert pw.publish(threats[i : i + 100]) == 100
            got_c += r.poll(0)
            got_py += pr.read_batch(1000)
        assert len(got_c) == len(got_py) == 1000
        assert (r.delivered, r.missed, r.corrupt) == (1000, 0, 0)
        for n, (c, p, t) in enumerate(zip(got_c, got_py, threats)):
            assert c_as_py(c) == p == expected_event(n, 512, t, p.publish_mono_ns), n
        pr.close()
        r.close()
    finally:
        pw.close()


def test_c_writer_to_python_reader_1000_random_threats(native_ring_path):
    rng = random.Random(777)
    threats = [random_threat(rng, i) for i in range(1000)]
    w = _ring.Writer(str(native_ring_path), slot_size=512, slot_count=256)
    try:
        pr = PyReader.open(native_ring_path)
        r = _ring.Reader(str(native_ring_path))
        got_py, got_c = [], []
        for i in range(0, 1000, 100):
            assert w.publish([ev_tuple(t) for t in threats[i : i + 100]]) == 100
            got_py += pr.read_batch(1000)
            got_c += r.poll(0)
        assert len(got_py) == len(got_c) == 1000
        assert (pr.delivered, pr.missed, pr.corrupt) == (1000, 0, 0)
        for n, (p, c, t) in enumerate(zip(got_py, got_c, threats)):
            assert p == c_as_py(c) == expected_event(n, 512, t, p.publish_mono_ns), n
        assert w.truncated == sum(1 for p in got_py if p.flags)
        pr.close()
        r.close()
    finally:
        w.close()


# ================================================================ leaks

def _traced(fn, warmup: int, rounds: int) -> int:
    tracemalloc.start()
    try:
        for _ in range(warmup):
            fn()
        gc.collect()
        a = tracemalloc.get_traced_memory()[0]
        for _ in range(rounds):
            fn()
        gc.collect()
        b = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return b - a


def test_poll_and_publish_do_not_leak(native_ring_path):
    w = _ring.Writer(str(native_ring_path), slot_size=512, slot_count=8192)
    r = _ring.Reader(str(native_ring_path), batch=4096)
    counter = iter(range(10**9))
    try:
        def one_round():
            k = next(counter)
            # fresh tuples and strings every round: a leaked reference keeps them alive
            batch = [(k * 4096 + i, i % 8, 1 + i % 4, i % 2 == 0, f"src-{k}-{i % 7}", f"details {k} {i} " * 3)
                     for i in range(4096)]
            assert w.publish(batch) == 4096
            evs = r.poll(0)
            assert len(evs) == 4096
        grown = _traced(one_round, 5, 15)
        assert grown < 1 << 20, f"{grown} bytes kept after 15 rounds of 4096 events"
        assert r.missed == 0 and r.corrupt == 0
    finally:
        r.close()
        w.close()


def test_no_extra_references_on_published_or_polled_objects(native_ring_path):
    w = _ring.Writer(str(native_ring_path), slot_size=512, slot_count=1024)
    r = _ring.Reader(str(native_ring_path))
    try:
        src = "".join(["source-", "refcount"])  # a fresh, non-interned str
        det = "".join(["details-", "refcount"])
        tup = (123456789, 1, 2, False, src, det)
        batch = [tup] * 100
        rc = (sys.getrefcount(src), sys.getrefcount(det), sys.getrefcount(tup), sys.getrefcount(batch))
        for _ in range(10):
            w.publish(batch)
        assert (sys.getrefcount(src), sys.getrefcount(det), sys.getrefcount(tup), sys.getrefcount(batch)) == rc
        evs = r.poll(0)
        assert len(evs) == 1000
        e = evs[-1]
        del evs
        gc.collect()
        # (counts taken outside `assert`: pytest's rewriting keeps intermediates alive)
        rc_event = sys.getrefcount(e)
        assert rc_event == 2  # the name and the argument: the list is gone
        rc_seq = sys.getrefcount(e[0])
        assert rc_seq == 2  # seq 999: a fresh int owned by the event only (+ the argument)
        rc_details = sys.getrefcount(e[9])
        assert rc_details == 2  # details: owned by the event only
        shared_ts = e[3]
        rc_ts = sys.getrefcount(shared_ts)
        assert rc_ts == 3  # the event, our name, the argument (the other 999 events are gone)
        rc_source = sys.getrefcount(e[8])
        assert rc_source == 3  # the event, the reader's source cache, the argument
        r.close()
        rc_source = sys.getrefcount(e[8])
        assert rc_source == 2  # close() drops the cache's reference
    finally:
        r.close()
        w.close()


def test_histogram_buckets_and_reader_lifecycle_do_not_leak(native_ring_path):
    proc = psutil.Process()
    h = _ring.Histogram()
    for v in range(0, 1 << 36, (1 << 36) // 5000):
        h.record(v)
    w = _ring.Writer(str(native_ring_path), slot_size=4096, slot_count=256)
    try:
        w.publish([(1, 1, 1, False, "s", "d" * 3000)] * 256)

        def cycle():
            assert len(h.buckets()) > 100
            r = _ring.Reader(str(native_ring_path), batch=2048)  # ~8 MiB text buffer each
            assert len(r.poll(0)) == 256
            r.close()
            del r
            r2 = _ring.Reader(str(native_ring_path))
            del r2  # dealloc without close
            try:
                _ring.Reader(str(native_ring_path) + ".missing")
            except _ring.Error:
                pass

        for _ in range(20):
            cycle()
        gc.collect()
        rss0, fds0 = proc.memory_info().rss, proc.num_fds()
        for _ in range(200):
            cycle()
        gc.collect()
        rss1, fds1 = proc.memory_info().rss, proc.num_fds()
        assert rss1 - rss0 < 20 << 20, f"RSS grew {(rss1 - rss0) >> 20} MiB over 200 reader lifecycles"
        assert fds1 == fds0, "file descriptors leak"
        assert len(proc.memory_maps(grouped=False)) < 1000
    finally:
        w.close()


def test_writer_lifecycle_does_not_leak_fds_or_maps(native_ring_path):
    proc = psutil.Process()
    for _ in range(3):
        _ring.Writer(str(native_ring_path), slot_size=256, slot_count=16).close()
    fds0, maps0 = proc.num_fds(), len(proc.memory_maps(grouped=False))
    gens = set()
    for i in range(50):
        w = _ring.Writer(str(native_ring_path), slot_size=256, slot_count=16)
        gens.add(w.generation)
        try:
            _ring.Writer(str(native_ring_path), slot_size=256, slot_count=16)  # LOCKED: must clean up
        except _ring.Error as e:
            assert e.args[0] == Status.LOCKED
        if i % 2:
            w.close()
        del w  # dealloc closes an open writer
    gc.collect()
    # a leak grows the count; it may shrink when an earlier test's thread or pipe closes meanwhile
    assert proc.num_fds() <= fds0
    assert len(proc.memory_maps(grouped=False)) <= maps0 + 8
    assert len(gens) == 50
    assert not [p for p in native_ring_path.parent.iterdir() if p.name.endswith(".tmp")]


def test_replayed_history_is_not_a_latency_sample(ring_dir):
    """Events published before the reader attached are delivered, but their age is
    history, not latency: only events published afterwards feed the histograms."""
    path = str(ring_dir / "replay.shm")
    w = _ring.Writer(path, slot_size=256, slot_count=16)
    try:
        w.publish([(1, 1, 1, False, "s", f"old {i}") for i in range(5)])
        r = _ring.Reader(path)
        w.publish([(1, 1, 1, False, "s", f"new {i}") for i in range(3)])
        assert len(r.poll(0)) == 8
        assert r.transport_latency.count == 3 and r.delivery_latency.count == 3
        r.close()
    finally:
        w.close()
