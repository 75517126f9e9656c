"""The C ring library on its own (native/, no Python): native/selftest.c runs a
writer thread against a reader thread and checks the spec's fixed points,
built plain and under AddressSanitizer + UBSan."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NATIVE = ROOT / "native"
LIBRARY = ["kg_crc32c.c", "kg_hist.c", "kg_reader.c", "kg_writer.c", "kg_wait.c", "kg_fault.c", "kg_v1_reader.c"]
WARNINGS = ["-Wall", "-Wextra", "-Werror", "-Wno-unused-parameter", "-Wno-missing-field-initializers"]


def build(out: Path, platform_file: str, compiler: str, extra: list[str]) -> None:
    sources = [str(NATIVE / f) for f in ["selftest.c", *LIBRARY, platform_file]]
    cmd = [compiler, "-std=c11", *WARNINGS, f"-I{NATIVE}", *sources, "-o", str(out), *extra]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(cmd)}\n{done.stderr}"


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
@pytest.mark.parametrize(
    "flags",
    [["-O2"], ["-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"]],
    ids=["plain", "asan-ubsan"],
)
def test_selftest_passes(tmp_path, flags):
    exe = tmp_path / "selftest"
    build(exe, "kg_platform_posix.c", "cc", [*flags, "-lpthread"])
    ring_dir = tmp_path / "ring"
    ring_dir.mkdir(mode=0o700)
    os.chmod(ring_dir, 0o700)
    done = subprocess.run([str(exe), str(ring_dir)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().endswith("ok")
    assert "runtime error" not in done.stderr  # UBSan


def test_library_has_no_python():
    """native/ is plain C: only the binding file may include Python.h."""
    for source in NATIVE.glob("*.[ch]"):
        if source.name == "kgmon_ring_module.c":
            continue
        assert "Python.h" not in source.read_text(), source.name


@pytest.mark.skipif(shutil.which("x86_64-w64-mingw32-gcc") is None, reason="mingw-w64 not installed")
def test_windows_path_cross_compiles(tmp_path):
    build(tmp_path / "selftest.exe", "kg_platform_win32.c", "x86_64-w64-mingw32-gcc", ["-O2"])
