"""The Shield's WebSocket protocol (docs/websocket.md), as kindlyguard_monitor/transport/protocol.py reads it
and transport/server_frames.py writes it;
and the hostile WebSocket server (tests/hostile_ws.py) client tests are built on."""

from __future__ import annotations

import calendar
import datetime as dt
import json
import re
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, ConnectionClosedOK, InvalidHandshake
from websockets.sync.client import connect

from kindlyguard_monitor.threats import (CRITICAL, HIGH, LOW, MEDIUM, SEVERITIES, THREAT_TYPE_NUMBER, THREAT_TYPES, Threat,
                                        format_timestamp)
from kindlyguard_monitor.event import ThreatEvent
from kindlyguard_monitor.transport.protocol import (
    BAD_KINDS,
    COMMANDS,
    MAX_FRAME_BYTES,
    MAX_THREATS_PER_FRAME,
    BadFrame,
    Heartbeat,
    ServerError,
    Status,
    Threats,
    command,
    parse_frame,
    parse_timestamp_us,
)
from kindlyguard_monitor.transport.server_frames import (event_id, status_message, threat_json,
                                                        threat_message)
from hostile_ws import (
    MiB,
    HostileServer,
    Pause,
    json_frame_of_size,
    raw_reply,
    send_frames,
    slow_frame,
    slow_handshake,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "websocket.md"

# The THREAT example of docs/websocket.md, verbatim (test_example_is_the_docs_own checks it still is).
EXAMPLE_THREAT = """{
  "id": "1732540000123456",
  "threat_type": "UnicodeBiDi",
  "severity": "High",
  "source": "mcp:tools/call",
  "details": "Right-to-left override U+202E at offset 17",
  "timestamp": "2026-11-25T14:55:00.123456Z",
  "blocked": true,
  "context": null
}"""
EXAMPLE_TS_US = calendar.timegm((2026, 11, 25, 14, 55, 0)) * 1_000_000 + 123_456
OBSERVED = 5_000_000_000_000  # a received_mono_ns, so observe/publish times are exact
MESSAGE_TYPES = (Status, Threats, Heartbeat, ServerError, BadFrame)
HOSTILE_TEXT = [
    "\u202e",  # right-to-left override
    "evil\u202egnp.exe",
    "nul\x00byte",
    "\x00",
    "🦀 emoji 👩\u200d💻 and \U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f",
    "\x1b[31mred\x1b[0m \x1b[2J\x1b[H",
    "\x1b]0;pwned\x07",
    "\r\nnew line\ttab",
    "\u200b\u200c\u200d\u2060\ufeff",
    "\ud800 lone surrogate",
    "'\"\\ quotes and <script>",
]


def wire(*threats: str | dict) -> str:
    """A Shield `threat` message from THREAT objects (JSON text, or dicts to encode)."""
    items = [t if isinstance(t, str) else json.dumps(t) for t in threats]
    return '{"type": "threat", "threats": [' + ", ".join(items) + "]}"


def example(**changes) -> dict:
    obj = json.loads(EXAMPLE_THREAT)
    obj.update(changes)
    return obj


def one_threat(frame: str | bytes, received: int = OBSERVED) -> ThreatEvent:
    msg = parse_frame(frame, received)
    assert isinstance(msg, Threats), msg
    assert len(msg.threats) == 1
    return msg.threats[0]


def utc_us(*args) -> int:
    """Exact microseconds since the epoch of a UTC date (integer arithmetic only)."""
    moment = dt.datetime(*args, tzinfo=dt.timezone.utc)
    return (moment - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)) // dt.timedelta(microseconds=1)


def rfc3339(unix_us: int) -> str:
    moment = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(microseconds=unix_us)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def assert_example(t: ThreatEvent) -> None:
    """Every field of the docs' example THREAT, mapped."""
    assert t.wire_id == "1732540000123456"
    assert t.threat_type == THREAT_TYPE_NUMBER["UnicodeBiDi"] == 2
    assert t.severity == HIGH == 3
    assert t.source == "mcp:tools/call"
    assert t.details == "Right-to-left override U+202E at offset 17"
    assert t.timestamp_unix_us == EXAMPLE_TS_US
    assert t.blocked is True
    assert t.context is None
    assert t.flags == 0
    assert t.seq is None and t.generation is None  # the Shield's plain id names no generation
    assert t.observe_mono_ns == OBSERVED
    assert t.exact_latency is False


# ---- the Shield's dialect ----


def test_example_is_the_docs_own():
    block = re.search(r"THREAT:\s*```json\n(.*?)\n```", DOC.read_text(), re.S)
    assert block and block.group(1) == EXAMPLE_THREAT


def test_one_threat_the_docs_example():
    t = one_threat(wire(EXAMPLE_THREAT))
    assert_example(t)
    assert isinstance(t, ThreatEvent)


def test_three_threats_in_one_message_in_order():
    second = example(id="2", threat_type="PathTraversal", severity="Critical", blocked=False,
                     source="fs:read", details="../../etc/passwd", timestamp="2026-11-25T14:55:01.000001Z",
                     context={"path": "../../etc/passwd", "depth": [1, 2, {"x": None}]})
    third = example(id="3", threat_type="RateLimitViolation", severity="Low", context=["a", 1, True])
    msg = parse_frame(wire(EXAMPLE_THREAT, second, third), OBSERVED)
    assert isinstance(msg, Threats) and len(msg.threats) == 3
    a, b, c = msg.threats
    assert_example(a)
    assert (b.wire_id, b.threat_type, b.severity, b.blocked, b.source, b.details) == (
        "2", THREAT_TYPE_NUMBER["PathTraversal"], CRITICAL, False, "fs:read", "../../etc/passwd")
    assert b.timestamp_unix_us == calendar.timegm((2026, 11, 25, 14, 55, 1)) * 1_000_000 + 1
    assert b.context == {"path": "../../etc/passwd", "depth": [1, 2, {"x": None}]}
    assert (c.wire_id, c.threat_type, c.severity, c.context) == ("3", 7, LOW, ["a", 1, True])
    assert c.timestamp_unix_us == EXAMPLE_TS_US


