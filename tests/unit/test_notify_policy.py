"""The notification policy: flood control, muting, pausing, plain text. Fake clock only."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Hashable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kindlyguard_monitor.gui.notify_policy import Notification, NotificationPolicy
from kindlyguard_monitor.threats import CRITICAL, HIGH, LOW, MEDIUM, THREAT_TYPE_NUMBER

INJ = THREAT_TYPE_NUMBER["InjectionAttempt"]


@dataclass(frozen=True)
class Ev:
    severity: int = HIGH
    source: str = "mcp:tools/call"
    details: str = "ignore previous instructions"
    blocked: bool = True
    threat_type: int = INJ
    key: Hashable = None


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def make(**kw):
    """A policy with a 3 s interval (the mechanism's tests); the calm default has its own tests."""
    clock = Clock()
    kw.setdefault("min_interval_s", 3.0)
    return NotificationPolicy(clock=clock, **kw), clock


def test_first_event_shows_at_once():
    p, c = make()
    assert p.due() is None
    p.offer([Ev(key="a")])
    n = p.due()
    assert isinstance(n, Notification)
    assert n.title == "High threat blocked: InjectionAttempt"
    assert n.body == "mcp:tools/call — ignore previous instructions"
    assert (n.count, n.key, n.severity, n.sources) == (1, "a", HIGH, ("mcp:tools/call",))
    assert n.plain_text is True
    assert p.due() is None
    assert p.shown == 1 and p.offered == 1


def test_detected_when_not_blocked():
    p, c = make()
    p.offer([Ev(severity=CRITICAL, blocked=False, threat_type=THREAT_TYPE_NUMBER["PathTraversal"])])
    assert p.due().title == "Critical threat detected: PathTraversal"


def test_second_event_waits_for_interval():
    p, c = make()
    p.offer([Ev(key=1)])
    assert p.due().key == 1
    c.t += 1.0
    p.offer([Ev(key=2, details="second")])
    assert p.due() is None
    c.t += 1.999
    assert p.due() is None
    c.t = 1003.0
    n = p.due()
    assert n is not None and n.count == 1 and n.key == 2 and "second" in n.body
    assert p.due() is None
    assert p.shown == 2


def test_burst_of_12_is_one_summary():
    p, c = make()
    p.offer([Ev(key="first")])
    assert p.due() is not None
    notes = []
    for i in range(12):
        c.t += 0.2
        sev = CRITICAL if i in (2, 5, 9) else HIGH
        src = "mcp:tools/call" if i < 7 else "mcp:resources/read"
        p.offer([Ev(severity=sev, source=src, key=i)])
        notes.append(p.due())
    assert notes == [None] * 12
    c.t = 1003.0
    n = p.due()
    assert n.title == "12 new threats, 3 critical, all blocked"
    assert n.count == 12 and n.severity == CRITICAL and n.blocked == 12
    assert not n.urgent  # every critical one was blocked: nothing needs the user
    assert n.body == "mcp:tools/call ×7 · mcp:resources/read ×5"
    assert n.sources == ("mcp:tools/call", "mcp:resources/read")
    assert n.key == 9  # newest of the critical ones
    assert p.due() is None


def test_summary_without_critical_and_source_overflow():
    p, c = make()
    p.offer([Ev(source=s) for s in ["a", "a", "a", "b", "b", "c", "d"]])
    n = p.due()
    assert n.title == "7 new threats, all blocked"
    assert n.body == "a ×3 · b ×2 · c · …"
    assert n.sources == ("a", "b", "c")


def test_summary_key_most_severe_then_newest():
    p, c = make()
    p.offer([Ev(severity=HIGH, key="h1"), Ev(severity=CRITICAL, key="c1"),
             Ev(severity=HIGH, key="h2"), Ev(severity=CRITICAL, key="c2"),
             Ev(severity=HIGH, key="h3")])
    n = p.due()
    assert n.key == "c2" and n.severity == CRITICAL
    # An event without a key gives key None.
    c.t += 3
    class Bare:  # no `key` attribute at all
        severity, source, details, blocked, threat_type = HIGH, "s", "d", True, INJ

    p.offer([Bare()])
    assert p.due().key is None


def test_sixty_second_flood_at_most_twenty():
    p, c = make()
    start = c.t
    notes = []
    expected = 0
    sevs = itertools.cycle([LOW, MEDIUM, HIGH, CRITICAL, HIGH])
    for i in range(60_000):  # 1,000 events/s for 60 s
        c.t = start + i / 1000
        sev = next(sevs)
        expected += sev >= HIGH
        p.offer([Ev(severity=sev, source=f"src{i % 7}", key=i)])
        n = p.due()
        if n:
            notes.append((c.t, n))
    assert len(notes) <= 20
    times = [t for t, _ in notes]
    assert all(b >= a + 3.0 for a, b in zip(times, times[1:]))
    c.t = start + 60 + 3
    n = p.due()
    assert n is not None
    notes.append((c.t, n))
    assert sum(n.count for _, n in notes) == expected
    assert p.offered == 60_000 and p.suppressed == 60_000 - expected
    assert p.shown == len(notes)
    assert p.due() is None and p.next_due_in() is None


def test_muted_source_never_notifies_and_unmute_restores():
    p, c = make()
    p.mute_source("evil")
    assert p.muted == frozenset({"evil"})
    for _ in range(5):
        p.offer([Ev(source="evil", severity=CRITICAL)])
        assert p.due() is None
        assert p.next_due_in() is None
        c.t += 10
    assert p.suppressed == 5 and p.shown == 0
    p.offer([Ev(source="good")])
    assert p.due().sources == ("good",)
    p.unmute_source("evil")
    assert p.muted == frozenset()
    c.t += 10
    p.offer([Ev(source="evil")])
    assert p.due().sources == ("evil",)


def test_pause_900_expires_by_itself():
    p, c = make()
    p.offer([Ev()])  # pending when pausing: dropped, counted
    p.pause(900)
    assert p.paused_until == 1900.0
    assert p.suppressed == 1
    for _ in range(899):
        c.t += 1
        p.offer([Ev(severity=CRITICAL)])
        assert p.due() is None
    assert p.suppressed == 900 and p.shown == 0
    c.t = 1900.0
    assert p.paused_until is None
    p.offer([Ev(key="back")])
    assert p.due().key == "back"


def test_pause_until_resumed():
    p, c = make()
    p.pause(None)
    assert p.paused_until == math.inf
    c.t += 1e7
    p.offer([Ev()])
    assert p.due() is None and p.next_due_in() is None
    assert p.paused_until == math.inf
    p.resume()
    assert p.paused_until is None
    p.offer([Ev(key="k")])
    assert p.due().key == "k"


def test_threshold():
    p, c = make()
    p.offer([Ev(severity=MEDIUM), Ev(severity=LOW)])
    assert p.due() is None and p.suppressed == 2
    p.set_threshold(MEDIUM)
    p.offer([Ev(severity=MEDIUM, key="m"), Ev(severity=LOW)])
    n = p.due()
    assert n.key == "m" and n.title.startswith("Medium threat")
    assert p.suppressed == 3


def test_plain_text_visible():
    p, c = make()
    details = "<b>bold</b> &amp; x\u202Ey\u200Bz \x1b[31mred"
    p.offer([Ev(source="mcp:\u202Etools", details=details)])
    n = p.due()
    assert n.plain_text is True
    assert n.body == (
        "mcp:⟨U+202E⟩tools — <b>bold</b> &amp; x⟨U+202E⟩y⟨U+200B⟩z ⟨U+001B⟩[31mred"
    )
    for s in (n.title, n.body):
        assert "\u202e" not in s and "\u200b" not in s and "\x1b" not in s
        assert "&lt;" not in s


def test_body_elided():
    p, c = make()
    p.offer([Ev(details="x" * 1_000_000)])
    n = p.due()
    assert len(n.body) == 200 and n.body.endswith("…")
    c.t += 3
    p.offer([Ev(details="\u202e" * 500)])
    n = p.due()
    assert len(n.body) == 200 and n.body.endswith("…")


def test_next_due_in():
    p, c = make()
    assert p.next_due_in() is None
    p.offer([Ev()])
    assert p.next_due_in() == 0.0
    assert p.due() is not None
    assert p.next_due_in() is None
    c.t += 1.0
    p.offer([Ev()])
    assert p.next_due_in() == 2.0
    c.t += 1.5
    assert p.next_due_in() == 0.5
    c.t += 5
    assert p.next_due_in() == 0.0
    assert p.due() is not None
    assert p.next_due_in() is None


def test_million_event_flood_one_summary_with_bounded_state():
    p, c = make()
    evs = itertools.chain(
        itertools.repeat(Ev(source="a"), 600_000),
        itertools.repeat(Ev(source="b", severity=CRITICAL, key="crit"), 300_000),
        (Ev(source=f"s{i}") for i in range(100_000)),  # many distinct sources: bounded
    )
    p.offer(evs)  # its speed is kgmon bench's business; here: one summary, bounded state
    c.t += 2.9
    n = p.due()
    assert n is not None and p.due() is None
    assert n.title == "1000000 new threats, 300000 critical, all blocked"
    assert n.body == "a ×600000 · b ×300000 · s0 · …"
    assert n.key == "crit"
    assert len(p._sources) <= 1000


offsets = st.floats(min_value=0.0, max_value=10.0, allow_nan=False)
sevs = st.integers(min_value=1, max_value=4)
srcs = st.sampled_from(["a", "b", "c", "muted"])


@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(offsets, sevs, srcs), max_size=60),
       st.sampled_from([0.5, 3.0, 7.0]))
