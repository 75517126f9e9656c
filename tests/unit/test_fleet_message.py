"""The forwarder's fast message encoder (fleet/message.py ThreatEncoder) gives exactly the bytes of
the readable reference, threat_message() (a dict and json), for hostile and odd rows."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from kindlyguard_monitor.fleet import message, subjects
from kindlyguard_monitor.history.records import stored_threat

HOSTILE = ["", "plain", "\u202egnp.exe", "zero\u200bwidth", 'quote " and \\ back', "line\nbreak\r\t\x00\x1b[31m",
           "emoji \U0001F600 and a lone \udc80", "{\"kind\":\"gap\"}", "ünïcödé \u2028\u2029"]


def _row(row_id, key, time_us, ttype, sev, blocked, flags, source, details, transport, gen, seq):
    return (row_id, key, time_us, ttype, sev, blocked, flags, source, details, transport, gen, seq)


def _check(enc: message.ThreatEncoder, row: tuple) -> None:
    ref = message.threat_message(enc.host, "0123abcd", bytes(row[1]), stored_threat(row + (99,)))
    fast = enc.encode(row)
    assert fast == ref
    assert message.decode(fast.body).details == row[8]  # and it reads back as stored


def test_fast_encoder_matches_the_reference_on_hostile_rows():
    enc = message.ThreatEncoder("ws1_corp", "0123abcd")
    numbered = (0x0123456789ABCDEF).to_bytes(8, "big") + (7).to_bytes(8, "big")
    big_seq = (5).to_bytes(8, "big") + (2**64 - 1).to_bytes(8, "big")
    digest = bytes(range(20))
    for i, text in enumerate(HOSTILE):
        _check(enc, _row(i + 1, numbered, 1_700_000_000_000_000 + i, 1 + i % 12, i % 6, i % 2, i, text,
                         HOSTILE[-1 - i], "shm" if i % 2 else text, "0123456789abcdef", 7))
    _check(enc, _row(20, big_seq, 1, 3, 4, 1, 0, "s", "d", "shm", "0000000000000005", None))  # seq only in the key
    _check(enc, _row(21, digest, 1, 99, -1, 0, 0, "s", "d", "websocket", None, None))  # content key, odd numbers
    _check(enc, _row(22, digest, 1, 2, 9, 0, 0, "s", "d", "websocket", "FFFFFFFFFFFFFFFF", 3))  # upper-case gen


@settings(max_examples=100, deadline=None)
@given(source=st.text(), details=st.text(), transport=st.text(max_size=20), sev=st.integers(-3, 8),
       ttype=st.integers(-2, 40), seq=st.one_of(st.none(), st.integers(0, 2**63 - 1)), blocked=st.booleans())
def test_fast_encoder_matches_the_reference_on_any_text(source, details, transport, sev, ttype, seq, blocked):
    key = (0xABCDEF).to_bytes(8, "big") + (seq or 0).to_bytes(8, "big")
    _check(message.ThreatEncoder("h", "0123abcd"),
           _row(5, key, 123, ttype, sev, int(blocked), 0, source, details, transport, "0000000000abcdef", seq))


def test_body_is_ascii_and_the_subject_and_id_as_named():
    out = message.ThreatEncoder("ws9", "beef").encode(
        _row(3, bytes(16), 1, 1, 4, 1, 0, "src", "\u202e", "shm", None, 0))
    assert out.body.isascii() and b"\\u202e" in out.body
    assert out.subject == subjects.threat_subject("ws9", 4) == "kindlyguard.threats.ws9.critical"
    assert out.headers == {subjects.H_MSG_ID: "ws9." + "00" * 16, subjects.H_KIND: "threat"}
    assert json.loads(out.body)["row"] == 3


def test_hpub_is_the_protocol_line_headers_and_body():
    from kindlyguard_monitor.fleet.wire import hpub

    hdr = b"NATS/1.0\r\nNats-Msg-Id: ws1.00ff\r\nKg-Kind: threat\r\n\r\n"
    body = b'{"details":"\\u202e"}'
    got = hpub("kindlyguard.threats.ws1.low", "_INBOX_ws1.abc.7", {"Nats-Msg-Id": "ws1.00ff", "Kg-Kind": "threat"}, body)
    assert got == (b"HPUB kindlyguard.threats.ws1.low _INBOX_ws1.abc.7 %d %d\r\n" % (len(hdr), len(hdr) + len(body))
                   + hdr + body + b"\r\n")
    assert hpub("s", "", {"A": "b"}, b"").startswith(b"HPUB s 18 18\r\nNATS/1.0\r\nA: b\r\n\r\n")
