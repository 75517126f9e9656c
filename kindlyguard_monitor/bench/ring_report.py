"""kgmon bench's tables: what ring_suite.py measured (a dict, also printed as JSON) as text,
latency percentiles, CPU and missed events beside the floor's, then the ratios to the floor."""

from __future__ import annotations


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


def _tries(lines: list[str], tries: list[dict]) -> None:
    """A zero-loss search's tries, one line each."""
    for t in tries:
        lines.append(f"    tried {t['rate']:>11,.0f}/s: {'held' if t['held'] else 'lost'}, {t['delivered']:,} delivered, "
                     f"{t['missed']:,} missed, reader CPU {t['cpu_percent']:.0f}%, max stall {t['max_stall_us']:,.0f} µs")


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
    _tries(lines, out["zero_loss_tries"])
    for name, floor in out.get("floor_zero_loss", {}).items():
        lines.append(f"  {'... ' + name:<42}{floor['rate']:>14,.0f} events/s (the same search, same ring)")
        _tries(lines, floor["tries"])
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
