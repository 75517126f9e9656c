"""The v1 stand-in writer (tests/fixtures/shield_v1_writer.c) against the facts of the Shield's
v1 ring (docs/shm-ring-v1.md: where the file comes from, "The format") and of the upstream code
they were read from (kindly-guard-shield/src-tauri/src/ipc/shm.rs, platform.rs).

The ring is parsed here with struct at the spec's offsets, on purpose not with the app's code:
these tests vouch for the writer, which then vouches for the app's v1 reader.
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import struct
import time
from pathlib import Path

import pytest

import shield_v1_writer as v1
from conftest import wait_for_file

FILE_SIZE = 2 * 1024 * 1024
HEADER = 896
DATA = FILE_SIZE - HEADER  # 2,096,256
EVENT = 344
MAGIC = 0x4B474D53


@pytest.fixture(scope="module")
def exe(tmp_path_factory):
    if not any(shutil.which(c) for c in ("cc", "gcc", "clang")):
        pytest.skip("no C compiler")
    return v1.build(tmp_path_factory.mktemp("v1writer"))  # a compile error fails every test


@pytest.fixture
def procs():
    started = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
        p.wait()
        for pipe in (p.stdout, p.stderr):
            if pipe:
                pipe.close()


def start(procs, *args, **kw):
    p = v1.run(*args, **kw)
    procs.append(p)
    return p


def finish(proc) -> None:
    """Wait for a writer with linger 0 to exit by itself, successfully."""
    assert proc.wait(timeout=30) == 0, proc.stderr.read()


# ---- an independent parser at the spec's offsets ----


def header(path) -> dict:
    b = Path(path).read_bytes()[:HEADER]
    return {
        "magic": struct.unpack_from("<I", b, 0)[0],
        "version": struct.unpack_from("<I", b, 4)[0],
        "total_size": struct.unpack_from("<Q", b, 8)[0],
        "write_pos": struct.unpack_from("<Q", b, 128)[0],
        "read_pos": struct.unpack_from("<Q", b, 256)[0],
        "events_written": struct.unpack_from("<Q", b, 384)[0],
        "events_read": struct.unpack_from("<Q", b, 512)[0],
        "last_heartbeat": struct.unpack_from("<Q", b, 640)[0],
        "writer_pid": struct.unpack_from("<I", b, 768)[0],
        "reserved": b[772:836],
    }


def set_u64(path, offset: int, value: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(struct.pack("<Q", value))


def event_at(ring: bytes, offset: int) -> dict:
    e = ring[HEADER + offset:HEADER + offset + EVENT]
    return {
        "timestamp_us": struct.unpack_from("<Q", e, 0)[0],
        "threat_type": struct.unpack_from("<I", e, 8)[0],
        "severity": e[12],
        "blocked": e[13],
        "source": e[14:78],
        "details": e[78:334],
        "checksum": struct.unpack_from("<I", e, 336)[0],
    }


def checksum(ev: dict) -> int:
    s = (ev["timestamp_us"] & 0xFFFFFFFF) + ev["threat_type"] + ev["severity"] + ev["blocked"]
    return (s + sum(ev["source"]) + sum(ev["details"])) & 0xFFFFFFFF


def from_log(entry: dict) -> dict:
    return {**{k: entry[k] for k in ("timestamp_us", "threat_type", "severity", "blocked", "checksum")},
            "source": bytes.fromhex(entry["source_hex"]), "details": bytes.fromhex(entry["details_hex"])}


# ---- tests ----


@pytest.mark.parametrize("umask,dir_mode", [(0o022, 0o755), (0o077, 0o700)], ids=["umask022", "umask077"])
def test_folder_file_lock_header_and_shutdown(exe, procs, tmp_path, umask, dir_mode):
    """'Where the shared memory comes from': folder by create_dir_all, never chmod-ed (0755 under
    umask 022); 2 MiB file set to 0600; lock file kindly-guard.lock, 0600, holding the writer's
    pid. 'Format v1' header: magic, version 1, total_size, heartbeat in unix SECONDS, writer_pid;
    read_pos / events_read belong to the reader (0). Upstream's Drop: lock removed, file kept."""
    folder = tmp_path / "run" / "kindly-guard"
    ring = folder / "kindly-guard.shm"
    before = int(time.time())
    p = start(procs, exe, ring, 3, linger=-1, umask=umask)
    assert v1.wait_done(p) == 3
    after = int(time.time()) + 1

    assert stat.S_IMODE(os.stat(folder).st_mode) == dir_mode
    assert stat.S_IMODE(os.stat(tmp_path / "run").st_mode) == dir_mode  # every missing component
    assert stat.S_IMODE(os.stat(ring).st_mode) == 0o600
    assert os.path.getsize(ring) == FILE_SIZE
    lock = folder / "kindly-guard.lock"
    assert stat.S_IMODE(os.stat(lock).st_mode) == 0o600
    assert lock.read_text() == f"{p.pid}\n"

    h = header(ring)
    assert (h["magic"], h["version"], h["total_size"]) == (MAGIC, 1, FILE_SIZE)
    assert (h["write_pos"], h["events_written"]) == (3 * EVENT, 3)
    assert (h["read_pos"], h["events_read"]) == (0, 0)
    assert before <= h["last_heartbeat"] <= after  # seconds, not ms or us
    assert h["writer_pid"] == p.pid
    assert h["reserved"] == bytes(64)

    assert v1.stop(p, signal.SIGTERM) == 0
    assert not lock.exists()
    assert ring.exists() and header(ring) == h  # shutdown leaves the ring as it was


