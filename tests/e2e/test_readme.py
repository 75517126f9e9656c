"""The README is tested (issue 12): every command in its shell code blocks runs
here, with its documented output checked where the README shows one (a ```json
block right after the commands). README.md is parsed when the tests run, so an
edit to it is covered, and a new command nobody taught this file to run fails
`test_every_readme_command_has_a_runner` until it is added to RUNNERS.

Each command runs as the user would type it, but hermetic: its ring is a private
path (KINDLYGUARD_SHM_PATH, which every command honours), its WebSocket port a
free one (SHIELD_WS_PORT), the app offscreen."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
from pathlib import Path

import pytest

from conftest import KGMON, REPO, OutputWatcher, _env, _started, free_port, wait_for

from kindlyguard_monitor.ring import pyring

README = REPO / "README.md"
FENCE = re.compile(r"^```(\w*)\s*$")
SHELLS = {"sh", "bash", "shell", "console"}


def blocks(text: str) -> list[tuple[str, list[str]]]:
    """(language, lines) of every fenced code block, in order."""
    out, lang, lines = [], None, []
    for line in text.splitlines():
        m = FENCE.match(line.strip())
        if m and lang is None:
            lang, lines = m.group(1), []
        elif line.strip() == "```" and lang is not None:
            out.append((lang, lines))
            lang = None
        elif lang is not None:
            lines.append(line)
    assert lang is None, "README.md has an unclosed code block"
    return out


def scripts(text: str = None) -> list[tuple[list[str], list[str] | None]]:
    """Each shell block as (commands, documented output or None): comments and
    blank lines dropped; the output is the ```json block right after it."""
    found = blocks(README.read_text(encoding="utf-8") if text is None else text)
    out = []
    for i, (lang, lines) in enumerate(found):
        if lang not in SHELLS:
            continue
        commands = [re.sub(r"\s+#.*$", "", line).strip() for line in lines]
        commands = [c for c in commands if c and not c.startswith("#")]
        following = found[i + 1] if i + 1 < len(found) else None
        shown = following[1] if following and following[0] == "json" else None
        out.append((commands, shown))
    return out


def all_commands() -> list[str]:
    return [c for commands, _ in scripts() for c in commands]


# ---- the runners: which test runs which README command


def private_env(tmp_path: Path, **extra) -> dict:
    ring = tmp_path / "ring"
    ring.mkdir(mode=0o700, exist_ok=True)
    env = _env(None)
    env.update(KINDLYGUARD_SHM_PATH=str(ring / "kindly-guard.shm"), SHIELD_WS_PORT=str(free_port()),
               QT_QPA_PLATFORM="offscreen")
    env.update(extra)
    return env


def argv(command: str) -> list[str]:
    words = shlex.split(command.rstrip("&").strip())
    return KGMON + words[1:] if words[0] == "kgmon" else words


RUNNERS = {  # a command's first words -> the test that runs it
    "make run": "test_make_run_starts_the_app_with_the_demo",
    "make test": "test_make_test_runs_the_suite",
    "kgmon demo": "test_the_demo_and_tail_example",
    "kgmon tail": "test_the_demo_and_tail_example",
}


def runner_of(command: str) -> str | None:
    words = command.split()
    for n in (2, 1):
        key = " ".join(words[:n])
        if key in RUNNERS:
            return RUNNERS[key]
    return None


def test_the_readme_has_shell_commands():
    assert len(all_commands()) >= 4, all_commands()


def test_every_readme_command_has_a_runner():
    missing = [c for c in all_commands() if runner_of(c) is None]
    assert not missing, f"README commands no test runs (add them to RUNNERS in tests/e2e/test_readme.py): {missing}"
    for name in set(RUNNERS.values()):
        assert name in globals(), name


def test_the_parser_reads_blocks_and_their_output():
    text = "x\n```sh\nkgmon a   # says a\n\n# only a comment\nkgmon b &\n```\n```json\n{}\n```\n```\ntree\n```\n"
    assert scripts(text) == [(["kgmon a", "kgmon b &"], ["{}"])]


def test_make_test_runs_the_suite():
    """`make test` is this suite: its dry run shows it installs, then runs pytest on everything."""
    assert "make test" in all_commands()
    done = subprocess.run(["make", "-n", "test"], cwd=REPO, capture_output=True, text=True, timeout=60,
                          env=_env(None))
    assert done.returncode == 0, done.stderr
    assert re.search(r"python -m pytest\b", done.stdout), done.stdout


