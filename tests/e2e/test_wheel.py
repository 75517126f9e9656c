"""A wheel that works (issue 12): `python -m build` makes the sdist and, from it,
the wheel; the wheel carries the C core and resources/icons as package data; it
installs into a fresh venv outside the source tree, where `kgmon` starts the app
offscreen and quits on SIGTERM, `kgmon doctor` and `kgmon demo --count N` run,
beside another project's package named `app` (ours installs as kindlyguard_monitor).
`pip install .` builds the same wheel (checked with `pip wheel`). Without a C
compiler, the build fails with one clear message saying what to install.

Marked `packaging` (about a minute: two builds, a venv, PySide6 installed from
pip's cache or index); `-m "not packaging"` skips it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from conftest import REPO, USER_ENV, OutputWatcher, _started, free_port

pytestmark = pytest.mark.packaging

ICONS = sorted(p.name for p in (REPO / "resources" / "icons").glob("*.svg"))


def source_copy(dest: Path) -> Path:
    """The checkout's files (tracked, and new ones not ignored), as a fresh clone has them."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        src = REPO / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


def user_env(**extra) -> dict:
    """The user's own environment (their pip configuration and cache), with no
    PYTHONPATH: an installed kgmon must find everything in its own venv."""
    env = {k: v for k, v in USER_ENV.items() if k not in ("PYTHONPATH", "DISPLAY", "WAYLAND_DISPLAY",
                                                            "DBUS_SESSION_BUS_ADDRESS", "KINDLYGUARD_SHM_PATH")}
    for var in ("TMPDIR", "XDG_RUNTIME_DIR", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME",
                "XDG_STATE_HOME", "KGMON_TEST_SESSION", "KINDLYGUARD_HISTORY_PATH", "SHIELD_WS_PORT",
                "KINDLYGUARD_RUNTIME_DIR", "KINDLYGUARD_BENCH_DIR"):
        if var in os.environ:  # ... but this test session's private folders for the app itself
            env[var] = os.environ[var]
    env.update(extra)
    return env


def pip_env() -> dict:
    """pip as the user has it set up (its configuration and cache live in the user's folders)."""
    return {k: v for k, v in USER_ENV.items() if k != "PYTHONPATH"}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    base = tmp_path_factory.mktemp("wheel")
    src = source_copy(base / "src")
    dist = base / "dist"
    done = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(src)],
                          cwd=base, env=pip_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    wheel, = dist.glob("*.whl")
    sdist, = dist.glob("*.tar.gz")
    return base, src, wheel, sdist


def test_the_wheel_and_the_sdist_carry_what_the_app_needs(built):
    _base, _src, wheel, sdist = built
    names = zipfile.ZipFile(wheel).namelist()
    assert sorted(n.rsplit("/", 1)[1] for n in names if "/resources/icons/" in n) == ICONS
    assert any(n.startswith("kindlyguard_monitor/_ring.") for n in names), "the C core, built"
    assert not any(n.startswith(("tests/", "native/", "resources/")) for n in names), "no stray top-level folders"
    with tarfile.open(sdist) as tar:
        members = {m.name.split("/", 1)[1] for m in tar.getmembers() if "/" in m.name}
    for needed in ["setup.py", "pyproject.toml", "native/kg_ring.h", "native/kg_platform.h", "native/kg_layout.h",
                   *[f"resources/icons/{n}" for n in ICONS]]:
        assert needed in members, needed


def test_pip_install_dot_builds_the_same(built, tmp_path):
    """`pip install .` (not editable) installs the wheel pip builds from the tree: the same contents."""
    _base, src, wheel, _sdist = built
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                           "-w", str(tmp_path), str(src)], env=pip_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    ours, = tmp_path.glob("*.whl")
    assert sorted(zipfile.ZipFile(ours).namelist()) == sorted(zipfile.ZipFile(wheel).namelist())


