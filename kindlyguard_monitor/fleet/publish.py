"""Publishing the forwarder's messages so that the stream holds each host's in order: two ways.

FastBatch: JetStream's fast-ingest batch (nats-server 2.14+, a stream with `allow_batched`).
Each publish's reply subject says which batch it belongs to and where:
`<inbox>.<batch>.<flow>.fail.<n>.<op>.$FI` (op 0 starts the batch, 1 adds, 2 adds and commits,
3 commits without a message, 4 asks again for the last acknowledgement). The server stores
each message as it comes and acknowledges every `flow` messages (`{"type":"ack","seq":N}`:
messages 1..N of the batch are stored). With gaps set to `fail`, a message lost on the way
(sent to a stream leader that died, or while a cluster elects one) ends the batch there: the
server stores none after it (`{"type":"gap",...}`, then "batch publish ID unknown" for the
rest). So what the stream holds of a host is always a prefix of what was sent, in order,
however many messages are on the wire; after a failure the forwarder starts a new batch at
its cursor, and what the stream already holds is dropped by its duplicate window
(`Nats-Msg-Id`). One batch at a time: the next starts once the last one's commit is
acknowledged. Acknowledgements are one per `flow` messages instead of one per message,
which is most of what forwarding cost in CPU (docs/fleet.md).

OneByOne: for a server without fast-ingest batches, or a stream whose owner did not allow them:
each publish waits for its own acknowledgement before the next is sent. In order, slower.

Both are read the same way by forwarder.py: room() (how many may be sent now), send(),
take_acked() (the cursor the stream's acknowledgements allow), problem (why to give up).
"""

from __future__ import annotations

import asyncio
import collections
import json
import time

from kindlyguard_monitor.fleet.wire import Wire

OP_START, OP_ADD, OP_COMMIT, OP_END, OP_PING = 0, 1, 2, 3, 4
MAX_BATCH = 100_000  # messages in one batch before it is committed and the next one started
BATCHES_DISABLED = 10205  # the stream does not allow fast-ingest batches (its allow_batched is off)


class Sent:
    """A publish not yet acknowledged; (threat_row, gap_row) is the cursor once it and all before it are."""

    __slots__ = ("n", "threat_row", "gap_row")

    def __init__(self, n: int, threat_row: int, gap_row: int):
        self.n, self.threat_row, self.gap_row = n, threat_row, gap_row


class _Publisher:
    """What both ways share: an inbox of our own for the acknowledgements, the publishes not yet
    acknowledged, the cursor acknowledged since it was last taken, and why to give up."""

    def __init__(self, nc):
        self.nc = nc
        self.wire = Wire(nc)
        self.inbox = nc.new_inbox()
        self.waiting: collections.deque[Sent] = collections.deque()
        self.acked: tuple[int, int, int] | None = None  # (threat_row, gap_row, how many) since take_acked()
        self.duplicates: int | None = None  # known only one by one
        self.problem: str | None = None  # a sentence: the stream refused something; start again from the cursor
        self.unsupported: str | None = None  # a sentence: this way cannot work with this server or stream
        self.progress_at = time.monotonic()
        self.event = asyncio.Event()

    async def start(self) -> None:
        await self.nc.subscribe(self.inbox + ".>", cb=self._on_reply, pending_msgs_limit=1 << 20,
                                pending_bytes_limit=256 << 20)

    def take_acked(self) -> tuple[int, int, int] | None:
        out, self.acked = self.acked, None
        return out

    def _ack_through(self, n: int) -> None:
        """Every publish numbered up to n is stored."""
        count = 0
        last = None
        while self.waiting and self.waiting[0].n <= n:
            last = self.waiting.popleft()
            count += 1
        if last is not None:
            before = self.acked[2] if self.acked else 0
            self.acked = (last.threat_row, last.gap_row, before + count)
            self.progress_at = time.monotonic()

    @property
    def busy(self) -> bool:
        """Something sent is not acknowledged yet (or an answer the next publish needs is awaited)."""
        return bool(self.waiting)

    async def wait(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self.event.wait(), seconds)
        except asyncio.TimeoutError:
            pass
        self.event.clear()

    async def _on_reply(self, msg) -> None:
        try:
            self._reply(msg)
        finally:
            self.event.set()

    def _reply(self, msg) -> None:
        raise NotImplementedError


def error_sentence(data: bytes, headers: dict | None) -> tuple[str, int | None] | None:
    """(why, error code) when an answer from the stream is a refusal, else None."""
    if not data:  # a status message: 503 no responders (no stream leader), 408 ...
        return f"no stream answered (status {(headers or {}).get('Status', '?')})", None
    if b'"error"' not in data:
        return None
    try:
        err = json.loads(data).get("error") or {}
        code = err.get("err_code", err.get("code"))
        return f"{err.get('description', 'error')} ({code if code is not None else '?'})", code
    except (ValueError, AttributeError):
        return "an error the stream did not explain", None