def test_property_interval_and_counts(items, interval):
    clock = Clock(0.0)
    p = NotificationPolicy(min_interval_s=interval, clock=clock)
    p.mute_source("muted")
    shown = []
    expected = 0
    for dt, sev, src in items:
        clock.t += dt
        p.offer([Ev(severity=sev, source=src)])
        expected += sev >= HIGH and src != "muted"
        wait = p.next_due_in()
        n = p.due()
        if n:
            assert wait == 0.0  # the timer value and due() agree, even after rounding
            shown.append((clock.t, n))
        else:
            assert wait is None or wait > 0
    clock.t += interval + 1.0  # past the interval, whatever float rounding did
    n = p.due()
    if n:
        shown.append((clock.t, n))
    times = [t for t, _ in shown]
    assert all(b >= a + interval for a, b in zip(times, times[1:]))
    assert sum(n.count for _, n in shown) == expected
    assert p.next_due_in() is None
    assert p.offered == len(items) and p.suppressed == len(items) - expected


# ---- the calm default, what the summary says, do not disturb, defanged text


def test_default_is_at_most_three_a_minute():
    clock = Clock()
    p = NotificationPolicy(clock=clock)
    start, notes = clock.t, []
    for i in range(6000):  # 100 High/Critical threats a second for a minute
        clock.t = start + i / 100
        p.offer([Ev(severity=CRITICAL if i % 10 == 0 else HIGH, key=i)])
        n = p.due()
        if n:
            notes.append(n)
    assert len(notes) == 3, [n.title for n in notes]
    assert notes[0].count == 1 and notes[1].count > 1000


