"""The ring end to end, across real processes: `kgmon demo` (the C writer),
`kgmon tail` (the C reader), and the pure-Python writer and reader
(kindlyguard_monitor/ring/pyring.py) checking them, content included.

Every event is checked against ThreatGenerator(seed), whose stream is
deterministic, after the writer's own truncation (an encode_slot/decode_slot
round trip gives exactly what a 512-byte slot holds).
"""

from __future__ import annotations

import json
import os
import signal
import struct
import textwrap
import time
from functools import lru_cache

import pytest

import kindlyguard_monitor
from kindlyguard_monitor.demo.threats import ThreatGenerator
from kindlyguard_monitor.ring.errors import Status
from kindlyguard_monitor.ring.pyring import (
    HEADER_SIZE, OFF_HEADER_CRC, OFF_HEARTBEAT_MONO, OFF_MAGIC, OFF_SLOT_COUNT, OFF_SLOT_SIZE, OFF_VERSION,
    SLOT_TEXT_OFFSET, PyEvent, PyReader, PyWriter, crc32c, decode_slot, encode_slot, read_header)
from kindlyguard_monitor.threats import Threat, severity_name, threat_type_name
from file_opens import FileOpens
from conftest import (
    OutputWatcher,
    read_json_lines,
    run_kgmon,
    start_kgmon,
    start_python,
    wait_for,
    wait_for_file,
)

SLOT_SIZE = 512  # kgmon demo's default, and PyWriter's
SLOT_COUNT = 4096
NOW_US = 1_700_000_000_000_000
IS_ROOT = os.geteuid() == 0


# ---- what a reader must see ----


def stored(n: int, threat: Threat) -> PyEvent:
    """Event n as a 512-byte slot holds it (text cut at a UTF-8 boundary, as the writer cuts it)."""
    raw, _flags = encode_slot(n, SLOT_SIZE, threat, 0)
    ev = decode_slot(raw, n, SLOT_SIZE)
    assert isinstance(ev, PyEvent), ev
    return ev


def json_content(ev: PyEvent) -> tuple:
    """What `kgmon tail --json` prints for it (everything but time and identity)."""
    return (threat_type_name(ev.threat_type), severity_name(ev.severity), ev.blocked, ev.source, ev.details)


@lru_cache(maxsize=None)
def expected(seed: int, count: int) -> tuple[tuple, ...]:
    """The JSON content of events 0..count-1 of ThreatGenerator(seed), as stored."""
    return tuple(json_content(stored(n, t)) for n, t in enumerate(ThreatGenerator(seed).batch(count, NOW_US)))


def content_of(obj: dict) -> tuple:
    return (obj["threat_type"], obj["severity"], obj["blocked"], obj["source"], obj["details"])


def threats(objs: list[dict]) -> list[dict]:
    return [o for o in objs if o["type"] == "threat"]


def transports(objs: list[dict]) -> list[dict]:
    return [o for o in objs if o["type"] == "transport"]


def summary(objs: list[dict]) -> dict:
    found = [o for o in objs if o["type"] == "summary"]
    assert len(found) == 1, f"one summary line expected, got {found!r}"
    assert objs[-1] is found[0], "the summary is the last line"
    return found[0]


def attached(objs: list[dict]) -> bool:
    return any(o["type"] == "transport" and o["transport"] == "shm" for o in objs)


def assert_content(events: list[dict], seed: int, count: int) -> None:
    want = expected(seed, count)
    for ev in events:
        assert 0 <= ev["seq"] < count, ev
        assert content_of(ev) == want[ev["seq"]], f"event {ev['seq']} differs from ThreatGenerator({seed})"


def wait_for_ring(path, writer_proc, timeout: float = 60) -> None:
    """Wait for the ring file to appear, failing at once if its writer process died first."""
    def ready():
        if os.path.lexists(path):
            return True
        if writer_proc.poll() is not None:
            raise AssertionError(f"writer exited {writer_proc.returncode} before creating the ring: "
                                 f"{writer_proc.stderr.read()!r}")
        return False

    wait_for(ready, timeout, f"{path} to appear")


