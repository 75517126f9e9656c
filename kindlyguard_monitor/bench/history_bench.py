"""The threat history under load (kgmon bench --history).

Measures, on a fresh database in a temporary folder:

- with the reader at full speed: the bench's C writer process
  (kindlyguard_monitor.bench.ring_bench) publishes at a steady rate into a 2 MiB ring, the
  app's reader (adaptive, as the app runs it, with the app's garbage-collector settings:
  kindlyguard_monitor.gui.startup.prepare_for_floods) polls it in a thread and hands
  every batch to HistoryStore.submit(), as the app does. Per rate: what
  the reader delivered and missed (does storing slow the reader?), how far
  behind the store was when the last event was read, and the store rate
  (threats committed per second from the first event read to flush()); and,
  in the same run and at the same rate, the same reader storing nothing: what
  it misses then is not the store's doing;
- store rate alone: ring events (kindlyguard_monitor._ring.Event, realistic demo text,
  spread over the last 30 days) handed to submit() in batches of 1,000 as
  fast as possible, until flush() returns; and what submit() costs its caller;
- the SQLite floor, in the same run (before and after the store alone, the
  mean of the two): the same rows, made beforehand, inserted by one
  executemany() in one transaction into the same table with no index but the
  primary key, with the store's pragmas: what SQLite itself does on this
  machine under this load. The store's figure is given as a ratio to it;
- size: the database's bytes per million threats, after a checkpoint, without
  and with the text index;
- text index: how fast the writer fills it behind the writes (rows/s), on
  the full database, from empty (what an old history's migration costs);
- open: HistoryStore start() to ready (quick_check, migrations, retention)
  on the full database, what every app start pays;
- search: first page (200 rows) per query kind, median and slowest of
  several runs on one reader connection, with the text index caught up
  (and one text search before it is: the scan a flood leaves behind), and
  a page deep in the results (keyset);
- restore: a new reader connection plus recent(10,000), what the app does
  to fill its feed at start.

Nothing is asserted; figures are what this machine did now.
"""

from __future__ import annotations

import shutil
import sqlite3
import statistics
import tempfile
import threading
import time
from pathlib import Path

from kindlyguard_monitor import _ring
from kindlyguard_monitor.bench import ring_bench as rb
from kindlyguard_monitor.demo.threats import ThreatGenerator
from kindlyguard_monitor.event import from_ring
from kindlyguard_monitor.gui.startup import prepare_for_floods
from kindlyguard_monitor.history import query
from kindlyguard_monitor.history.records import THREAT_COLUMNS, threat_rows
from kindlyguard_monitor.history.schema import MIGRATIONS, PAGE_SIZE
from kindlyguard_monitor.history.store import HistoryStore
from kindlyguard_monitor.ring.reader import open_reader
from kindlyguard_monitor.threats import CRITICAL, THREAT_TYPE_NUMBER
from kindlyguard_monitor.transport.items import Batch
from kindlyguard_monitor.vocabulary import Transport

BATCH = 1000
SPREAD_US = 30 * 86_400 * 1_000_000
GENERATION = 0x5EED_0000_0000_0001
FLOOR_ROWS = 200_000  # rows the floor inserts (made beforehand: a million would hold ~0.4 GB)


def make_events(n: int, seed: int = 1) -> list:
    """n ring events, oldest first, evenly spread over the last 30 days (distinct numbered keys)."""
    gen = ThreatGenerator(seed)
    now = time.time_ns() // 1000
    step = SPREAD_US // max(1, n)
    start = now - SPREAD_US
    out = []
    for seq in range(n):
        t = gen.next(start + seq * step)
        out.append(_ring.Event((seq, 0, 0, t.timestamp_unix_us, t.threat_type, t.severity, t.blocked, 0,
                                t.source, t.details)))
    return out


