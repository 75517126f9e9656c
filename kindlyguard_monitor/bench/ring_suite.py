"""kgmon bench's default run: the ring's scenarios, the app's reader beside the bare-C floor
in the same run (interleaved rounds), the WebSocket part and the low rates, gathered into one
dict with the ratios to the floor. ring_bench.py runs each scenario; ring_report.py prints it."""

from __future__ import annotations

import os
import platform

from kindlyguard_monitor import __version__, _ring
from kindlyguard_monitor.bench import ring_bench as rb
from kindlyguard_monitor.bench import ws_bench
from kindlyguard_monitor.ring.reader import DEFAULT_SPIN_NS


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    governor = "unknown"
    try:
        with open("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor") as f:
            governor = f.read().strip()
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "os": f"{platform.system()} {platform.release()}",
            "python": platform.python_version(), "kgmon": __version__, "crc32c_hardware": bool(_ring.CRC_HARDWARE),
            "shared_futex": bool(_ring.SHARED_FUTEX), "cpu_governor": governor}


# The readers the scenarios compare, the floor first: (name, run_scenario keywords).
READERS = (
    ("floor C, spinning", dict(reader="floor-spin")),
    ("floor C, futex", dict(reader="floor-futex")),
    ("app reader, spinning", dict(reader="python", spin_ns=rb.HUGE_SPIN_NS, adaptive=False)),
    ("app reader, futex", dict(reader="python", spin_ns=0, adaptive=False)),
    ("app reader, adaptive (default)", dict(reader="python", spin_ns=DEFAULT_SPIN_NS, adaptive=True)),
)


def measure(path: str, short: bool, progress, pin: bool = False, slot_count: int = 4096) -> dict:
    flood_n = 200_000 if short else 4_000_000
    cpus = rb.default_pinning() if pin else None
    writer_cpu, reader_cpu = cpus if cpus else (None, None)
    out: dict = {"machine": machine(), "mode": "short" if short else "full",
                 "pinning": {"writer_cpu": writer_cpu, "reader_cpu": reader_cpu}}
    writer = rb.WriterProcess(path, cpu=writer_cpu, websocket=True, slot_count=slot_count)
    try:
        out["ring_bytes"] = os.path.getsize(path)
        out["steady_1000"] = _measure_steady(writer, short, progress, reader_cpu)

        progress("realistic rates: the app's reader beside the bare C futex reader at 1, 10, 100, 1,000 events/s")
        out["rates"] = {rate: {name: _result(r) for name, r in readers.items()}
                        for rate, readers in rb.rates_beside_floor(writer, short, progress, reader_cpu).items()}

        _measure_zero_loss(out, writer, short, progress, reader_cpu, slot_count)

        flat = {}
        for name, kw in (READERS[0], READERS[4]):
            progress(f"writer flat out: {name}")
            flat[name] = _result(rb.run_scenario(writer, rate=0, count=flood_n, cpu=reader_cpu, **kw))
        out["writer_flat_out"] = flat
        out.update(measure_websocket(writer, short, progress, reader_cpu))
        progress("idle CPU (adaptive reader, live writer, no events)")
        out["idle_cpu_percent"] = rb.idle_cpu(path, 1.0 if short else 5.0, DEFAULT_SPIN_NS, True, reader_cpu)
        out["idle_cpu_floor_percent"] = rb.idle_cpu_floor(path, 1.0 if short else 5.0, reader_cpu)
        out["low_rates"] = measure_low_rates(writer, short, progress, reader_cpu)
    finally:
        writer.close()
    out["ratios"] = _ratios(out)
    return out


def _measure_steady(writer: rb.WriterProcess, short: bool, progress, reader_cpu: int | None) -> dict:
    """Every reader at a steady 1,000 events/s, in interleaved rounds, histograms merged: every
    reader sees the same scheduler weather, so the ratios compare like with like."""
    steady_n, rounds = (250, 2) if short else (1000, 6)
    steady: dict = {}
    for round_no in range(rounds):
        for name, kw in READERS:
            progress(f"steady 1,000 events/s, round {round_no + 1}/{rounds}: {name}")
            res = rb.run_scenario(writer, rate=1000, count=steady_n, batch_max=1, cpu=reader_cpu, **kw)
            steady.setdefault(name, []).append(res)
    return {name: _result(rb.merge_results(results)) for name, results in steady.items()}


