"""The Shield's own ring, format v1 (issue 10): read read-only, never consumed.

Writers are kindlyguard_monitor.ring.v1_writer.V1Writer (upstream's layout and quirks), in
this process for the byte-exact reader cases and in a separate process (a
python writer driven over stdin, or `kgmon demo --format v1`) against a real
`kgmon tail` process for the rest.
"""

from __future__ import annotations

import json
import os
import signal
import stat

import pytest

from kindlyguard_monitor import _ring
from kindlyguard_monitor.history.records import threat_rows
from kindlyguard_monitor.ring import v1
from kindlyguard_monitor.ring.errors import RingError, Status
from kindlyguard_monitor.ring.paths import lock_path_for
from kindlyguard_monitor.ring.reader import open_any, open_v1_reader
from kindlyguard_monitor.ring.v1_writer import V1Writer
from kindlyguard_monitor.event import from_ring
from kindlyguard_monitor.transport.items import Batch
from conftest import OutputWatcher, free_port, run_kgmon, start_kgmon, start_python, wait_for, wait_for_file

# A small ring: 10 whole events and 80 bytes left, so event 10 lies across the end.
SMALL = v1.HEADER_SIZE + 10 * v1.EVENT_SIZE + 80
MOVED_BY_WRITER = [(128, 136), (384, 392), (640, 648)]  # write_pos, events_written, last_heartbeat

# A writer process: "N\n" on stdin writes N events ("source-<k>", "details-<k>"),
# then prints events_written; "bad\n" writes one event with a wrong checksum.
WRITER = r"""
import sys
from kindlyguard_monitor.ring.v1_writer import V1Writer
w = V1Writer(sys.argv[1], size=int(sys.argv[2]))
print("ready", flush=True)
for line in sys.stdin:
    cmd = line.strip()
    if cmd == "bad":
        raw = bytearray(w.event_bytes(1, 2, 3, True, "bad", "bad"))
        raw[336] ^= 1
        w.write_raw(bytes(raw))
    elif cmd:
        for _ in range(int(cmd)):
            k = w.events_written
            w.write(k % 8, k % 4 + 1, k % 2 == 0, f"source-{k}", f"details-{k}")
    print(w.events_written, flush=True)
w.close()
"""


def writer_process(path, size=SMALL):
    proc = start_python(WRITER, path, size)
    assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
    return proc


def write(proc, what) -> int:
    proc.stdin.write(f"{what}\n")
    proc.stdin.flush()
    return int(proc.stdout.readline())


def header_bytes(path) -> bytes:
    with open(path, "rb") as f:
        return f.read(v1.HEADER_SIZE)


def without_writer_fields(header: bytes) -> bytes:
    out = bytearray(header)
    for a, b in MOVED_BY_WRITER:
        out[a:b] = bytes(b - a)
    return bytes(out)


def _zero_magic(path):
    """Damage the v1 header (magic and version): the next writer initialises the ring again, a reset."""
    with open(path, "r+b") as f:
        f.write(b"\0" * 8)


@pytest.fixture
def v1_path(ring_dir):
    return ring_dir / "shield" / "kindly-guard.shm"  # the writer makes the folder (0755), as upstream does


# ---- the reader API, byte-exact cases


def test_text_is_decoded_as_upstream_stores_it(v1_path):
    w = V1Writer(v1_path, size=SMALL)
    try:
        w.write(2, 3, True, "s" * 63 + "é", "d" * 255 + "é and more", timestamp_us=1_700_000_000_123_456)
        w.write(9, 4, False, "short", "a\u202eb")
        r = open_v1_reader(v1_path)
        a, b = r.poll(0)
    finally:
        w.close()
    # cut at 64 and 256 bytes, in the middle of "é": a replacement character, no crash
    assert a.source == "s" * 63 + "\ufffd" and a.details == "d" * 255 + "\ufffd"
    assert a.flags == 3  # both fields full: possibly cut
    assert a.timestamp_unix_us == 1_700_000_000_123_456  # the stored timestamp, not "now"
    assert (a.seq, a.threat_type, a.severity, a.blocked) == (0, 2, 3, True)
    assert (b.source, b.details, b.flags, b.threat_type) == ("short", "a\u202eb", 0, 0)  # type 9: Unknown
    assert r.generation is None and r.format == 1