@pytest.mark.parametrize("blocked, title", [
    ([True] * 12, "12 new threats, 3 critical, all blocked"),
    ([False] * 12, "12 new threats, 3 critical, none blocked"),
    ([i % 4 != 0 for i in range(12)], "12 new threats, 3 critical, 9 blocked, 3 allowed"),
])
def test_summary_says_what_was_blocked(blocked, title):
    p, c = make()
    p.offer([Ev(severity=CRITICAL if i % 4 == 0 else HIGH, blocked=b) for i, b in enumerate(blocked)])
    n = p.due()
    assert n.title == title
    assert n.blocked == sum(blocked)


def test_critical_urgency_only_for_a_critical_threat_not_blocked():
    p, c = make()
    cases = [
        ([Ev(severity=CRITICAL, blocked=False)], True),
        ([Ev(severity=CRITICAL, blocked=True)], False),
        ([Ev(severity=HIGH, blocked=False)], False),
        ([Ev(severity=HIGH, blocked=False), Ev(severity=CRITICAL, blocked=True)], False),
        ([Ev(severity=HIGH, blocked=True), Ev(severity=CRITICAL, blocked=False)], True),
    ]
    for events, urgent in cases:
        c.t += 10
        p.offer(events)
        assert p.due().urgent is urgent, events


