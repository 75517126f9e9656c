"""Seen state in the history (issue 14 item 2, the store's half): per threat, all at once,
the unseen count, kept across restarts and retention."""

from __future__ import annotations

import pytest
from history_data import BASE_US, GEN, ring_batch, ring_event, start_store, ws_batch, ws_threat

from kindlyguard_monitor.event import from_ring
from kindlyguard_monitor.history import query


def threat_key(ring_event_, generation):
    """The EventKey the feed would give this ring event (what the GUI hands to mark_seen)."""
    return from_ring([ring_event_], generation)[0].key


@pytest.fixture
def path(tmp_path):
    return tmp_path / "history.sqlite3"


def seen_seqs(path) -> set[int]:
    with query.connection(path) as conn:
        upto = conn.execute("SELECT value FROM meta WHERE name = 'seen_upto'").fetchone()[0]
        return {r[0] for r in conn.execute("SELECT seq FROM threats WHERE seen = 1 OR id <= ?", (upto,))}


def test_marking_threats_seen_one_by_one(path):
    store = start_store(path)
    try:
        events = [ring_event(i) for i in range(10)]
        store.submit([ring_batch(events)])
        # marked right after submitting: the mark waits behind the threats it names
        store.mark_seen([threat_key(events[2], GEN), threat_key(events[5], GEN)])
        store.mark_seen([threat_key(ring_event(99), GEN)])  # never stored: ignored
        assert store.flush(60)
        assert store.unseen == 8 == query.unseen_count(path)
        assert seen_seqs(path) == {2, 5}
        store.mark_seen([threat_key(events[2], GEN)])  # again: no change
        ws = ws_threat(5, GEN)  # the same threat as delivered by the WebSocket has the same key
        store.mark_seen([ws.key])
        assert store.flush(60)
        assert store.unseen == 8 == query.unseen_count(path)
        stored = query.search(path, query.Filter(text="threat 7")).rows[0]
        store.mark_seen([stored.key.packed()])  # a StoredThreat (the History window's row); bytes work too
        assert store.flush(60)
        assert seen_seqs(path) == {2, 5, 7} and store.unseen == 7 == query.unseen_count(path)
    finally:
        store.close()


def test_mark_all_seen_covers_what_came_before_it_and_nothing_after(path):
    store = start_store(path, commit_interval_s=5.0)  # all three calls land in one gathering window
    try:
        store.submit([ring_batch([ring_event(i) for i in range(100)])])
        store.mark_all_seen()
        store.submit([ws_batch([ws_threat(i, GEN + 1) for i in range(30)])])
        assert store.flush(60)
        assert store.unseen == 30 == query.unseen_count(path)
        assert seen_seqs(path) == set(range(100))
        store.mark_all_seen()
        assert store.flush(60)
        assert store.unseen == 0 == query.unseen_count(path)
    finally:
        store.close()


def test_seen_state_survives_a_restart_and_retention(path):
    store = start_store(path, max_rows=50)
    try:
        store.submit([ring_batch([ring_event(i, time_us=BASE_US + 10**9 + 1_000 * i) for i in range(40)])])
        store.mark_seen([threat_key(ring_event(3), GEN)])
        store.submit([ring_batch([ring_event(i, time_us=BASE_US + 10**9 + 1_000 * i) for i in range(40, 50)])])
        assert store.flush(60)
        assert store.unseen == 49
        store.mark_all_seen()
        # the newest ids with the oldest times: retention (the oldest by time beyond 50) deletes them
        store.submit([ring_batch([ring_event(i, time_us=BASE_US + 60 - i) for i in range(50, 60)])])
        store.mark_all_seen()
        assert store.flush(60)
        assert store.unseen == 0
        result = store.retain_now(60)
        assert result is not None and result.threats_deleted == 10
        assert store.unseen == 0 == query.unseen_count(path)
    finally:
        store.close()
    store = start_store(path, max_rows=50)
    try:
        assert store.unseen == 0  # counted from the file at start
        # ids 51-60 were deleted and were below the mark: the new rows reuse them, yet are unseen
        store.submit([ring_batch([ring_event(i, time_us=BASE_US + 10**10 + i) for i in range(60, 63)])])
        assert store.flush(60)
        assert store.unseen == 3 == query.unseen_count(path)
        assert seen_seqs(path) == set(range(50))
    finally:
        store.close()


def test_unseen_ids_give_the_restored_feed_its_seen_state(path):
    """What the app asks at start (gui/app_history.py): which of the newest rows are unseen."""
    store = start_store(path)
    try:
        store.submit([ring_batch([ring_event(i) for i in range(6)])])
        store.mark_all_seen()
        store.submit([ring_batch([ring_event(i) for i in range(6, 12)])])
        store.mark_seen([threat_key(ring_event(8), GEN)])
        assert store.flush(60)
    finally:
        store.close()
    rows = query.recent(path, 8)  # seqs 4..11
    unseen = query.unseen_ids(path, min(r.row_id for r in rows))
    assert sorted(r.seq for r in rows if r.row_id in unseen) == [6, 7, 9, 10, 11]
    assert len(unseen) == query.unseen_count(path) == 5