def test_sigint_also_runs_the_shutdown(exe, procs, tmp_path):
    """Upstream's Drop (lock removed, ring kept) on SIGINT as on SIGTERM (the stand-in's contract)."""
    ring = tmp_path / "kindly-guard.shm"
    p = start(procs, exe, ring, 1, linger=-1)
    v1.wait_done(p)
    assert (tmp_path / "kindly-guard.lock").exists()
    assert v1.stop(p, signal.SIGINT) == 0
    assert not (tmp_path / "kindly-guard.lock").exists() and ring.exists()


def test_events_match_the_log_and_checksums(exe, procs, tmp_path):
    """'Format v1' events: 344 bytes at 896 + write_pos; timestamp_us in unix microseconds; type
    0..7, severity 1..4, blocked 0/1; checksum = wrapping sum of (timestamp_us as u32), type,
    severity, blocked and every byte of source and details."""
    ring, log = tmp_path / "kindly-guard.shm", tmp_path / "log.jsonl"
    before = time.time_ns() // 1000
    finish(start(procs, exe, ring, 64, seed=7, log=log))
    after = time.time_ns() // 1000
    entries = v1.read_log(log)
    data = ring.read_bytes()

    assert [e["n"] for e in entries] == list(range(64))
    assert all(e["written"] and e["bytes_written"] == EVENT for e in entries)
    assert [e["offset"] for e in entries] == [n * EVENT for n in range(64)]
    for e in entries:
        ev = event_at(data, e["offset"])
        assert ev == from_log(e)
        assert ev["checksum"] == checksum(ev)
        assert before <= ev["timestamp_us"] <= after
    assert {e["threat_type"] for e in entries} == set(range(8))
    assert {e["severity"] for e in entries} == {1, 2, 3, 4}
    assert {(e["threat_type"], e["severity"]) for e in entries} == {(t, s) for t in range(8) for s in range(1, 5)}
    assert {e["blocked"] for e in entries} == {0, 1}
    h = header(ring)
    assert (h["write_pos"], h["events_written"], h["read_pos"], h["events_read"]) == (64 * EVENT, 64, 0, 0)


def test_same_seed_same_events(exe, procs, tmp_path):
    """The stand-in's contract: contents are deterministic from --seed (timestamps are the clock)."""
    logs = []
    for i, seed in enumerate((5, 5, 6)):
        log = tmp_path / f"log{i}.jsonl"
        finish(start(procs, exe, tmp_path / f"r{i}" / "kindly-guard.shm", 20, seed=seed, log=log))
        logs.append([{k: v for k, v in e.items() if k not in ("timestamp_us", "checksum")} for e in v1.read_log(log)])
    assert logs[0] == logs[1]
    assert logs[0] != logs[2]