def tail_args(path, *extra) -> list:
    # These tests are about the ring: shared memory only (auto would also try a WebSocket).
    return ["tail", "--json", "--transport", "shm", *extra, "--shm-path", path]


# ---- 1. C writer -> C reader ----


def test_c_writer_to_c_reader_late_tail_replays_then_follows(ring_path):
    # --rate 100 (not faster): the ring closes when the demo ends, and a tail that
    # starts after that cannot attach (exit 3); 3 s leaves a loaded machine plenty
    # of time to start the tail while the demo is still publishing.
    count, seed = 300, 11
    demo = start_kgmon("demo", "--seed", seed, "--count", count, "--rate", 100, "--shm-path", ring_path, "--quiet")
    wait_for_ring(ring_path, demo)
    # Start the tail late on purpose: 20 events are already in the ring and it must replay them.
    wait_for(lambda: read_header(ring_path)["write_seq"] >= 20, 60, "the demo to publish 20 events")
    generation = read_header(ring_path)["generation"]

    tail = start_kgmon(*tail_args(ring_path, "--count", count, "--timeout", 60))
    out, err = tail.communicate(timeout=90)
    assert not (tail.returncode == 3 and "shut down" in err), "the tail started after the demo ended: machine too slow?"
    assert tail.returncode == 0, err
    objs = read_json_lines(out)
    assert transports(objs)[0]["transport"] == "shm"
    assert summary(objs) == {"type": "summary", "delivered": count, "missed": 0, "corrupt": 0, "transport": "shm"}
    events = threats(objs)
    assert [e["seq"] for e in events] == list(range(count))
    assert {e["generation"] for e in events} == {generation}
    assert all(e["id"] == f"{generation:016x}-{e['seq']}" for e in events)
    assert all(e["transport"] == "shm" for e in events)
    assert_content(events, seed, count)
    # the demo's long payloads (about 1 in 50) were cut to fit: the round trip above covered them
    assert any(e["details"] != t.details for e, t in zip(events, ThreatGenerator(seed).batch(count, NOW_US)))
    assert demo.wait(timeout=60) == 0


# ---- 2. Python writer -> C reader ----

PY_WRITER = textwrap.dedent(
    """
    import select, sys
    from kindlyguard_monitor.demo.threats import ThreatGenerator
    from kindlyguard_monitor.ring.pyring import PyWriter
    path, seed, total, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    w = PyWriter.create(path)
    print("ready", w.generation, flush=True)
    # Keep the heartbeat fresh until told to go: readers refuse a ring whose heartbeat is 3 s old.
    while not select.select([sys.stdin], [], [], 0.05)[0]:
        w.heartbeat()
    sys.stdin.readline()
    gen = ThreatGenerator(seed)
    n = 0
    while n < total:
        n += w.publish(gen.batch(min(batch, total - n)))
        w.heartbeat()
    print("published", n, flush=True)
    w.close()
    """
)


def test_python_writer_process_to_c_reader(ring_path):
    count, seed = 1000, 22
    writer = start_python(PY_WRITER, ring_path, seed, count, 37)
    ww = OutputWatcher(writer)
    ready = ww.wait_lines(lambda lines: next((l for l in lines if l.startswith("ready")), None), 60,
                          "the Python writer to create the ring")
    generation = int(ready.split()[1])
    wait_for_file(ring_path, 5)  # created before "ready" was printed
    assert read_header(ring_path)["generation"] == generation

    tail = start_kgmon(*tail_args(ring_path, "--count", count, "--timeout", 90))
    tw = OutputWatcher(tail)
    tw.wait_json(attached, 60, "the tail to attach")
    writer.stdin.write("go\n")
    writer.stdin.flush()

    assert tw.wait_exit(120) == 0, tw.stderr
    assert ww.wait_exit(60) == 0, ww.stderr
    assert f"published {count}" in [l for _, l in ww.lines]
    objs = tw.objects()
    assert summary(objs)["delivered"] == count
    assert summary(objs)["missed"] == summary(objs)["corrupt"] == 0
    events = threats(objs)
    assert [e["seq"] for e in events] == list(range(count))
    assert {e["generation"] for e in events} == {generation}
    assert_content(events, seed, count)