def test_a_wrong_checksum_is_counted_corrupt_and_the_rest_delivered(v1_path):
    w = V1Writer(v1_path, size=SMALL)
    try:
        w.write(1, 2, False, "one", "x")
        raw = bytearray(w.event_bytes(1_700_000_000_000_000, 5, 3, True, "two", "y"))
        raw[100] ^= 0x20  # a byte of details changed after the checksum was made
        w.write_raw(bytes(raw))
        w.write(1, 2, False, "three", "z")
        r = open_v1_reader(v1_path)
        got = r.poll(0)
    finally:
        w.close()
    assert [e.source for e in got] == ["one", "three"]
    assert [e.seq for e in got] == [0, 2]
    assert (r.delivered, r.missed, r.corrupt) == (2, 0, 1)


def test_a_lap_is_counted_as_missed_never_delivered(v1_path):
    w = V1Writer(v1_path, size=SMALL)
    try:
        r = open_v1_reader(v1_path)
        for k in range(25):
            w.write(1, 1, False, f"s{k}", f"d{k}")
        got = r.poll(0)
    finally:
        w.close()
    # 10 events fit; the oldest one no write can be over is 25 - 10 + 1; event 20 starts
    # 20 * 344 mod 3520 = 3360 bytes in and lies across the end of the file
    assert [e.source for e in got] == [f"s{k}" for k in range(16, 25) if k != 20]
    assert (r.delivered, r.missed, r.corrupt) == (8, 16, 1)


def test_the_event_across_the_end_of_the_file_is_never_read_past_the_mapping(v1_path):
    w = V1Writer(v1_path, size=SMALL)
    try:
        r = open_v1_reader(v1_path)
        got = []
        for k in range(14):
            w.write(1, 2, True, f"s{k}", f"d{k}")
            got += r.poll(0)
        assert w.cut_short == 1  # event 10 starts 3440 bytes in: 264 of its 344 bytes fit
        assert os.path.getsize(v1_path) == SMALL
    finally:
        w.close()
    assert [e.seq for e in got] == [k for k in range(14) if k != 10]
    assert all(e.source == f"s{e.seq}" and e.details == f"d{e.seq}" for e in got)
    assert (r.delivered, r.missed, r.corrupt) == (13, 0, 1)


def test_a_reset_by_another_writer_is_noticed_and_what_it_took_counted_as_missed(v1_path):
    first = writer_process(v1_path)
    write(first, 5)
    r = open_v1_reader(v1_path, require_writer=False)
    try:
        assert len(r.poll(0)) == 5
        first.stdin.close()
        assert first.wait(30) == 0
        _zero_magic(v1_path)
        second = writer_process(v1_path)
        assert write(second, 15) == 15  # numbered from 0 again, past our cursor (5), and lapping it
        got = r.poll(0)
        counts = (r.resets, r.delivered, r.missed, r.corrupt)
        second.stdin.close()
        assert second.wait(30) == 0
    finally:
        r.close()
    assert [e.source for e in got] == [f"source-{k}" for k in range(6, 15) if k != 10]  # 10: across the end
    assert counts == (1, 5 + 8, 6, 1)  # the new life's 0..5 were never seen


@pytest.mark.parametrize("new", [7, 2], ids=["longer", "shorter"])
def test_a_reset_is_noticed_by_the_event_before_the_cursor(v1_path, new):
    """A writer that starts the ring again (same process: the same writer_pid) is noticed whether
    its new life is already longer than what the reader had read (7 > 5) or shorter (2)."""
    w = V1Writer(v1_path, size=SMALL)
    r = open_v1_reader(v1_path)
    try:
        for k in range(5):
            w.write(1, 1, False, f"old{k}", "")
        assert len(r.poll(0)) == 5
        w.close()
        _zero_magic(v1_path)
        w = V1Writer(v1_path, size=SMALL)
        assert w.initialised
        for k in range(new):
            w.write(1, 1, False, f"new{k}", "")
        got = r.poll(0)
        counts = (r.resets, r.delivered, r.missed, r.corrupt)
    finally:
        w.close()
        r.close()
    assert [e.source for e in got] == [f"new{k}" for k in range(new)]
    assert counts == (1, 5 + new, 0, 0)