def test_three_copies_of_the_example_are_three_threats():
    msg = parse_frame(wire(EXAMPLE_THREAT, EXAMPLE_THREAT, EXAMPLE_THREAT), OBSERVED)
    assert isinstance(msg, Threats) and len(msg.threats) == 3
    for t in msg.threats:
        assert_example(t)


def test_the_frame_may_be_bytes():
    assert_example(one_threat(wire(EXAMPLE_THREAT).encode()))


@pytest.mark.parametrize("name", THREAT_TYPES)
def test_every_threat_type_maps_to_its_number(name):
    assert one_threat(wire(example(threat_type=name))).threat_type == THREAT_TYPES.index(name)


@pytest.mark.parametrize("number", [1, 2, 3, 4])
def test_every_severity_maps_to_1_to_4(number):
    assert one_threat(wire(example(severity=SEVERITIES[number]))).severity == number


@pytest.mark.parametrize("context", [None, {"a": {"b": [1, 2.5, "x", None, True]}}, [1, [2, [3]]], "text", 7, False])
def test_context_is_kept(context):
    assert one_threat(wire(example(context=context))).context == context


def test_missing_context_reads_as_none():
    obj = example()
    del obj["context"]
    assert one_threat(wire(obj)).context is None


@pytest.mark.parametrize("text,expected", [
    ("2026-11-25T14:55:00.123456Z", EXAMPLE_TS_US),
    ("2026-11-25T14:55:00Z", EXAMPLE_TS_US - 123_456),
    ("2026-11-25T14:55:00.1Z", EXAMPLE_TS_US - 23_456),
    ("2026-11-25T14:55:00.123Z", EXAMPLE_TS_US - 456),
    ("2026-11-25T14:55:00.123456789Z", EXAMPLE_TS_US),  # nanoseconds (chrono) truncate to the µs
    ("2026-11-25T16:55:00.123456+02:00", EXAMPLE_TS_US),
    ("2026-11-25T09:25:00.123456-05:30", EXAMPLE_TS_US),
    ("2026-11-25T14:55:00.123456+00:00", EXAMPLE_TS_US),
    ("1970-01-01T00:00:00Z", 0),
    ("2000-02-29T23:59:59.999999Z", utc_us(2000, 2, 29, 23, 59, 59, 999_999)),
])
def test_rfc3339_timestamp_to_the_microsecond(text, expected):
    assert parse_timestamp_us(text) == expected
    assert one_threat(wire(example(timestamp=text))).timestamp_unix_us == expected


@pytest.mark.parametrize("text", ["", "yesterday", "2026-13-01T00:00:00Z", "2026-11-25T25:00:00Z",
                                  "x" * 65, "2026-11-25T14:55:00.123456Z" + " " * 40, "٢٠٢٦-11-25T14:55:00Z"])
def test_not_a_timestamp_is_none(text):
    assert parse_timestamp_us(text) is None


@pytest.mark.parametrize("text", ["1970-01-13T13:15:34.250998Z", "2004-06-01T12:00:00.000002Z",
                                  "2038-06-01T12:00:00.000003Z"])
def test_rfc3339_exact_outside_2005_to_2038(text):
    date, frac = text[:-1].split(".")
    expected = calendar.timegm(time.strptime(date, "%Y-%m-%dT%H:%M:%S")) * 1_000_000 + int(frac)
    assert parse_timestamp_us(text) == expected


def test_format_timestamp_exact_far_ahead():
    unix_us = utc_us(2300, 1, 1) + 1
    assert format_timestamp(unix_us) == "2300-01-01T00:00:00.000001Z"


def test_seq_and_mono_ns_used_when_present():
    t = one_threat(wire(example(seq=41, mono_ns=123_456_789_012)))
    assert t.seq == 41
    assert t.publish_mono_ns == 123_456_789_012
    assert t.exact_latency is True
    assert t.observe_mono_ns == OBSERVED
    assert t.timestamp_unix_us == EXAMPLE_TS_US  # still the threat's own time


def test_u64_extremes_of_seq_and_mono_ns():
    t = one_threat(wire(example(seq=2**64 - 1, mono_ns=0)))
    assert (t.seq, t.publish_mono_ns, t.exact_latency) == (2**64 - 1, 0, True)


@pytest.mark.parametrize("field,value", [("seq", -1), ("seq", 2**64), ("seq", "5"), ("seq", 5.0), ("seq", True),
                                         ("mono_ns", -1), ("mono_ns", 2**64), ("mono_ns", "1"), ("mono_ns", 1.5),
                                         ("mono_ns", None)])
def test_unusable_optional_fields_are_not_used(field, value):
    t = one_threat(wire(example(**{field: value})))
    assert_example(t)  # seq None, publish estimated, exact_latency False


def test_without_mono_ns_publish_is_estimated_from_timestamp():
    age_us = 5_000_000
    before = time.time_ns() // 1000
    t = one_threat(wire(example(timestamp=rfc3339(before - age_us))))
    after = time.time_ns() // 1000
    assert t.exact_latency is False
    assert t.observe_mono_ns == OBSERVED
    # publish = observe - (now - timestamp), `now` read inside parse_frame, between before and after
    assert OBSERVED - (after - before + age_us) * 1000 <= t.publish_mono_ns <= OBSERVED - age_us * 1000