def test_make_run_starts_the_app_with_the_demo(tmp_path):
    """`make run` (its install step taken as done: this suite runs in that venv)
    opens the app with the demo writer; SIGTERM stops both and the demo's ring
    is left marked closed, where the README says."""
    assert "make run" in all_commands()
    env = private_env(tmp_path)
    proc = subprocess.Popen(["make", "-o", "install", "run"], cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    _started.append(proc)
    out = OutputWatcher(proc)
    out.wait_stderr(lambda err: "window shown" in err, 90, "the app's window")
    ring = Path(env["KINDLYGUARD_SHM_PATH"])
    wait_for(lambda: ring.exists(), 30, "the demo writer's ring")
    os.killpg(proc.pid, signal.SIGTERM)  # what Ctrl-C in the terminal does to the whole job
    out.wait_exit(60)
    assert "Traceback" not in out.stderr, out.stderr
    wait_for(lambda: pyring.read_header(ring)["state"] == pyring.STATE_CLOSED, 5, "the demo's ring marked closed")


def shape(obj: dict) -> tuple:
    return obj["type"], tuple(sorted(obj))


def test_the_demo_and_tail_example(tmp_path):
    """The README's `kgmon demo --rate 20 &` then `kgmon tail --json --count 3`,
    as written: the lines have the documented types and fields, in order."""
    (commands, shown), = [(c, s) for c, s in scripts() if any(x.startswith("kgmon tail") for x in c)]
    assert shown, "the README shows the output of its tail example"
    env = private_env(tmp_path)
    background = None
    result = None
    for command in commands:
        if command.endswith("&"):
            background = subprocess.Popen(argv(command), cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            _started.append(background)
            OutputWatcher(background).wait_stderr(lambda err: "writing to" in err, 60, "the demo to start")
        else:
            result = subprocess.run(argv(command), cwd=tmp_path, env=env, capture_output=True, text=True,
                                    timeout=120, stdin=subprocess.DEVNULL)
            assert result.returncode == 0, (command, result.stderr)
    documented = [json.loads(line) for line in shown if line.strip() and line.strip() != "..."]
    got = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    # the first and last lines as shown; every threat line shaped like the one shown
    assert shape(got[0]) == shape(documented[0]), (got[0], documented[0])
    assert shape(got[-1]) == shape(documented[-1]), (got[-1], documented[-1])
    threat_shape = shape(next(d for d in documented if d["type"] == "threat"))
    threats = [g for g in got if g["type"] == "threat"]
    assert len(threats) == 3 and all(shape(t) == threat_shape for t in threats), threats
    assert got[-1]["delivered"] == 3 and got[-1]["missed"] == 0
    assert str(Path(env["KINDLYGUARD_SHM_PATH"])) in got[0]["reason"], "attached to the ring it was told"
    if background is not None:
        background.send_signal(signal.SIGTERM)
        assert background.wait(60) == 0
        header = pyring.read_header(env["KINDLYGUARD_SHM_PATH"])
        assert header["state"] == pyring.STATE_CLOSED, "a stopped demo leaves its ring marked closed"


@pytest.mark.parametrize("form", [["--since", "-1h"], ["--since=-1h"], ["--since", "1h"], ["--until", "-7d"]])
def test_export_since_a_time_ago(tmp_path, form):
    """The README's `kgmon export --since -1h` (argparse alone rejected it: "expected one argument")."""
    from history_data import make_history, ring_batch, ring_event

    import time

    now_us = time.time_ns() // 1000
    history = make_history(tmp_path / "history.sqlite3", [ring_batch([
        ring_event(0, time_us=now_us - 10 * 86_400_000_000),   # ten days ago
        ring_event(1, time_us=now_us - 2 * 3_600_000_000),     # two hours ago
        ring_event(2, time_us=now_us - 60_000_000)])])         # a minute ago
    done = subprocess.run(KGMON + ["export", "--history", str(history), "--format", "jsonl", *form], cwd=REPO,
                          env=_env(None), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    details = [json.loads(line)["details"] for line in done.stdout.splitlines()]
    assert details == (["threat 0"] if form[0] == "--until" else ["threat 2"]), details
