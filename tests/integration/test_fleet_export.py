"""`kgmon export` of the fleet view's history (issue 16): every threat with the host it came from.

The fleet history is made as the app makes it (fleet/source.py's fleet_event, stored by the real
HistoryStore); this machine's own history exports exactly as before (no host column).
"""

from __future__ import annotations

import csv
import io
import json

from conftest import run_kgmon
from history_data import make_history, ring_batch, ring_event

from kindlyguard_monitor.fleet.message import FleetThreat
from kindlyguard_monitor.fleet.source import fleet_event
from kindlyguard_monitor.history import export
from kindlyguard_monitor.transport.items import Batch
from kindlyguard_monitor.vocabulary import Transport


def fleet_threat(i: int, host: str, details: str = "") -> FleetThreat:
    return FleetThreat(i, 0, 0, 1_700_000_000_000_000 + i * 1000, 1, 3, i % 2 == 0, 0, "mcp:tools/call",
                       details or f"threat {i}", f"0123456789abcdef-{i}", host, i, "hist", "shm", 100 + i)


def fleet_history(path):
    events = [fleet_event(fleet_threat(i, "ws-a"), 10**12, 1_700_000_000_000_000 + 10**6) for i in range(3)]
    events += [fleet_event(fleet_threat(i, "=cmd|' /c calc'!A0"), 10**12, 1_700_000_000_000_000 + 10**6)
               for i in range(3, 5)]
    return make_history(path, [Batch(Transport.FLEET, None, events)])


def test_a_fleet_history_exports_the_host_in_csv_and_json(tmp_path):
    path = fleet_history(tmp_path / "fleet-history.sqlite3")
    assert export.has_hosts(path)
    r = run_kgmon("export", "--history", path, "--format", "csv")
    assert r.returncode == 0, r.stderr
    rows = list(csv.reader(io.StringIO(r.stdout, newline="")))
    assert rows[0] == [*export.FIELDS, "host"]
    hosts = [row[-1] for row in rows[1:]]
    assert hosts == ["'=cmd|' /c calc'!A0"] * 2 + ["ws-a"] * 3  # newest first; a formula host guarded
    r = run_kgmon("export", "--history", path, "--format", "json")
    assert r.returncode == 0, r.stderr
    records = json.loads(r.stdout)
    assert [x["host"] for x in records] == ["=cmd|' /c calc'!A0"] * 2 + ["ws-a"] * 3
    assert list(records[0]) == [*export.FIELDS, "host"]
    r = run_kgmon("export", "--history", path, "--format", "jsonl")
    assert [json.loads(line)["host"] for line in r.stdout.splitlines()][-1] == "ws-a"


def test_this_machines_own_history_exports_as_before(tmp_path):
    path = make_history(tmp_path / "history.sqlite3", [ring_batch([ring_event(i) for i in range(3)])])
    assert not export.has_hosts(path)
    r = run_kgmon("export", "--history", path, "--format", "csv")
    assert r.returncode == 0, r.stderr
    assert next(csv.reader(io.StringIO(r.stdout, newline=""))) == list(export.FIELDS)
    r = run_kgmon("export", "--history", path, "--format", "json")
    assert all("host" not in x for x in json.loads(r.stdout)) and len(json.loads(r.stdout)) == 3
