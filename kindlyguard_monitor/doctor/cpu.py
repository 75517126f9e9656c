"""CPU settings that raise latency: the frequency governor, and the reader thread's CPU option."""

from __future__ import annotations

import glob
import os
from typing import Mapping

from kindlyguard_monitor.doctor.findings import INFO, OK, WARN, Finding, cpu_list
from kindlyguard_monitor.vocabulary import ENV_READER_CPU

CPU_ROOT = "/sys/devices/system/cpu"


def check_governor(cpu_root: str = CPU_ROOT) -> Finding:
    governors: dict[str, list[int]] = {}
    for p in glob.glob(os.path.join(cpu_root, "cpu[0-9]*", "cpufreq", "scaling_governor")):
        try:
            with open(p, encoding="ascii", errors="replace") as f:
                gov = f.read().strip()
            cpu = int(os.path.basename(os.path.dirname(os.path.dirname(p)))[3:])
        except (OSError, ValueError):
            continue
        governors.setdefault(gov, []).append(cpu)
    if not governors:
        return Finding("cpu-governor", INFO, "no CPU frequency governor is readable here (a VM or container?)")
    desc = ", ".join(f"{g} on CPU {cpu_list(c)}" for g, c in sorted(governors.items()))
    advice = "for the lowest latency: `sudo cpupower frequency-set -g performance`"
    if "powersave" in governors:
        return Finding("cpu-governor", WARN, f"{desc}: latency may be higher while the CPU clocks down", advice)
    if set(governors) - {"performance"}:
        return Finding("cpu-governor", INFO, f"{desc}: latency may be higher at low load", advice)
    return Finding("cpu-governor", OK, desc)


def check_affinity(env: Mapping[str, str]) -> list[Finding]:
    try:
        allowed = os.sched_getaffinity(0)
    except (AttributeError, OSError):
        allowed = None
    findings = []
    if allowed is None:
        findings.append(Finding("cpu-affinity", INFO, "CPU affinity cannot be read on this platform"))
    else:
        findings.append(Finding("cpu-affinity", INFO, f"this process may run on CPU {cpu_list(allowed)} "
                                f"({len(allowed)} of {os.cpu_count() or '?'})"))
    value = env.get(ENV_READER_CPU)
    if value is None or value == "":
        findings.append(Finding("reader-cpu", INFO, f"{ENV_READER_CPU} is not set: the reader thread is not pinned",
                                f"to pin it, set {ENV_READER_CPU} to a CPU number"
                                + (f" ({cpu_list(allowed)})" if allowed else "")))
        return findings
    try:
        cpu = int(value.strip())
    except ValueError:
        cpu = None
    valid = cpu is not None and cpu >= 0 and (allowed is None or cpu in allowed)
    if not valid:
        choices = f"one of {cpu_list(allowed)}" if allowed else "a CPU number"
        findings.append(Finding("reader-cpu", WARN, f"{ENV_READER_CPU}={value!r} is not a CPU this process may use; "
                                "the reader thread will not be pinned", f"set it to {choices}, or unset it"))
    else:
        findings.append(Finding("reader-cpu", OK, f"{ENV_READER_CPU}={cpu}: the reader thread may be pinned to CPU {cpu}"))
    return findings
