"""A bounded chaos run on the WebSocket (issue 11, "a chaos test that stays"; the
ring half is tests/integration/test_chaos_ring.py): a server on 127.0.0.1 speaking our
dialect (threats with `seq` and an `id` of "<generation>-<seq>",
docs/websocket.md) that, in a seeded random order, sends threats, floods,
skips numbers (gaps), sends bad frames (not JSON, a threat without its
fields, a frame over 1 MiB), drops the connection without a close frame,
closes it with one, and after every reconnect replays threats it already sent
(duplicates), against the real client (`kgmon tail --transport websocket`).

At the end every numbered threat is delivered once, in order, or counted as
missed (delivered + missed == highest seq + 1: the manager counts a jump as
missed and drops a seq below the next one expected as a duplicate), every bad
frame was reported by kind, the tail never died and exits 0 on SIGTERM, and its
memory stayed bounded.

Waits are on conditions (the server saw the reconnect; the tail printed a
sentinel threat), never sleeps. A drop may lose threats in flight (the TCP
socket is aborted with unsent bytes): those are counted as missed once a later
number arrives, which the run always ends with. Each drop and close is a
"dropped soon" failure for the client's back-off (0.25 s doubling, jittered),
so four of them cost ~4-6 s of waiting in all: the run stays well under 20 s.
"""

from __future__ import annotations

import random
import signal
from collections import Counter

import psutil
from conftest import OutputWatcher, start_kgmon
from hostile_ws import MiB, HostileServer, json_frame_of_size

from kindlyguard_monitor.demo.threats import ThreatGenerator
from kindlyguard_monitor.transport import server_frames
from test_ring_processes import summary, threats, transports

GEN = 0x6B67636861F5EE11
SEED = 11
STATUS = server_frames.status_message(True, 0)


async def _stay(ws, srv) -> None:
    """Each connection: the status first (as the Shield does), then whatever the test sends."""
    await ws.send(STATUS)
    await ws.wait_closed()


class ChaosServer:
    """The test thread's side: what was sent, numbered, and when to wait."""

    def __init__(self, srv: HostileServer, rng: random.Random):
        self.srv = srv
        self.rng = rng
        self.gen = ThreatGenerator(SEED)
        self.next = 0  # the next seq to send
        self.details: dict[int, str] = {}  # seq -> the threat's details, as sent
        self.sent: list[str] = []  # every numbered frame sent, for replays
        self.skipped: set[int] = set()  # never sent: the client must count them missed
        self.bad: Counter[str] = Counter()  # bad frames sent, by the kind the client must report
        self.disconnects = {"abort": 0, "close": 0}
        self.replayed = 0

    def frame(self, n: int) -> str:
        """The next n threats as one `threat` message (ids carry the generation)."""
        parts = []
        for t in self.gen.batch(n):
            seq = self.next
            self.next += 1
            self.details[seq] = t.details
            parts.append(server_frames.threat_json(t, server_frames.event_id(GEN, seq), seq))
        frame = server_frames.threat_message(parts)
        self.sent.append(frame)
        return frame

    def send(self, frames: list[str]) -> None:
        """Send frames in order, on the one connection there is (not waiting for the client)."""
        async def go() -> int:
            (conn,) = list(self.srv._live)
            for f in frames:
                await conn.send(f)
            return len(frames)
        self.srv.call(go)

    def skip(self, n: int) -> None:
        self.skipped.update(range(self.next, self.next + n))
        self.next += n

    def sentinel(self, tw: OutputWatcher, what: str) -> None:
        """A numbered threat after everything sent so far: once the tail prints it, the
        tail has read everything before it on this connection."""
        self.send([self.frame(1)])
        last = self.next - 1
        tw.wait_json(lambda objs: any(o["type"] == "threat" and o["seq"] == last for o in objs), 30,
                     f"the tail to print seq {last} ({what})")

    def disconnect(self, how: str) -> None:
        before = self.srv.connections

        async def go() -> None:
            for conn in list(self.srv._live):
                if how == "abort":
                    conn.transport.abort()  # no close frame; bytes not yet sent are lost
                else:
                    await conn.close()  # a close frame (1000)
        self.srv.call(go)
        self.disconnects[how] += 1
        self.srv.wait_for(lambda: self.srv.connections > before and self.srv.live == 1, 30,
                          "the client to connect again")
        # a server that replays what it sent before (a restart, a resend after reconnect)
        k = min(len(self.sent), self.rng.randint(3, 12))
        replay = self.rng.sample(self.sent, k)
        self.send(replay)
        self.replayed += k

    def replay_read(self, tw: OutputWatcher) -> None:
        self.sentinel(tw, "the replayed threats to be read")


