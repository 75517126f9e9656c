"""A history row as a stream message (a JSON body and headers), and a stream message back.

Body of a threat (UTF-8 JSON, ASCII-escaped; text exactly as the history holds it,
attacker-controlled, so every reader shows it through textsafe.visible):

    {"kind": "threat", "host": "ws1", "row": 42, "history": "<id>", "id": "<generation hex>-<seq>",
     "timestamp_unix_us": ..., "severity": "High", "threat_type": "...",
     "blocked": true, "source": "...", "details": "...", "transport": "shm",
     "generation": "<16 hex>" | null, "seq": 7 | null, "flags": 0}

A gap: {"kind": "gap", "host", "row", "history", "time_unix_us", "transport", "generation",
"missed", "corrupt", "gap_kind"} ("reader" or "store_overflow", as docs/history.md says).

Headers: Nats-Msg-Id (subjects.py) and Kg-Kind (threat or gap); the rest is in the body
(each header costs the publisher, measured).
"""

from __future__ import annotations

import json
from json.encoder import encode_basestring_ascii as _quote  # C: a JSON string, ASCII-escaped
from typing import NamedTuple

from kindlyguard_monitor.fleet import subjects as s
from kindlyguard_monitor.history.records import StoredThreat, generation_int, generation_text
from kindlyguard_monitor.threats import SEVERITY_NUMBER, THREAT_TYPE_NUMBER, severity_name, threat_type_name

MAX_BODY = 1 << 20
_ENCODE = json.JSONEncoder(separators=(",", ":")).encode  # ASCII: U+202E travels as \u202e  # a viewer refuses bigger bodies (the stream's max_msg_size says the same)


class Outgoing(NamedTuple):
    subject: str
    body: bytes
    headers: dict


class FleetThreat(NamedTuple):
    """A threat from the stream. The first ten fields have the ring event's names (as StoredThreat),
    so formatting written for ring events takes it; the monotonic stamps are 0."""

    seq: int | None
    publish_mono_ns: int
    observe_mono_ns: int
    timestamp_unix_us: int
    threat_type: int
    severity: int
    blocked: bool
    flags: int
    source: str
    details: str
    id: str
    host: str
    row: int
    history: str
    transport: str
    stream_seq: int


class FleetGap(NamedTuple):
    host: str
    row: int
    time_unix_us: int
    transport: str
    missed: int
    corrupt: int
    kind: str
    stream_seq: int


class BadMessage(ValueError):
    """A stream message that is not one of ours; str() says why (one sentence)."""


def threat_message(host: str, history_id: str, key: bytes, t: StoredThreat) -> Outgoing:
    body = {
        "kind": "threat", "host": host, "row": t.row_id, "history": history_id, "id": t.id,
        "timestamp_unix_us": t.timestamp_unix_us,
        "severity": severity_name(t.severity), "threat_type": threat_type_name(t.threat_type),
        "blocked": bool(t.blocked), "source": t.source, "details": t.details, "transport": t.transport,
        "generation": generation_text(t.generation), "seq": t.seq, "flags": t.flags,
    }
    headers = {s.H_MSG_ID: s.threat_msg_id(host, key), s.H_KIND: "threat"}
    return Outgoing(s.threat_subject(host, t.severity), _ENCODE(body).encode(), headers)