def test_a_truncated_file_is_an_error_never_a_sigbus(v1_path):
    w = V1Writer(v1_path, size=SMALL)
    r = open_v1_reader(v1_path)
    try:
        w.write(1, 1, False, "a", "")
        os.truncate(v1_path, 0)  # the header and every event are gone from under our mapping
        with pytest.raises(_ring.Error) as exc:
            r.poll(0)  # the SIGBUS guard (native/kg_fault.h): an error, not a crash
        assert Status(exc.value.args[0]) == Status.TRUNCATED
        assert Status(r.health()) == Status.TRUNCATED
        with pytest.raises(_ring.Error):
            r.header()
    finally:
        r.close()
        w.close()


def test_a_ring_truncated_mid_read_hands_out_what_was_read_then_raises(v1_path):
    """As v2 does (test_native.py): the events read before the fault are delivered, the rest the
    header promised are counted missed, and the next poll raises. (It used to drop the batch uncounted.)"""
    page = os.sysconf("SC_PAGE_SIZE")
    w = V1Writer(v1_path, size=v1.HEADER_SIZE + 40 * v1.EVENT_SIZE)
    r = open_v1_reader(v1_path)
    try:
        for k in range(30):
            w.write(1, 1, False, f"s{k}", "")
        os.truncate(v1_path, 2 * page)  # the header and the first events stay mapped; a fault past them
        whole = (2 * page - v1.HEADER_SIZE) // v1.EVENT_SIZE
        got = r.poll(0)
        assert [e.source for e in got] == [f"s{k}" for k in range(whole)]
        assert (r.delivered, r.missed, r.corrupt) == (whole, 30 - whole, 0)
        with pytest.raises(_ring.Error) as exc:
            r.poll(0)
        assert Status(exc.value.args[0]) == Status.TRUNCATED
        assert (r.delivered, r.missed) == (whole, 30 - whole)  # nothing counted twice
    finally:
        r.close()
        w.close()


def test_tail_says_the_v1_ring_was_truncated(v1_path):
    writer = writer_process(v1_path)
    write(writer, 2)
    tail = start_kgmon("tail", "--json", "--transport", "shm", "--shm-path", v1_path)
    out = OutputWatcher(tail)
    out.wait_json(lambda objs: sum(o["type"] == "threat" for o in objs) == 2, 30, "the threats")
    os.truncate(v1_path, 100)
    gone = out.wait_json(lambda objs: [o for o in objs if o["type"] == "transport"
                                       and o["transport"] == "disconnected"], 30, "the truncation reported")
    assert "truncated" in gone[0]["reason"], gone
    assert tail.poll() is None  # still running, waiting for a writer
    writer.stdin.close()
    writer.wait(30)


def test_open_any_picks_the_format_and_refuses_a_dead_writers_ring(v1_path):
    writer = writer_process(v1_path)
    write(writer, 1)
    r = open_any(v1_path)
    assert isinstance(r, _ring.V1Reader)
    r.close()
    writer.stdin.close()
    assert writer.wait(30) == 0  # its close removed the lock file, as upstream's Drop does: shut down
    with pytest.raises(RingError) as exc:
        open_any(v1_path)
    assert exc.value.status == Status.CLOSED and "shut down" in str(exc.value)


# ---- identity: the feed and the history keep a v1 event once across re-reads


