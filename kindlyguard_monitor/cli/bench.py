"""kgmon bench: latency, throughput and CPU of the ring, against the bare-C floor in the same run."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys

from kindlyguard_monitor import __version__, _ring
from kindlyguard_monitor.bench import ring_bench as rb
from kindlyguard_monitor.bench import ws_bench
from kindlyguard_monitor.cli.args import EXIT_FAILURE, EXIT_OK, SLOT_COUNT_MAX, SLOT_COUNT_MIN, power_of_two
from kindlyguard_monitor.ring.reader import DEFAULT_SPIN_NS
from kindlyguard_monitor.textsafe import visible


def add_parser(sub, common) -> None:
    p = sub.add_parser(
        "bench",
        parents=[common],
        help="measure latency, throughput and CPU of the ring",
        description="Runs a C writer in a separate process and the app's reader, and in the same run the "
        "floor (a bare C reader), then prints a table. Figures are medians of what this machine did now; "
        "nothing is asserted. --shm-path sets where the bench ring lives (default: a private folder in "
        "/dev/shm).",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--short", action="store_true", help="a quick run (about 10 s) that proves the bench works")
    p.add_argument("--gui", action="store_true",
                   help="measure the desktop app instead: publish → row in the model and event-loop "
                   "lateness at 1,000 events/s and under a 100,000 events/s flood")
    p.add_argument("--history", action="store_true",
                   help="measure the threat history instead: store rate, search over 1,000,000 rows, size, "
                   "feed restore (--short: 100,000 rows)")
    p.add_argument("--fleet", action="store_true",
                   help="measure the fleet instead (NATS JetStream on loopback): forward rate, publish -> fleet "
                   "viewer latency, 1,000 simulated hosts into a three-node cluster (docs/fleet.md)")
    p.add_argument("--low-rates", action="store_true",
                   help="only the low-rate comparison: the v2 reader (futex wake-up) and the Shield's v1 ring "
                   "(polled) at 1, 10 and 100 events/s and idle (also part of the full run)")
    p.add_argument("--websocket", action="store_true",
                   help="only the WebSocket part: the app's path beside a bare client that only counts threats "
                   "(steady 1,000 events/s, the highest rate with zero missed for both, the server's encoding)")
    p.add_argument("--slot-count", type=power_of_two(SLOT_COUNT_MIN, SLOT_COUNT_MAX), default=4096, metavar="N",
                   help="slots in the bench ring (default 4096: 2 MiB, the default ring)")
    p.add_argument("--pin", action="store_true",
                   help="pin the writer and the reader to two different cores (default: the scheduler places "
                   "them, as it does for the app)")
    p.set_defaults(run=run)


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


def measure(path: str, short: bool, progress, pin: bool = False, slot_count: int = 4096) -> dict:
    steady_n, rounds = (250, 2) if short else (1000, 6)
    flood_n = 200_000 if short else 4_000_000
    sustain_s = 0.25 if short else 1.0
    rates = [100_000, 500_000, 1_000_000, 2_000_000] if short else \
        [100_000, 250_000, 500_000, 1_000_000, 2_000_000, 4_000_000, 8_000_000]
    cpus = rb.default_pinning() if pin else None
    writer_cpu, reader_cpu = cpus if cpus else (None, None)
    out: dict = {"machine": machine(), "mode": "short" if short else "full",
                 "pinning": {"writer_cpu": writer_cpu, "reader_cpu": reader_cpu}}
    writer = rb.WriterProcess(path, cpu=writer_cpu, websocket=True, slot_count=slot_count)
    try:
        out["ring_bytes"] = os.path.getsize(path)
        readers = [
            ("floor C, spinning", dict(reader="floor-spin")),
            ("floor C, futex", dict(reader="floor-futex")),
            ("app reader, spinning", dict(reader="python", spin_ns=rb.HUGE_SPIN_NS, adaptive=False)),
            ("app reader, futex", dict(reader="python", spin_ns=0, adaptive=False)),
            ("app reader, adaptive (default)", dict(reader="python", spin_ns=DEFAULT_SPIN_NS, adaptive=True)),
        ]
        # Interleaved rounds, histograms merged: every reader sees the same
        # scheduler weather, so the ratios compare like with like.
        steady: dict = {}
        for round_no in range(rounds):
            for name, kw in readers:
                progress(f"steady 1,000 events/s, round {round_no + 1}/{rounds}: {name}")
                res = rb.run_scenario(writer, rate=1000, count=steady_n, batch_max=1, cpu=reader_cpu, **kw)
                steady.setdefault(name, []).append(res)
        steady = {name: _result(rb.merge_results(results)) for name, results in steady.items()}
        out["steady_1000"] = steady

        progress("realistic rates: the app's reader beside the bare C futex reader at 1, 10, 100, 1,000 events/s")
        out["rates"] = {rate: {name: _result(r) for name, r in readers.items()}
                        for rate, readers in rb.rates_beside_floor(writer, short, progress, reader_cpu).items()}

        progress("highest rate with zero missed (app reader, adaptive): climb, then bisect to 10%")
        best, best_res, tried = rb.zero_loss_search(writer, rates, sustain_s, reader="python",
                                                    spin_ns=DEFAULT_SPIN_NS, adaptive=True, cpu=reader_cpu)
        out["max_zero_loss_rate"] = best
        out["zero_loss_tries"] = tried
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

        flat = {}
        for name, kw in (readers[0], readers[4]):
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


def render_low_rates(low: dict) -> list[str]:
    lines = ["", "low rates, one event at a time: v2 (futex wake-up) beside the Shield's v1 ring (polled)",
             f"  {'delivery latency, µs':<42}{'p50':>8}{'p90':>8}{'p99':>8}{'max':>9}{'CPU %':>8}{'missed':>8}"]
    for rate, readers in low["by_rate"].items():
        for name, r in readers.items():
            if r["error"]:
                lines.append(f"  {rate + '/s, ' + name:<42}error: {r['error']}")
                continue
            h = r["delivery_us"]
            lines.append(f"  {rate + '/s, ' + name:<42}" + "".join(f"{h[k]:>8.1f}" for k in ("p50", "p90", "p99"))
                         + f"{h['max']:>9.0f}{r['cpu_percent']:>8.3f}{r['missed']:>8}")
    for name, pct in low["idle_cpu_percent"].items():
        lines.append(f"  {'idle, ' + name:<42}{pct:>13.3f} % CPU")
    return lines


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
        "spinning delivery p50 / floor spin p50":
            ratio(p("app reader, spinning", "delivery_us"), floor_spin),
        "futex transport p50 / floor futex p50":
            ratio(p("app reader, futex", "transport_us"), floor_futex),
        "futex transport p99 / floor futex p99":
            ratio(p("app reader, futex", "transport_us", "p99"), p("floor C, futex", "transport_us", "p99")),
        "highest zero-loss rate (app reader) / floor flat-out rate":
            ratio(out["max_zero_loss_rate"], out["writer_flat_out"]["floor C, spinning"]["rate"]),
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


def _rows(lines: list[str], section: dict, title: str) -> None:
    """A table of results (_result dicts): latency percentiles, CPU, missed, max stall."""
    lines.append(title)
    for name, r in section.items():
        if r["error"]:
            lines.append(f"  {name:<42}error: {r['error']}")
            continue
        kinds = [("transport", r["transport_us"])]
        if r["delivery_us"]:
            kinds.append(("delivery", r["delivery_us"]))
        for kind, h in kinds:
            lines.append(f"  {name + ' (' + kind + ')':<42}" + "".join(f"{h[k]:>8.1f}" for k in
                                                                     ("p50", "p90", "p99", "p99.9"))
                         + f"{h['max']:>9.0f}{r['cpu_percent']:>8.2f}{r['missed']:>8}"
                         + f"{r.get('max_stall_us', 0):>14,.0f}")


def render_websocket(out: dict) -> list[str]:
    """The WebSocket section: the app's path beside the bare counting client."""
    lines: list[str] = []
    ws_sections = {"steady 1,000 events/s": out["websocket_steady_1000"]}
    if out["websocket_at_max_rate"]:
        ws_sections[f"{out['websocket_max_zero_loss_rate']:,.0f} events/s"] = out["websocket_at_max_rate"]
    _rows(lines, ws_sections, "WebSocket (the demo's server in the writer process; CPU % is the reading process)")

    def tries(key):
        for t in out[key]:
            lines.append(f"    tried {t['rate']:>11,.0f}/s: {'held' if t['held'] else 'lost'}, {t['delivered']:,} "
                         f"delivered, {t['missed']:,} missed, at {t['reader_rate']:,}/s (writer {t['writer_rate']:,}/s)"
                         f", {t['frames']:,} messages, CPU {t['cpu_percent']:.0f}%"
                         + (f", {t['error']}" if t["error"] else ""))

    lines.append(f"  {'server encoding alone, no client':<42}{out['websocket_server_encode_per_cpu_s']:>14,.0f}"
                 " threats per CPU second")
    lines.append(f"  {'highest rate with zero missed, bare client':<42}"
                 f"{out['websocket_floor_max_zero_loss_rate']:>14,.0f} events/s (counts threats, no JSON)")
    tries("websocket_floor_zero_loss_tries")
    lines.append(f"  {'highest rate with zero missed (WebSocket)':<42}{out['websocket_max_zero_loss_rate']:>14,.0f}"
                 f" events/s ({out['websocket_zero_loss_app_over_floor']} of the bare client's)")
    tries("websocket_zero_loss_tries")
    return lines