def test_text_fields_nul_padding_and_cuts(exe, procs, tmp_path):
    """'Format v1': source 64 / details 256 bytes of UTF-8 cut at the limit (possibly
    mid-character), NUL padded, no length. The mix holds é, 漢, emoji, bidi and zero-width."""
    log = tmp_path / "log.jsonl"
    finish(start(procs, exe, tmp_path / "kindly-guard.shm", 60, seed=3, log=log))
    fields = [(bytes.fromhex(e[name]), size) for e in v1.read_log(log)
              for name, size in (("source_hex", 64), ("details_hex", 256))]

    def kinds(raw: bytes, size: int) -> set[str]:
        assert len(raw) == size
        text = raw.rstrip(b"\0")
        found = set()
        if len(text) < size:
            found.add("padded")
        if not text:
            found.add("empty")
        try:
            s = text.decode("utf-8")
            if len(text) == size:
                found.add("full-valid-multibyte" if len(s) < size else "full-ascii")
            if any(ord(ch) >= 0x1F000 for ch in s):
                found.add("emoji")
            if any(0x2066 <= ord(ch) <= 0x2069 for ch in s):
                found.add("isolate")
            for ch, name in (("é", "e-acute"), ("漢", "han"), ("\u202e", "rlo"),
                             ("\u200b", "zwsp"), ("\0", "inner-nul")):
                if ch in s:
                    found.add(name)
        except UnicodeDecodeError as err:
            assert err.reason == "unexpected end of data" and err.end == len(text) == size, err
            found.add(f"cut-{len(text) - err.start}-of-{size}")  # bytes of the cut character kept
        return found

    src = set().union(*(kinds(raw, n) for raw, n in fields if n == 64))
    det = set().union(*(kinds(raw, n) for raw, n in fields if n == 256))
    for got in (src, det):
        assert {"padded", "full-ascii", "full-valid-multibyte", "e-acute", "han", "emoji", "rlo", "zwsp",
                "isolate"} <= got
        assert any(k.startswith("cut-") for k in got)
    assert {"cut-1-of-64", "cut-2-of-64", "cut-3-of-64", "empty"} <= src
    assert {"cut-1-of-256", "cut-2-of-256", "cut-3-of-256", "inner-nul"} <= det
    # NUL padding: after the text nothing but zeros (the text itself never ends in NUL here)
    for raw, _ in fields:
        text = raw.rstrip(b"\0")
        assert raw[len(text):] == bytes(len(raw) - len(text))
    assert v1.upstream_text("e6bc" + "00" * 62) == "\ufffd"


def test_wrap_at_data_area_size(exe, procs, tmp_path):
    """'Quirks': positions wrap at the data-area size (2,096,256), not at a multiple of 344. After
    6,093 events write_pos is 2,095,992; the 6,094th event starts there, would run 80 bytes past
    the mapping (only its first 264 bytes exist in the file), and the next write_pos is 80.
    With no consumer (read_pos 0) nothing is dropped: 6,100 events written, write_pos 2,144."""
    ring, log = tmp_path / "kindly-guard.shm", tmp_path / "log.jsonl"
    finish(start(procs, exe, ring, 6100, log=log))
    entries = v1.read_log(log)
    h = header(ring)
    assert (h["write_pos"], h["events_written"], h["read_pos"], h["events_read"]) == (80 + 6 * EVENT, 6100, 0, 0)
    assert entries[6092]["offset"] == 6092 * EVENT
    assert entries[6093]["offset"] == 2095992 == 6093 * EVENT  # write_pos after 6,093 events
    assert entries[6093]["bytes_written"] == DATA - 2095992 == 264
    assert entries[6094]["offset"] == (2095992 + EVENT) % DATA == 80
    assert [e["offset"] for e in entries[6094:]] == [80 + k * EVENT for k in range(6)]
    assert all(e["written"] for e in entries)

    data = ring.read_bytes()
    assert len(data) == FILE_SIZE
    cut = entries[6093]
    expected = (struct.pack("<QIBB", cut["timestamp_us"], cut["threat_type"], cut["severity"], cut["blocked"])
                + bytes.fromhex(cut["source_hex"]) + bytes.fromhex(cut["details_hex"]))[:264]
    assert data[HEADER + 2095992:] == expected
    for e in entries[6094:]:  # the events after the wrap are whole, over the oldest ones
        ev = event_at(data, e["offset"])
        assert ev == from_log(e) and ev["checksum"] == checksum(ev)
    # the wrapped writes (bytes 80..2144) overlap old events 0..6 (event 6 is at 2064..2408);
    # event 7 is the first old one left whole
    assert event_at(data, 6 * EVENT) != from_log(entries[6])
    assert event_at(data, 7 * EVENT) == from_log(entries[7])


