"""Absurd options and environment variables: the real `kgmon` says one sentence, never a traceback.

Every case runs the real CLI process (python -m kindlyguard_monitor). Bad usage exits 2 with
exactly one line on standard error (the README's promise); a failure that is
not the user's typing (a full disk) exits 1, also with one line. The cases
run in parallel once per module (each process starts in ~0.5 s).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import run_kgmon
from history_data import make_history, ring_batch, ring_event

HUGE = "99999999999999999999"
DIGITS_320 = "9" * 320

# (id, arguments, extra environment, expected exit status, words the one line must contain)
CASES = [
    ("export-since-huge-days", ["export", "--since", HUGE + "d"], {}, 2, ["10,000 years"]),
    ("export-since-320-digits", ["export", "--since", DIGITS_320 + "d"], {}, 2, ["10,000 years"]),
    ("export-until-huge-weeks", ["export", "--until", HUGE + "w"], {}, 2, ["--until"]),
    ("export-since-year-1", ["export", "--since", "0001-01-01T00:00"], {}, 2, ["not a time"]),
    ("export-since-garbage", ["export", "--since", "yesterday-ish"], {}, 2, ["not a time"]),
    ("export-to-dev-full", ["export", "-o", "/dev/full"], {}, 1, ["cannot write /dev/full"]),
    ("export-to-a-folder", ["export", "-o", "{tmp}"], {}, 1, ["cannot write"]),
    ("export-history-name-too-long", ["export", "--history", "/" + "a" * 5000], {}, 1, ["cannot read"]),
    ("export-history-a-folder", ["export", "--history", "{tmp}"], {}, 1, ["is a folder"]),
    ("tail-ws-url-http", ["tail", "--ws-url", "http://127.0.0.1:9955"], {}, 2, ["ws://"]),
    ("tail-ws-url-empty-host", ["tail", "--ws-url", "ws://"], {}, 2, ["no host"]),
    ("tail-ws-url-open-bracket", ["tail", "--ws-url", "ws://[::1"], {}, 2, ["cannot be read"]),
    ("tail-ws-url-port-99999", ["tail", "--ws-url", "ws://127.0.0.1:99999"], {}, 2, ["port"]),
    ("tail-ws-url-port-text", ["tail", "--ws-url", "ws://127.0.0.1:http"], {}, 2, ["port"]),
    ("tail-env-gopher", ["tail", "--transport", "websocket"], {"KINDLYGUARD_WS_URL": "gopher://x"}, 2,
     ["KINDLYGUARD_WS_URL", "gopher://x"]),
    ("tail-env-open-bracket", ["tail"], {"KINDLYGUARD_WS_URL": "ws://[::1"}, 2, ["KINDLYGUARD_WS_URL"]),
    ("tail-spin-inf", ["tail", "--spin-us", "inf"], {}, 2, ["--spin-us"]),
    ("tail-spin-nan", ["tail", "--spin-us", "nan"], {}, 2, ["--spin-us"]),
    ("tail-timeout-1e300", ["tail", "--timeout", "1e300"], {}, 2, ["--timeout"]),
    ("tail-count-320-digits", ["tail", "--count", DIGITS_320], {}, 2, ["--count"]),
    ("demo-slot-size-huge", ["demo", "--slot-size", HUGE], {}, 2, ["--slot-size", "power of two"]),
    ("demo-slot-count-huge", ["demo", "--slot-count", "99999999999"], {}, 2, ["--slot-count", "99999999999"]),
    ("demo-slot-count-not-power", ["demo", "--slot-count", "1000"], {}, 2, ["power of two"]),
    ("demo-ws-port-99999", ["demo", "--ws-port", "99999"], {}, 2, ["--ws-port"]),
    ("demo-env-port-99999", ["demo", "--no-shm"], {"SHIELD_WS_PORT": "99999"}, 2, ["SHIELD_WS_PORT"]),
    ("demo-seed-huge", ["demo", "--seed", DIGITS_320], {}, 2, ["--seed"]),
    ("demo-duration-inf", ["demo", "--duration", "inf"], {}, 2, ["--duration"]),
    ("demo-rate-nan", ["demo", "--rate", "nan"], {}, 2, ["--rate"]),
    ("demo-parent-pid-huge", ["demo", "--parent-pid", HUGE], {}, 2, ["--parent-pid"]),
    ("bench-slot-count-huge", ["bench", "--slot-count", HUGE], {}, 2, ["--slot-count"]),
    ("bench-slot-count-negative", ["bench", "--slot-count=-1"], {}, 2, ["--slot-count"]),
    ("doctor-ws-url-open-bracket", ["doctor", "--ws-url", "ws://[::1"], {}, 2, ["--ws-url"]),
    ("doctor-timeout-1e300", ["doctor", "--timeout", "1e300"], {}, 2, ["--timeout"]),
    ("app-ws-url-http", ["--ws-url", "http://x"], {}, 2, ["ws://"]),
    ("app-env-gopher", [], {"KINDLYGUARD_WS_URL": "gopher://x"}, 2, ["KINDLYGUARD_WS_URL"]),
    ("escape-in-an-option", ["tail", "--count", "\x1b]0;pwned\x07"], {}, 2, ["whole number"]),
]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("usage")
    history = make_history(tmp / "history.sqlite3", [ring_batch([ring_event(i) for i in range(3)])])
    base = {k: v for k, v in os.environ.items() if not k.startswith(("KINDLYGUARD_", "SHIELD_"))}
    base["KINDLYGUARD_HISTORY_PATH"] = str(history)
    base["KINDLYGUARD_SHM_PATH"] = str(tmp / "ring" / "kindly-guard.shm")

    def run(case):
        _, args, env, _, _ = case
        args = [a.replace("{tmp}", str(tmp)) for a in args]
        return run_kgmon(*args, env={**base, **env}, timeout=60)

    with ThreadPoolExecutor(4) as pool:
        return dict(zip((c[0] for c in CASES), pool.map(run, CASES)))


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_absurd_input_gets_one_sentence_and_the_right_exit_status(results, case):
    name, _, _, status, words = case
    result = results[name]
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert result.returncode == status, result.stderr
    assert len(lines) == 1, result.stderr
    assert all(w in lines[0] for w in words), (words, lines[0])
    assert "\x1b" not in result.stderr


def test_the_slot_limits_are_the_rings():
    """--slot-size and --slot-count take the limits of native/kg_layout.h (through ring/layout.py)."""
    import re
    from pathlib import Path

    import kindlyguard_monitor
    from kindlyguard_monitor.cli import args

    header = (Path(kindlyguard_monitor.__file__).resolve().parent.parent / "native" / "kg_layout.h").read_text()
    defined = {name: int(value) for name, value in re.findall(r"#define KG_(SLOT_\w+_M[AI][XN]) (\d+)u", header)}
    assert defined == {"SLOT_SIZE_MIN": args.SLOT_SIZE_MIN, "SLOT_SIZE_MAX": args.SLOT_SIZE_MAX,
                       "SLOT_COUNT_MIN": args.SLOT_COUNT_MIN, "SLOT_COUNT_MAX": args.SLOT_COUNT_MAX}


def _document(path):
    path.write_text("a document the user keeps here\n")


def _fifo(path):
    os.mkfifo(path)


def _link(path):
    (path.parent / "target").write_text("kept\n")
    path.symlink_to(path.parent / "target")


@pytest.mark.parametrize("make", [_document, _fifo, _link], ids=["document", "fifo", "symlink"])
def test_demo_never_replaces_a_file_that_is_not_a_ring(tmp_path, make):
    """`--shm-path` naming a document, a pipe or a link: the writer's temp-file-and-rename
    used to replace it with a ring (as root, `--shm-path /dev/null` would replace the device)."""
    path = tmp_path / "kindly-guard.shm"
    make(path)
    before = {p.name: (p.is_symlink(), p.is_fifo(), p.read_bytes() if p.is_file() and not p.is_fifo() else None)
              for p in tmp_path.iterdir()}
    result = run_kgmon("demo", "--no-ws", "--count", "1", "--shm-path", path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "not a KindlyGuard ring" in result.stderr
    after = {p.name: (p.is_symlink(), p.is_fifo(), p.read_bytes() if p.is_file() and not p.is_fifo() else None)
             for p in tmp_path.iterdir()}
    assert after == before  # not replaced, and no lock file left beside it


def test_demo_replaces_an_old_ring(tmp_path):
    path = tmp_path / "kindly-guard.shm"
    for _ in range(2):  # the second run replaces the first run's ring, as the Shield does
        result = run_kgmon("demo", "--no-ws", "--count", "1", "--quiet", "--shm-path", path)
        assert result.returncode == 0, result.stderr