def test_ws_chaos_every_numbered_threat_is_delivered_once_or_counted(tmp_path):
    rng = random.Random(SEED)
    with HostileServer(_stay) as srv:
        chaos = ChaosServer(srv, rng)
        tail = start_kgmon("tail", "--json", "--transport", "websocket", "--ws-url", srv.url,
                           "--shm-path", tmp_path / "no-ring")
        tw = OutputWatcher(tail)
        srv.wait_for(lambda: srv.connections == 1 and srv.live == 1, 30, "the tail to connect")
        tw.wait_json(lambda objs: any(o["type"] == "status" for o in objs), 30, "the tail to read the status")
        rss_start = psutil.Process(tail.pid).memory_info().rss

        chaos.send([chaos.frame(rng.randint(1, 20)) for _ in range(10)])
        chaos.sentinel(tw, "the first threats")

        steps = (["send"] * 6 + ["flood"] * 3 + ["gap"] * 4 + ["bad"] * 3
                 + ["abort"] * 2 + ["close"] * 2)
        rng.shuffle(steps)
        for step in steps:
            if step == "send":
                chaos.send([chaos.frame(rng.randint(1, 5)) for _ in range(rng.randint(1, 10))])
            elif step == "flood":
                # a burst: ~100 frames of up to 60 threats each, some skipping numbers on the way
                frames = []
                for _ in range(rng.randint(80, 120)):
                    if rng.random() < 0.05:
                        chaos.skip(rng.randint(1, 30))
                    frames.append(chaos.frame(rng.randint(1, 60)))
                chaos.send(frames)
            elif step == "gap":
                chaos.skip(rng.randint(1, 500))
                chaos.send([chaos.frame(rng.randint(1, 5))])
            elif step == "bad":
                kinds = {
                    "not_json": 'not json {"type": "threat"',
                    "wrong_types": server_frames.threat_message(['{"id": "%016x-x", "details": "no type, no severity"}'
                                                            % GEN]),
                    "too_big": json_frame_of_size(MiB + rng.randint(1, MiB // 2), "threat"),
                }
                order = list(kinds)
                rng.shuffle(order)
                frames = []
                for kind in order:
                    frames.append(kinds[kind])
                    chaos.bad[kind] += 1
                    frames.append(chaos.frame(rng.randint(1, 3)))  # the connection stays: threats still come
                chaos.send(frames)
                chaos.sentinel(tw, "the bad frames to be read")  # a drop next must not lose them
            else:
                chaos.disconnect(step)
                chaos.replay_read(tw)  # the duplicates reached the client (and must not show)
            assert tail.poll() is None, f"the tail died after {step}: {tw.stderr}"

        chaos.sentinel(tw, "the last threat")
        highest = chaos.next - 1
        assert tail.poll() is None, f"the tail died: {tw.stderr}"
        rss_end = psutil.Process(tail.pid).memory_info().rss
        tail.send_signal(signal.SIGTERM)
        assert tw.wait_exit(30) == 0, tw.stderr

    objs = tw.objects()
    s = summary(objs)
    events = threats(objs)
    seqs = [e["seq"] for e in events]
    # nothing twice, order kept
    assert seqs == sorted(set(seqs)), "a threat was delivered twice or out of order"
    assert s["delivered"] == len(events)
    # every numbered threat delivered or counted as missed, exactly
    assert s["delivered"] + s["missed"] == highest + 1, (s, highest)
    assert not set(seqs) & chaos.skipped, "a number never sent was delivered"
    assert s["missed"] >= len(chaos.skipped), (s, len(chaos.skipped))
    assert s.get("ws_epochs", 0) == 0, s
    # what was delivered is what was sent under that number, with our identity
    for e in events:
        assert e["transport"] == "websocket" and e["generation"] == GEN, e
        assert e["id"] == f"{GEN:016x}-{e['seq']}", e
        assert e["details"] == chaos.details[e["seq"]], e
    # every bad frame reported, by kind
    bad = [o for o in objs if o["type"] == "bad_frame"]
    assert Counter(b["kind"] for b in bad) == chaos.bad, bad
    # `total` is the link's count when the report is read (it may already include the next one)
    totals = [b["total"] for b in bad]
    assert totals == sorted(totals) and totals[-1] == len(bad), totals
    # each drop and close seen as such
    gone = [t["reason"] for t in transports(objs) if t["transport"] == "disconnected"]
    assert len(gone) == sum(chaos.disconnects.values()), gone
    assert sum("without a close frame" in r for r in gone) == chaos.disconnects["abort"], gone
    assert sum("code 1000" in r for r in gone) == chaos.disconnects["close"], gone
    assert s.get("ws_dropped_soon", 0) == sum(chaos.disconnects.values()), s
    assert chaos.replayed > 0 and chaos.skipped
    print(f"chaos: highest seq {highest}, {s}, skipped {len(chaos.skipped)}, replayed {chaos.replayed} frames, "
          f"bad {dict(chaos.bad)}, disconnects {chaos.disconnects}, RSS +{(rss_end - rss_start) / MiB:.1f} MiB")
    assert "Traceback" not in tw.stderr, tw.stderr
    assert rss_end - rss_start < 64 * MiB, f"the tail grew by {(rss_end - rss_start) / MiB:.0f} MiB"
