"""The ring's events as the app takes them in (event.from_ring): a real C writer (and the
Shield's v1 ring, written as upstream writes it), the real readers, and the conversion in C
(_ring.threat_events) against the field-by-field one. The
records are untracked by the cyclic GC, so a flood's events are not what each young collection
walks (in the GUI that walk, 5-30 ms, ran mostly on the reader's thread and lost events)."""

from __future__ import annotations

import gc
import pickle

import pytest

from kindlyguard_monitor import _ring
from kindlyguard_monitor.demo.threats import ThreatGenerator
from kindlyguard_monitor.event import EventKey, ThreatEvent, from_ring, threat_event
from kindlyguard_monitor.ring import v1
from kindlyguard_monitor.ring.reader import open_reader, open_v1_reader
from kindlyguard_monitor.ring.v1_writer import V1Writer
from kindlyguard_monitor.ring.writer import RingWriter
from kindlyguard_monitor.threats import Threat
from kindlyguard_monitor.vocabulary import Transport

HOSTILE = [Threat(1, 4, True, "src\u202e\x00\U0001f600", "d\x1b[31m" + "é" * 100, 1_700_000_000_000_000),
           Threat(7, 1, False, "", "", 0)]


def read_all(path, n: int) -> tuple[list, int]:
    reader = open_reader(path, start="oldest")
    try:
        events: list = []
        while len(events) < n:
            got = reader.poll(1.0)
            assert got, f"only {len(events)} of {n} events came"
            events += got
        return events, reader.generation
    finally:
        reader.close()


def field_by_field(e, generation) -> ThreatEvent:
    return threat_event(transport=Transport.SHM, generation=generation, seq=e.seq,
                        timestamp_unix_us=e.timestamp_unix_us, threat_type=e.threat_type, severity=e.severity,
                        blocked=e.blocked, flags=e.flags, source=e.source, details=e.details,
                        publish_mono_ns=e.publish_mono_ns, observe_mono_ns=e.observe_mono_ns)


def test_ring_events_become_the_same_threat_events_as_field_by_field_and_go_untracked(ring_path):
    threats = HOSTILE + ThreatGenerator(3).batch(200)
    with RingWriter(ring_path) as writer:
        writer.publish(threats)
        events, generation = read_all(ring_path, len(threats))
    got = from_ring(events, generation)
    want = [field_by_field(e, generation) for e in events]
    assert got == want and [type(g) for g in got] == [ThreatEvent] * len(want)
    assert all(type(g.key) is EventKey and g.key == (generation, g.seq, None) for g in got)
    assert (got[0].source, got[0].details) == (HOSTILE[0].source, HOSTILE[0].details)
    assert {hash(g) for g in got} == {hash(w) for w in want}  # keys in sets and dicts: the same
    assert not any(gc.is_tracked(g) or gc.is_tracked(g.key) for g in got)
    assert all(gc.is_tracked(w) for w in want)  # what the C conversion spares the collector
    # still ordinary records: copied, replaced, pickled (the fleet and history paths do)
    assert pickle.loads(pickle.dumps(got[5])) == got[5]
    assert got[5]._replace(transport=Transport.HISTORY).transport is Transport.HISTORY
    assert got[5].latency_ns == got[5].observe_mono_ns - got[5].publish_mono_ns


def test_the_shields_v1_ring_events_are_keyed_by_content_and_go_untracked_too(ring_dir):
    """The Shield's own ring has no generation: each event's key is its content's digest (made
    in Python), the records then built and untracked as a v2 batch's are."""
    path = ring_dir / "shield" / "kindly-guard.shm"
    writer = V1Writer(path, size=v1.HEADER_SIZE + 64 * v1.EVENT_SIZE)
    try:
        for i, t in enumerate(HOSTILE + ThreatGenerator(4).batch(30)):
            writer.write(t.threat_type, t.severity, t.blocked, t.source, t.details, timestamp_us=1_700_000_000 + i)
        reader = open_v1_reader(path)
        events = reader.poll(0)
        reader.close()
    finally:
        writer.close()
    assert len(events) == 32
    got = from_ring(events, None)
    want = [field_by_field(e, None) for e in events]
    assert got == want and all(g.key.digest and g.key == w.key for g, w in zip(got, want))
    assert not any(gc.is_tracked(g) or gc.is_tracked(g.key) for g in got)


def test_a_flood_of_ring_events_leaves_the_collector_nothing_to_walk(ring_path):
    """20,000 events held (as the model, the feed and the history hold a flood's): the young
    generation grows by the list, not by 40,000 records of 17 fields each."""
    with RingWriter(ring_path, slot_count=32768) as writer:
        writer.publish(ThreatGenerator(5).batch(20_000))
        events, generation = read_all(ring_path, 20_000)
    gc.collect()
    gc.disable()
    try:
        before = len(gc.get_objects(0))
        held = from_ring(events, generation)
        added = len(gc.get_objects(0)) - before
    finally:
        gc.enable()
    assert len(held) == 20_000 and added < 100, added


@pytest.fixture
def a_batch_of_one(ring_path):
    with RingWriter(ring_path) as writer:
        writer.publish(HOSTILE[:1])
        return read_all(ring_path, 1)[0]


def test_the_conversion_refuses_what_is_not_a_ring_event_or_a_record_type(a_batch_of_one):
    with pytest.raises(TypeError):
        _ring.threat_events([("not", "an", "event")], 1, Transport.SHM, ("", True, None, ""), ThreatEvent, EventKey)

    class Open:  # a class with a __dict__ could come to hold anything, cycles included
        pass

    with pytest.raises(TypeError):
        _ring.threat_events([], 1, Transport.SHM, ("", True, None, ""), Open, EventKey)
    with pytest.raises(TypeError):  # a key that holds a list could hold a cycle: never untracked
        _ring.threat_events(a_batch_of_one, None, Transport.SHM, ("", True, None, ""), ThreatEvent, EventKey,
                            [EventKey(None, None, [])])
    with pytest.raises(TypeError):
        _ring.threat_events(a_batch_of_one, None, Transport.SHM, ("", True, None, ""), ThreatEvent, EventKey, [])