def test_a_re_read_ring_gives_the_same_keys_and_a_reset_gives_new_ones(v1_path):
    w = V1Writer(v1_path, size=SMALL)
    try:
        for k in range(4):
            w.write(1, 2, False, "same source", "same details")
        first = from_ring(open_v1_reader(v1_path).poll(0), None)
        again = from_ring(open_v1_reader(v1_path).poll(0), None)  # the app restarted and read the ring again
    finally:
        w.close()
    assert [e.key for e in first] == [e.key for e in again]
    assert len({e.key for e in first}) == 4
    rows = [row[0] for row in threat_rows("shm", None, first, 0, careful=False)]
    assert rows == [row[0] for row in threat_rows("shm", None, again, 0, careful=False)]
    assert len(set(rows)) == 4  # content keys: the stored timestamps differ
    # after a reset, event 0 is another event: another key
    _zero_magic(v1_path)
    w = V1Writer(v1_path, size=SMALL)
    try:
        w.write(1, 2, False, "same source", "same details")
        reborn = from_ring(open_v1_reader(v1_path).poll(0), None)
    finally:
        w.close()
    assert reborn[0].seq == 0 and reborn[0].key != first[0].key
    assert Batch("shm", None, reborn).generation is None


# ---- real processes: a writer process and `kgmon tail`


def test_tail_reads_without_consuming_or_writing_a_byte(v1_path):
    writer = writer_process(v1_path)
    assert write(writer, 3) == 3
    with open(v1_path, "r+b") as f:  # a consuming upstream reader took 2 events
        f.seek(256)
        f.write((2 * v1.EVENT_SIZE).to_bytes(8, "little"))
        f.seek(512)
        f.write((2).to_bytes(8, "little"))
    os.chmod(v1_path, 0o400)  # and nobody may write it now but the writer's own mapping
    before = header_bytes(v1_path)
    tail = start_kgmon("tail", "--json", "--count", 8, "--transport", "shm", "--shm-path", v1_path)
    out = OutputWatcher(tail)
    out.wait_json(lambda objs: any(o["type"] == "threat" for o in objs), 30, "the first threats")
    maps = [line for line in open(f"/proc/{tail.pid}/maps") if str(v1_path) in line]
    assert maps and all(line.split()[1][1] == "-" for line in maps), maps  # mapped without write permission
    fds = [fd for fd in os.listdir(f"/proc/{tail.pid}/fd")
           if os.readlink(f"/proc/{tail.pid}/fd/{fd}") == str(v1_path)]
    assert fds
    for fd in fds:
        flags = int(open(f"/proc/{tail.pid}/fdinfo/{fd}").read().split("flags:")[1].split()[0], 8)
        assert flags & os.O_ACCMODE == os.O_RDONLY
    assert write(writer, 5) == 8
    assert tail.wait(30) == 0, out.stderr
    out.join()
    after = header_bytes(v1_path)
    assert without_writer_fields(after) == without_writer_fields(before)
    assert after[256:264] == before[256:264] and after[512:520] == before[512:520]  # read_pos, events_read
    threats = [o for o in out.objects() if o["type"] == "threat"]
    assert [t["seq"] for t in threats] == list(range(8))
    assert [t["source"] for t in threats] == [f"source-{k}" for k in range(8)]
    assert all(t["generation"] is None and t["transport"] == "shm" for t in threats)
    transport = [o for o in out.objects() if o["type"] == "transport"][0]
    assert "Shield format v1, polled" in transport["reason"]
    assert out.objects()[-1] == {"type": "summary", "delivered": 8, "missed": 0, "corrupt": 0, "transport": "shm"}
    assert stat.S_IMODE(os.stat(v1_path).st_mode) == 0o400
    writer.stdin.close()
    assert writer.wait(30) == 0


