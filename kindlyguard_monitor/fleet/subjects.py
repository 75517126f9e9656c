"""Names on the wire: the stream, the subjects, the message ids and headers.

Subjects: kindlyguard.threats.<host>.<severity> (severity: low, medium, high,
critical, or unknown) and kindlyguard.threats.<host>.gap for a gap the history
recorded, so one permission, `kindlyguard.threats.<host>.>`, covers all a
workstation may publish, and a viewer's filter `kindlyguard.threats.>` sees
threats and gaps in the order the stream holds them.

`Nats-Msg-Id` is `<host>.<key hex>`: the history's key of the threat (16 bytes
of generation and seq, or the 20-byte content digest; history/records.py), so
a threat published again after a crash or a lost ack, by this history or by a
new one after the file was moved aside, is dropped by the stream's duplicate
window. A gap has no key of its own: its id digests its fields.
"""

from __future__ import annotations

import hashlib
import re
import socket

STREAM = "KINDLYGUARD_THREATS"
PREFIX = "kindlyguard.threats"
ALL_SUBJECTS = PREFIX + ".>"
SEVERITY_TOKENS = (None, "low", "medium", "high", "critical")  # index = the ring's severity number
UNKNOWN = "unknown"
GAP = "gap"
HOST_TOKEN_MAX = 64

# Our headers (besides Nats-Msg-Id): what the body says, for a viewer that only reads headers.
H_MSG_ID = "Nats-Msg-Id"
H_KIND = "Kg-Kind"  # "threat" or "gap"; host, row and history are in the body (message.py)

_NOT_TOKEN = re.compile(r"[^a-z0-9_-]+")
_NOT_NAME = re.compile(r"[^A-Za-z0-9_-]+")


def host_token(name: str | None = None) -> str:
    """`name` (default: this machine's host name) as one subject token: lower case a-z, 0-9, `_`, `-`.

    Dots, spaces, wildcards and anything else become `_` (so `ws1.corp.example` is
    `ws1_corp_example`); a name longer than 64 keeps 51 characters and a digest of the
    whole, so two long names stay two tokens. Never empty.
    """
    raw = socket.gethostname() if name is None else name
    token = _NOT_TOKEN.sub("_", raw.strip().lower()).strip("_") or UNKNOWN
    if len(token) > HOST_TOKEN_MAX:
        digest = hashlib.blake2b(raw.encode("utf-8", "surrogatepass"), digest_size=6).hexdigest()
        token = token[:HOST_TOKEN_MAX - 13] + "-" + digest
    return token


def severity_token(severity: int) -> str:
    return SEVERITY_TOKENS[severity] if isinstance(severity, int) and 1 <= severity <= 4 else UNKNOWN


def threat_subject(host: str, severity: int) -> str:
    return f"{PREFIX}.{host}.{severity_token(severity)}"


def gap_subject(host: str) -> str:
    return f"{PREFIX}.{host}.{GAP}"


def host_subjects(host: str) -> list[str]:
    """Every subject one host publishes on."""
    return [f"{PREFIX}.{host}.{t}" for t in (*SEVERITY_TOKENS[1:], UNKNOWN, GAP)]


def host_filter(host: str) -> str:
    return f"{PREFIX}.{host}.>"


def threat_msg_id(host: str, key: bytes) -> str:
    return f"{host}.{bytes(key).hex()}"


def gap_msg_id(host: str, time_us: int, transport: str, generation: str | None, missed: int, corrupt: int,
               kind: str) -> str:
    h = hashlib.blake2b(digest_size=16, person=b"kgmon-gap")
    h.update(repr((time_us, transport, generation, missed, corrupt, kind)).encode("utf-8", "surrogatepass"))
    return f"{host}.gap-{h.hexdigest()}"


def consumer_name(host: str, user: str) -> str:
    """A durable consumer's name for one viewer: `viewer-<host>-<user>`, JetStream's allowed characters only."""
    name = _NOT_NAME.sub("_", f"viewer-{host}-{user}")
    return name[:200]


def valid_consumer_name(name: str) -> bool:
    return 0 < len(name) <= 200 and not _NOT_NAME.search(name)