class FastBatch(_Publisher):
    def __init__(self, nc, window: int, max_batch: int = MAX_BATCH):
        super().__init__(nc)
        self.window = max(1, window)
        self.flow = max(1, min(self.window // 4, 0xFFFF))  # the server may change it (its acks say)
        self.max_batch = max(2, max_batch)
        self.batches = 0
        self.batch: str | None = None  # the open batch's id
        self.prefix = ""  # the open batch's reply subjects begin so (its flow as it was asked for)
        self.subject = ""  # the open batch's first subject (an end without a message is sent there)
        self.n = 0  # the last number sent in the open batch
        self.starting = False  # the first message is sent, its answer not yet here
        self.ending = False  # the commit is sent, its answer not yet here

    def room(self) -> int:
        if self.problem or self.unsupported or self.starting or self.ending:
            return 0
        return max(self.window, 2 * self.flow) - len(self.waiting)

    @property
    def busy(self) -> bool:
        return bool(self.waiting) or self.starting or self.ending

    @property
    def open(self) -> bool:
        return self.batch is not None and not self.ending

    def _reply_to(self, n: int, op: int) -> str:
        return f"{self.prefix}{n}.{op}.$FI"

    async def send(self, items: list, last: bool) -> int:
        """Publish from the front of items ((Outgoing, threat_row, gap_row) each); `last`: nothing follows
        them now (the batch is committed with the last one). Returns how many were sent: only the first
        when a batch starts (the rest wait for the server's first answer, which says it takes batches)."""
        msgs = []
        if not self.busy:
            self.progress_at = time.monotonic()
        if self.batch is None:
            self.batches += 1
            self.batch = f"{self.inbox.rsplit('.', 1)[1]}{self.batches}"  # unique: the inbox's NUID and a count
            self.prefix = f"{self.inbox}.{self.batch}.{self.flow}.fail."
            self.n = 0
            self.subject = items[0][0].subject
            if len(items) > 1 or not last:
                items = items[:1]
                last = False
                self.starting = True
        for i, (out, threat_row, gap_row) in enumerate(items):
            self.n += 1
            commit = (last and i == len(items) - 1) or self.n >= self.max_batch
            op = OP_START if self.n == 1 and not commit else OP_COMMIT if commit else OP_ADD
            self.waiting.append(Sent(self.n, threat_row, gap_row))
            msgs.append((out.subject, self._reply_to(self.n, op), out.headers, out.body))
            if commit:
                self.ending = True
                break
        await self.wire.send(msgs)
        return len(msgs)

    async def end(self) -> None:
        """Commit the open batch without a message: the stream acknowledges what it holds of it."""
        self.ending = True
        self.progress_at = time.monotonic()
        await self.wire.send([(self.subject, self._reply_to(self.n + 1, OP_END), {}, b"")])

    async def ping(self) -> None:
        """Ask again for the last acknowledgement (one may have been lost)."""
        if self.batch is not None:
            await self.wire.send([(self.subject, self._reply_to(self.n, OP_PING), {}, b"")])

    def _reply(self, msg) -> None:
        parts = msg.subject[len(self.inbox) + 1:].split(".")
        if not parts or parts[0] != self.batch:
            return  # an answer about an earlier batch, already settled
        data = msg.data
        if b'"type":"ack"' in data:
            ack = json.loads(data)
            self.flow = ack.get("msgs") or self.flow
            if self.starting:  # the first answer: the stream takes this batch
                self.starting = False
                self.progress_at = time.monotonic()
            self._ack_through(int(ack.get("seq", 0)))  # progress only if it acknowledges more (a ping's
            return  # answer repeating the last ack must not hold off the forwarder's timeout)
        if b'"type":"gap"' in data:
            gap = json.loads(data)
            self.problem = (f"a publish was lost on the way (the stream expected message {gap.get('last_seq')} of "
                            f"the batch, got {gap.get('seq')}) and stored none after it")
            return
        refused = error_sentence(data, msg.headers)  # an error answer ({"error": ...}), with or without "type":"err"
        if refused is not None:
            why, code = refused
            if code == BATCHES_DISABLED:
                self.unsupported = f"the stream does not allow fast-ingest batches ({why})"
            else:
                self.problem = why
            return
        try:
            ack = json.loads(data)
        except ValueError:
            self.problem = "an answer the stream did not explain"
            return
        if "batch" not in ack:  # a server before 2.14 stored the first message as a plain publish
            self._ack_through(1)
            self.unsupported = "this NATS server has no fast-ingest batches (nats-server 2.14 or later has)"
            return
        count = int(ack.get("count", 0))  # the batch's stored messages, 1..count
        self._ack_through(count)
        if self.waiting and not self.problem:  # after a gap the server says why first
            self.problem = f"the stream ended the batch after {count} of {self.n} messages"
        self.batch, self.starting, self.ending = None, False, False


class OneByOne(_Publisher):
    """Each publish (with its Nats-Msg-Id) waits for its acknowledgement before the next."""

    def __init__(self, nc):
        super().__init__(nc)
        self.duplicates = 0
        self.n = 0

    def room(self) -> int:
        return 0 if (self.problem or self.waiting) else 1

    open = False

    async def send(self, items: list, last: bool) -> int:
        out, threat_row, gap_row = items[0]
        self.n += 1
        self.waiting.append(Sent(self.n, threat_row, gap_row))
        self.progress_at = time.monotonic()
        await self.wire.send([(out.subject, f"{self.inbox}.{self.n}", out.headers, out.body)])
        return 1

    async def ping(self) -> None:
        pass

    def _reply(self, msg) -> None:
        token = msg.subject[len(self.inbox) + 1:]
        if not self.waiting or token != str(self.waiting[0].n):
            return
        refused = error_sentence(msg.data, msg.headers)
        if refused is not None:
            self.problem = refused[0]
            return
        if b'"duplicate"' in msg.data:  # only a retry's ack says so (`"duplicate": true`)
            try:
                self.duplicates += json.loads(msg.data).get("duplicate") is True
            except (ValueError, AttributeError):
                pass
        self._ack_through(self.waiting[0].n)