def test_do_not_disturb_holds_everything_then_one_notification():
    p, c = make()
    p.set_inhibited(True)
    assert p.inhibited
    for i in range(40):
        c.t += 1
        p.offer([Ev(severity=CRITICAL if i < 2 else HIGH, key=i)])
        assert p.due() is None and p.next_due_in() is None
    assert p.pending == 40 and p.suppressed == 0
    p.set_inhibited(False)
    assert p.next_due_in() == 0.0
    n = p.due()
    assert n.title == "40 new threats, 2 critical, all blocked" and n.key == 1
    assert p.pending == 0 and p.due() is None


def test_urls_and_paths_in_bodies_are_defanged():
    p, c = make()
    p.offer([Ev(source="mcp:fetch http://evil.example/x", details="read file:///etc/passwd via www.evil.example")])
    n = p.due()
    assert n.body == ("mcp:fetch hxxp[:]//evil[.]example/x — read file[:]///etc/passwd via www[.]evil[.]example")
    c.t += 10
    p.offer([Ev(source="https://a.example/1"), Ev(source="https://a.example/1"), Ev(source="file:///x")])
    n = p.due()
    assert n.body == "hxxps[:]//a[.]example/1 ×2 · file[:]///x"
    assert "://" not in n.title + n.body


# --- the fleet view: each threat names its workstation (issue 16) ---------------------------

@dataclass(frozen=True)
class HostEv(Ev):
    host: str = ""


def test_a_fleet_threat_names_its_host_in_the_title():
    p, _ = make()
    p.offer([HostEv(key="a", host="ws-a")])
    n = p.due()
    assert n.title == "ws-a: High threat blocked: InjectionAttempt"
    assert n.hosts == ("ws-a",)


def test_this_machines_own_threats_name_no_host():
    p, _ = make()
    p.offer([HostEv(key="a", host="")])
    n = p.due()
    assert n.title == "High threat blocked: InjectionAttempt" and n.hosts == ()
    p2, c2 = make()
    p2.offer([Ev(key="a"), Ev(key="b")])  # events without a host attribute at all
    n2 = p2.due()
    assert "from" not in n2.title and n2.hosts == ()


def test_a_fleet_burst_says_how_many_hosts_and_names_the_busiest():
    p, c = make()
    p.offer([HostEv(key=0, host="ws-a")])
    p.due()
    p.offer([HostEv(key=i, host="ws-a") for i in range(5)] + [HostEv(key=9, host="ws-b")] * 2
            + [HostEv(key=10, host="ws-c"), HostEv(key=11, host="ws-d")])
    c.t += 3.0
    n = p.due()
    assert n.title == "9 new threats from 4 hosts, all blocked"
    assert n.body.startswith("ws-a ×5 · ws-b ×2 · ")
    assert " · … — mcp:tools/call ×9" in n.body
    assert n.hosts[:2] == ("ws-a", "ws-b")


def test_a_burst_from_one_host_names_it():
    p, c = make()
    p.offer([HostEv(key=i, host="ws-a", severity=CRITICAL, blocked=False) for i in range(3)])
    n = p.due()
    assert n.title == "3 new threats from ws-a, 3 critical, none blocked" and n.urgent
    assert n.body == "mcp:tools/call ×3"


def test_a_hostile_host_name_is_shown_visible_defanged_and_short():
    p, c = make()
    hostile = "\u202eevil.example\nFAKE: all clear" + "x" * 500
    p.offer([HostEv(key="a", host=hostile)])
    n = p.due()
    head = n.title.split(": High threat", 1)[0]
    assert "\u202e" not in n.title and "\n" not in n.title
    assert head.startswith("⟨U+202E⟩evil.example⟨U+000A⟩FAKE") and len(head) <= 40 and head.endswith("…")
    p.offer([HostEv(key="b", host=hostile), HostEv(key="c", host="ws-b")])
    c.t += 3.0
    n = p.due()
    assert "\u202e" not in n.body and "⟨U+202E⟩evil.example" in n.body and "from 2 hosts" in n.title