def test_tail_counts_corrupt_and_lapped_events_of_a_writer_process(v1_path):
    writer = writer_process(v1_path)
    write(writer, 2)
    tail = start_kgmon("tail", "--json", "--count", 2 + 1 + 1 + 20, "--transport", "shm", "--shm-path", v1_path)
    out = OutputWatcher(tail)
    out.wait_json(lambda objs: sum(o["type"] == "threat" for o in objs) == 2, 30, "the first two threats")
    write(writer, "bad")
    write(writer, 1)
    out.wait_json(lambda objs: any(o.get("seq") == 3 for o in objs), 30, "the event after the bad one")
    tail.send_signal(signal.SIGSTOP)  # the reader stalls while the writer laps it
    try:
        write(writer, 20)
    finally:
        tail.send_signal(signal.SIGCONT)
    assert tail.wait(30) == 0, out.stderr
    out.join()
    summary = out.objects()[-1]
    # 24 events: 0-1 read, 2 a bad checksum, 3 read, then 20 in a ring of 10 (+80 bytes): the oldest
    # still safe is 24 - 10 + 1 = 15, so 4..14 were lapped; of 15..23, event 20 lies across the end
    assert summary == {"type": "summary", "delivered": 3 + 8, "missed": 11, "corrupt": 1 + 1, "transport": "shm"}
    seqs = [o["seq"] for o in out.objects() if o["type"] == "threat"]
    assert seqs == [0, 1, 3] + [n for n in range(15, 24) if n != 20]  # event 20 starts 3360 bytes in


def test_a_killed_writer_is_reported_gone_and_its_restart_followed_with_exact_counts(v1_path):
    demo = start_kgmon("demo", "--format", "v1", "--rate", 100, "--seed", 1, "--shm-path", v1_path, "--quiet")
    wait_for_file(lock_path_for(v1_path))
    tail = start_kgmon("tail", "--json", "--transport", "shm", "--shm-path", v1_path)
    out = OutputWatcher(tail)
    out.wait_json(lambda objs: sum(o["type"] == "threat" for o in objs) >= 20, 30, "threats from the demo")
    demo.send_signal(signal.SIGKILL)
    demo.wait(10)
    gone = out.wait_json(lambda objs: [o for o in objs if o["type"] == "transport" and o["transport"] == "disconnected"],
                         30, "the writer reported gone")
    assert "has exited" in gone[0]["reason"], gone
    written = v1.read_header(v1_path)["events_written"]
    # a new writer on the same file: the header (and its numbering) carries over, the stale lock is replaced
    writer = writer_process(v1_path, size=v1.LINUX_FILE_SIZE)
    assert write(writer, 5) == written + 5
    out.wait_json(lambda objs: any(o["type"] == "threat" and o["seq"] == written + 4 for o in objs), 30,
                  "the restarted writer's threats")
    tail.send_signal(signal.SIGTERM)
    assert tail.wait(30) == 0
    out.join()
    objs = out.objects()
    seqs = [o["seq"] for o in objs if o["type"] == "threat"]
    assert seqs == list(range(written + 5))  # every event once, in order, across the restart
    assert objs[-1]["delivered"] == written + 5 and objs[-1]["missed"] == 0 and objs[-1]["corrupt"] == 0
    writer.stdin.close()
    writer.wait(30)