# ---- 3. C writer -> Python reader ----


def test_c_writer_process_to_python_reader(ring_path):
    count, seed = 1000, 33
    demo = start_kgmon("demo", "--seed", seed, "--count", count, "--rate", 500, "--shm-path", ring_path, "--quiet")
    wait_for_ring(ring_path, demo)
    reader = PyReader.open(ring_path)  # raises (CLOSED) if the demo already ended: then this test proves nothing
    try:
        assert reader.generation == read_header(ring_path)["generation"]
        got: list[PyEvent] = []
        deadline = time.monotonic() + 60
        while reader.delivered + reader.missed + reader.corrupt < count:
            batch = reader.read_batch(256)
            got += batch
            if not batch:
                if reader.health() != Status.OK:  # closed: whatever is left was published before
                    got += reader.read_batch(count)
                    break
                assert time.monotonic() < deadline, f"only {len(got)} events after 60 s"
                time.sleep(0.005)
        assert (reader.delivered, reader.missed, reader.corrupt) == (count, 0, 0)
    finally:
        reader.close()
    assert [e.seq for e in got] == list(range(count))
    want = expected(seed, count)
    assert [json_content(e) for e in got] == list(want)
    assert demo.wait(timeout=60) == 0


# ---- 4. a lapped reader: exact counts, never a torn event ----


def test_lapped_c_reader_counts_exactly_and_never_delivers_a_torn_event(ring_path):
    total, seed, batch = 50_000, 44, 64
    threats_in = ThreatGenerator(seed).batch(total, NOW_US)
    writer = PyWriter.create(ring_path, slot_count=16)
    try:
        tail = start_kgmon(*tail_args(ring_path, "--count", total, "--timeout", 90))
        tw = OutputWatcher(tail)
        # Attached before the first event: its start cursor is 0, so all 50,000 must be accounted for.
        tw.wait_json(attached, 60, "the tail to attach", tick=writer.heartbeat)
        assert writer.write_seq == 0
        for i in range(0, total, batch):
            # A batch of 64 into 16 slots: 48 of them are overwritten before write_seq moves.
            assert writer.publish(threats_in[i : i + batch]) == min(batch, total - i)
            writer.heartbeat()
        code = tw.wait_exit(100, tick=writer.heartbeat)
    finally:
        writer.close()
    assert code == 0, tw.stderr
    objs = tw.objects()
    s = summary(objs)
    events = threats(objs)
    assert s["delivered"] + s["missed"] + s["corrupt"] == total, s
    assert s["corrupt"] == 0, s
    assert s["missed"] > 0, s
    assert s["delivered"] == len(events) > 0
    seqs = [e["seq"] for e in events]
    assert all(a < b for a, b in zip(seqs, seqs[1:])), "seqs strictly increase"
    # The last batch stays in the ring untouched: its 16 events must all arrive.
    assert seqs[-16:] == list(range(total - 16, total))
    for e in events:
        assert content_of(e) == json_content(stored(e["seq"], threats_in[e["seq"]])), f"event {e['seq']} torn"


# ---- 5. a corrupt slot ----


