"""The Shield's WebSocket protocol (docs/websocket.md): frames in, commands out.

`parse_frame()` turns one text frame from a server into a typed message, or a
`BadFrame` saying what was wrong with it; it never raises. Both dialects are
read: the Shield's (`{"type": "threat", "threats": [...]}`) and the editor
extension's (`{"type": "threat", "data": {...}}`). `command()` builds what a
client sends; what a server (our demo writer) sends is built in server_frames.py.

Identity: a THREAT's optional `seq` is the writer's event number. Our demo
writer also names its generation in `id` as "<16 hex digits>-<seq>" (the form
`kgmon tail` prints), so a client can tell two writers' events apart; a
Shield that does not is read by `seq` alone.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import secrets
import time
from typing import NamedTuple

from kindlyguard_monitor.event import EventKey, ThreatEvent, threat_event
from kindlyguard_monitor.threats import MEDIUM, SEVERITY_NUMBER, THREAT_TYPE_NUMBER
from kindlyguard_monitor.vocabulary import Transport

MAX_FRAME_BYTES = 1 << 20  # the Shield drops frames over 1 MiB; a client counts them as bad
MAX_THREATS_PER_FRAME = 10_000  # one frame yields at most this many threats; more is a bad frame
COMMANDS = ("subscribe", "unsubscribe", "get_status", "toggle_protection")
_ID_WITH_GENERATION = re.compile(r"([0-9a-f]{16})-([0-9]{1,20})")  # used with fullmatch
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_MICROSECOND = dt.timedelta(microseconds=1)
# The extension's dialect: lower-case kinds, mapped to the Shield's types.
_EXTENSION_TYPES = {
    "unicode": "UnicodeInvisible",
    "injection": "InjectionAttempt",
    "pattern": "SuspiciousPattern",
    "suspicious": "SuspiciousPattern",
}


class Status(NamedTuple):
    protection_enabled: bool | None
    threats_blocked: int | None
    raw: dict


class Threats(NamedTuple):
    threats: list[ThreatEvent]  # transport WEBSOCKET; publish_mono_ns from `mono_ns`, else estimated


class Heartbeat(NamedTuple):
    pass


class ServerError(NamedTuple):
    message: str


class BadFrame(NamedTuple):
    """A frame a client could not use: kind is one of 'too_big', 'not_json',
    'unknown_type', 'wrong_types'."""

    kind: str
    detail: str


BAD_KINDS = ("too_big", "not_json", "unknown_type", "wrong_types")
Message = Status | Threats | Heartbeat | ServerError | BadFrame


def _mono_ns() -> int:
    return time.monotonic_ns()


_parsed_stamps: dict[str, int | None] = {}


def parse_timestamp_us(text: str) -> int | None:
    """RFC 3339 (UTC 'Z' or an offset) to microseconds since the epoch; None if it is not one."""
    if not isinstance(text, str) or len(text) > 64:
        return None
    try:
        return _parsed_stamps[text]  # a batch repeats one timestamp
    except KeyError:
        pass
    if len(_parsed_stamps) > 1024:
        _parsed_stamps.clear()
    value = _parse_timestamp_us(text)
    _parsed_stamps[text] = value
    return value


def _parse_timestamp_us(text: str) -> int | None:
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    try:
        return (moment - _EPOCH) // _MICROSECOND  # exact: no float on the way
    except (OverflowError, ValueError):
        return None


def _u64(value) -> int | None:
    return value if type(value) is int and 0 <= value < 1 << 64 else None


def _text(value, field: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _WrongType(f"{field} is {type(value).__name__}, not a string")
    return value


class _WrongType(Exception):
    pass


def _threat(obj, received_mono_ns: int, now_unix_us: int, extension: bool) -> ThreatEvent:
    if not isinstance(obj, dict):
        raise _WrongType(f"a threat is {type(obj).__name__}, not an object")
    type_field = "type" if extension else "threat_type"
    kind = obj.get(type_field)
    sev = obj.get("severity")
    missing = [f for f in (type_field, "severity") if f not in obj]
    if missing:  # what kind and how bad: without them it is no threat
        raise _WrongType(f"a threat without {' and '.join(missing)}")
    if kind is not None and not isinstance(kind, str):
        raise _WrongType(f"{type_field} is {type(kind).__name__}")
    if extension:
        kind = _EXTENSION_TYPES.get((kind or "").lower(), kind)
    if sev is not None and not isinstance(sev, str):
        raise _WrongType(f"severity is {type(sev).__name__}")
    severity = SEVERITY_NUMBER.get((sev or "").capitalize(), MEDIUM)  # unknown reads as Medium
    blocked = obj.get("blocked", False)
    if not isinstance(blocked, bool):
        raise _WrongType(f"blocked is {type(blocked).__name__}")
    details = _text(obj.get("description" if extension else "details"), "details")
    source = _text(obj.get("source"), "source")
    ident = obj.get("id", "")
    if isinstance(ident, int) and not isinstance(ident, bool):
        ident = str(ident)
    ident = _text(ident, "id")
    stamp = obj.get("timestamp")
    if stamp is not None and not isinstance(stamp, str):
        raise _WrongType(f"timestamp is {type(stamp).__name__}, not an RFC 3339 string")
    ts_us = parse_timestamp_us(stamp) if stamp is not None else None
    seq = _u64(obj.get("seq"))
    mono = _u64(obj.get("mono_ns"))
    if ts_us is None:
        ts_us = now_unix_us
    if mono is not None:
        publish, exact = mono, True
    else:  # same instant on the monotonic clock as `timestamp` on the wall clock
        publish, exact = received_mono_ns - max(0, now_unix_us - ts_us) * 1000, False
    generation = None
    match = _ID_WITH_GENERATION.fullmatch(ident)
    if match and int(match.group(2)) < 1 << 64:
        generation = int(match.group(1), 16)
        if seq is None:
            seq = int(match.group(2))
    return threat_event(
        transport=Transport.WEBSOCKET,
        generation=generation,  # from an id of the form "<generation hex>-<seq>"
        seq=seq,
        timestamp_unix_us=ts_us,
        threat_type=THREAT_TYPE_NUMBER.get(kind, 0),
        severity=severity,
        blocked=blocked,
        flags=0,  # the WebSocket does not truncate
        source=source,
        details=details,
        publish_mono_ns=publish,
        observe_mono_ns=received_mono_ns,
        wire_id=ident,
        exact_latency=exact,  # True when publish_mono_ns came from `mono_ns` (same host)
        context=obj.get("context"),
    )


_generations: dict[str, int] = {}  # the 16 hex digits of an id's generation -> its value (checked once)
_SEVERITY_EXACT = {name: n for name, n in SEVERITY_NUMBER.items()}  # as the Shield spells them
_U64_END = 1 << 64
_new = tuple.__new__
_WEBSOCKET = Transport.WEBSOCKET


def _id_generation(ident: str) -> tuple[int | None, int | None]:
    """(generation, seq) from an id of the form "<16 hex digits>-<seq>", else (None, None)."""
    match = _ID_WITH_GENERATION.fullmatch(ident)
    if match and int(match.group(2)) < _U64_END:
        if len(_generations) >= 1024:
            _generations.clear()
        generation = _generations[match.group(1)] = int(match.group(1), 16)
        return generation, int(match.group(2))
    return None, None


_decode_threats = None  # wire.decode_threats, imported at the first threat frame (msgspec: 50-100 ms)
_THREATS_KEY, _THREATS_KEY_BYTES = '"threats"', b'"threats"'  # in every frame the fast path can read


def _from_wire(items: list, received: int, now_unix_us: int) -> list[ThreatEvent]:
    """_threat() of each threat of a typed decode, the same ThreatEvents in a third of the time."""
    out = []
    append = out.append
    for w in items:
        sev = w.severity
        severity = _SEVERITY_EXACT.get(sev)
        if severity is None:
            severity = SEVERITY_NUMBER.get(sev.capitalize(), MEDIUM)
        stamp = w.timestamp
        ts_us = parse_timestamp_us(stamp) if stamp is not None else None
        if ts_us is None:
            ts_us = now_unix_us
        seq, mono = w.seq, w.mono_ns
        if seq is not None and not 0 <= seq < _U64_END:
            seq = None
        if mono is not None and 0 <= mono < _U64_END:
            publish, exact = mono, True
        else:
            publish, exact = received - max(0, now_unix_us - ts_us) * 1000, False
        # the id "<generation hex>-<seq>": a generation seen before is a dict look-up
        ident = w.id
        generation = _generations.get(ident[:16]) if len(ident) > 17 and ident[16] == "-" else None
        tail = ident[17:]
        if generation is not None and len(tail) < 20 and tail.isdigit() and tail.isascii():
            if seq is None:
                seq = int(tail)  # under 10**19: a u64
        else:
            generation, id_seq = _id_generation(ident)
            if seq is None:
                seq = id_seq
        threat_type = THREAT_TYPE_NUMBER.get(w.threat_type, 0)
        source, details, blocked = w.source or "", w.details or "", w.blocked
        if generation is not None and seq is not None:
            key = _new(EventKey, (generation, seq, None))
        else:
            key = EventKey.of(generation, seq, ts_us, threat_type, severity, blocked, source, details)
        append(_new(ThreatEvent, (key, _WEBSOCKET, generation, seq, publish, received, ts_us, threat_type, severity,
                                  blocked, 0, source, details, ident, exact, w.context, "")))
    return out


def _threat_frame(obj: dict, received: int, now_unix_us: int) -> Threats | BadFrame:
    """A threat frame the fast path did not read, over json.loads: either dialect. Raises _WrongType."""
    if "threats" in obj:
        items = obj["threats"]
        if not isinstance(items, list):
            raise _WrongType("threats is not a list")
        if len(items) > MAX_THREATS_PER_FRAME:
            return BadFrame("too_big", f"{len(items):,} threats in one frame, over the "
                            f"{MAX_THREATS_PER_FRAME:,} a client takes from one frame")
        return Threats([_threat(t, received, now_unix_us, False) for t in items])
    if "data" in obj:
        return Threats([_threat(obj["data"], received, now_unix_us, True)])
    raise _WrongType("a threat frame has neither 'threats' nor 'data'")


def _status(obj: dict) -> Status:
    """A status (or the extension's stats) frame. Raises _WrongType."""
    data = obj.get("data", obj)
    if not isinstance(data, dict):
        raise _WrongType("status data is not an object")
    enabled = data.get("protection_enabled")
    blocked = data.get("threats_blocked")
    stats = data.get("stats")
    if blocked is None and isinstance(stats, dict):  # the extension's dialect
        blocked = stats.get("threatsBlocked")
    if enabled is not None and not isinstance(enabled, bool):
        raise _WrongType("protection_enabled is not a boolean")
    if blocked is not None and _u64(blocked) is None:
        raise _WrongType("threats_blocked is not a count")
    return Status(enabled, blocked, data)


def parse_frame(frame: str | bytes, received_mono_ns: int | None = None) -> Message:
    """One frame from a server as a message, or BadFrame. Never raises."""
    received = received_mono_ns if received_mono_ns is not None else _mono_ns()
    size = len(frame)
    if isinstance(frame, str) and size * 4 > MAX_FRAME_BYTES:  # a character is 1..4 bytes of UTF-8
        size = len(frame.encode("utf-8", "surrogatepass"))
    if size > MAX_FRAME_BYTES:
        return BadFrame("too_big", f"{size:,} bytes, over the 1 MiB limit")
    # The usual frame, a batch of threats of the usual shape: decoded, checked and turned into
    # ThreatEvents at a third of the cost. Anything else (another message, a field of another
    # type, text Python's json reads and msgspec does not) is read below exactly as before.
    if (_THREATS_KEY if isinstance(frame, str) else _THREATS_KEY_BYTES) in frame:  # else no batch of threats
        global _decode_threats
        if _decode_threats is None:  # at the first threat frame, after subscribing: not on the way to it
            from kindlyguard_monitor.transport.wire import decode_threats as _decode_threats
        wire = _decode_threats(frame)
        if wire is not None and wire.type == "threat" and len(wire.threats) <= MAX_THREATS_PER_FRAME:
            return Threats(_from_wire(wire.threats, received, time.time_ns() // 1000))
    try:
        obj = json.loads(frame)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        return BadFrame("not_json", str(exc)[:120])
    if not isinstance(obj, dict):
        return BadFrame("wrong_types", f"a frame is {type(obj).__name__}, not an object")
    kind = obj.get("type")
    now_unix_us = time.time_ns() // 1000
    try:
        if kind == "threat":
            return _threat_frame(obj, received, now_unix_us)
        if kind in ("status", "stats"):
            return _status(obj)
        if kind == "heartbeat":
            return Heartbeat()
        if kind == "error":
            message = obj.get("message", "")
            if not isinstance(message, str):
                raise _WrongType("message is not a string")
            return ServerError(message)
    except _WrongType as exc:
        return BadFrame("wrong_types", str(exc))
    return BadFrame("unknown_type", f"type {str(kind)[:40]!r}")


def command(name: str, nonce: str | None = None) -> str:
    """A client command frame, never the same bytes twice: the Shield drops a
    connection that sends a frame it has seen (from anyone) in the last 5
    minutes, so every frame carries a random `nonce`, a field the Shield's
    parser ignores (its commands are an internally tagged serde enum without
    deny_unknown_fields) and our demo server too."""
    if name not in COMMANDS:
        raise ValueError(f"unknown command {name!r}")
    return json.dumps({"type": name, "nonce": nonce if nonce is not None else secrets.token_hex(12)},
                      separators=(",", ":"))