TABLE_HEAD = (f"{'latency, µs':<44}{'p50':>8}{'p90':>8}{'p99':>8}{'p99.9':>8}{'max':>9}{'CPU %':>8}{'missed':>8}"
              f"{'max stall µs':>14}")


def render(out: dict) -> str:
    m = out["machine"]
    lines = [
        f"kgmon bench ({out['mode']}) on {m['cpu']}, {m['cores']} cores, {m['os']}, Python {m['python']}; "
        f"CRC-32C {'hardware' if m['crc32c_hardware'] else 'table'}, "
        f"{'shared futex' if m['shared_futex'] else 'back-off wait'}, governor {m['cpu_governor']}",
        f"ring: {out['ring_bytes']:,} bytes ({out['ring_bytes'] / 2**20:.2f} MiB); "
        + (f"writer pinned to CPU {out['pinning']['writer_cpu']}, reader to CPU {out['pinning']['reader_cpu']}"
           if out["pinning"]["reader_cpu"] is not None else "not pinned"),
        "",
        TABLE_HEAD,
    ]

    def rows(section: dict, title: str):
        _rows(lines, section, title)

    for rate, readers in out.get("rates", {}).items():
        rows(readers, f"{int(rate):,} events/s, one at a time (app reader beside the bare C futex reader)")
    rows(out["steady_1000"], "steady 1,000 events/s")
    rows(out["full_speed"], f"full speed: {out['max_zero_loss_rate']:,.0f} events/s, the highest with zero missed")
    lines.append("")
    lines.append("throughput")
    for name, r in out["writer_flat_out"].items():
        lines.append(f"  {'writer flat out, ' + name:<42}{r['rate']:>14,} events/s delivered, {r['missed']:,} "
                     f"missed (writer {r['writer_rate']:,}/s)")
    ring = out["zero_loss_ring"]
    lines.append(f"  {'highest rate with zero missed (app reader)':<42}{out['max_zero_loss_rate']:>14,.0f} events/s "
                 f"(to 10%; ring {ring['slot_count']:,} x {ring['slot_size']} B = {ring['bytes'] / 2**20:.2f} MiB"
                 + (f", {ring['holds_ms_at_that_rate']} ms of events at that rate)" if ring["holds_ms_at_that_rate"]
                    else ")"))
    for t in out["zero_loss_tries"]:
        lines.append(f"    tried {t['rate']:>11,.0f}/s: {'held' if t['held'] else 'lost'}, {t['delivered']:,} delivered, "
                     f"{t['missed']:,} missed, reader CPU {t['cpu_percent']:.0f}%, max stall {t['max_stall_us']:,.0f} µs")
    lines.append(f"  {'idle CPU (adaptive reader)':<42}{out['idle_cpu_percent']:>13.3f} % "
                 f"(bare C futex reader {out['idle_cpu_floor_percent']:.3f} %)")
    lines.append("")
    lines += render_websocket(out)
    if out.get("low_rates"):
        lines += render_low_rates(out["low_rates"])
    lines.append("")
    lines.append("ratios to the floor (same run)")
    for k, v in out["ratios"].items():
        lines.append(f"  {k:<60}{v if v is not None else 'n/a':>8}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    own_dir = None
    if args.shm_path:
        path = args.shm_path
    else:
        own_dir = rb.ring_dir()
        path = os.path.join(own_dir, "bench.shm")

    def progress(msg):
        print(f"kgmon bench: {visible(msg)}", file=sys.stderr, flush=True)

    try:
        if args.fleet:
            from kindlyguard_monitor.bench.fleet_bench import measure_fleet, render_fleet

            out = measure_fleet(args.short, progress)
            print(json.dumps(out, indent=2) if args.json else render_fleet(out))
            return EXIT_OK
        if args.history:
            from kindlyguard_monitor.bench.history_bench import measure_history, render_history

            out = measure_history(args.short, progress)
            print(json.dumps(out, indent=2) if args.json else render_history(out))
            return EXIT_OK
        if args.gui:
            from kindlyguard_monitor.bench.gui_bench import measure_app_process, measure_gui, render_gui

            out = measure_gui(args.short, progress)
            out["app_process"] = measure_app_process(args.short, progress)
            print(json.dumps(out, indent=2) if args.json else render_gui(out))
            return EXIT_OK
        if args.websocket:
            writer = rb.WriterProcess(path, websocket=True, slot_count=args.slot_count)
            try:
                out = {"machine": machine(), "mode": "short" if args.short else "full",
                       **measure_websocket(writer, args.short, progress)}
            finally:
                writer.close()
            if args.json:
                print(json.dumps(out, indent=2))
                return EXIT_OK
            m = out["machine"]
            print(f"kgmon bench --websocket ({out['mode']}) on {m['cpu']}, {m['cores']} cores, {m['os']}, "
                  f"Python {m['python']}")
            print(TABLE_HEAD)
            print("\n".join(render_websocket(out)))
            return EXIT_OK
        if args.low_rates:
            writer = rb.WriterProcess(path, slot_count=args.slot_count)
            try:
                out = {"machine": machine(), "mode": "short" if args.short else "full",
                       "low_rates": measure_low_rates(writer, args.short, progress)}
            finally:
                writer.close()
            if not args.json:
                m = out["machine"]
                print(f"kgmon bench --low-rates ({out['mode']}) on {m['cpu']}, {m['cores']} cores, {m['os']}")
                print("\n".join(render_low_rates(out["low_rates"])[1:]))
                return EXIT_OK
            print(json.dumps(out, indent=2))
            return EXIT_OK
        out = measure(path, args.short, progress, pin=args.pin, slot_count=args.slot_count)
    except Exception as exc:  # a bench failure is reported, not a traceback
        print(f"kgmon bench: failed: {visible(str(exc))}", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        if own_dir:
            shutil.rmtree(own_dir, ignore_errors=True)
    print(json.dumps(out, indent=2) if args.json else render(out))
    return EXIT_OK