def test_corrupt_slot_is_counted_not_delivered(ring_path):
    count, seed = 10, 55
    threats_in = ThreatGenerator(seed).batch(count, NOW_US)
    writer = PyWriter.create(ring_path)
    try:
        assert writer.publish(threats_in) == count
        raw = bytearray(writer.read_raw_slot(3))
        source_len, details_len = struct.unpack_from("<HH", raw, 32)
        assert source_len + details_len >= 2
        raw[SLOT_TEXT_OFFSET + 1] ^= 0x01  # one text byte: the CRC no longer matches
        writer.write_raw_slot(3, bytes(raw))
        assert decode_slot(bytes(raw), 3, SLOT_SIZE) == "corrupt"
        tail = start_kgmon(*tail_args(ring_path, "--count", count, "--timeout", 60))
        tw = OutputWatcher(tail)
        code = tw.wait_exit(90, tick=writer.heartbeat)
    finally:
        writer.close()
    assert code == 0, tw.stderr
    objs = tw.objects()
    assert summary(objs) == {"type": "summary", "delivered": 9, "missed": 0, "corrupt": 1, "transport": "shm"}
    events = threats(objs)
    assert [e["seq"] for e in events] == [0, 1, 2, 4, 5, 6, 7, 8, 9]
    for e in events:
        assert content_of(e) == json_content(stored(e["seq"], threats_in[e["seq"]]))


# ---- 6. four readers at once ----


def test_four_readers_each_get_every_event(ring_path):
    count, seed = 2000, 66
    threats_in = ThreatGenerator(seed).batch(count, NOW_US)
    writer = PyWriter.create(ring_path)
    try:
        tails = [start_kgmon(*tail_args(ring_path, "--new", "--count", count, "--timeout", 90)) for _ in range(4)]
        watchers = [OutputWatcher(t) for t in tails]
        for tw in watchers:
            tw.wait_json(attached, 60, "every tail to attach", tick=writer.heartbeat)
        for i in range(0, count, 50):
            assert writer.publish(threats_in[i : i + 50]) == 50
            writer.heartbeat()
        codes = [tw.wait_exit(100, tick=writer.heartbeat) for tw in watchers]
        generation = writer.generation
    finally:
        writer.close()
    want = [json_content(stored(n, t)) for n, t in enumerate(threats_in)]
    for tw, code in zip(watchers, codes):
        assert code == 0, tw.stderr
        objs = tw.objects()
        assert summary(objs) == {"type": "summary", "delivered": count, "missed": 0, "corrupt": 0, "transport": "shm"}
        events = threats(objs)
        assert [e["seq"] for e in events] == list(range(count))
        assert {e["generation"] for e in events} == {generation}
        assert [content_of(e) for e in events] == want


# ---- 7. the tail follows a writer restart ----


def test_tail_follows_a_writer_restart(ring_path):
    # Each demo lives about 2 s (40 events at 20/s): the tail must attach to the first
    # while it runs, and it retries attaching every 0.2 s, so a much shorter-lived
    # second writer could come and go unseen between two tries (see the report).
    count = 40
    demo1 = start_kgmon("demo", "--seed", 1, "--count", count, "--rate", 20, "--shm-path", ring_path, "--quiet")
    wait_for_ring(ring_path, demo1)
    tail = start_kgmon(*tail_args(ring_path, "--timeout", 90))
    tw = OutputWatcher(tail)
    tw.wait_json(attached, 30, "the tail to attach to the first demo")
    assert demo1.wait(timeout=60) == 0
    tw.wait_json(lambda objs: any(t["transport"] == "disconnected" for t in transports(objs)), 30,
                 "the tail to see the first demo close")

    demo2 = start_kgmon("demo", "--seed", 2, "--count", count, "--rate", 20, "--shm-path", ring_path, "--quiet")
    tw.wait_json(lambda objs: len(threats(objs)) >= 2 * count, 60, "80 threats")
    assert demo2.wait(timeout=60) == 0
    assert tail.poll() is None, "the tail is still following"
    tail.send_signal(signal.SIGTERM)
    assert tw.wait_exit(30) == 0, tw.stderr

    objs = tw.objects()
    assert summary(objs)["delivered"] == 2 * count
    assert summary(objs)["missed"] == summary(objs)["corrupt"] == 0
    kinds = [t["transport"] for t in transports(objs)]
    assert kinds[:3] == ["shm", "disconnected", "shm"], kinds
    assert kinds[3:] in ([], ["disconnected"]), kinds  # the second demo may be seen closing too
    assert "closed" in transports(objs)[1]["reason"]
    events = threats(objs)
    first, second = events[:count], events[count:]
    gen1, gen2 = first[0]["generation"], second[0]["generation"]
    assert gen1 != gen2
    assert {e["generation"] for e in first} == {gen1} and {e["generation"] for e in second} == {gen2}
    assert f"{gen2:#x}" in transports(objs)[2]["reason"]
    assert [e["seq"] for e in first] == list(range(count)) == [e["seq"] for e in second]
    assert_content(first, 1, count)
    assert_content(second, 2, count)