def test_demo_format_v1_writes_upstreams_layout(v1_path):
    result = run_kgmon("demo", "--format", "v1", "--count", 7, "--rate", 1000, "--seed", 3, "--shm-path", v1_path)
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(os.stat(v1_path.parent).st_mode) == 0o755 & ~current_umask()
    assert stat.S_IMODE(os.stat(v1_path).st_mode) == 0o600
    assert not v1_path.with_suffix(".lock").exists()  # removed on a clean exit
    h = v1.read_header(v1_path)
    assert (h["magic"], h["version"], h["total_size"], h["file_size"]) == (v1.MAGIC, 1, 2 * 1024 * 1024, 2 * 1024 * 1024)
    assert (h["events_written"], h["write_pos"], h["read_pos"], h["events_read"]) == (7, 7 * 344, 0, 0)
    assert abs(h["last_heartbeat"] - __import__("time").time()) < 60  # unix seconds
    with open(v1_path, "rb") as f:
        f.seek(v1.HEADER_SIZE)
        first = v1.EVENT.unpack(f.read(v1.EVENT_SIZE))
    ts, typ, sev, blocked, src, det, checksum = first
    assert checksum == v1.checksum(ts, typ, sev, blocked, src, det) == _ring.v1_checksum(
        v1.EVENT.pack(*first))
    bad = run_kgmon("demo", "--format", "v1", "--no-shm", "--shm-path", v1_path)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_demo_format_v1_never_initialises_a_v2_ring_in_place(ring_path):
    v2 = run_kgmon("demo", "--count", 3, "--rate", 1000, "--no-ws", "--shm-path", ring_path)
    assert v2.returncode == 0, v2.stderr
    before = ring_path.read_bytes()
    result = run_kgmon("demo", "--format", "v1", "--count", 1, "--shm-path", ring_path)
    assert result.returncode == 2 and "format v2 ring" in result.stderr and "Traceback" not in result.stderr
    assert ring_path.read_bytes() == before


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_doctor_names_the_format_and_says_what_works(v1_path):
    writer = writer_process(v1_path)
    write(writer, 3)
    ws = f"ws://127.0.0.1:{free_port()}"
    result = run_kgmon("doctor", "--json", "--shm-path", v1_path, "--ws-url", ws)
    findings = {f["check"]: f for f in json.loads(result.stdout)["findings"]}
    assert findings["ring"]["level"] == "ok" and "Shield format v1, polled" in findings["ring"]["message"]
    assert findings["writer"]["level"] == "ok" and f"pid {writer.pid}" in findings["writer"]["message"]
    assert "3 delivered" in findings["probe"]["message"]
    assert "upgrade" not in result.stdout
    writer.stdin.close()
    assert writer.wait(30) == 0  # a clean exit removes the lock file
    text = run_kgmon("doctor", "--shm-path", v1_path, "--ws-url", ws)
    assert text.returncode == 1
    ring_line = [line for line in text.stdout.splitlines() if " ring:" in line][0]
    assert "shut down" in ring_line and "start the Shield's writer again" in ring_line, ring_line
    assert "upgrade" not in text.stdout


# ---- the desktop app's badge


def test_the_badge_names_the_v1_format(qtbot, v1_path):
    from kindlyguard_monitor.gui.main_window import MainWindow
    from kindlyguard_monitor.gui.status_display import SHM_V1_BADGE
    from kindlyguard_monitor.gui.reader_thread import ReaderThread

    w = V1Writer(v1_path, size=SMALL)
    win = MainWindow()
    qtbot.addWidget(win)
    rt = ReaderThread(str(v1_path), f"ws://127.0.0.1:{free_port()}", mode="shm")
    rt.ring_format.connect(win.set_ring_format)
    rt.transport_changed.connect(win.set_transport)
    try:
        rt.start()
        wait_for(lambda: (qtbot.wait(10), win.transport == "shm")[1], 30, "attached")
        assert win.badge.text() == SHM_V1_BADGE == "Shared memory · Shield format v1, polled"
        assert win.status_label.text().startswith("KindlyGuard (SHM v1")
        win.set_ring_format(2)
        assert win.badge.text() == "Shared memory"
    finally:
        assert rt.shutdown(5000)
        w.close()


# ---- a v1 ring written by an independent writer (tests/fixtures/shield_v1_writer.c, not our code)