def unrelated_app_wheel(where: Path) -> Path:
    """A wheel of someone else's project whose import package is named `app`."""
    (where / "src" / "app").mkdir(parents=True)
    (where / "src" / "app" / "__init__.py").write_text('WHOSE = "someone-else"\n')
    (where / "src" / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=77"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "someone-elses-app"\nversion = "1.0"\n'
        '[tool.setuptools]\npackages = ["app"]\n')
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                           "-w", str(where / "dist"), str(where / "src")], env=pip_env(), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    wheel, = (where / "dist").glob("*.whl")
    return wheel


def test_the_wheel_in_a_fresh_venv_runs(built, tmp_path):
    base, _src, wheel, _sdist = built
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)],
                   check=True, timeout=120)
    py, kgmon = venv / "bin" / "python", venv / "bin" / "kgmon"
    # ... beside an unrelated project whose import package is the common name `app`:
    # ours installs as kindlyguard_monitor, so neither replaces the other's files
    other = unrelated_app_wheel(tmp_path / "other")
    # the test venv's pip installs into the new one (no ensurepip: seconds, not tens)
    done = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", str(other), str(wheel)],
                          env=pip_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    away = tmp_path / "elsewhere"  # outside the source tree: nothing can come from the checkout
    away.mkdir()
    where = subprocess.run([str(py), "-c", "import app, kindlyguard_monitor, kindlyguard_monitor._ring, "
                            "kindlyguard_monitor.gui.resources as r; "
                            "print(app.WHOSE); print(kindlyguard_monitor.__file__); print(r.resources_dir())"],
                           cwd=away, env=user_env(), capture_output=True, text=True, timeout=60)
    assert where.returncode == 0, where.stderr
    whose, module, resources = where.stdout.split()
    assert whose == "someone-else", "the other project's `app` is intact"
    assert module.startswith(str(venv)) and resources.startswith(str(venv)), where.stdout

    ring = tmp_path / "ring"
    ring.mkdir(mode=0o700)
    shm = ring / "kindly-guard.shm"
    demo = subprocess.run([str(kgmon), "demo", "--count", "20", "--rate", "200", "--shm-path", str(shm),
                           "--ws-port", str(free_port())], cwd=away, env=user_env(), capture_output=True, text=True, timeout=120)
    assert demo.returncode == 0, demo.stderr
    assert shm.is_file(), "the demo's ring stays, marked closed"

    doctor = subprocess.run([str(kgmon), "doctor", "--shm-path", str(shm), "--ws-url", f"ws://127.0.0.1:{free_port()}"],
                            cwd=away, env=user_env(), capture_output=True, text=True, timeout=120)
    assert doctor.returncode in (0, 1), doctor.stderr
    assert "Traceback" not in doctor.stderr and "ring" in doctor.stdout, doctor.stdout + doctor.stderr

    app = subprocess.Popen([str(kgmon), "--shm-path", str(shm)], cwd=away,
                           env=user_env(QT_QPA_PLATFORM="offscreen"), stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _started.append(app)
    out = OutputWatcher(app)
    out.wait_stderr(lambda err: "window shown" in err, 60, "the installed app's window")
    app.send_signal(signal.SIGTERM)
    assert out.wait_exit(60) == 0, out.stderr
    assert "Traceback" not in out.stderr and "resources were not found" not in out.stderr, out.stderr


def test_no_c_compiler_says_what_to_install(tmp_path):
    """pip install without a C compiler: one clear message naming what to install."""
    src = source_copy(tmp_path / "src")
    env = dict(pip_env(), CC=str(tmp_path / "no-such-cc"))  # what a machine without gcc looks like to setuptools
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                           "-w", str(tmp_path / "out"), str(src)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert "It needs a C compiler and Python's headers" in output, output[-3000:]
    assert "sudo apt-get install gcc python3-dev" in output
    assert "Traceback" not in output, output[-3000:]