# ---- 8. the writer is killed ----


def _kill_writer_under_tail(ring_path, seed):
    """A demo at 50 events/s followed by a tail; kill -9 the demo once the tail has
    5 of its threats. Returns (tail, watcher, dead demo, monotonic time of the kill)."""
    demo = start_kgmon("demo", "--seed", seed, "--rate", 50, "--shm-path", ring_path, "--quiet")
    wait_for_ring(ring_path, demo)
    tail = start_kgmon(*tail_args(ring_path, "--timeout", 90))
    tw = OutputWatcher(tail)
    tw.wait_json(lambda objs: len(threats(objs)) >= 5, 30, "5 threats from the demo")
    demo.kill()
    killed_at = time.monotonic()
    demo.wait(timeout=30)  # reap it (a zombie is no live writer either, but leave none behind)
    return tail, tw, demo, killed_at


def disconnected(objs: list[dict]) -> bool:
    return any(t["transport"] == "disconnected" for t in transports(objs))


def test_tail_sees_a_killed_writer_within_3_s_and_follows_the_next(ring_path):
    tail, tw, demo1, killed_at = _kill_writer_under_tail(ring_path, 8)
    tw.wait_json(disconnected, 30, "the tail to notice the dead writer")
    seen_at, gone = next((t, o) for t, o in tw.json() if o["type"] == "transport" and o["transport"] == "disconnected")
    assert seen_at - killed_at <= 3.0, f"the dead writer was noticed after {seen_at - killed_at:.2f} s"
    assert "writer" in gone["reason"] and str(demo1.pid) in gone["reason"], gone

    demo2 = start_kgmon("demo", "--seed", 9, "--rate", 50, "--shm-path", ring_path, "--quiet")
    wait_for(lambda: read_header(ring_path)["writer_pid"] == demo2.pid, 60, "the second demo's ring")
    generation2 = read_header(ring_path)["generation"]
    tw.wait_json(lambda objs: sum(e["generation"] == generation2 for e in threats(objs)) >= 5, 60,
                 "5 threats from the second demo")
    demo2.send_signal(signal.SIGTERM)
    assert demo2.wait(timeout=30) == 0
    tail.send_signal(signal.SIGTERM)
    assert tw.wait_exit(30) == 0, tw.stderr

    objs = tw.objects()
    events = threats(objs)
    generation1 = events[0]["generation"]
    assert generation1 != generation2
    assert {e["generation"] for e in events} == {generation1, generation2}
    # a new "shm" line names the new generation, after the first "disconnected" line
    lines = transports(objs)
    first_gone = next(i for i, t in enumerate(lines) if t["transport"] == "disconnected")
    assert any(t["transport"] == "shm" and f"{generation2:#x}" in t["reason"] for t in lines[first_gone:])
    second = [e for e in events if e["generation"] == generation2]
    assert events[-len(second):] == second, "the second writer's threats come after the first's"
    assert [e["seq"] for e in second] == list(range(len(second)))
    assert_content(second, 9, len(second))
    first = [e for e in events if e["generation"] == generation1]
    assert_content(first, 8, max(e["seq"] for e in first) + 1)
    assert summary(objs)["missed"] == summary(objs)["corrupt"] == 0


