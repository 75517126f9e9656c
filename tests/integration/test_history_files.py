"""The user's files are never moved, renamed or deleted (issue 11 item 6).

The rule (docs/history.md, "The user's files"): the monitor moves a history
aside only when SQLite says it is damaged AND the file is provably its own
(a regular file, not a link, whose SQLite header carries one of our schema
versions, or any file at the default path in the monitor's own data folder).
A folder, a pipe, a link to nothing, a file that is not SQLite, another
program's database and a newer kgmon's history are left exactly as they are;
the store stops saving (final: no retry loop) and says why. An intact history
the process cannot write is opened read-only: shown, not saved.

Unwritable, here: tests run as root, which file modes do not stop. The
`unwritable` fixture makes a folder truly unwritable with `chattr +i` (the
immutable attribute stops root too; os.access agrees) when running as root,
and with chmod a-w otherwise; it skips when neither works (a filesystem
without the attribute).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from pathlib import Path

import pytest
from conftest import run_kgmon
from history_data import damage_schema, make_history, ring_batch, ring_event

from kindlyguard_monitor.history import db, query
from kindlyguard_monitor.history.store import READ_ONLY_TEXT, HistoryStore


def snapshot(folder: Path) -> dict:
    """Every name under folder with its type and content hash: what 'left as it is' means."""
    out = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            p = Path(root) / name
            if p.is_symlink():
                out[str(p)] = ("link", os.readlink(p))
            elif p.is_file():
                out[str(p)] = ("file", hashlib.sha256(p.read_bytes()).hexdigest())
            elif p.is_dir():
                out[str(p)] = ("dir",)
            else:
                out[str(p)] = ("other",)
    return out


def open_store(path) -> HistoryStore:
    store = HistoryStore(path).start()
    assert store.ready.wait(60)
    return store


def assert_final_and_not_saving(store: HistoryStore) -> None:
    """Nothing stored, nothing waiting, no retry scheduled: the writer thread only waits to stop."""
    assert not store.saving and store.error
    store.submit([ring_batch([ring_event(i) for i in range(5)])])
    assert store.flush(10) and store.lag() == 0 and store.not_saved >= 5
    assert store._retry_at is None and store._conn is None


# ---- what is not a history file is left alone


def test_a_folder_named_as_the_history_is_left_alone(tmp_path, monkeypatch):
    folder = tmp_path / "my-documents"
    folder.mkdir()
    (folder / "thesis.txt").write_text("years of work")
    before = snapshot(tmp_path)
    monkeypatch.setenv(db.PATH_ENV, str(folder))
    store = open_store(None)
    try:
        assert store.path == folder
        assert "is a folder" in store.error and store.refused
        assert_final_and_not_saving(store)
        assert not store.wait_ready(0)
    finally:
        store.close()
    assert snapshot(tmp_path) == before


def _garbage(path):
    path.write_bytes(b"this is not a database, just some words\n" * 200)


def _newer(path):
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE threats (x)")
    conn.execute("PRAGMA user_version = 99")
    conn.commit()
    conn.close()


def _foreign(path):  # another program's database, intact
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE bookmarks (url TEXT)")
    conn.execute("INSERT INTO bookmarks VALUES ('https://example.org')")
    conn.commit()
    conn.close()


def _foreign_versioned(path):  # another program's database that uses user_version too
    _foreign(path)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()


def _fifo(path):
    os.mkfifo(path)


def _dangling_link(path):
    path.symlink_to(path.parent / "nowhere.sqlite3")


def _damaged_behind_a_link(path):
    target = path.parent / "elsewhere.sqlite3"
    make_history(target, [ring_batch([ring_event(i, details="y" * 300) for i in range(2000)])])
    data = target.read_bytes()
    target.write_bytes(data[: len(data) // 3])
    path.symlink_to(target)


@pytest.mark.parametrize("make", [_garbage, _newer, _foreign, _foreign_versioned, _fifo, _dangling_link,
                                  _damaged_behind_a_link])
def test_what_is_not_provably_our_damaged_history_is_left_alone(tmp_path, make):
    path = tmp_path / "history.sqlite3"
    make(path)
    before = snapshot(tmp_path)
    store = open_store(path)
    try:
        assert store.refused and store.error == store.refused
        assert_final_and_not_saving(store)
    finally:
        store.close()
    assert snapshot(tmp_path) == before  # not renamed, not migrated, not a byte changed, no -wal left


def test_garbage_at_the_default_path_is_ours_and_moved_aside(tmp_path, monkeypatch):
    monkeypatch.delenv(db.PATH_ENV, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    path = db.default_path()
    assert tmp_path in path.parents
    path.parent.mkdir(parents=True)
    _garbage(path)
    store = open_store(None)
    try:
        assert store.notice and "moved to history.sqlite3.corrupt-" in store.notice
        assert store.saving and store.error is None
    finally:
        store.close()


def test_a_file_damaged_while_in_use_behind_a_link_is_not_moved(tmp_path):
    target = tmp_path / "real.sqlite3"
    link = tmp_path / "history.sqlite3"
    target.touch()  # an empty file: a new history (a link to nothing is refused)
    link.symlink_to(target)
    store = open_store(link)
    try:
        store.submit([ring_batch([ring_event(i) for i in range(10)])])
        assert store.flush(60)
        assert store.wait_indexed(60)  # the writer idle: no text indexing of its own meets the damage halfway
        damage_schema(store._conn)  # through the writer's own connection
        store.submit([ring_batch([ring_event(i) for i in range(10, 20)])])
        assert store.flush(60)
        assert store.refused and "damaged" in store.refused
        assert_final_and_not_saving(store)
    finally:
        store.close()
    assert link.is_symlink() and target.is_file()
    assert not [p for p in tmp_path.iterdir() if ".corrupt-" in p.name]


# ---- a history the user cannot write


@pytest.mark.parametrize("what", ["folder", "folder-and-file"])
def test_an_intact_history_that_cannot_be_written_is_shown_not_saved(tmp_path, unwritable, what):
    folder = tmp_path / "h"
    folder.mkdir()
    path = folder / "history.sqlite3"
    make_history(path, [ring_batch([ring_event(i, details=f"kept {i}") for i in range(30)])])
    unwritable(*([folder] if what == "folder" else [path, folder]))
    before = snapshot(tmp_path)
    store = open_store(path)
    try:
        assert store.read_only and store.wait_ready(0)
        assert store.error.startswith(READ_ONLY_TEXT) and store.refused is None and store.notice is None
        assert_final_and_not_saving(store)
        assert [t.details for t in query.recent(path, 5)] == [f"kept {i}" for i in range(25, 30)]  # shown
        assert query.count(store.open_reader()) == 30
    finally:
        store.close()
    assert snapshot(tmp_path) == before


def test_doctor_says_a_read_only_history_is_read_only(tmp_path, unwritable):
    folder = tmp_path / "h"
    folder.mkdir()
    path = folder / "history.sqlite3"
    make_history(path, [ring_batch([ring_event(i) for i in range(3)])])
    unwritable(folder)
    result = run_kgmon("doctor", "--json", "--shm-path", tmp_path / "ring.shm", "--ws-url", "ws://127.0.0.1:1",
                       "--timeout", "0.5", env=dict(os.environ, **{db.PATH_ENV: str(path)}))
    (finding,) = [f for f in json.loads(result.stdout)["findings"] if f["check"] == "history"]
    assert finding["level"] == "fail" and "read-only" in finding["message"]
    assert "writable" in finding["advice"] and "aside" not in finding["advice"]


# ---- doctor on what is not a history


@pytest.mark.parametrize("make, words", [
    (lambda p: p.mkdir(), "is a folder"),
    (_garbage, "not an SQLite database"),
    (_newer, "newer kgmon"),
    (_foreign, "another program"),
], ids=["folder", "garbage", "newer", "foreign"])
def test_doctor_explains_a_history_path_it_will_not_use(tmp_path, make, words):
    path = tmp_path / "history.sqlite3"
    make(path)
    before = snapshot(tmp_path)
    result = run_kgmon("doctor", "--json", "--shm-path", tmp_path / "ring.shm", "--ws-url", "ws://127.0.0.1:1",
                       "--timeout", "0.5", env=dict(os.environ, **{db.PATH_ENV: str(path)}))
    assert "Traceback" not in result.stderr
    (finding,) = [f for f in json.loads(result.stdout)["findings"] if f["check"] == "history"]
    assert finding["level"] == "fail" and words in finding["message"], finding
    assert "moves a damaged history aside" not in finding["advice"]
    assert snapshot(tmp_path) == before


def test_doctor_with_a_folder_in_plain_text_has_no_traceback(tmp_path):
    result = run_kgmon("doctor", "--shm-path", tmp_path / "ring.shm", "--ws-url", "ws://127.0.0.1:1",
                       "--timeout", "0.5", env=dict(os.environ, **{db.PATH_ENV: str(tmp_path)}))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    (line,) = [ln for ln in result.stdout.splitlines() if "history:" in ln]
    assert line.startswith("FAIL") and "is a folder" in line

