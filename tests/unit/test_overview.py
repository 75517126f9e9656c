"""The overview's numbers (Qt-free): per minute by severity, blocked vs allowed, tops, expiry."""

from __future__ import annotations

from kindlyguard_monitor.event import threat_event
from kindlyguard_monitor.feed import Feed
from kindlyguard_monitor.overview import DAY_MINUTES, MINUTE_US, SOURCES_PER_MINUTE, Overview
from kindlyguard_monitor.threats import CRITICAL, HIGH, LOW, MEDIUM
from kindlyguard_monitor.transport.items import Batch
from kindlyguard_monitor.vocabulary import Transport

NOW = 1_800_000_000 * 1_000_000 // MINUTE_US * MINUTE_US + 30_000_000  # half past a minute


def threat(seq, minutes_ago=0, severity=MEDIUM, blocked=False, source="s", threat_type=1):
    return threat_event(transport=Transport.SHM, generation=1, seq=seq,
                        timestamp_unix_us=NOW - minutes_ago * MINUTE_US, threat_type=threat_type,
                        severity=severity, blocked=blocked, source=source, details="d")


def test_per_minute_by_severity_and_blocked_vs_allowed():
    o = Overview()
    o.add([threat(1, 0, LOW), threat(2, 0, CRITICAL, blocked=True), threat(3, 1, HIGH, blocked=True),
           threat(4, 59, 99), threat(5, 60, MEDIUM), threat(6, 0, CRITICAL)], now_us=NOW)
    hour = o.span(60, now_us=NOW)
    assert len(hour.bins) == 60
    assert hour.bins[-1] == (1, 0, 0, 2)  # this minute: Low 1, Critical 2
    assert hour.bins[-2] == (0, 0, 1, 0)
    assert hour.bins[0] == (0, 1, 0, 0)  # 59 minutes ago; 99 reads as Medium
    assert (hour.blocked, hour.allowed) == (2, 3)  # the one 60 minutes ago is outside the hour
    day = o.span(DAY_MINUTES, 10, now_us=NOW)
    assert len(day.bins) == 144 and day.total == 6
    assert day.bins[-1] == (1, 0, 1, 2)  # minutes 0 and 1 share the last 10-minute bin
    assert hour.peak_per_minute() == 3 and day.peak_per_minute() == 0.4


def test_future_times_count_now_and_older_than_a_day_not_at_all():
    o = Overview()
    assert o.add([threat(1, -500), threat(2, DAY_MINUTES), threat(3, DAY_MINUTES - 1)], now_us=NOW) == 2
    assert o.span(1, now_us=NOW).total == 1
    assert o.span(DAY_MINUTES, now_us=NOW).bins[0] == (0, 1, 0, 0)


def test_minutes_expire_with_time_and_the_tops_follow():
    o = Overview()
    o.add([threat(i, 0, source="old", threat_type=2) for i in range(3)], now_us=NOW)
    o.add([threat(10 + i, -30, source="new", threat_type=5) for i in range(2)], now_us=NOW + 30 * MINUTE_US)
    assert o.top_sources() == [("old", 3), ("new", 2)]
    assert o.top_types() == [(2, 3), (5, 2)]
    v = o.version
    o.expire(NOW + DAY_MINUTES * MINUTE_US)  # a day later: the first minute is gone
    assert o.version != v
    assert o.top_sources() == [("new", 2)] and o.top_types() == [(5, 2)]
    v = o.version
    o.expire(NOW + DAY_MINUTES * MINUTE_US)  # nothing more to drop: no new version, no redraw
    assert o.version == v


def test_distinct_sources_per_minute_are_bounded():
    o = Overview()
    o.add([threat(i, 0, source=f"attacker-{i}") for i in range(SOURCES_PER_MINUTE + 100)], now_us=NOW)
    assert len(o.top_sources(10_000)) == SOURCES_PER_MINUTE
    assert o.other_sources() == 100
    assert o.span(60, now_us=NOW).total == SOURCES_PER_MINUTE + 100  # every threat still counted


def test_fed_from_the_feeds_news_only():
    feed, o = Feed(), Overview()
    batch = Batch("shm", 1, [threat(1, 0, CRITICAL, blocked=True), threat(2, 0, LOW)])
    o.add_batches(feed.take([batch]).news, now_us=NOW)
    o.add_batches(feed.take([batch]).news, now_us=NOW)  # the same threats again are not news
    hour = o.span(60, now_us=NOW)
    assert hour.bins[-1] == (1, 0, 0, 1) and (hour.blocked, hour.allowed) == (1, 1)