@pytest.mark.parametrize(
    "read_pos,written,write_pos",
    [
        (1000, [True, True, False, False, False], 2 * EVENT),  # next 1032 > 1000 > write 688: dropped
        (3 * EVENT, [True] * 5, 5 * EVENT),  # next == read_pos goes ahead (the ring then looks empty)
    ],
    ids=["dropped", "next-equals-read"],
)
def test_full_rule_drops_the_new_event(exe, procs, tmp_path, read_pos, written, write_pos):
    """'Quirks': full is `next > read && write < read`; when it holds the NEW event is dropped
    (nothing stored, no counter moved); next == read_pos is not full. The writer never moves
    read_pos or events_read."""
    ring, log = tmp_path / "kindly-guard.shm", tmp_path / "log.jsonl"
    finish(start(procs, exe, ring, 0))
    set_u64(ring, 256, read_pos)  # as a consuming upstream reader would have left it
    finish(start(procs, exe, ring, 5, log=log))
    entries = v1.read_log(log)
    assert [e["written"] for e in entries] == written
    h = header(ring)
    assert (h["write_pos"], h["events_written"]) == (write_pos, written.count(True))
    assert (h["read_pos"], h["events_read"]) == (read_pos, 0)
    if not all(written):
        assert all(e["offset"] == write_pos and e["bytes_written"] == 0 for e in entries if not e["written"])
        assert Path(ring).read_bytes()[HEADER + write_pos:HEADER + write_pos + EVENT] == bytes(EVENT)


def test_restart_keeps_an_initialised_header(exe, procs, tmp_path):
    """'Format v1': events_written is cumulative and survives writer restarts. Upstream's
    init_header leaves a header with the magic and version 1 untouched, so the positions, the
    counters and even writer_pid (the first writer's) are kept; a header with another version
    is re-initialised."""
    ring = tmp_path / "kindly-guard.shm"
    first = start(procs, exe, ring, 3)
    finish(first)
    second = start(procs, exe, ring, 2)
    finish(second)
    h = header(ring)
    assert (h["write_pos"], h["events_written"], h["writer_pid"]) == (5 * EVENT, 5, first.pid)

    with open(ring, "r+b") as f:  # e.g. a v2 ring left in the same place
        f.seek(4)
        f.write(struct.pack("<I", 2))
    third = start(procs, exe, ring, 1)
    finish(third)
    h = header(ring)
    assert (h["version"], h["write_pos"], h["events_written"], h["writer_pid"]) == (1, EVENT, 1, third.pid)


def test_lock_file_stale_or_held(exe, procs, tmp_path):
    """'Where the shared memory comes from': the lock is created exclusively and holds the pid; not
    a flock; a failure to take it is ignored. Upstream (platform.rs) replaces a lock whose pid is
    dead, leaves a live one alone (and so does not remove it at shutdown)."""
    ring, lock = tmp_path / "kindly-guard.shm", tmp_path / "kindly-guard.lock"
    dead = int(Path("/proc/sys/kernel/pid_max").read_text()) + 1  # no process can have it
    lock.write_text(f"{dead}\n")
    p = start(procs, exe, ring, 2, linger=-1)
    v1.wait_done(p)
    assert lock.read_text() == f"{p.pid}\n"
    assert v1.stop(p) == 0 and not lock.exists()

    lock.write_text(f"{os.getpid()}\n")  # a live writer holds it
    p = start(procs, exe, ring, 2, linger=-1)
    v1.wait_done(p)
    assert header(ring)["events_written"] == 4  # it writes anyway
    assert v1.stop(p) == 0
    assert lock.read_text() == f"{os.getpid()}\n"


def test_rate_and_log_before_store(exe, procs, tmp_path):
    """The stand-in's contract: --rate paces events and each log line is flushed before its event
    is stored, so a reader that sees events_written = k finds at least k log lines."""
    ring, log = tmp_path / "kindly-guard.shm", tmp_path / "log.jsonl"
    p = start(procs, exe, ring, 20, rate=200, log=log, linger=-1)
    wait_for_file(ring, 10)
    seen = 0
    deadline = time.monotonic() + 20
    while seen < 20:
        assert time.monotonic() < deadline, "the writer never reached 20 events"
        written = header(ring)["events_written"] if os.path.getsize(ring) == FILE_SIZE else 0
        assert len(v1.read_log(log)) >= written
        seen = written
        time.sleep(0.002)  # polling pace only; the loop ends on the condition
    assert v1.wait_done(p) == 20
    assert v1.stop(p) == 0
