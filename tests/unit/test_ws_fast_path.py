"""The WebSocket's fast paths give what the reference paths give.

parse_frame() reads the usual threat frame through msgspec (transport/wire.py) and
_from_wire; protocol._threat() over json.loads is the reference. The server's
numbered_threats_json() must produce threat_json()'s bytes."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from kindlyguard_monitor.threats import Threat
from kindlyguard_monitor.transport import protocol, server_frames

NOW_NS = 1_764_600_000_000_000_000
RECEIVED = 5

# values a hostile or odd server may put in any field
ANY = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**65), max_value=2**65),
                st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8),
                st.sampled_from(["High", "HIGH", "low", "UnicodeBiDi", "2026-11-25T14:55:00.123456Z",
                                 "a05f2c0f5a5618c9-12", "a05f2c0f5a5618c9-" + "9" * 20, "A05F2C0F5A5618C9-1",
                                 "a05f2c0f5a5618c9-\u00b2", "0000000000000000-0"]),
                st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
EDGES = st.sampled_from([-1, 0, 10**19 - 1, 10**19, 2**64 - 1, 2**64])
USUAL = st.fixed_dictionaries(
    {"threat_type": st.sampled_from(["UnicodeBiDi", "PathTraversal", "Nope", ""]),
     "severity": st.sampled_from(["Low", "Critical", "high", "x"])},
    optional={"id": st.one_of(st.builds("{:016x}-{}".format, st.integers(0, 2**64 - 1), st.one_of(EDGES, st.integers(0, 2**64))),
                              st.text(max_size=20)),
              "source": st.one_of(st.none(), st.text(max_size=10)),
              "details": st.one_of(st.none(), st.text(max_size=10)),
              "timestamp": st.one_of(st.none(), st.sampled_from(["2026-11-25T14:55:00.123456Z", "2026-11-25", "x"])),
              "blocked": st.booleans(),
              "seq": st.one_of(st.none(), EDGES, st.integers(-5, 2**64 + 5)),
              "mono_ns": st.one_of(st.none(), EDGES, st.integers(-5, 2**64 + 5)),
              "context": ANY})
ODD = st.dictionaries(st.sampled_from(["id", "threat_type", "severity", "source", "details", "timestamp", "blocked",
                                       "seq", "mono_ns", "context"]), ANY)


def reference(frame: str):
    """What parse_frame gave before the fast path: json.loads, then _threat() of each threat."""
    obj = json.loads(frame)
    try:
        return [protocol._threat(t, RECEIVED, NOW_NS // 1000, False) for t in obj["threats"]]
    except protocol._WrongType as exc:
        return protocol.BadFrame("wrong_types", str(exc))


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(USUAL, USUAL, ODD, ANY), min_size=1, max_size=4), st.booleans(), st.booleans())
def test_a_threat_frame_reads_the_same_through_the_fast_path(items, ascii_only, as_bytes):
    frame = json.dumps({"type": "threat", "threats": items}, ensure_ascii=ascii_only)
    want = reference(frame)
    real_time_ns = protocol.time.time_ns
    protocol.time.time_ns = lambda: NOW_NS  # one 'now' for both paths
    try:
        got = protocol.parse_frame(frame.encode() if as_bytes else frame, RECEIVED)
    finally:
        protocol.time.time_ns = real_time_ns
    if isinstance(want, protocol.BadFrame):
        assert got == want
        return
    assert isinstance(got, protocol.Threats)
    assert got.threats == want
    assert [(type(a.key), type(a.seq), type(a.generation)) for a in got.threats] == \
        [(type(b.key), type(b.seq), type(b.generation)) for b in want]


def test_what_msgspec_refuses_is_read_as_before():
    lone = '{"type": "threat", "threats": [{"threat_type": "UnicodeBiDi", "severity": "High", "details": "\\ud800"}]}'
    (t,) = protocol.parse_frame(lone).threats
    assert t.details == "\ud800"  # kept as the untrusted string it is
    nan = '{"type": "threat", "threats": [{"threat_type": "X", "severity": "Low", "context": NaN}]}'
    assert protocol.parse_frame(nan).threats[0].context != protocol.parse_frame(nan).threats[0].context  # NaN
    assert protocol.parse_frame("[" * 100_000).kind == "not_json"
    assert protocol.parse_frame(b'{"type": "threat", "threats": [{"threat_type": "X", "severity": "\xff"}]}').kind \
        == "not_json"
    too_many = json.dumps({"type": "threat", "threats": [{"threat_type": "X", "severity": "Low"}]
                           * (protocol.MAX_THREATS_PER_FRAME + 1)}, separators=(",", ":"))
    assert protocol.parse_frame(too_many).kind == "too_big"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1),
                          st.builds(Threat, st.integers(-1, 9), st.integers(0, 255), st.booleans(), st.text(max_size=6),
                                    st.text(max_size=6), st.integers(0, 2**53)),
                          st.integers(0, 2**64 - 1)), max_size=5))
def test_the_server_encodes_a_batch_as_threat_json_does(events):
    assert server_frames.numbered_threats_json(events) == [
        server_frames.threat_json(t, server_frames.event_id(g, s), seq=s, mono_ns=m) for g, s, t, m in events]


def test_ids_at_the_edges_of_a_seq_read_as_before():
    """A generation already seen (cached) with a number at or past the u64 limit, with and without `seq`."""
    gen = "00000000000000ab"
    for tail in ("0", "7", "9999999999999999999", "10000000000000000000", "18446744073709551615",
                 "18446744073709551616", "99999999999999999999", "123456789012345678901", "", "1x", "\u0661"):
        for extra in ({}, {"seq": 3}):
            items = [{"threat_type": "UnicodeBiDi", "severity": "High", "id": f"{gen}-1"},
                     {"threat_type": "UnicodeBiDi", "severity": "High", "id": f"{gen}-{tail}", **extra}]
            frame = json.dumps({"type": "threat", "threats": items})
            want = reference(frame)
            real_time_ns = protocol.time.time_ns
            protocol.time.time_ns = lambda: NOW_NS
            try:
                got = protocol.parse_frame(frame, RECEIVED)
            finally:
                protocol.time.time_ns = real_time_ns
            assert got.threats == want, (tail, extra)
