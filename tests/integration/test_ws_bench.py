"""kgmon bench's WebSocket part, small: the app's path and the bare counting client (its floor)
each get every event from the bench writer's server, one after the other on the same server
(each waits until the previous client has gone and it has subscribed: no sleep), and the
server's encoding alone answers."""

from __future__ import annotations

from kindlyguard_monitor.bench import ring_bench as rb
from kindlyguard_monitor.bench import ws_bench


def test_the_app_and_the_bare_client_each_get_every_event(ring_dir):
    writer = rb.WriterProcess(str(ring_dir / "bench.shm"), websocket=True)
    try:
        results = [ws_bench.run_ws_floor(writer, 2000, 400), ws_bench.run_ws_scenario(writer, 2000, 400),
                   ws_bench.run_ws_floor(writer, 2000, 400)]
        encoded = ws_bench.server_encode_rate(writer, 2000)
    finally:
        writer.close()
    for res in results:
        assert (res.delivered, res.missed, res.error) == (400, 0, "")
        assert 1 <= res.frames <= 400 and res.writer_rate > 0
    assert results[1].delivery["count"] == 400  # the app's path measured every event's latency
    assert encoded > 0
