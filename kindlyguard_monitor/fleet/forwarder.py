"""`kgmon forward`: the history's rows into the fleet stream, exactly once, in order per host.

The loop, on one asyncio task:

1. Read the rows after the last one sent (gaps first, then threats, each in row order),
   as many as the publisher has room for, and encode them (message.py).
2. Publish them (publish.py): as one fast-ingest batch, the stream acknowledging every
   few hundred and storing none after a message lost on the way; or, where the server or
   the stream does not take such batches, one by one, each waiting for its ack.
3. Move the cursor past what the stream acknowledged; write it to the history
   (outbox.py) at most every `save_every_s` and whenever nothing waits.

What makes it exactly once: the cursor only passes a row the stream has
acknowledged, so after a crash, `kill -9`, a lost connection or a server
restart the forwarder publishes again from the cursor; what the stream already
holds is dropped by its duplicate window (`Nats-Msg-Id`). What keeps it in
order: a batch's messages are stored in order with no hole (publish.py says
how), and after any failure (a refusal, no acknowledgement in `ack_timeout_s`,
a lost connection) the connection is closed, with whatever the client still
buffered, before the next one starts again from the cursor. The client's own
reconnect (which would flush that buffer after the messages lost with the old
socket) is off for this reason.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from kindlyguard_monitor.fleet import connect as fc
from kindlyguard_monitor.fleet import message, outbox, publish
from kindlyguard_monitor.fleet import subjects as s

log = logging.getLogger(__name__)

DEFAULT_WINDOW = 1024
READ_MAX = 1024  # rows read, encoded and written at a time (the window refills in steps of at most this)
HEADROOM = 512  # bytes kept for the HPUB line and headers when checking a body against the server's max_payload
RETRY_MIN_S, RETRY_MAX_S = 0.2, 10.0


@dataclass
class Stats:
    published: int = 0  # publishes sent (retries included)
    acked: int = 0  # acknowledgements that moved the cursor
    duplicates: int | None = None  # of those, ones the stream already held (a retry); known one by one only
    failures: int = 0  # connections given up after a failure
    waiting: int = 0  # threats and gaps in the history not yet acknowledged (as last counted)
    acked_at_us: int = 0
    state: str = "starting"  # or a sentence: why it is not forwarding


class _Failed(Exception):
    pass


class _Unsupported(_Failed):
    """Fast-ingest batches cannot be used here: publish one by one on a new connection, at once."""


class Forwarder:
    def __init__(self, history_path, options: fc.Options, host: str | None = None, *, window: int = DEFAULT_WINDOW,
                 replicas: int = 1, ack_timeout_s: float = 5.0, save_every_s: float = 0.1,
                 poll_s: float = 0.1, duplicate_window_s: float = fc.DUPLICATE_WINDOW_S):
        self.history_path = history_path
        self.options = options
        self.host = s.host_token(host)
        self.window = max(1, int(window))
        self.replicas = replicas
        self.ack_timeout_s = ack_timeout_s
        self.save_every_s = save_every_s
        self.poll_s = poll_s
        self.duplicate_window_s = duplicate_window_s
        self.stats = Stats()
        self._conn = None
        self._cursor: outbox.Cursor | None = None
        self._saved_at = 0.0
        self._dirty = False
        self._server_said: str | None = None
        self.one_by_one: str | None = None  # why batches are not used (publish.py), once that is known

    # -- the outer loop: open the outbox, connect, pump, retry ---------------------------------

    async def run(self, stop: asyncio.Event, until_idle: bool = False) -> bool:
        """Forward until `stop` is set; with until_idle, until nothing waits or the first failure.
        True when nothing waits."""
        delay = RETRY_MIN_S
        try:
            while not stop.is_set():
                if self._conn is None and not self._open_outbox():
                    if until_idle:
                        return False
                    await _wait(stop, 1.0)
                    continue
                nc = await self._connect()
                if nc is None:
                    if until_idle:
                        return False
                    await _wait(stop, delay)
                    delay = min(delay * 2, RETRY_MAX_S)
                    continue
                try:
                    idle = await self._pump(nc, stop, until_idle)
                    if idle:
                        return True
                    delay = RETRY_MIN_S
                except _Unsupported:
                    _forget_buffered(nc)
                    continue
                except _Failed as exc:
                    _forget_buffered(nc)  # never sent after what failed (see the module's docstring)
                    self.stats.failures += 1
                    said = f" (the server said: {self._server_said})" if self._server_said else ""
                    self._server_said = None
                    if until_idle:
                        self._state(f"not forwarding: {exc}{said}")
                        return False
                    self._state(f"not forwarding: {exc}{said}; retrying")
                    await _wait(stop, delay)
                    delay = min(delay * 2, RETRY_MAX_S)
                finally:
                    await _close(nc)
            return False
        finally:
            self._save(force=True)
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _state(self, text: str) -> None:
        if text == self.stats.state:
            return
        (log.warning if text.startswith("not forwarding") else log.info)("%s", text)
        self.stats.state = text
        if self._conn is not None:
            try:
                outbox.save_state(self._conn, s.STREAM, text)
            except Exception as exc:  # busy: the next change says it
                log.debug("state not saved: %s", exc)

    def _open_outbox(self) -> bool:
        try:
            self._conn = outbox.open_outbox(self.history_path)
            self._cursor = outbox.load(self._conn, s.STREAM)
            self.stats.acked_at_us = self._cursor.acked_at_us
            return True
        except outbox.NotReady as exc:
            self._state(f"not forwarding: {exc}")
            return False

    async def _connect(self):
        from nats.errors import Error as NatsError

        try:
            kw = fc.connect_kwargs(self.options)
        except fc.BadOption as exc:
            self._state(f"not forwarding: {exc}")
            return None
        kw.update(allow_reconnect=False, connect_timeout=2, max_reconnect_attempts=0)

        async def remember(exc):  # reported with what fails next (a refused publish times out), once
            log.debug("nats: %s", exc)
            self._server_said = str(exc)[:300]

        kw.setdefault("error_cb", remember)
        kw.setdefault("inbox_prefix", f"_INBOX_{self.host}")  # acks come here: a permission per host (docs/fleet.md)
        try:
            nc = await fc.first_connection(kw, self.options)
        except fc.Unreachable as exc:
            self._state(f"not forwarding: {exc}")
            return None
        try:
            js = nc.jetstream(timeout=self.ack_timeout_s)
            log.info("%s", await fc.ensure_stream(js, self.replicas, self.duplicate_window_s))
        except (OSError, asyncio.TimeoutError, NatsError) as exc:
            await _close(nc)
            self._state(f"not forwarding: the stream cannot be reached ({_why(exc)})")
            return None
        return nc

    # -- one connection's life -------------------------------------------------------------------

    def _read(self, enc: message.ThreatEncoder, threat_row: int, gap_row: int,
              limit: int) -> list[tuple[message.Outgoing, int, int]]:
        """Up to `limit` messages after (threat_row, gap_row), gaps first, each with the cursor
        (threat row, gap row) that its acknowledgement allows."""
        items = []
        for g in outbox.gaps_after(self._conn, gap_row, limit):
            gap_row = g[0]
            items.append((message.gap_message(self.host, enc.history_id, g), threat_row, gap_row))
        if len(items) < limit:
            for r in outbox.threat_rows_after(self._conn, threat_row, limit - len(items)):
                threat_row = r[0]
                items.append((enc.encode(r), threat_row, gap_row))
        return items

    async def _pump(self, nc, stop: asyncio.Event, until_idle: bool) -> bool:
        """Publish from the cursor on one connection until stopped, idle (until_idle) or failed."""
        pub = publish.FastBatch(nc, self.window) if self.one_by_one is None else publish.OneByOne(nc)
        await pub.start()
        cur = self._cursor
        next_threat, next_gap = cur.threat_row, cur.gap_row
        enc = message.ThreatEncoder(self.host, cur.history_id)
        self._state(f"forwarding to {self.options.shown}")
        counted_at = pinged_at = 0.0
        while not stop.is_set():
            self._settle(pub)
            if nc.is_closed or not nc.is_connected:
                raise _Failed("the connection to the NATS server was lost")
            sent, next_threat, next_gap = await self._send_some(nc, pub, enc, next_threat, next_gap)
            self.stats.published += sent
            now = time.monotonic()
            if now - counted_at > 1.0 or not pub.busy:
                self.stats.waiting = outbox.waiting(self._conn, self._cursor)
                counted_at = now
            if pub.busy:
                if self._server_said and "ermission" in self._server_said:  # a refused publish gets no ack
                    raise _Failed(f"the server refused a publish or its acknowledgement: this NATS user may not "
                                  f"forward as host {self.host}")
                stalled = now - pub.progress_at
                if stalled > self.ack_timeout_s:
                    raise _Failed(f"no acknowledgement from the stream in {self.ack_timeout_s:g} s")
                if stalled > self.ack_timeout_s / 3 and now - pinged_at > self.ack_timeout_s / 3:
                    await pub.ping()  # an acknowledgement may have been lost
                    pinged_at = now
                if sent == 0 or pub.room() <= 0:
                    await pub.wait(0.05)
                else:
                    await asyncio.sleep(0)
                continue
            self._save(force=True)
            if self.stats.waiting == 0 and until_idle:
                return True
            if sent == 0:
                await _wait(stop, self.poll_s)
        return False

    async def _send_some(self, nc, pub, enc, next_threat: int, next_gap: int) -> tuple[int, int, int]:
        """Read what the publisher has room for, hold back a message too big for the server, send:
        (how many were sent, the next threat row, the next gap row)."""
        from nats.errors import Error as NatsError

        sent = 0
        room = pub.room()
        try:
            if room > 0:
                limit = min(room, READ_MAX)
                items = self._read(enc, next_threat, next_gap, limit)
                last = len(items) < limit
                big = next((i for i, item in enumerate(items)
                            if len(item[0].body) > nc.max_payload - HEADROOM), None)
                if big is not None:  # the rows before it go; it waits, named, at the head of the outbox
                    if big == 0 and not pub.busy and not pub.open:
                        raise _Failed(_too_big(items[0], nc.max_payload))
                    items, last = items[:big], False
                if items:
                    sent = await pub.send(items, last)
                    _, next_threat, next_gap = items[sent - 1]
                elif pub.open:  # nothing to add now: the batch is committed, its tail acknowledged
                    await pub.end()
        except NatsError as exc:  # refused by the client before sending: said, then retried
            raise _Failed(f"the NATS client refused a publish ({_why(exc)})") from None
        return sent, next_threat, next_gap

    def _settle(self, pub) -> None:
        """Move the cursor past what the stream acknowledged; a refusal ends this connection."""
        acked = pub.take_acked()
        if acked is not None:
            self._advance(*acked)
        if pub.duplicates is not None:  # one by one: each ack says whether the stream already held it
            self.stats.duplicates = (self.stats.duplicates or 0) + pub.duplicates
            pub.duplicates = 0
        if pub.unsupported and self.one_by_one is None:
            self.one_by_one = pub.unsupported
            log.warning("%s: publishing one by one, each waiting for its acknowledgement (slower)", pub.unsupported)
            raise _Unsupported(pub.unsupported)
        if pub.problem:
            raise _Failed(f"the stream refused a publish ({pub.problem})")

    def _advance(self, threat_row: int, gap_row: int, n: int) -> None:
        now = outbox.now_us()
        c = self._cursor
        self._cursor = outbox.Cursor(c.history_id, threat_row, gap_row, now, c.forwarded + n)
        self.stats.acked += n
        self.stats.acked_at_us = now
        self._dirty = True
        self._save()

    def _save(self, force: bool = False) -> None:
        if not self._dirty or self._conn is None:
            return
        now = time.monotonic()
        if not force and now - self._saved_at < self.save_every_s:
            return
        try:
            outbox.save(self._conn, s.STREAM, self._cursor)
            self._dirty = False
            self._saved_at = now
        except Exception as exc:  # the history busy or full: the cursor stays in memory, tried again
            log.warning("the forwarding cursor could not be saved (%s); retrying", exc)


def _too_big(item: tuple, max_payload: int) -> str:
    """One sentence for a message the server would refuse (it closes the connection for it)."""
    out, threat_row, gap_row = item
    kind = "threat" if out.headers.get(s.H_KIND) == "threat" else "gap"
    return (f"{kind} row {threat_row if kind == 'threat' else gap_row} is {len(out.body):,} bytes as a message, "
            f"more than the server takes (max_payload {max_payload:,}, less {HEADROOM} for the headers); it "
            "and the rows after it wait until the server takes bigger messages")


def _why(exc) -> str:
    return "cancelled" if exc is None else fc._why(exc)


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except asyncio.TimeoutError:
        pass


def _forget_buffered(nc) -> None:
    """Drop what the client buffered but has not written to the socket: close() would flush it
    after publishes that failed, out of order. (nats-py has no public way; its buffer is `_pending`.)"""
    if isinstance(getattr(nc, "_pending", None), list):
        nc._pending = []
        nc._pending_data_size = 0


async def _close(nc) -> None:
    try:
        await asyncio.wait_for(nc.close(), 2.0)
    except Exception:
        pass
