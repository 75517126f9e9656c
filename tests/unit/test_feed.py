"""kindlyguard_monitor.feed: what is news (pure Python, no Qt), and the one event shape it takes."""

from __future__ import annotations

from kindlyguard_monitor.event import EventKey, ThreatEvent, from_ring, threat_event
from kindlyguard_monitor.feed import Feed
from kindlyguard_monitor.threats import CRITICAL, HIGH, LOW, MEDIUM
from kindlyguard_monitor import _ring
from kindlyguard_monitor.transport.items import Batch
from kindlyguard_monitor.vocabulary import Transport

GEN = 0xABCD


def ev(seq, severity=MEDIUM, blocked=False, generation=GEN, details="d", transport=Transport.SHM) -> ThreatEvent:
    return threat_event(transport=transport, generation=generation, seq=seq, timestamp_unix_us=1_700_000_000_000_000,
                        threat_type=1, severity=severity, blocked=blocked, source="src", details=details,
                        publish_mono_ns=1, observe_mono_ns=2)


def batch(*events, generation=GEN):
    return Batch(Transport.SHM, generation, list(events))


def test_new_threats_are_news_and_counted_once():
    feed = Feed()
    u = feed.take([batch(ev(1, LOW), ev(2, HIGH, blocked=True)), batch(ev(3, CRITICAL, blocked=True), ev(4, 9))])
    assert [e.seq for b in u.news for e in b.events] == [1, 2, 3, 4]
    assert [e.seq for e in u.rows] == [1, 2, 3, 4] and u.added == 4 and u.not_listed == 0
    assert feed.totals == {"total": 4, "blocked": 2, LOW: 1, MEDIUM: 1, HIGH: 1, CRITICAL: 1}  # 9 reads as Medium
    again = feed.take([batch(ev(3), ev(4), ev(5))])  # a reader restarted on the ring: 3 and 4 again
    assert [e.seq for b in again.news for e in b.events] == [5] and feed.totals["total"] == 5


def test_the_same_number_from_another_writer_is_news():
    feed = Feed()
    feed.take([batch(ev(1))])
    assert feed.take([batch(ev(1, generation=GEN + 1), generation=GEN + 1)]).added == 1


def test_a_flood_lists_the_newest_and_counts_everything():
    feed = Feed(max_rows=10_000, rows_per_update=100)
    n = 1234
    u = feed.take([batch(*(ev(i, CRITICAL if i % 2 else LOW) for i in range(n)))])
    assert u.added == n and sum(len(b.events) for b in u.news) == n  # the notifier hears of all
    assert [e.seq for e in u.rows] == list(range(n - 100, n))  # the table the newest, oldest first
    assert feed.not_listed == n - 100 and feed.totals[CRITICAL] == n // 2


def test_the_row_budget_spans_batches_newest_first():
    feed = Feed(rows_per_update=3)
    u = feed.take([batch(ev(1), ev(2)), batch(ev(3), ev(4))])
    assert [e.seq for e in u.rows] == [2, 3, 4] and u.not_listed == 1


def test_restored_threats_are_shown_not_news():
    feed = Feed()
    restored = [ev(i, transport=Transport.HISTORY) for i in range(5)]
    assert feed.restore(restored) == restored
    assert feed.totals["total"] == 0
    u = feed.take([batch(*(ev(i) for i in range(3, 7)))])  # the ring still holds 3 and 4
    assert [e.seq for e in u.rows] == [5, 6] and feed.totals["total"] == 2


def test_seen_keys_are_bounded_by_the_feed_size():
    feed = Feed(max_rows=3)
    feed.take([batch(*(ev(i) for i in range(5)))])
    assert not feed.seen(EventKey(GEN, 1)) and feed.seen(EventKey(GEN, 4))
    assert feed.take([batch(ev(0))]).added == 1  # long gone from the table: shown again
    feed.set_max_rows(1)
    assert [feed.seen(EventKey(GEN, s)) for s in (3, 4, 0)] == [False, False, True]


def test_unnumbered_threats_are_keyed_by_content():
    feed = Feed()
    a = ev(None, generation=None, details="same")
    b = ev(None, generation=None, details="other")
    assert a.key.digest is not None and a.key != b.key
    assert feed.take([batch(a, b)]).added == 2
    resent = ev(None, generation=None, details="same")
    assert resent.key == a.key and feed.take([batch(resent)]).added == 0