class ThreatEncoder:
    """threat_message() for the forwarder's hot path: a row as outbox.RAW_COLUMNS reads it, straight
    to the same bytes (tests/unit/test_fleet_message.py compares the two on hostile rows).

    The fixed parts of the body are formatted once per host and history; the attacker-controlled
    text goes through the json module's C string encoder (ASCII-escaped, as json.dumps does); names
    and generations repeat, so they are cached. A fifth to a seventh of the CPU of making a
    StoredThreat and calling threat_message() (timeit, on a loaded machine: 15-19 µs against 81-113)."""

    def __init__(self, host: str, history_id: str):
        self.host, self.history_id = host, history_id
        self._head = '{"kind":"threat","host":%s,"row":' % _quote(host)
        self._history = ',"history":%s,"id":' % _quote(history_id)
        self._msg_id = host + "."
        self._subject = {n: s.threat_subject(host, n) for n in range(-1, 6)}
        self._severity = {n: _quote(severity_name(n)) for n in range(-1, 6)}
        self._type: dict = {}
        self._gen: dict = {}

    def encode(self, row: tuple) -> Outgoing:
        row_id, key, time_us, threat_type, severity, blocked, flags, source, details, transport, gen, seq = row
        key = bytes(key)
        if len(key) == 16:  # numbered: generation and seq (EventKey.NUMBERED); the id as kgmon tail shows it
            g, n = int.from_bytes(key[:8], "big"), int.from_bytes(key[8:], "big")
            text_id = f'"{g:016x}-{n}"'
            if seq is None:  # a seq above 2**63 - 1 lives only in the key (records.stored_threat)
                seq = n
        else:
            text_id = f'"content-{key.hex()}"'
        sev = self._severity.get(severity) or _quote(severity_name(severity))
        kind = self._type.get(threat_type)
        if kind is None:
            kind = self._type[threat_type] = _quote(threat_type_name(threat_type))
        gen_json = self._gen.get(gen)
        if gen_json is None:
            text = generation_text(generation_int(gen))
            gen_json = self._gen[gen] = "null" if text is None else _quote(text)
        body = (f'{self._head}{row_id}{self._history}{text_id},"timestamp_unix_us":{time_us},"severity":{sev},'
                f'"threat_type":{kind},"blocked":{"true" if blocked else "false"},"source":{_quote(source)},'
                f'"details":{_quote(details)},"transport":{_quote(transport)},"generation":{gen_json},'
                f'"seq":{"null" if seq is None else seq},"flags":{flags}}}')
        subject = self._subject.get(severity) or s.threat_subject(self.host, severity)
        return Outgoing(subject, body.encode(), {s.H_MSG_ID: self._msg_id + key.hex(), s.H_KIND: "threat"})


def gap_message(host: str, history_id: str, row: tuple) -> Outgoing:
    """`row`: (id, time_us, transport, generation text, missed, corrupt, kind) from the gaps table."""
    row_id, time_us, transport, generation, missed, corrupt, kind = row
    body = {"kind": "gap", "host": host, "row": row_id, "history": history_id, "time_unix_us": time_us,
            "transport": transport, "generation": generation, "missed": missed, "corrupt": corrupt,
            "gap_kind": kind}
    headers = {s.H_MSG_ID: s.gap_msg_id(host, time_us, transport, generation, missed, corrupt, kind),
               s.H_KIND: "gap"}
    return Outgoing(s.gap_subject(host), _ENCODE(body).encode(), headers)


def _int(obj: dict, name: str, default=None):
    value = obj.get(name, default)
    if value is None and default is None:
        return None
    if type(value) is not int:
        raise BadMessage(f"its {name} is not a whole number")
    return value


def _str(obj: dict, name: str) -> str:
    value = obj.get(name, "")
    if type(value) is not str:
        raise BadMessage(f"its {name} is not text")
    return value


def decode(data: bytes, stream_seq: int = 0) -> FleetThreat | FleetGap:
    """A message body from the stream; raises BadMessage for anything that is not ours."""
    if len(data) > MAX_BODY:
        raise BadMessage(f"it is {len(data)} bytes, more than {MAX_BODY}")
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadMessage(f"it is not JSON ({exc.__class__.__name__})") from None
    if not isinstance(obj, dict):
        raise BadMessage("it is not a JSON object")
    kind = obj.get("kind")
    if kind == "gap":
        return FleetGap(_str(obj, "host"), _int(obj, "row", 0), _int(obj, "time_unix_us", 0), _str(obj, "transport"),
                        _int(obj, "missed", 0), _int(obj, "corrupt", 0), _str(obj, "gap_kind"), stream_seq)
    if kind != "threat":
        raise BadMessage("its kind is neither threat nor gap")
    return FleetThreat(_int(obj, "seq"), 0, 0, _int(obj, "timestamp_unix_us", 0),
                       THREAT_TYPE_NUMBER.get(obj.get("threat_type"), 0), SEVERITY_NUMBER.get(obj.get("severity"), 0),
                       bool(obj.get("blocked")), _int(obj, "flags", 0), _str(obj, "source"), _str(obj, "details"),
                       _str(obj, "id"), _str(obj, "host"), _int(obj, "row", 0), _str(obj, "history"),
                       _str(obj, "transport"), stream_seq)