def test_observe_defaults_to_the_monotonic_clock():
    before = time.monotonic_ns()
    t = parse_frame(wire(example(mono_ns=1))).threats[0]
    after = time.monotonic_ns()
    assert before <= t.observe_mono_ns <= after


def test_a_timestamp_in_the_future_is_not_a_negative_latency():
    t = one_threat(wire(example(timestamp=rfc3339(time.time_ns() // 1000 + 3_600_000_000))))
    assert t.publish_mono_ns == OBSERVED and t.exact_latency is False


@pytest.mark.parametrize("ts", [None, "not a time"])
def test_no_usable_timestamp_reads_as_now(ts):
    obj = example(timestamp=ts)
    before = time.time_ns() // 1000
    t = one_threat(wire(obj))
    after = time.time_ns() // 1000
    assert before <= t.timestamp_unix_us <= after
    assert t.publish_mono_ns == OBSERVED


def test_timestamp_of_the_wrong_type_is_a_bad_frame():
    msg = parse_frame(wire(example(timestamp=1764082500)))
    assert isinstance(msg, BadFrame) and msg.kind == "wrong_types"


def test_id_with_generation_gives_generation_and_seq():
    ident = event_id(0xDEADBEEF, 42)
    assert ident == "00000000deadbeef-42"
    t = one_threat(wire(example(id=ident)))
    assert (t.wire_id, t.generation, t.seq) == (ident, 0xDEADBEEF, 42)


def test_id_generation_extremes():
    ident = event_id(2**64 - 1, 2**64 - 1)
    assert ident == "ffffffffffffffff-18446744073709551615"
    t = one_threat(wire(example(id=ident)))
    assert (t.generation, t.seq) == (2**64 - 1, 2**64 - 1)


def test_explicit_seq_wins_over_the_id():
    t = one_threat(wire(example(id=event_id(7, 42), seq=43)))
    assert (t.generation, t.seq) == (7, 43)


@pytest.mark.parametrize("ident", ["1732540000123456", "deadbeef-42", "00000000deadbeef-", "00000000deadbeef-x",
                                   "00000000DEADBEEF-42", "000000000deadbeef-42", "x00000000deadbeef-42", ""])
def test_id_without_generation(ident):
    t = one_threat(wire(example(id=ident)))
    assert (t.wire_id, t.generation, t.seq) == (ident, None, None)


@pytest.mark.parametrize("ident", ["00000000deadbeef-42\n", "00000000deadbeef-\u0664\u0662",
                                   "00000000deadbeef-18446744073709551616"])
def test_id_with_generation_is_strict(ident):
    t = one_threat(wire(example(id=ident)))
    assert t.seq is None or t.seq < 2**64
    assert t.generation is None


def test_numeric_id_is_read_as_text():
    assert one_threat(wire(example(id=1732540000123456))).wire_id == "1732540000123456"


def test_a_threat_with_a_type_and_severity_only_takes_the_defaults():
    before = time.time_ns() // 1000
    t = one_threat('{"type": "threat", "threats": [{"threat_type": "Weird", "severity": "Odd"}]}')
    assert (t.threat_type, t.severity, t.blocked, t.source, t.details, t.wire_id, t.context) == (
        0, MEDIUM, False, "", "", "", None)
    assert t.timestamp_unix_us >= before and (t.seq, t.generation, t.exact_latency) == (None, None, False)


@pytest.mark.parametrize("obj", [{}, {"threat_type": "UnicodeBiDi"}, {"severity": "High"},
                                 {"id": "x", "source": "s", "details": "d", "blocked": True}])
def test_a_threat_without_its_fields_is_a_bad_frame(obj):
    # issue 11.8: one 1 MiB frame of {} entries became 349,512 blank Unknown threats
    msg = parse_frame(json.dumps({"type": "threat", "threats": [example(), obj]}))
    assert isinstance(msg, BadFrame) and msg.kind == "wrong_types" and "without" in msg.detail


def test_an_extension_threat_without_its_fields_is_a_bad_frame():
    assert parse_frame('{"type": "threat", "data": {}}').kind == "wrong_types"


def test_one_frame_yields_a_bounded_number_of_threats():
    minimal = {"threat_type": "Unknown", "severity": "Low"}
    assert len(parse_frame(json.dumps({"type": "threat", "threats": [minimal] * MAX_THREATS_PER_FRAME})).threats) \
        == MAX_THREATS_PER_FRAME
    msg = parse_frame(json.dumps({"type": "threat", "threats": [minimal] * (MAX_THREATS_PER_FRAME + 1)}))
    assert isinstance(msg, BadFrame) and msg.kind == "too_big"


def test_an_empty_batch_is_no_threats():
    assert parse_frame('{"type": "threat", "threats": []}') == Threats([])


# ---- the extension's dialect ----


@pytest.mark.parametrize("kind,name", [("unicode", "UnicodeInvisible"), ("injection", "InjectionAttempt"),
                                       ("pattern", "SuspiciousPattern"), ("suspicious", "SuspiciousPattern"),
                                       ("wormhole", "Unknown"), ("UnicodeBiDi", "UnicodeBiDi")])
@pytest.mark.parametrize("sev,number", [("low", LOW), ("medium", MEDIUM), ("high", HIGH), ("critical", CRITICAL),
                                        ("apocalyptic", MEDIUM)])
def test_extension_threat(kind, name, sev, number):
    frame = json.dumps({"type": "threat", "data": {
        "id": "ext-1", "timestamp": "2026-11-25T14:55:00.123456Z", "type": kind, "severity": sev,
        "description": "zero-width joiner in a tool name", "context": {"tool": "read_file"}}})
    t = one_threat(frame)
    assert t.threat_type == THREAT_TYPE_NUMBER[name]
    assert t.severity == number
    assert t.details == "zero-width joiner in a tool name"
    assert (t.wire_id, t.timestamp_unix_us, t.context) == ("ext-1", EXAMPLE_TS_US, {"tool": "read_file"})
    assert (t.blocked, t.source, t.seq, t.generation, t.exact_latency) == (False, "", None, None, False)


@pytest.mark.parametrize("kind", ["status", "stats"])
def test_extension_status(kind):
    data = {"protection_enabled": False, "threats_blocked": 7, "uptime": 12.5, "extra": {"x": [1]}}
    assert parse_frame(json.dumps({"type": kind, "data": data})) == Status(False, 7, data)


def test_extension_status_threats_blocked_from_its_stats():
    data = {"connected": True, "mode": "standard", "stats": {"threatsBlocked": 12}}
    assert parse_frame(json.dumps({"type": "status", "data": data})) == Status(None, 12, data)


def test_extension_stats_without_the_known_fields():
    data = {"threatsBlocked": 3}
    assert parse_frame(json.dumps({"type": "stats", "data": data})) == Status(None, None, data)


# ---- status, heartbeat, error ----


def test_status_from_the_docs():
    frame = '{"type": "status", "protection_enabled": true, "threats_blocked": 42}'
    assert parse_frame(frame) == Status(True, 42, json.loads(frame))


def test_status_without_fields():
    assert parse_frame('{"type": "status"}') == Status(None, None, {"type": "status"})


def test_status_u64_extreme():
    msg = parse_frame(json.dumps({"type": "status", "protection_enabled": False, "threats_blocked": 2**64 - 1}))
    assert msg == Status(False, 2**64 - 1, {"type": "status", "protection_enabled": False,
                                            "threats_blocked": 2**64 - 1})


@pytest.mark.parametrize("frame", ['{"type": "heartbeat"}', b'{"type":"heartbeat"}',
                                   '{"type": "heartbeat", "ts": 1, "extra": [1, {}]}'])
def test_heartbeat(frame):
    assert parse_frame(frame) == Heartbeat()


def test_error_from_the_docs():
    assert parse_frame('{"type": "error", "message": "Rate limit exceeded"}') == ServerError("Rate limit exceeded")


def test_error_without_message():
    assert parse_frame('{"type": "error"}') == ServerError("")


# ---- bad input: counted by kind, never raised ----

DEEP = 100_000
BAD_FRAMES = [
    # not JSON
    ("garbage bytes", b"\x00\x01\x02garbage\xff\xfe\x80", "not_json"),
    ("garbage text", "this is not json", "not_json"),
    ("empty", "", "not_json"),
    ("empty bytes", b"", "not_json"),
    ("truncated", wire(EXAMPLE_THREAT)[:-3], "not_json"),
    ("truncated string", '{"type": "heartbeat', "not_json"),
    ("trailing garbage", '{"type": "heartbeat"} {"type": "heartbeat"}', "not_json"),
    ("invalid UTF-8", b"\xff\xfe\xfd\xfc", "not_json"),
    ("invalid UTF-8 in a string", b'{"type": "error", "message": "\xc3\x28"}', "not_json"),
    ("overlong UTF-8", b'{"type": "error", "message": "\xc0\xaf"}', "not_json"),
    ("UTF-8 BOM in text", '\ufeff{"type": "heartbeat"}', "not_json"),
    ("deep arrays", "[" * DEEP + "]" * DEEP, "not_json"),
    ("deep arrays unclosed", "[" * DEEP, "not_json"),
    ("deep objects", '{"a":' * DEEP + "1" + "}" * DEEP, "not_json"),
    ("deep arrays in a threat", '{"type": "threat", "threats": ' + "[" * DEEP + "]" * DEEP + "}", "not_json"),
    ("single quotes", "{'type': 'heartbeat'}", "not_json"),
    # JSON, not an object
    ("list", '[{"type": "heartbeat"}]', "wrong_types"),
    ("number", "42", "wrong_types"),
    ("string", '"heartbeat"', "wrong_types"),
    ("null", "null", "wrong_types"),
    ("bool", "true", "wrong_types"),
    ("NaN", "NaN", "wrong_types"),
    # unknown type
    ("unknown type", '{"type": "wormhole"}', "unknown_type"),
    ("missing type", '{"protection_enabled": true, "threats_blocked": 1}', "unknown_type"),
    ("empty object", "{}", "unknown_type"),
    ("null type", '{"type": null}', "unknown_type"),
    ("number type", '{"type": 3}', "unknown_type"),
    ("list type", '{"type": ["threat"]}', "unknown_type"),
    ("object type", '{"type": {"threat": 1}}', "unknown_type"),
    ("upper-case type", '{"type": "THREAT", "threats": []}', "unknown_type"),
    ("a client command", '{"type": "subscribe"}', "unknown_type"),
    ("deep type", '{"type": ' + "[" * 900 + "]" * 900 + "}", "unknown_type"),
    # wrong field types
    ("threats an object", '{"type": "threat", "threats": {"0": {}}}', "wrong_types"),
    ("threats a string", '{"type": "threat", "threats": "many"}', "wrong_types"),
    ("threats null", '{"type": "threat", "threats": null}', "wrong_types"),
    ("a threat a number", '{"type": "threat", "threats": [1]}', "wrong_types"),
    ("a threat null", '{"type": "threat", "threats": [null]}', "wrong_types"),
    ("a threat a list", '{"type": "threat", "threats": [[]]}', "wrong_types"),
    ("one bad threat in a batch", wire(EXAMPLE_THREAT, "7", EXAMPLE_THREAT), "wrong_types"),
    ("threat with no threats", '{"type": "threat"}', "wrong_types"),
    ("severity a number", wire(example(severity=3)), "wrong_types"),
    ("severity a list", wire(example(severity=["High"])), "wrong_types"),
    ("threat_type a number", wire(example(threat_type=2)), "wrong_types"),
    ("blocked a string", wire(example(blocked="true")), "wrong_types"),
    ("blocked a number", wire(example(blocked=1)), "wrong_types"),
    ("blocked null", wire(example(blocked=None)), "wrong_types"),
    ("details a list", wire(example(details=["a", "b"])), "wrong_types"),
    ("details an object", wire(example(details={"text": "x"})), "wrong_types"),
    ("source a number", wire(example(source=5)), "wrong_types"),
    ("id a bool", wire(example(id=True)), "wrong_types"),
    ("id a float", wire(example(id=1.5)), "wrong_types"),
    ("id an object", wire(example(id={"n": 1})), "wrong_types"),
    ("extension data a list", '{"type": "threat", "data": []}', "wrong_types"),
    ("extension description a number", '{"type": "threat", "data": {"description": 5}}', "wrong_types"),
    ("extension type a number", '{"type": "threat", "data": {"type": 1}}', "wrong_types"),
    ("protection_enabled a string", '{"type": "status", "protection_enabled": "true"}', "wrong_types"),
    ("protection_enabled a number", '{"type": "status", "protection_enabled": 1}', "wrong_types"),
    ("threats_blocked negative", '{"type": "status", "threats_blocked": -1}', "wrong_types"),
    ("threats_blocked a string", '{"type": "status", "threats_blocked": "42"}', "wrong_types"),
    ("threats_blocked a float", '{"type": "status", "threats_blocked": 42.0}', "wrong_types"),
    ("threats_blocked a bool", '{"type": "status", "threats_blocked": true}', "wrong_types"),
    ("threats_blocked over u64", '{"type": "status", "threats_blocked": 18446744073709551616}', "wrong_types"),
    ("threats_blocked NaN", '{"type": "status", "threats_blocked": NaN}', "wrong_types"),
    ("status data a list", '{"type": "stats", "data": [1]}', "wrong_types"),
    ("status data null", '{"type": "status", "data": null}', "wrong_types"),
    ("message a number", '{"type": "error", "message": 429}', "wrong_types"),
    ("message a list", '{"type": "error", "message": ["Rate", "limit"]}', "wrong_types"),
    # too big
    ("1 MiB + 1 of valid JSON", json_frame_of_size(MiB + 1), "too_big"),
    ("1 MiB + 1 of valid JSON bytes", json_frame_of_size(MiB + 1).encode(), "too_big"),
    ("1 MiB + 1 of threats", None, "too_big"),  # built below
    ("20 MiB of garbage", b"\xff" * (20 * MiB), "too_big"),
]


def _threats_of_size(size: int) -> str:
    frame = wire(example(details=""))
    return wire(example(details="d" * (size - len(frame))))


BAD_FRAMES[-2] = ("1 MiB + 1 of threats", _threats_of_size(MiB + 1), "too_big")


@pytest.mark.parametrize("name,frame,kind", BAD_FRAMES, ids=[b[0] for b in BAD_FRAMES])
def test_bad_frame_is_counted_by_kind(name, frame, kind):
    msg = parse_frame(frame)
    assert isinstance(msg, BadFrame), msg
    assert msg.kind == kind, msg
    assert msg.kind in BAD_KINDS
    assert isinstance(msg.detail, str) and len(msg.detail) <= 200


def test_the_limit_is_1_mib():
    assert MAX_FRAME_BYTES == 1 << 20 == MiB


@pytest.mark.parametrize("as_bytes", [False, True])
def test_exactly_1_mib_of_valid_json_is_not_too_big(as_bytes):
    frame = json_frame_of_size(MiB)
    assert len(frame.encode()) == MiB
    assert parse_frame(frame.encode() if as_bytes else frame) == Heartbeat()


def test_exactly_1_mib_of_threats_is_read():
    frame = _threats_of_size(MiB)
    assert len(frame.encode()) == MiB
    t = one_threat(frame)
    assert t.details == "d" * len(t.details) and len(t.details) > MiB - 400


def test_over_1_mib_of_utf8_bytes_in_fewer_characters_is_too_big():
    frame = json.dumps({"type": "heartbeat", "pad": "é" * (3 * MiB // 4)}, ensure_ascii=False)
    assert len(frame) < MiB < len(frame.encode())
    msg = parse_frame(frame)
    assert isinstance(msg, BadFrame) and msg.kind == "too_big"


# ---- unknown enum values ----


@pytest.mark.parametrize("threat_type", ["Wormhole", "", "unicodebidi", "UNKNOWN", "Unknown", None])
def test_unknown_threat_type_reads_as_unknown(threat_type):
    assert one_threat(wire(example(threat_type=threat_type))).threat_type == 0 == THREAT_TYPE_NUMBER["Unknown"]


@pytest.mark.parametrize("severity", ["Apocalyptic", "", "Severe", "Medium", None])
def test_unknown_severity_reads_as_medium(severity):
    assert one_threat(wire(example(severity=severity))).severity == MEDIUM == 2


def test_unknown_enums_keep_the_rest():
    t = one_threat(wire(example(threat_type="Wormhole", severity="Apocalyptic")))
    assert (t.threat_type, t.severity) == (0, 2)
    assert t._replace(threat_type=2, severity=3, publish_mono_ns=0, key=None) == one_threat(
        wire(EXAMPLE_THREAT))._replace(publish_mono_ns=0, key=None)  # publish is estimated from the wall clock: it moves


# ---- text fields are untrusted and kept as they are ----


@pytest.mark.parametrize("ensure_ascii", [True, False])
@pytest.mark.parametrize("text", HOSTILE_TEXT)
def test_text_fields_kept_unchanged(text, ensure_ascii):
    obj = example(source=text, details=text, id=text, context={"raw": text})
    frame = '{"type": "threat", "threats": [' + json.dumps(obj, ensure_ascii=ensure_ascii) + "]}"
    t = one_threat(frame)
    assert (t.source, t.details, t.wire_id, t.context) == (text, text, text, {"raw": text})
    error = json.dumps({"type": "error", "message": text}, ensure_ascii=ensure_ascii)
    assert parse_frame(error) == ServerError(text)
    ext = json.dumps({"type": "threat", "data": {"type": "unicode", "severity": "high", "description": text}},
                     ensure_ascii=ensure_ascii)
    assert one_threat(ext).details == text


@pytest.mark.parametrize("text", [t for t in HOSTILE_TEXT if "\ud800" not in t])
def test_text_fields_kept_unchanged_from_utf8_bytes(text):
    frame = json.dumps({"type": "threat", "threats": [example(details=text, source=text)]}, ensure_ascii=False)
    t = one_threat(frame.encode("utf-8"))
    assert (t.details, t.source) == (text, text)


# ---- what a server sends, read back ----

# Timestamps a float can carry to the µs through format_timestamp and parse_timestamp_us
# (2005-09-05..2038-01-19; see test_rfc3339_exact_outside_2005_to_2038 for outside).
EXACT_TS = st.integers(min_value=utc_us(2005, 9, 6), max_value=utc_us(2038, 1, 18))
U64 = st.integers(min_value=0, max_value=2**64 - 1)
threats_st = st.builds(
    Threat,
    threat_type=st.integers(0, 7),
    severity=st.integers(1, 4),
    blocked=st.booleans(),
    source=st.text(),
    details=st.text(),
    timestamp_unix_us=EXACT_TS,
)


@settings(deadline=None, max_examples=150)
@given(st.lists(st.tuples(threats_st, U64, U64, st.booleans(), st.none() | U64), min_size=1, max_size=6),
       st.integers(0, 2**62))
def test_threat_message_round_trip(items, observed):
    encoded = []
    for threat, generation, seq, send_seq, mono in items:
        encoded.append(threat_json(threat, event_id(generation, seq), seq=seq if send_seq else None, mono_ns=mono))
    msg = parse_frame(threat_message(encoded), observed)
    assert isinstance(msg, Threats) and len(msg.threats) == len(items)
    for t, (threat, generation, seq, _send_seq, mono) in zip(msg.threats, items):
        assert Threat(t.threat_type, t.severity, t.blocked, t.source, t.details, t.timestamp_unix_us) == threat
        assert (t.wire_id, t.generation, t.seq) == (event_id(generation, seq), generation, seq)
        assert (t.flags, t.context, t.observe_mono_ns) == (0, None, observed)
        if mono is None:
            assert t.exact_latency is False and t.publish_mono_ns <= observed
        else:
            assert t.exact_latency is True and t.publish_mono_ns == mono


@settings(deadline=None)
@given(st.integers(min_value=0, max_value=utc_us(2200, 1, 1)))
def test_timestamps_never_more_than_a_microsecond_off(unix_us):
    text = format_timestamp(unix_us)
    assert text == rfc3339(unix_us)  # formatting is exact this far
    assert 0 <= unix_us - parse_timestamp_us(text) <= 1


@given(EXACT_TS)
def test_format_timestamp_is_rfc3339_utc_with_microseconds(unix_us):
    text = format_timestamp(unix_us)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", text)
    assert text == rfc3339(unix_us)
    assert parse_timestamp_us(text) == unix_us


def test_threat_json_is_the_docs_shape():
    threat = Threat(2, HIGH, True, "mcp:tools/call", "Right-to-left override U+202E at offset 17", EXAMPLE_TS_US)
    assert json.loads(threat_json(threat, "1732540000123456")) == json.loads(EXAMPLE_THREAT)
    with_extras = json.loads(threat_json(threat, "x", seq=5, mono_ns=6))
    assert (with_extras["seq"], with_extras["mono_ns"]) == (5, 6)


@pytest.mark.parametrize("threat_type,severity", [(99, 0), (-1, 5), (8, -3)])
def test_out_of_range_numbers_are_sent_as_unknown_and_medium(threat_type, severity):
    sent = threat_json(Threat(threat_type, severity, False, "", "", EXAMPLE_TS_US), "x")
    assert (json.loads(sent)["threat_type"], json.loads(sent)["severity"]) == ("Unknown", "Medium")
    t = one_threat(threat_message([sent]))
    assert (t.threat_type, t.severity) == (0, MEDIUM)


def test_threat_message_of_the_example():
    msg = json.loads(threat_message([EXAMPLE_THREAT, EXAMPLE_THREAT]))
    assert msg == {"type": "threat", "threats": [json.loads(EXAMPLE_THREAT)] * 2}


@given(st.booleans(), U64)
def test_status_message_round_trip(enabled, blocked):
    frame = status_message(enabled, blocked)
    assert json.loads(frame) == {"type": "status", "protection_enabled": enabled, "threats_blocked": blocked}
    assert parse_frame(frame) == Status(enabled, blocked, json.loads(frame))


@given(U64, U64)
def test_event_id(generation, seq):
    ident = event_id(generation, seq)
    assert ident == f"{generation:016x}-{seq}"
    t = one_threat(wire(example(id=ident)))
    assert (t.generation, t.seq) == (generation, seq)


@pytest.mark.parametrize("name", ["subscribe", "unsubscribe", "get_status", "toggle_protection"])
def test_command(name):
    frame = command(name)
    assert isinstance(frame, str)
    obj = json.loads(frame)
    assert obj["type"] == name and set(obj) == {"type", "nonce"}


def test_commands_are_never_byte_identical():
    # The Shield drops a connection whose frame it saw in the last 5 minutes, from anyone (issue 10)
    frames = [command("subscribe") for _ in range(1000)]
    assert len(set(frames)) == 1000


def test_the_four_commands():
    assert COMMANDS == ("subscribe", "unsubscribe", "get_status", "toggle_protection")


@pytest.mark.parametrize("name", ["", "Subscribe", "SUBSCRIBE", "subscribe ", " subscribe", "toggle-protection",
                                  "status", "threat", "heartbeat", "get_status\x00", "shutdown", None, 1,
                                  ("subscribe",)])
def test_command_rejects_anything_else(name):
    with pytest.raises(ValueError):
        command(name)


# ---- fuzz: parse_frame never raises ----


def assert_message(msg) -> None:
    assert isinstance(msg, MESSAGE_TYPES), msg
    if isinstance(msg, BadFrame):
        assert msg.kind in BAD_KINDS and isinstance(msg.detail, str)
    if isinstance(msg, Threats):
        for t in msg.threats:
            assert isinstance(t, ThreatEvent)
            assert 0 <= t.threat_type <= 7 and 1 <= t.severity <= 4 and isinstance(t.blocked, bool)
            assert isinstance(t.source, str) and isinstance(t.details, str) and isinstance(t.wire_id, str)
            assert isinstance(t.timestamp_unix_us, int) and isinstance(t.publish_mono_ns, int)
            assert t.seq is None or 0 <= t.seq < 2**64 or t.generation is not None
    if isinstance(msg, Status):
        assert msg.protection_enabled in (None, True, False)
        assert msg.threats_blocked is None or 0 <= msg.threats_blocked < 2**64


FUZZ = settings(deadline=None, max_examples=200, suppress_health_check=[HealthCheck.too_slow,
                                                                        HealthCheck.data_too_large])


@FUZZ
@given(st.text())
def test_fuzz_text(frame):
    assert_message(parse_frame(frame))


@FUZZ
@given(st.binary())
def test_fuzz_bytes(frame):
    assert_message(parse_frame(frame))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(-1, 2**64 + 1) | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=25,
)
plausible_text = st.sampled_from(THREAT_TYPES + SEVERITIES[1:] + ("unicode", "injection", "pattern", "suspicious",
                                                                  "low", "critical", "Wormhole", "")) | st.text()
timestamps = (st.integers(-2**40, 2**63).map(lambda us: format_timestamp(us))
              | st.from_regex(r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?"
                              r"(Z|z|[+-][0-9]{2}:[0-9]{2})?\Z"))
ids = (st.builds(event_id, st.integers(0, 2**64 - 1), st.integers(0, 2**70))
       | st.from_regex(r"\A[0-9a-fA-F]{14,18}-[0-9]{0,22}\s?\Z") | st.integers())
threat_objects = st.fixed_dictionaries({}, optional={
    "id": ids | json_values,
    "threat_type": plausible_text | json_values,
    "type": plausible_text | json_values,
    "severity": plausible_text | json_values,
    "source": st.text() | json_values,
    "details": st.text() | json_values,
    "description": st.text() | json_values,
    "timestamp": timestamps | json_values,
    "blocked": st.booleans() | json_values,
    "context": json_values,
    "seq": st.integers(-1, 2**64 + 1) | json_values,
    "mono_ns": st.integers(-1, 2**64 + 1) | json_values,
}) | json_values
frames = st.fixed_dictionaries(
    {"type": st.sampled_from(["threat", "status", "stats", "heartbeat", "error", "other"]) | json_values},
    optional={
        "threats": st.lists(threat_objects, max_size=4) | json_values,
        "data": threat_objects | json_values,
        "protection_enabled": st.booleans() | json_values,
        "threats_blocked": st.integers(-1, 2**64 + 1) | json_values,
        "message": st.text() | json_values,
    },
).flatmap(lambda d: st.dictionaries(st.text(max_size=8), json_values, max_size=3).map(lambda extra: {**extra, **d}))


@FUZZ
@given(frames, st.booleans(), st.booleans())
def test_fuzz_json_frames(obj, as_bytes, ensure_ascii):
    frame = json.dumps(obj, ensure_ascii=ensure_ascii)
    if as_bytes:
        frame = frame.encode("utf-8", "surrogatepass")
    assert_message(parse_frame(frame))


@FUZZ
@given(st.lists(threat_objects.filter(lambda o: isinstance(o, dict)), min_size=1, max_size=4))
def test_fuzz_threat_objects_are_read_or_counted(objs):
    msg = parse_frame(json.dumps({"type": "threat", "threats": objs}))
    assert_message(msg)
    assert isinstance(msg, (Threats, BadFrame))
    if isinstance(msg, BadFrame):
        assert msg.kind == "wrong_types"
    else:
        assert len(msg.threats) == len(objs)


@FUZZ
@given(st.text(max_size=80) | timestamps | json_values)
def test_fuzz_parse_timestamp(text):
    value = parse_timestamp_us(text)
    assert value is None or isinstance(value, int)


# ---- the hostile server itself (tests/hostile_ws.py) ----

STATUS = status_message(True, 42)


def client(url: str, **kwargs):
    kwargs.setdefault("open_timeout", 5)
    return connect(url, proxy=None, max_size=None, **kwargs)


def test_harness_sends_garbage_as_sent_and_records_the_client():
    garbage = ["not json at all", "\u202e\x00\x1b[2J", '{"type": "threat", "threats": 5}', "x" * (2 * MiB)]
    binary = b"\xff\xfe\x00binary"
    huge = json_frame_of_size(20 * MiB)
    with HostileServer(send_frames([STATUS, *garbage, binary, huge], then="stay")) as srv:
        assert srv.url == f"ws://127.0.0.1:{srv.port}" and srv.port > 0
        with client(srv.url) as ws:
            ws.send(command("subscribe", "t"))
            ws.send(command("get_status", "t"))
            assert ws.recv(timeout=5) == STATUS
            for frame in garbage:
                assert ws.recv(timeout=5) == frame
            assert ws.recv(timeout=5) == binary
            got = ws.recv(timeout=30)
            assert len(got) == 20 * MiB and got == huge
            assert isinstance(parse_frame(got), BadFrame)
            srv.wait_for(lambda: len(srv.received) == 2, 5, "the client's two commands")
        assert srv.received == [command("subscribe", "t"), command("get_status", "t")]
        assert srv.connections == 1
        srv.wait_for(lambda: srv.live == 0, 5, "the connection to end")
        assert srv.errors == []


def test_harness_abort_drops_without_a_close_frame():
    with HostileServer(send_frames([STATUS], then="abort")) as srv:
        with client(srv.url) as ws:
            assert ws.recv(timeout=5) == STATUS
            with pytest.raises(ConnectionClosed) as info:
                ws.recv(timeout=5)
            assert isinstance(info.value, ConnectionClosedError)
            assert info.value.rcvd is None  # no close frame came
        assert srv.errors == []


def test_harness_close_is_a_normal_close():
    with HostileServer(send_frames([STATUS, Pause(0.01), STATUS], then="close")) as srv:
        with client(srv.url) as ws:
            assert [ws.recv(timeout=5), ws.recv(timeout=5)] == [STATUS, STATUS]
            with pytest.raises(ConnectionClosedOK) as info:
                ws.recv(timeout=5)
            assert info.value.rcvd.code == 1000


def test_harness_slow_handshake_times_out_the_client():
    with HostileServer(raw=slow_handshake(delay=0.5)) as srv:
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            client(srv.url, open_timeout=1)
        assert 0.9 <= time.monotonic() - start < 5
        assert srv.connections == 1
        leave = time.monotonic()
    assert time.monotonic() - leave < 3  # the dripping handler is stopped at once


def test_harness_slow_handshake_completes_if_waited_for():
    with HostileServer(raw=slow_handshake(delay=0.001)) as srv:
        with client(srv.url, open_timeout=10) as ws:
            ws.send(command("subscribe", "t"))
            srv.wait_for(lambda: srv.received == [command("subscribe", "t")], 5, "the command, read raw")


def test_harness_slow_frame():
    frame = '{"type": "heartbeat"}'
    with HostileServer(raw=slow_frame(frame, delay=0.02, before=[STATUS])) as srv:
        with client(srv.url) as ws:
            assert ws.recv(timeout=5) == STATUS
            with pytest.raises(TimeoutError):
                ws.recv(timeout=0.1)  # 23 bytes at 20 ms each: not all there yet
            assert ws.recv(timeout=5) == frame
            ws.send(command("unsubscribe", "t"))
            srv.wait_for(lambda: srv.received == [command("unsubscribe", "t")], 5, "the command, read raw")


def test_harness_scripts_can_answer_the_client():
    async def echo_upper(ws, srv):
        await ws.send(STATUS)
        while (frame := await srv.next_received(ws)) is not None:
            await ws.send(frame.upper())

    with HostileServer(echo_upper) as srv:
        with client(srv.url) as ws:
            assert ws.recv(timeout=5) == STATUS
            ws.send("get_status")
            assert ws.recv(timeout=5) == "GET_STATUS"
        assert srv.received == ["get_status"]


def test_harness_counts_connections_sends_to_all_and_aborts_all():
    with HostileServer(send_frames([])) as srv:
        with client(srv.url) as a, client(srv.url) as b:
            srv.wait_for(lambda: srv.connections == 2 and srv.live == 2, 5, "two connections")
            assert srv.send_all(STATUS) == 2
            assert a.recv(timeout=5) == STATUS and b.recv(timeout=5) == STATUS
            srv.abort_all()
            for ws in (a, b):
                with pytest.raises(ConnectionClosedError):
                    ws.recv(timeout=5)
        with client(srv.url) as c:
            srv.wait_for(lambda: srv.connections == 3, 5, "a third connection")
            leave = time.monotonic()
    assert time.monotonic() - leave < 3  # a connected client does not hold up the end


def test_harness_not_a_websocket_server():
    with HostileServer(raw=raw_reply(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")) as srv:
        with pytest.raises(InvalidHandshake):
            client(srv.url)


def test_harness_records_script_errors():
    async def broken(ws, srv):
        raise RuntimeError("script bug")

    with HostileServer(broken) as srv:
        with client(srv.url) as ws:
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=5)
        srv.wait_for(lambda: srv.errors, 5, "the error")
        assert [str(e) for e in srv.errors] == ["script bug"]