def _measure_zero_loss(out: dict, writer: rb.WriterProcess, short: bool, progress, reader_cpu: int | None,
                       slot_count: int) -> None:
    """The highest rate the app's reader holds with zero missed, and the floor at that rate."""
    sustain_s = 0.25 if short else 1.0
    rates = [100_000, 500_000, 1_000_000, 2_000_000] if short else \
        [100_000, 250_000, 500_000, 1_000_000, 2_000_000, 4_000_000, 8_000_000]
    progress("highest rate with zero missed (app reader, adaptive): climb, then bisect to 10%")
    best, best_res, tried = rb.zero_loss_search(writer, rates, sustain_s, reader="python",
                                                spin_ns=DEFAULT_SPIN_NS, adaptive=True, cpu=reader_cpu)
    out["max_zero_loss_rate"] = best
    out["zero_loss_tries"] = tried
    # The same search for the bare C readers, same ring, same run: a machine whose scheduler takes a
    # core away for longer than the ring holds loses events under any reader, and only this says so.
    out["floor_zero_loss"] = {}
    for name, kw in (READERS[1], READERS[0]):
        progress(f"highest rate with zero missed ({name}): climb, then bisect to 10%")
        floor_best, _, floor_tried = rb.zero_loss_search(writer, rates, sustain_s, cpu=reader_cpu, **kw)
        out["floor_zero_loss"][name] = {"rate": floor_best, "tries": floor_tried}
    slot_size = 512
    out["zero_loss_ring"] = {"slot_count": slot_count, "slot_size": slot_size, "bytes": out["ring_bytes"],
                             "seconds_per_try": sustain_s,
                             "holds_ms_at_that_rate": round(1000 * slot_count / best, 2) if best else None}
    at_best = {}
    if best_res is not None:
        progress(f"floor C at {best:,.0f} events/s")
        at_best["floor C, spinning"] = _result(
            rb.run_scenario(writer, "floor-spin", rate=best, count=int(best * sustain_s), cpu=reader_cpu))
        at_best["app reader, adaptive (default)"] = _result(best_res)
    out["full_speed"] = at_best


def measure_websocket(writer: rb.WriterProcess, short: bool, progress, reader_cpu: int | None = None) -> dict:
    """The app's WebSocket path beside its floor (ws_bench): steady 1,000/s, the server's encoding
    alone, and the highest rate with zero missed for the bare counting client and for the app."""
    out: dict = {}
    sustain_s = 0.25 if short else 1.0
    progress("WebSocket: steady 1,000 events/s")
    ws_n = 300 if short else 3000
    out["websocket_steady_1000"] = _result(ws_bench.run_ws_scenario(writer, 1000, ws_n, cpu=reader_cpu))
    progress("WebSocket: the server's own encoding, no client")
    out["websocket_server_encode_per_cpu_s"] = round(ws_bench.server_encode_rate(writer, 50_000 if short else 400_000))
    ws_rates = [10_000, 50_000, 100_000, 200_000] if short else [25_000, 50_000, 100_000, 200_000, 400_000, 800_000]
    progress("WebSocket floor (a bare client that counts threats): highest rate with zero missed")
    fl_best, _res, fl_tried = ws_bench.max_zero_loss_ws_rate(writer, ws_rates, sustain_s, cpu=reader_cpu, floor=True)
    out["websocket_floor_max_zero_loss_rate"] = fl_best
    out["websocket_floor_zero_loss_tries"] = fl_tried
    progress("WebSocket: highest rate with zero missed")
    ws_best, ws_best_res, ws_tried = ws_bench.max_zero_loss_ws_rate(writer, ws_rates, sustain_s, cpu=reader_cpu)
    out["websocket_max_zero_loss_rate"] = ws_best
    out["websocket_zero_loss_tries"] = ws_tried
    out["websocket_at_max_rate"] = _result(ws_best_res) if ws_best_res else None
    out["websocket_zero_loss_app_over_floor"] = round(ws_best / fl_best, 3) if fl_best else None
    return out