def test_a_ring_of_the_independent_writer_is_read_completely_without_a_header_byte_changing(
        tmp_path_factory, tmp_path, v1_path):
    from kindlyguard_monitor.threats import severity_name, threat_type_name
    from kindlyguard_monitor.threats import format_timestamp
    import shield_v1_writer as independent

    exe = independent.build(tmp_path_factory.mktemp("v1writer"))
    log = tmp_path / "writer-log.jsonl"
    count = 6100  # past the 6,094th event, the one upstream writes across the end of the file
    # The tail first (waiting for a ring: auto, and no WebSocket there), so a slow start cannot
    # let the writer lap it before it attached.
    tail = start_kgmon("tail", "--json", "--count", count, "--shm-path", v1_path,
                       "--ws-url", f"ws://127.0.0.1:{free_port()}")
    out = OutputWatcher(tail)
    out.wait_json(lambda objs: objs and objs[0]["transport"] == "disconnected", 30, "the tail waiting for a ring")
    writer = independent.run(exe, v1_path, count=count, rate=2500, seed=7, linger=-1, log=log)
    try:
        wait_for(lambda: v1.peek_version(v1_path) == 1 and os.path.getsize(v1_path) == v1.LINUX_FILE_SIZE
                 and v1.read_header(v1_path)["total_size"] == v1.LINUX_FILE_SIZE, 30, "the independent writer's ring")
        before = header_bytes(v1_path)
        assert independent.wait_done(writer, 60) == count
        assert tail.wait(60) == 0, out.stderr
        out.join()
        after = header_bytes(v1_path)
    finally:
        assert independent.stop(writer) == 0
    assert without_writer_fields(after) == without_writer_fields(before)
    assert after[256:264] == before[256:264] == bytes(8)  # read_pos: the Shield's own reader would still get all
    assert after[512:520] == before[512:520] == bytes(8)  # events_read
    entries = {e["n"]: e for e in independent.read_log(log)}
    assert len(entries) == count and all(e["written"] for e in entries.values())
    cut = [n for n, e in entries.items() if e["bytes_written"] != v1.EVENT_SIZE]
    assert cut == [6093]  # offset 2,095,992: only 264 of its bytes are in the file
    objs = out.objects()
    threats = [o for o in objs if o["type"] == "threat"]
    assert "Shield format v1, polled" in [o for o in objs if o["type"] == "transport"][-1]["reason"]
    assert [t["seq"] for t in threats] == [n for n in range(count) if n not in cut]
    for t in threats:
        e = entries[t["seq"]]
        assert t["source"] == independent.upstream_text(e["source_hex"]), t["seq"]
        assert t["details"] == independent.upstream_text(e["details_hex"]), t["seq"]
        assert (t["threat_type"], t["severity"], t["blocked"], t["timestamp"]) == (
            threat_type_name(e["threat_type"]), severity_name(e["severity"]), bool(e["blocked"]),
            format_timestamp(e["timestamp_us"])), t["seq"]
    assert objs[-1] == {"type": "summary", "delivered": count - 1, "missed": 0, "corrupt": 1, "transport": "shm"}
    assert not lock_path_for(v1_path).exists()  # the writer's own clean exit removed its lock


def test_auto_mode_falls_back_to_the_websocket_and_resumes_the_v1_ring_where_it_left_it(v1_path):
    """The Shield's WebSocket sends no threats: back on its v1 ring, the events written while the
    writer was away and after are delivered, none twice, none skipped."""
    from kindlyguard_monitor.demo.ws_server import DemoWsServer
    from kindlyguard_monitor.transport.manager import SHM, WEBSOCKET, TransportManager

    server = DemoWsServer(0, log=lambda message: None)
    server.start()
    first = writer_process(v1_path)
    write(first, 3)
    manager = TransportManager(str(v1_path), server.url, mode="auto", probe_interval=0.2)
    seqs, changes = [], []

    def pump(until, what, timeout=30):
        def step():
            for item in manager.poll(0.05):
                if isinstance(item, Batch):
                    seqs.extend(e.seq for e in item.events)
                elif hasattr(item, "reason"):
                    changes.append(item)
            return until()
        wait_for(step, timeout, what)

    try:
        changes.extend(manager.start())
        pump(lambda: len(seqs) == 3, "the first events from the ring")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        pump(lambda: manager.transport == WEBSOCKET, "the switch to the WebSocket")
        second = writer_process(v1_path)  # the same file: numbering goes on
        assert write(second, 4) == 7
        pump(lambda: manager.transport == SHM and len(seqs) == 7, "back on the ring, every event")
        assert seqs == list(range(7)) and manager.missed == 0 and manager.corrupt == 0
        assert [c.transport for c in changes] == [SHM, WEBSOCKET, SHM]
        assert "has exited" in changes[1].reason and changes[2].ring_format == 1
        second.stdin.close()
        second.wait(30)
    finally:
        manager.close()
        server.stop(drain_s=0)