def _times_ms(fn, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return times


def _median_ms(fn, runs: int) -> float:
    return round(statistics.median(_times_ms(fn, runs)), 2)


def live(folder: Path, rate: int, seconds: float, store: bool = True) -> dict:
    """The C writer at `rate` events/s for `seconds`, the app's reader feeding a new store
    (store=False: the same reader converting every batch as the manager does, storing nothing)."""
    count = int(rate * seconds)
    ring_folder = rb.ring_dir()
    writer = rb.WriterProcess(str(Path(ring_folder) / "bench.shm"))
    history = None
    if store:
        history = HistoryStore(folder / f"live-{rate}.sqlite3", max_rows=count).start()
        history.wait_ready(30)
    ready = threading.Event()
    seen: dict = {}

    def read() -> None:
        reader = open_reader(writer.path, start="newest")
        ready.set()
        deadline = time.monotonic() + 30 + seconds
        while reader.delivered + reader.missed + reader.corrupt < count and time.monotonic() < deadline:
            events = reader.poll(0.1)
            if events:
                seen.setdefault("first", time.perf_counter())
                batch = Batch(Transport.SHM, reader.generation, from_ring(events, reader.generation))  # as the manager
                if history is not None:
                    history.submit([batch])
        seen["lag"] = history.lag() if history is not None else 0
        seen["counts"] = (reader.delivered, reader.missed, reader.corrupt, reader.max_stall_ns / 1000)
        reader.close()

    thread = threading.Thread(target=read, name="bench-history-reader", daemon=True)
    try:
        thread.start()
        ready.wait(10)
        time.sleep(0.05)  # let the reader reach its first wait
        writer.run(rate, count, 256)
        thread.join()
        delivered, missed, corrupt, stall_us = seen["counts"]
        got = {"rate": rate, "delivered": delivered, "missed": missed + corrupt, "max_stall_us": round(stall_us)}
        if history is None:
            return got
        history.flush()
        done = time.perf_counter()
        return {**got, "stored": history.stored, "flood_transactions": history.flood_transactions,
                "lag_at_last_read": seen["lag"],
                "store_rate_per_s": round(history.stored / (done - seen["first"])) if "first" in seen else 0}
    finally:
        if history is not None:
            history.close()
        writer.close()
        shutil.rmtree(ring_folder, ignore_errors=True)


def sqlite_floor(folder: Path, events: list, indexes: bool | str = False) -> tuple[float, float]:
    """Rows per second SQLite itself inserts here, and CPU µs per row (this thread's): the store's rows for
    `events`, made beforehand,
    one executemany() in one transaction, the threats table with no index but its primary key
    (not even the key's UNIQUE), the store's page size and pragmas (WAL, synchronous=NORMAL).
    indexes=True: with the store's own indexes (the unique key, time, severity and type), what
    SQLite does for the store's schema; indexes="key": the unique key and the time index only, what
    a flood's rows cost SQLite before the other two are filled behind the writes (history.late_index)."""
    path = folder / "floor.sqlite3"
    rows = list(threat_rows(str(Transport.SHM), GENERATION, events, time.time_ns() // 1000, careful=False))
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
        conn.execute("PRAGMA journal_mode = WAL").fetchall()
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA cache_size = -32768")
        if indexes == "key":
            conn.execute(MIGRATIONS[0][0])
            conn.execute(MIGRATIONS[0][1])  # the time index
        elif indexes:
            for statement in MIGRATIONS[0] + MIGRATIONS[1]:
                conn.execute(statement)
        else:
            conn.execute(MIGRATIONS[0][0].replace("key BLOB NOT NULL UNIQUE", "key BLOB NOT NULL"))
        # the columns later schema versions add (seen, host): the rows the store writes have them
        for statement in (st for migration in MIGRATIONS[2:] for st in migration):
            if statement.startswith("ALTER TABLE threats"):
                conn.execute(statement)
        sql = (f"INSERT INTO threats ({', '.join(THREAT_COLUMNS)}) "
               f"VALUES ({', '.join('?' * len(THREAT_COLUMNS))})")
        t0, c0 = time.perf_counter(), time.thread_time()
        conn.execute("BEGIN")
        conn.executemany(sql, rows)
        conn.execute("COMMIT")
        cpu = time.thread_time() - c0
        return len(rows) / (time.perf_counter() - t0), cpu / len(rows) * 1e6
    finally:
        conn.close()
        for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            p.unlink(missing_ok=True)


def measure_history(short: bool, progress) -> dict:
    n = 100_000 if short else 1_000_000
    runs = 1 if short else 7  # short: a smoke test (CI runs it), not figures
    folder = Path(tempfile.mkdtemp(prefix="kgmon-history-bench-"))
    path = folder / "history.sqlite3"
    out: dict = {"mode": "short" if short else "full", "threats": n}
    prepare_for_floods()  # the collector and the GIL as the app sets them (kindlyguard_monitor.gui.launch.run)
    try:
        _measure_live(out, folder, short, progress)
        progress(f"history: making {n:,} threats")
        events = from_ring(make_events(n), GENERATION)  # as the transport manager delivers them
        batches = [Batch(Transport.SHM, GENERATION, events[i:i + BATCH]) for i in range(0, n, BATCH)]
        floor_rows = 10_000 if short else FLOOR_ROWS  # short: a smoke test, not figures
        progress(f"history: the SQLite floor ({min(n, floor_rows):,} rows, primary key only)")
        floors = [sqlite_floor(folder, events[:floor_rows])]
        del events
        _measure_store(out, path, n, batches, progress)
        _measure_floors_after(out, folder, batches[:floor_rows // BATCH], floors, progress)
        del batches
        out["size_mib_per_million"] = round(_checkpointed_size(path) / n * 1_000_000 / 2**20, 1)
        with query.connection(path) as reader:
            out["unindexed_no_match_ms"] = _median_ms(
                lambda: query.search(reader, query.Filter(text="no such text anywhere")), 1)
        _measure_open_and_index(out, path, n, progress)
        _measure_search(out, path, runs, progress)
        progress("history: restoring the feed (recent 10,000)")
        out["recent_10000_ms"] = _median_ms(lambda: query.recent(path, 10_000), runs)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return out


def _measure_live(out: dict, folder: Path, short: bool, progress) -> None:
    """The C writer at each rate: the app's reader alone, then storing everything."""
    rates, seconds = ([200_000], 0.5) if short else ([100_000, 200_000, 300_000, 500_000, 1_000_000], 2.0)
    out["live"] = []
    for rate in rates:
        progress(f"history: C writer at {rate:,}/s, the app's reader alone, then storing everything")
        alone = live(folder, rate, seconds, store=False)
        out["live"].append(dict(live(folder, rate, seconds), alone_delivered=alone["delivered"],
                                alone_missed=alone["missed"], alone_max_stall_us=alone["max_stall_us"]))


def _measure_store(out: dict, path: Path, n: int, batches: list, progress) -> None:
    """The store alone: every batch submitted as fast as it takes them, then its late indexes filled."""
    store = HistoryStore(path, max_rows=n, index_text=False).start()  # the index is timed on its own below
    store.wait_ready(30)
    progress(f"history: storing {n:,} threats")
    submit_s = 0.0
    writer_cpu = _thread_cpu_clock(store._thread)
    w0 = time.clock_gettime(writer_cpu) if writer_cpu is not None else 0.0
    t0, c0 = time.perf_counter(), time.thread_time()
    for b in batches:
        s0 = time.perf_counter()
        store.submit([b])
        submit_s += time.perf_counter() - s0
    store.flush()
    elapsed = time.perf_counter() - t0
    if writer_cpu is not None:  # the writer thread's, the flood writer process's and submit()'s (flush() sleeps)
        cpu = time.clock_gettime(writer_cpu) - w0 + store.flood_writer_cpu_s() + time.thread_time() - c0
        out["store_cpu_us_per_threat"] = round(cpu / n * 1e6, 2)
    out["flood_transactions"] = store.flood_transactions
    late = store._late_backlog  # stored during the flood, not yet in the severity and type indexes
    l0 = time.perf_counter()
    if late:  # a first page that needs them, while they catch up (what a flood leaves for a moment)
        with query.connection(path) as reader:
            out["late_first_page_ms"] = _median_ms(lambda: query.search(
                reader, query.Filter(types={THREAT_TYPE_NUMBER["PathTraversal"]})), 1)
    store.wait_indexed(3600)
    if late:
        out["late_index_rows"] = late
        out["late_index_rows_per_s"] = round(late / (time.perf_counter() - l0))
    out["store_rate_per_s"] = round(n / elapsed)
    out["submit_ns_per_threat"] = round(submit_s / n * 1e9, 1)
    out["stored"] = store.stored
    store.close()


def _measure_floors_after(out: dict, folder: Path, floor_batches: list, floors: list, progress) -> None:
    """The SQLite floor again, with the store's indexes, with the key and time index; the store's ratios."""
    progress("history: the SQLite floor again")
    again = [e for b in floor_batches for e in b.events]
    floors.append(sqlite_floor(folder, again))
    progress("history: SQLite with the store's indexes")
    indexed = sqlite_floor(folder, again, indexes=True)
    out["sqlite_indexed_per_s"], out["sqlite_indexed_cpu_us_per_row"] = round(indexed[0]), round(indexed[1], 2)
    progress("history: SQLite with the unique key and the time index only")
    key_only = sqlite_floor(folder, again, indexes="key")
    out["sqlite_key_only_per_s"], out["sqlite_key_only_cpu_us_per_row"] = round(key_only[0]), round(key_only[1], 2)
    out["store_to_sqlite_indexed"] = round(out["store_rate_per_s"] / indexed[0], 3)
    out["sqlite_floor_per_s"] = [round(f[0]) for f in floors]
    out["floor_cpu_us_per_row"] = [round(f[1], 2) for f in floors]
    out["store_to_floor"] = round(out["store_rate_per_s"] / statistics.mean(f[0] for f in floors), 3)
    if "store_cpu_us_per_threat" in out:  # CPU per row, floor / store: what load changes least
        out["store_cpu_to_floor"] = round(statistics.mean(f[1] for f in floors) / out["store_cpu_us_per_threat"], 3)


def _measure_open_and_index(out: dict, path: Path, n: int, progress) -> None:
    """Opening the full database (check, migrate, retention), then its text index filled from empty."""
    progress("history: opening the full database (check, migrate, retention)")
    t0 = time.perf_counter()
    store = HistoryStore(path, max_rows=n).start()
    store.wait_ready(600)
    out["open_to_ready_ms"] = round((time.perf_counter() - t0) * 1000, 1)
    progress(f"history: the writer indexing {n:,} rows' text behind the writes")
    t0 = time.perf_counter()
    store.wait_indexed(3600)
    out["index_rows_per_s"] = round(n / (time.perf_counter() - t0))
    store.close()
    out["size_indexed_mib_per_million"] = round(_checkpointed_size(path) / n * 1_000_000 / 2**20, 1)


def _search_filters() -> dict:
    """The first-page queries the bench times, by the name the table shows."""
    return {
        "everything": query.Filter(),
        "one type (PathTraversal)": query.Filter(types={THREAT_TYPE_NUMBER["PathTraversal"]}),
        "severity Critical": query.Filter(min_severity=CRITICAL),
        "blocked only": query.Filter(blocked=True),
        "last hour": query.Filter(since_us=time.time_ns() // 1000 - 3_600_000_000),
        "one source, common (exact)": query.Filter(source="mcp:tools/call"),
        "one source, rare (exact, 0.3%)": query.Filter(source="mcp:notifications/message"),
        "a source never seen": query.Filter(source="mcp:nowhere"),
        "text, common (\"offset\", 8%)": query.Filter(text="offset"),
        "text, medium (\"passwd\", 3%)": query.Filter(text="passwd"),
        "text, rare (\"win.ini\")": query.Filter(text="win.ini"),
        "text, no match": query.Filter(text="no such text anywhere"),
        "text, non-ASCII, no match": query.Filter(text="ΣΊΣΥΦΟΣ"),
        "text, 1 character, common (\"x\")": query.Filter(text="x"),
        "text, 1 character, no match (\"¤\")": query.Filter(text="¤"),
        "text, 2 characters, rare (\"zq\")": query.Filter(text="zq"),
        "text, 2 non-ASCII, no match": query.Filter(text="§é"),
        "type + severity + blocked + text": query.Filter(types={THREAT_TYPE_NUMBER["UnicodeBiDi"]},
                                                         min_severity=3, blocked=False, text="u+202e"),
    }


def _measure_search(out: dict, path: Path, runs: int, progress) -> None:
    """First page per query kind, a page deep in the results (keyset), and two counts."""
    progress("history: searching")
    search: dict = {}
    with query.connection(path) as reader:
        for name, f in _search_filters().items():
            page = query.search(reader, f)
            times = _times_ms(lambda f=f: query.search(reader, f), runs)
            search[name] = {"first_page_ms": round(statistics.median(times), 2),
                            "slowest_ms": round(max(times), 2), "rows": len(page.rows)}
        deep = query.Filter()
        cursor = None
        for _ in range(50):  # walk 50 pages in, then time the next one
            cursor = query.search(reader, deep, before=cursor).next_cursor
        out["page_51_ms"] = _median_ms(lambda: query.search(reader, deep, before=cursor), runs)
        out["count_everything_ms"] = _median_ms(lambda: query.count(reader, query.Filter()), runs)
        out["count_critical_ms"] = _median_ms(lambda: query.count(reader, query.Filter(min_severity=CRITICAL)), runs)
    out["search"] = search


def _thread_cpu_clock(thread: threading.Thread | None):
    """The CPU-time clock of another thread (Linux, BSD), or None where there is none."""
    try:
        return time.pthread_getcpuclockid(thread.ident)
    except (AttributeError, OSError, TypeError):
        return None


def _checkpointed_size(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return path.stat().st_size


def render_history(out: dict) -> str:
    lines = [f"threat history ({out['mode']})", "  the app's reader at full speed, storing every event "
             "(C writer process, 2 MiB ring):"]
    for r in out["live"]:
        lines.append(f"    {r['rate']:>9,}/s: {r['delivered']:,} read, {r['missed']:,} missed, {r['stored']:,} "
                     f"stored at {r['store_rate_per_s']:,}/s ({r['flood_transactions']} transactions by the flood "
                     f"writer), {r['lag_at_last_read']:,} waiting when the last was read"
                     f"; longest the reader did not poll {r['max_stall_us'] / 1000:.1f} ms; the reader alone: "
                     f"{r['alone_missed']:,} missed, {r['alone_max_stall_us'] / 1000:.1f} ms")
    floor = out["sqlite_floor_per_s"]
    lines += [
        f"  store alone: {out['threats']:,} threats",
        f"  store / SQLite floor            {out['store_to_floor']:>12} (floor: {floor[0]:,} and {floor[1]:,} rows/s, "
        "before and after; one executemany, one transaction, primary key only)",
        f"  CPU per row, floor / store      {out.get('store_cpu_to_floor', '-'):>12} (floor "
        f"{' and '.join(map(str, out['floor_cpu_us_per_row']))} µs, "
        f"store {out.get('store_cpu_us_per_threat', '-')} µs: "
        "the writer thread's, the flood writer process's and submit()'s)",
        f"  SQLite with the store's indexes {out['sqlite_indexed_per_s']:>12,} rows/s, "
        f"{out['sqlite_indexed_cpu_us_per_row']} µs CPU per row (the same floor, with the unique key, time, severity "
        "and type indexes)",
        f"  SQLite, unique key + time only  {out['sqlite_key_only_per_s']:>12,} rows/s, "
        f"{out['sqlite_key_only_cpu_us_per_row']} µs CPU per row (what a flood's rows cost before the other two)",
        f"  store / SQLite with its indexes {out['store_to_sqlite_indexed']:>12}",
        f"  store rate                      {out['store_rate_per_s']:>12,} threats/s (batches of {BATCH:,}; "
        f"submit() costs the reader {out['submit_ns_per_threat']} ns per threat; "
        f"{out['flood_transactions']} transactions by the flood writer)",
        f"  severity/type indexes           {format(out.get('late_index_rows_per_s', 0), ','):>12} rows/s "
        f"filled behind the writes ({out.get('late_index_rows', 0):,} rows stored during the flood; "
        f"first page of one type meanwhile {out.get('late_first_page_ms', '-')} ms)",
        f"  size                            {out['size_mib_per_million']:>12} MiB per million threats "
        f"({out['size_indexed_mib_per_million']} MiB with the text index)",
        f"  open to ready                   {out['open_to_ready_ms']:>12} ms (quick_check, migrations, retention)",
        f"  text index filled behind writes {out['index_rows_per_s']:>12,} rows/s",
        f"  text, no match, none indexed    {out['unindexed_no_match_ms']:>12} ms (the scan a flood leaves until "
        "the index catches up)",
        f"  restore the feed (recent 10,000){out['recent_10000_ms']:>12} ms",
        f"  page 51 of everything (keyset)  {out['page_51_ms']:>12} ms",
        f"  count(everything)               {out['count_everything_ms']:>12} ms",
        f"  count(severity Critical)        {out['count_critical_ms']:>12} ms",
        "  first page (200 rows), median and slowest ms, text index caught up:",
    ]
    for name, r in out["search"].items():
        lines.append(f"    {name:<34}{r['first_page_ms']:>9} ms {r['slowest_ms']:>9} ms  ({r['rows']} rows)")
    return "\n".join(lines)