def measure_low_rates(v2_writer: rb.WriterProcess, short: bool, progress, reader_cpu: int | None = None) -> dict:
    """v2 beside the Shield's v1 ring (polled) at 1, 10, 100 events/s and idle; a v1 writer of its own."""
    v1_path = os.path.join(os.path.dirname(v2_writer.path), "bench-v1.shm")
    v1_writer = rb.WriterProcess(v1_path, ring_format="v1")
    try:
        low = rb.low_rates(v2_writer, v1_writer, short, progress, reader_cpu)
    finally:
        v1_writer.close()
    low["by_rate"] = {rate: {name: _result(res) for name, res in readers.items()}
                      for rate, readers in low["by_rate"].items()}
    return low

def _result(res: rb.ReaderResult) -> dict:
    return {"delivered": res.delivered, "missed": res.missed, "corrupt": res.corrupt,
            "cpu_percent": round(res.cpu_percent, 2), "rate": round(res.rate), "writer_rate": round(res.writer_rate),
            "transport_us": res.transport, "delivery_us": res.delivery, "error": res.error,
            "max_stall_us": round(res.max_stall_us, 1)}


def _ratios(out: dict) -> dict:
    s = out["steady_1000"]

    def p(name, kind, pct="p50"):
        return s[name][kind].get(pct) or 0

    def ratio(a, b):
        return float(f"{a / b:.3g}") if b else None

    floor_spin, floor_futex = p("floor C, spinning", "transport_us"), p("floor C, futex", "transport_us")
    by_rate = {}
    for rate, readers in out.get("rates", {}).items():
        app, floor = readers["app reader, adaptive (default)"], readers["floor C, futex"]
        by_rate[f"{rate}/s: app transport p50 / floor futex p50"] = ratio(app["transport_us"].get("p50") or 0,
                                                                          floor["transport_us"].get("p50") or 0)
        by_rate[f"{rate}/s: app transport p99 / floor futex p99"] = ratio(app["transport_us"].get("p99") or 0,
                                                                          floor["transport_us"].get("p99") or 0)
    return {**by_rate,
        "spinning delivery p50 / floor spin delivery p50":
            ratio(p("app reader, spinning", "delivery_us"), p("floor C, spinning", "delivery_us")),
        "spinning delivery p50 / floor spin transport p50":
            ratio(p("app reader, spinning", "delivery_us"), floor_spin),
        "futex transport p50 / floor futex p50":
            ratio(p("app reader, futex", "transport_us"), floor_futex),
        "futex transport p99 / floor futex p99":
            ratio(p("app reader, futex", "transport_us", "p99"), p("floor C, futex", "transport_us", "p99")),
        "highest zero-loss rate: app reader / floor C, futex":
            ratio(out["max_zero_loss_rate"], out["floor_zero_loss"]["floor C, futex"]["rate"]),
        "highest zero-loss rate: app reader / floor C, spinning":
            ratio(out["max_zero_loss_rate"], out["floor_zero_loss"]["floor C, spinning"]["rate"]),
        "flat-out app reader rate / floor rate":
            ratio(out["writer_flat_out"]["app reader, adaptive (default)"]["rate"],
                  out["writer_flat_out"]["floor C, spinning"]["rate"]),
        "WebSocket delivery p50 / shared memory (adaptive) delivery p50":
            ratio(out["websocket_steady_1000"]["delivery_us"].get("p50") or 0,
                  p("app reader, adaptive (default)", "delivery_us")),
        "shared memory / WebSocket highest zero-loss rate":
            ratio(out["max_zero_loss_rate"], out["websocket_max_zero_loss_rate"]),
        "WebSocket highest zero-loss rate: app / bare counting client":
            out.get("websocket_zero_loss_app_over_floor"),
    }
