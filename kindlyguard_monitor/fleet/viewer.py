"""Watching the fleet: a durable JetStream consumer per viewer, from where it stopped.

One durable pull consumer per viewer (`viewer-<host>-<user>` unless named), on
`kindlyguard.threats.>` (or one host's subjects): a viewer that was offline
fetches what came meanwhile, then follows. Acks are cumulative (AckPolicy.ALL:
the last message of each fetched batch, after it was handed on), so a viewer
killed before acking sees that batch again next time, never less.

`follow()` yields FleetThreat / FleetGap (message.py) and BadFleetMessage for a
message that is not ours (its text is the stream's, attacker-controlled: show
it with textsafe.visible).
"""

from __future__ import annotations

import asyncio
import getpass
import logging
from typing import AsyncIterator, NamedTuple

from kindlyguard_monitor.fleet import connect as fc
from kindlyguard_monitor.fleet import message
from kindlyguard_monitor.fleet import subjects as s

log = logging.getLogger(__name__)

FETCH = 512
ACK_WAIT_S = 30.0


class BadFleetMessage(NamedTuple):
    subject: str
    stream_seq: int
    reason: str


class Unavailable(Exception):
    """The stream or the consumer cannot be reached; str() says why (one sentence)."""


def default_consumer(host: str | None = None) -> str:
    try:
        user = getpass.getuser()
    except Exception:
        user = "user"
    return s.consumer_name(s.host_token(host), user)


async def open_consumer(nc, consumer: str, filter_subject: str = s.ALL_SUBJECTS, timeout: float = 30.0,
                        server_said: list | None = None):
    """The viewer's durable pull consumer, created if missing. Retried while the cluster answers
    with timeouts (a consumer or meta leader being elected after a node was lost)."""
    from nats.errors import TimeoutError as NatsTimeout
    from nats.js import api
    from nats.js.errors import Error as JsError
    from nats.js.errors import ServiceUnavailableError

    js = nc.jetstream(timeout=5.0)
    config = api.ConsumerConfig(durable_name=consumer, ack_policy=api.AckPolicy.ALL, ack_wait=ACK_WAIT_S,
                                deliver_policy=api.DeliverPolicy.ALL, max_ack_pending=100_000,
                                filter_subject=filter_subject)
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            return await js.pull_subscribe(filter_subject, durable=consumer, stream=s.STREAM, config=config)
        except (NatsTimeout, asyncio.TimeoutError, ServiceUnavailableError) as exc:
            refused = [t for t in server_said or () if "ermission" in t]
            if refused:  # a denied request gets no answer, only an error on the connection
                raise Unavailable(f"the server refused this viewer: {refused[-1]}") from None
            if asyncio.get_running_loop().time() > deadline:
                raise Unavailable(f"the fleet stream {s.STREAM} did not answer in {timeout:g} s "
                                  f"({exc.__class__.__name__})") from None
            await asyncio.sleep(0.5)
        except JsError as exc:
            raise Unavailable(f"the fleet stream {s.STREAM} cannot be followed: "
                              f"{getattr(exc, 'description', None) or exc}") from None


async def stream_end(nc) -> int | None:
    """The stream's last sequence now (None when it cannot be asked: a viewer's permissions allow
    $JS.API.STREAM.INFO, docs/fleet-server.conf)."""
    try:
        info = await nc.jetstream(timeout=5.0).stream_info(s.STREAM)
        return int(info.state.last_seq)
    except Exception as exc:  # no answer, no permission: the caller counts everything as live
        log.debug("stream info: %s", exc)
        return None


async def _connect(options: fc.Options, said: list[str]):
    """The viewer's connection (reconnecting for ever); the server's last words go to `said`."""
    from nats.errors import Error as NatsError  # noqa: F401  (nats-py missing: fail before connecting)

    kw = fc.connect_kwargs(options)
    kw.update(max_reconnect_attempts=-1, reconnect_time_wait=0.5, connect_timeout=2)

    async def remember(exc):
        log.debug("nats: %s", exc)
        said.append(str(exc)[:300])
        del said[:-5]

    kw.setdefault("error_cb", remember)
    try:
        return await fc.first_connection(kw, options)
    except fc.Unreachable as exc:
        raise Unavailable(str(exc)) from None


async def _fetch(sub, want: int):
    """One fetch round: the messages, or None when none came (or the cluster is between leaders)."""
    from nats.errors import Error as NatsError
    from nats.errors import TimeoutError as NatsTimeout

    try:
        return await sub.fetch(want, timeout=0.25)
    except (NatsTimeout, asyncio.TimeoutError):
        return None
    except NatsError as exc:  # the server restarting, a leader election: fetch again
        log.debug("fetch: %s", exc)
        await asyncio.sleep(0.2)
        return None


def _decode(m):
    """A fetched message as FleetThreat / FleetGap, or BadFleetMessage."""
    seq = m.metadata.sequence.stream if m.reply else 0
    try:
        return message.decode(m.data, seq)
    except message.BadMessage as exc:
        return BadFleetMessage(m.subject, seq, str(exc))


async def _give_back(rest) -> None:
    """Messages fetched but not handed on: nak them, so the next session starts with them."""
    from nats.errors import Error as NatsError

    for m in rest:
        try:
            await m.nak()
        except NatsError:
            break


async def _ack(last) -> None:
    from nats.errors import Error as NatsError

    try:
        await last.ack()  # AckPolicy.ALL: everything up to it
    except NatsError as exc:  # not acked: seen again next time, never lost
        log.debug("ack: %s", exc)


async def _close(nc) -> None:
    try:
        await asyncio.wait_for(nc.close(), 2.0)
    except Exception:
        pass


async def follow(options: fc.Options, consumer: str, stop: asyncio.Event,
                 filter_subject: str = s.ALL_SUBJECTS, limit: int | None = None, on_open=None,
                 on_backlog=None) -> AsyncIterator:
    """Everything the consumer has not acknowledged, then what arrives, until `stop` is set
    (or `limit` messages were handed on). Messages fetched but not handed on when it stops
    are given back at once (nak), so the next session starts with them, in order.
    `on_open()`, when given, is called once the consumer is open (the app's badge).
    `on_backlog(last_seq)`, when given, is called when the consumer opens and after every
    reconnection, before the messages that follow, with the stream's last sequence then (or
    None): a message at or before it was stored while this viewer was away, and is caught up,
    not delivered live (the app's latency counts only live ones: fleet/source.py)."""
    said: list[str] = []
    nc = await _connect(options, said)
    try:
        sub = await open_consumer(nc, consumer, filter_subject, server_said=said)
        if on_open is not None:
            on_open()
        reconnects = nc.stats["reconnects"]
        if on_backlog is not None:
            on_backlog(await stream_end(nc))
        handed = 0
        while not stop.is_set() and (limit is None or handed < limit):
            if on_backlog is not None and nc.stats["reconnects"] != reconnects:
                reconnects = nc.stats["reconnects"]
                on_backlog(await stream_end(nc))
            want = FETCH if limit is None else max(1, min(FETCH, limit - handed))
            msgs = await _fetch(sub, want)
            if msgs is None:
                continue
            last = None
            for i, m in enumerate(msgs):
                yield _decode(m)
                handed += 1
                last = m
                if stop.is_set():  # the caller has had enough: give the rest back
                    await _give_back(msgs[i + 1:])
                    break
            if last is not None:
                await _ack(last)
    finally:
        await _close(nc)