def test_tail_never_reattaches_to_a_dead_writers_ring(ring_path):
    tail, tw, demo, _ = _kill_writer_under_tail(ring_path, 18)
    tw.wait_json(disconnected, 30, "the tail to notice the dead writer")
    # Let the dead ring's heartbeat pass the 3 s every reader refuses: after that nothing can attach to it.
    wait_for(lambda: time.monotonic_ns() - read_header(ring_path)["heartbeat_mono_ns"] > 3_500_000_000, 30,
             "the dead ring's heartbeat to be 3.5 s old")
    published = read_header(ring_path)["write_seq"]
    tail.send_signal(signal.SIGTERM)
    assert tw.wait_exit(30) == 0, tw.stderr
    objs = tw.objects()
    events = threats(objs)
    assert [t["transport"] for t in transports(objs)] == ["shm", "disconnected"]
    assert [e["seq"] for e in events] == list(range(published)), "each event once, none twice"
    s = summary(objs)
    assert (s["delivered"], s["missed"], s["corrupt"]) == (published, 0, 0), s


# ---- 9. hostile files: refused with a reason, exit 3 ----


def _fix_header_crc(writer: PyWriter) -> None:
    with open(writer.path, "rb") as f:
        writer.set_header_field(OFF_HEADER_CRC, "I", crc32c(f.read(56)))


def _case_missing(d, p):
    return []


def _case_symlink(d, p):
    w = PyWriter.create(d / "real.shm")
    os.symlink(d / "real.shm", p)
    return [w]


def _case_mode(mode):
    def build(d, p):
        w = PyWriter.create(p)
        os.chmod(p, mode)
        return [w]
    return build


def _case_open_directory(d, p):
    w = PyWriter.create(p)
    os.chmod(d, 0o777)
    return [w]


def _case_other_owner(d, p):
    if not IS_ROOT:
        pytest.skip("needs root to give the file away")
    w = PyWriter.create(p)
    os.chown(p, 12345, -1)
    return [w]


def _case_field(offset, fmt, value, fix_crc):
    def build(d, p):
        w = PyWriter.create(p)
        w.set_header_field(offset, fmt, value)
        if fix_crc:
            _fix_header_crc(w)
        return [w]
    return build


def _case_bad_crc(d, p):
    w = PyWriter.create(p)
    w.set_header_field(OFF_HEADER_CRC, "I", read_header(p)["header_crc"] ^ 0x1)
    return [w]


def _case_truncated(d, p):
    w = PyWriter.create(p)
    os.truncate(p, HEADER_SIZE + SLOT_COUNT * SLOT_SIZE - SLOT_SIZE)  # the writer touches no slot after this
    return [w]


def _case_100_bytes(d, p):
    w = PyWriter.create(d / "real.shm")
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with open(d / "real.shm", "rb") as f:
        os.write(fd, f.read(100))  # the start of a real ring
    os.close(fd)
    return [w]


def _case_stale(d, p):
    w = PyWriter.create(p)  # alive, but its heartbeat is 10 s old and nobody refreshes it
    w.set_header_field(OFF_HEARTBEAT_MONO, "Q", time.monotonic_ns() - 10_000_000_000)
    return [w]


def _case_closed(d, p):
    w = PyWriter.create(p)
    w.close()
    return []


