"""The C ring library on its own (native/, no Python): native/selftest.c runs a
writer thread against two reader threads, a lapped reader, the wait path, the
writer's lock and a writer restart, and checks the spec's fixed points; built
plain and under AddressSanitizer + UBSan, and for Windows with mingw-w64, run
under Wine (kg_platform_win32.c: CreateFileMapping/MapViewOfFile, LockFileEx,
the back-off wait, MoveFileEx)."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NATIVE = ROOT / "native"
LIBRARY = ["kg_crc32c.c", "kg_hist.c", "kg_reader.c", "kg_writer.c", "kg_wait.c", "kg_fault.c", "kg_v1_reader.c",
           "kg_bench.c"]
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
    """native/ is plain C: only the binding's files (kgpy.h, py_*.c, the module) may include Python.h."""
    binding = {"kgpy.h", "kgmon_ring_module.c"}
    library = [s for s in NATIVE.glob("*.[ch]") if s.name not in binding and not s.name.startswith("py_")]
    assert {s.name for s in library} >= set(LIBRARY)
    for source in library:
        text = source.read_text()
        assert "Python.h" not in text and '#include "kgpy.h"' not in text, source.name




def wine() -> str | None:
    """Debian's wine64 (the loader is not on PATH without the `wine` wrapper package)."""
    return shutil.which("wine64") or shutil.which("wine") or next(
        (p for p in ("/usr/lib/wine/wine64", "/usr/lib/x86_64-linux-gnu/wine/wine64") if os.access(p, os.X_OK)), None)


def need(condition: bool, why: str) -> None:
    """Skip locally when a tool is missing; in CI (KGMON_REQUIRE_DESKTOP=1) fail."""
    if not condition:
        (pytest.fail if os.environ.get("KGMON_REQUIRE_DESKTOP") == "1" else pytest.skip)(why)


@pytest.fixture(scope="session")
def wine_prefix(tmp_path_factory):
    """One Wine prefix per checkout, kept in .venv (creating one takes ~15 s and
    ~700 MB; `make clean` removes it). Created under a lock: two test sessions
    of one checkout may run at once. Its wineserver is waited for at the end."""
    prefix = ROOT / ".venv" / "wine-prefix"
    env = dict(os.environ, WINEPREFIX=str(prefix), WINEDEBUG="-all", WINEDLLOVERRIDES="mscoree,mshtml=",
               WINEARCH="win64", TMPDIR=str(tmp_path_factory.mktemp("wine-tmp")))  # its server's socket
    env.pop("DISPLAY", None)
    prefix.parent.mkdir(exist_ok=True)
    with open(ROOT / ".venv" / "wine-prefix.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (prefix / "system.reg").is_file():
            done = subprocess.run([wine(), "wineboot", "--init"], env=env, capture_output=True, text=True,
                                  timeout=300)
            assert (prefix / "system.reg").is_file(), done.stderr
    yield env
    server = shutil.which("wineserver") or str(Path(wine()).with_name("wineserver"))
    subprocess.run([server, "-w"], env=env, timeout=60)  # its server exits a few seconds after its last client


@pytest.mark.skipif(shutil.which("x86_64-w64-mingw32-gcc") is None, reason="mingw-w64 not installed")
def test_windows_selftest_runs_under_wine(tmp_path, request):
    """The Windows code path runs the same checks as Linux's, under Wine: found a
    ring a reader maps could not be replaced by a restarted writer (fixed: the
    old file is renamed aside), and two rings in a folder whose name has a dot
    shared one lock (fixed in kg_writer.c)."""
    exe = tmp_path / "selftest.exe"
    build(exe, "kg_platform_win32.c", "x86_64-w64-mingw32-gcc", ["-O2"])  # without Wine, at least this
    need(wine() is not None, "wine64 not installed (bash packaging/system-deps.sh --test installs it)")
    wine_prefix = request.getfixturevalue("wine_prefix")
    ring_dir = tmp_path / "ring"
    ring_dir.mkdir(mode=0o700)
    windows_dir = "Z:" + str(ring_dir).replace("/", "\\")
    done = subprocess.run([wine(), str(exe), windows_dir], env=wine_prefix, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().endswith("ok"), done.stdout
    for line in ("lapped: 138 missed of 202, exactly", "wait: timeout, woken by a publish, woken by close",
                 "restart: locked out, then replaced"):
        assert line in done.stdout
    assert not list(ring_dir.glob("*.old")), "the rings set aside were swept"