def test_event_keys_pack_and_name_themselves():
    numbered = EventKey(GEN, 42)
    assert numbered.text_id() == f"{GEN:016x}-42" and EventKey.from_packed(numbered.packed()) == numbered
    content = ev(None, generation=None).key
    assert len(content.packed()) == 20 and content.text_id() == "content-" + content.digest.hex()
    assert EventKey.from_packed(content.packed()) == content


def test_ring_events_are_converted_once_with_their_generation():
    raw = [_ring.Event((s, 10, 15, 1_700_000_000_000_000 + s, 2, 3, True, 0, "src", "d")) for s in (7, 8)]
    events = from_ring(raw, GEN)
    assert [e.key for e in events] == [EventKey(GEN, 7), EventKey(GEN, 8)]
    assert events[0].transport == Transport.SHM and events[0].generation == GEN and events[0].latency_ns == 5
    v1 = from_ring(raw, None)  # the Shield's v1 ring: no generation, so keyed by content
    assert v1[0].key.digest is not None and v1[0].seq == 7
    record = events[0].to_dict()
    assert (record["id"], record["transport"], record["severity"]) == (f"{GEN:016x}-7", "shm", "High")


# ---- what needs the user: unseen threats (issue 14 item 2)

def test_new_threats_are_unseen_until_opened_or_all_marked_seen():
    feed = Feed()
    feed.take([batch(ev(1), ev(2), ev(3))])
    assert feed.unseen == 3 and all(feed.is_unseen(EventKey(GEN, s)) for s in (1, 2, 3))
    assert feed.open(EventKey(GEN, 2)) is True  # the user opened it: seen (the caller tells the history)
    assert feed.open(EventKey(GEN, 2)) is False  # again: nothing to keep
    assert feed.open(EventKey(GEN, 99)) is False  # never here
    assert feed.unseen == 2 and not feed.is_unseen(EventKey(GEN, 2))
    feed.take([batch(ev(2), ev(4))])  # 2 read again (a reader restart) is not unseen again; 4 is new
    assert feed.unseen == 3 and not feed.is_unseen(EventKey(GEN, 2)) and feed.is_unseen(EventKey(GEN, 4))
    assert feed.mark_all_seen() == 3
    assert feed.unseen == 0 and not any(feed.is_unseen(EventKey(GEN, s)) for s in range(5))
    feed.take([batch(ev(5))])  # what comes after "mark all" is unseen
    assert feed.unseen == 1 and feed.is_unseen(EventKey(GEN, 5))


def test_unlisted_threats_stay_counted_unseen_until_all_are_marked_seen():
    feed = Feed(max_rows=3, rows_per_update=2)
    u = feed.take([batch(*(ev(i) for i in range(10)))])
    assert len(u.rows) == 2 and feed.unseen == 10  # a flood: 8 not listed, all still need the user
    assert not feed.is_unseen(EventKey(GEN, 0))  # no row to open any more
    assert feed.open(EventKey(GEN, 9)) and feed.unseen == 9
    assert feed.mark_all_seen() == 9 and feed.unseen == 0


def test_restored_threats_keep_the_seen_state_the_history_kept():
    feed = Feed()
    restored = [ev(i, transport=Transport.HISTORY) for i in range(5)]
    unseen = [EventKey(GEN, 3), EventKey(GEN, 4), EventKey(GEN, 77)]  # 77: not among those restored
    assert feed.restore(restored, unseen, unseen_total=40) == restored
    assert [feed.is_unseen(EventKey(GEN, i)) for i in range(5)] == [False, False, False, True, True]
    assert feed.unseen == 40 and feed.restored == 5  # the history holds more unseen than the feed lists
    assert feed.totals["total"] == 0  # from before this session: not counted as this session's
    feed.take([batch(ev(4), ev(5))])  # the ring still holds 4: not news, not unseen twice
    assert feed.unseen == 41
    assert feed.open(EventKey(GEN, 3)) and feed.unseen == 40


def test_restored_without_a_total_counts_the_unseen_keys():
    feed = Feed()
    feed.restore([ev(1, transport=Transport.HISTORY), ev(2, transport=Transport.HISTORY)], [EventKey(GEN, 2)])
    assert feed.unseen == 1 and feed.restored == 2
