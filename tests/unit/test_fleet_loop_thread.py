"""fleet/loop_thread.py: an asyncio loop on its own thread, stopped from another thread.

The forwarder in the app (gui/app_fleet.py) and the fleet viewer (fleet/source.py) both run on
it; these tests hold it to its word: stop() from another thread ends `main`, whenever it comes
(before the loop exists, while it runs, after it ended), and an error never escapes the thread.
"""

from __future__ import annotations

import asyncio
import threading

from kindlyguard_monitor.fleet.loop_thread import LoopThread


def test_stop_from_another_thread_ends_main():
    seen = {}
    running = threading.Event()

    async def main(stop):
        seen["loop thread"] = threading.current_thread().name
        running.set()
        await stop.wait()  # only stop() can end this
        seen["stopped"] = True

    t = LoopThread("kgmon-test-loop", main).start(wait_s=5.0)
    assert running.wait(5.0) and t.alive
    stopper = threading.Thread(target=t.stop)
    stopper.start()
    stopper.join()
    assert t.join(5.0) and not t.alive
    assert seen == {"loop thread": "kgmon-test-loop", "stopped": True}
    assert t.stopping


def test_stop_before_the_loop_exists_is_not_lost():
    seen = []

    async def main(stop):
        seen.append(stop.is_set())

    t = LoopThread("kgmon-test-early", main)
    t.stop()  # before start(): the loop does not exist yet
    t.start()
    assert t.join(5.0)
    assert seen == [True]


def test_stop_after_the_loop_ended_and_twice_does_not_raise():
    async def main(stop):
        return 1

    t = LoopThread("kgmon-test-ended", main).start()
    assert t.join(5.0)
    t.stop()
    t.stop()
    assert not t.alive


def test_join_before_start_does_not_raise():
    async def main(stop):
        pass

    assert LoopThread("kgmon-test-unstarted", main).join(0.1)


def test_an_error_in_main_goes_to_on_error_not_to_the_caller():
    errors = []

    async def main(stop):
        await asyncio.sleep(0)
        raise ValueError("broken on purpose")

    t = LoopThread("kgmon-test-error", main, on_error=errors.append).start(wait_s=5.0)
    assert t.join(5.0)
    assert [str(e) for e in errors] == ["broken on purpose"]
    t.stop()  # the loop is gone: still nothing raised


def test_many_stops_racing_the_start_all_end_the_thread():
    """stop() from another thread at the same moment as start(): the lock orders them, so none
    is lost (without it a stop between the loop's creation and its event's would be)."""
    for i in range(50):
        async def main(stop):
            await stop.wait()

        t = LoopThread(f"kgmon-test-race-{i}", main)
        go = threading.Barrier(2)

        def stopper():
            go.wait()
            t.stop()

        s = threading.Thread(target=stopper)
        s.start()
        go.wait()
        t.start()
        s.join()
        assert t.join(5.0), f"round {i}: the stop was lost"