HOSTILE = {
    "missing": (_case_missing, ["no ring"]),
    "symlink": (_case_symlink, ["not a regular file", "symbolic link"]),
    "mode-0660": (_case_mode(0o660), ["permissions"]),
    "mode-0604": (_case_mode(0o604), ["permissions"]),
    "directory-0777": (_case_open_directory, ["directory"]),
    "other-owner": (_case_other_owner, ["another user"]),
    "bad-magic": (_case_field(OFF_MAGIC, "I", 0x12345678, False), ["not a KindlyGuard ring"]),
    "version-3": (_case_field(OFF_VERSION, "I", 3, True), ["format this monitor does not read"]),
    "bad-header-crc": (_case_bad_crc, ["corrupt header"]),
    "truncated": (_case_truncated, ["wrong size"]),
    "slot-count-3": (_case_field(OFF_SLOT_COUNT, "I", 3, True), ["corrupt header", "slot_count"]),
    "slot-size-2**20": (_case_field(OFF_SLOT_SIZE, "I", 2**20, True), ["corrupt header", "slot_size"]),
    "100-bytes": (_case_100_bytes, ["wrong size"]),
    "stale-heartbeat": (_case_stale, ["gone or stuck"]),
    "closed": (_case_closed, ["shut down"]),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_tail_refuses_a_hostile_ring_with_a_reason(ring_dir, ring_path, case):
    build, words = HOSTILE[case]
    writers = build(ring_dir, ring_path)
    try:
        result = run_kgmon("tail", "--transport", "shm", "--shm-path", ring_path, timeout=60)
    finally:
        os.chmod(ring_dir, 0o700)
        for w in writers:
            w.close()
    assert result.returncode == 3, (result.returncode, result.stderr)
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert all(word.lower() in lines[0].lower() for word in words), (words, lines[0])
    assert str(ring_dir) in lines[0]  # it names the file (or, for the directory case, the directory)


# ---- 10. usage errors ----


@pytest.mark.parametrize("args", [["tail", "--count", "0"], ["tail", "--bogus"], ["demo", "--rate", "0"]])
def test_usage_errors_exit_2(args):
    result = run_kgmon(*args)
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    assert result.stderr.strip()


def test_version():
    result = run_kgmon("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"kgmon {kindlyguard_monitor.__version__}" == "kgmon 0.1.0"


def test_second_demo_on_a_locked_ring_exits_3(ring_path):
    first = start_kgmon("demo", "--rate", 50, "--shm-path", ring_path, "--quiet")
    wait_for_ring(ring_path, first)
    before = read_header(ring_path)
    result = run_kgmon("demo", "--count", 5, "--shm-path", ring_path)
    assert result.returncode == 3, result
    assert "another writer" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    after = read_header(ring_path)
    assert (after["generation"], after["writer_pid"], after["state"]) == (before["generation"], first.pid, 1)
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=30) == 0


# ---- 11. the demo stops cleanly on SIGTERM and SIGINT ----


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_demo_closes_the_ring_on_signal(ring_path, sig):
    demo = start_kgmon("demo", "--rate", 50, "--shm-path", ring_path)
    dw = OutputWatcher(demo)
    # This line is printed once the signal handlers are installed.
    dw.wait_stderr(lambda err: "writing to" in err, 60, "the demo to start")
    wait_for(lambda: read_header(ring_path)["write_seq"] >= 5, 60, "5 events")
    assert read_header(ring_path)["state"] == 1
    demo.send_signal(sig)
    assert dw.wait_exit(30) == 0, dw.stderr
    header = read_header(ring_path)
    assert header["state"] == 2
    assert "Traceback" not in dw.stderr
    assert f"published {header['write_seq']} events" in dw.stderr and "ring closed" in dw.stderr, dw.stderr


# ---- 12. the bench runs ----


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_bench_short_json(ring_dir):
    result = run_kgmon("bench", "--short", "--json", "--shm-path", ring_dir / "bench.shm", timeout=540)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    for key in ("steady_1000", "full_speed", "writer_flat_out", "max_zero_loss_rate", "idle_cpu_percent", "ratios",
                "rates", "zero_loss_ring", "idle_cpu_floor_percent", "floor_zero_loss"):
        assert key in data, key
    assert data["ring_bytes"] == 4096 + 4096 * 512
    for name in ("floor C, futex", "floor C, spinning"):  # the zero-loss search, for the floor too
        floor = data["floor_zero_loss"][name]
        assert floor["rate"] in [t["rate"] for t in floor["tries"] if t["held"]], floor
        assert f"highest zero-loss rate: app reader / {name}" in data["ratios"]
    from kindlyguard_monitor.bench.ring_report import render

    table = render(data)  # the table kgmon bench prints without --json
    assert f"{floor['rate']:,.0f} events/s (the same search, same ring)" in table
    assert "highest zero-loss rate: app reader / floor C, futex" in table


def test_bisect_zero_loss_finds_the_limit_to_ten_percent():
    from kindlyguard_monitor.bench.ring_bench import bisect_zero_loss

    for limit in (150_000, 730_000, 2_600_000):
        tried = []

        def holds(rate):
            tried.append(rate)
            return rate <= limit, rate

        best, res, tries = bisect_zero_loss(holds, [100_000, 500_000, 1_000_000, 4_000_000])
        assert best == res <= limit < best * 1.1, (limit, best, tried)
        assert [t[0] for t in tries] == tried
    assert bisect_zero_loss(lambda rate: (True, rate), [10, 20])[0] == 20  # the top held: no bisecting
    best, _, _ = bisect_zero_loss(lambda rate: (rate <= 30_000, rate), [100_000])
    assert 30_000 / 1.1 <= best <= 30_000  # the first rung failed: the search goes below it


def test_bench_rates_beside_the_floor_and_stalls(ring_dir):
    """The realistic-rate scenario, small: the app's reader and the bare C reader each get every
    event, and both report a stall figure."""
    from kindlyguard_monitor.bench import ring_bench as rb

    writer = rb.WriterProcess(str(ring_dir / "bench.shm"))
    try:
        out = rb.rates_beside_floor(writer, short=True, progress=lambda msg: None, rates=(1000,))
    finally:
        writer.close()
    for name, res in out["1000"].items():
        assert (res.delivered, res.missed, res.error) == (250, 0, ""), name
        assert res.transport["count"] == 250 and res.max_stall_us > 0, name
        # delivery: the app's events as Python objects, the floor's read and checked in C; never before transport
        assert res.delivery["count"] == 250 and res.delivery["p50"] >= res.transport["p50"], name


def test_tail_counts_a_writer_it_never_saw_as_missed(ring_path):
    """A writer that starts and closes between two attach attempts of the tail
    is not silently lost: its events count as missed."""
    first = PyWriter.create(ring_path, slot_count=16)
    tail = start_kgmon(*tail_args(ring_path, "--timeout", 90))
    tw = OutputWatcher(tail)
    tw.wait_json(attached, 30, "the tail to attach")
    first.publish(ThreatGenerator(1).batch(5))
    tw.wait_json(lambda objs: len(threats(objs)) >= 5, 30, "5 threats")
    first.close()
    tw.wait_json(disconnected, 30, "the tail to see the first writer close")

    with FileOpens(ring_path) as opens:
        brief = PyWriter.create(ring_path, slot_count=16)  # lives and closes while the tail waits
        brief.publish(ThreatGenerator(2).batch(40))
        brief.close()
        # The tail retries every 0.25 s (3 opens each today): it finds this ring closed and counts it.
        # Opens from a second attempt on this ring prove the first one (which counted) is over.
        opens.reset()
        opens.wait(7, 30, "the tail to try the closed ring twice")

    last = PyWriter.create(ring_path, slot_count=16)
    last.publish(ThreatGenerator(3).batch(7))
    tw.wait_json(lambda objs: len(threats(objs)) >= 12, 30, "the last writer's 7 threats")
    last.close()
    tail.send_signal(signal.SIGTERM)
    assert tw.wait_exit(30) == 0, tw.stderr
    s = summary(tw.objects())
    assert (s["delivered"], s["missed"], s["corrupt"]) == (12, 40, 0)
    assert {e["generation"] for e in threats(tw.objects())} == {first.generation, last.generation}
