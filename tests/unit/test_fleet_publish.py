"""publish.FastBatch reading the server's answers to a fast-ingest batch.

The answers below are nats-server 2.15.1's own, captured from a real server on loopback
(tests/integration/test_fleet.py runs the same exchanges against it): a flow acknowledgement
`{"type":"ack","seq":N,"msgs":F}`, a gap, and the batch's end with its count.
"""

from __future__ import annotations

from types import SimpleNamespace

from kindlyguard_monitor.fleet import publish


class _Client:
    """Only what FastBatch asks of the NATS client before anything is sent."""

    def new_inbox(self) -> str:
        return "_INBOX_ws1.NUID"


def _batch(n: int) -> publish.FastBatch:
    pub = publish.FastBatch(_Client(), window=8)
    pub.batch, pub.prefix, pub.n = "NUID1", "_INBOX_ws1.NUID.NUID1.2.fail.", n
    pub.waiting.extend(publish.Sent(i, i, 0) for i in range(1, n + 1))
    return pub


def _answer(pub: publish.FastBatch, n: int, op: int, data: bytes) -> None:
    pub._reply(SimpleNamespace(subject=f"{pub.prefix}{n}.{op}.$FI", data=data, headers=None))


def test_an_answer_that_acknowledges_more_is_progress_and_moves_the_cursor():
    pub = _batch(3)
    pub.progress_at = 0.0
    _answer(pub, 2, publish.OP_ADD, b'{"type":"ack","seq":2,"msgs":2}')
    assert pub.progress_at > 0 and pub.take_acked() == (2, 0, 2) and len(pub.waiting) == 1


def test_a_pings_answer_repeating_the_last_ack_is_not_progress():
    """Else a batch whose last message never arrived would hold off the forwarder's ack timeout for ever."""
    pub = _batch(3)
    _answer(pub, 2, publish.OP_ADD, b'{"type":"ack","seq":2,"msgs":2}')
    pub.take_acked()
    pub.progress_at = before = 123.0
    _answer(pub, 3, publish.OP_PING, b'{"type":"ack","seq":2,"msgs":2}')
    assert pub.progress_at == before and pub.take_acked() is None and pub.problem is None


def test_a_gap_then_the_batchs_end_say_what_was_lost_and_acknowledge_what_is_held():
    pub = _batch(3)
    _answer(pub, 3, publish.OP_PING, b'{"type":"gap","last_seq":3,"seq":4}')
    _answer(pub, 3, publish.OP_PING, b'{"stream":"KINDLYGUARD_THREATS","seq":5,"batch":"NUID1","count":2}')
    assert pub.problem.startswith("a publish was lost on the way (the stream expected message 3")
    assert pub.take_acked() == (2, 0, 2) and pub.batch is None


def test_an_answer_about_another_batch_is_ignored():
    pub = _batch(2)
    pub._reply(SimpleNamespace(subject="_INBOX_ws1.NUID.NUID0.2.fail.2.1.$FI", data=b'{"type":"ack","seq":2}',
                               headers=None))
    assert pub.take_acked() is None and len(pub.waiting) == 2


def test_a_stream_without_batches_says_so():
    pub = _batch(1)
    _answer(pub, 1, publish.OP_START, b'{"error":{"code":400,"err_code":10205,"description":"batch publish is '
                                      b'disabled"},"stream":"U","seq":0}')
    assert pub.unsupported and "does not allow fast-ingest batches" in pub.unsupported and pub.problem is None
