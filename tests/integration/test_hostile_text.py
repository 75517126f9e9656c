"""Text from outside is shown, never interpreted, in every output (issue 11 item 5).

A server's close reason, a file name, an environment variable, an error
message: each may carry terminal escapes (ESC ] 0 ; title BEL retitles the
window, ESC [ 2 J clears the screen), bidirectional overrides, or hundreds
of combining marks stacked on one letter. Each output channel is tested
with such text: kindlyguard_monitor.textsafe itself, a log record, `kgmon tail`'s standard
error fed by a hostile WebSocket server's close reason, `kgmon doctor` and
`kgmon export` with a hostile path, `kgmon demo` with one, and the desktop
window's badge reason, status bar and history label (offscreen).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest
from conftest import REPO, _env, run_kgmon
from hostile_ws import HostileServer

from kindlyguard_monitor import textsafe
from kindlyguard_monitor.textsafe import visible

ESC = "\x1b"
TITLE = "\x1b]0;pwned\x07"  # sets the terminal window's title
CLEAR = "\x1b[2J\x1b[H"  # clears the screen
HOSTILE = f"{TITLE}{CLEAR}evil\u202eexe.txt\u200b"
ZALGO = "Z" + "\u0301" * 200 + "algo"
ZALGO_NAME = "Z" + "\u0301" * 100  # a file name is at most 255 bytes


def assert_shown_not_interpreted(text: str) -> None:
    assert ESC not in text and "\x07" not in text and "\u202e" not in text and "\u200b" not in text, text
    assert "\u0301" * (textsafe.MAX_COMBINING_RUN + 1) not in text, text


# ---- textsafe


def test_long_runs_of_combining_marks_are_escaped_short_ones_kept():
    shown = visible(ZALGO)
    assert shown == "Z" + "⟨U+0301⟩" * 200 + "algo"
    assert visible("Tiếng Việt") == "Tiếng Việt"  # precomposed
    nfd = "Tie\u0302\u0301ng"  # Vietnamese decomposed: two marks on one letter
    assert visible(nfd) == nfd
    hebrew = "\u05d1\u05bc\u05b0\u0591"  # bet, dagesh, sheva, cantillation: three marks
    assert visible(hebrew) == hebrew
    limit = textsafe.MAX_COMBINING_RUN
    assert visible("a" + "\u0308" * limit) == "a" + "\u0308" * limit
    assert visible("a" + "\u0308" * (limit + 1)) == "a" + "⟨U+0308⟩" * (limit + 1)
    assert visible("\u20dd" * 9) == "⟨U+20DD⟩" * 9  # enclosing marks, no base at all
    # a hidden character between two runs is shown, so each run is judged on its own
    assert visible("a" + "\u0301" * 3 + "\u200b" + "\u0301" * 3) == "a" + "\u0301" * 3 + "⟨U+200B⟩" + "\u0301" * 3


def test_visible_still_marks_controls_and_bidi():
    assert visible(HOSTILE) == ("⟨U+001B⟩]0;pwned⟨U+0007⟩⟨U+001B⟩[2J⟨U+001B⟩[Hevil⟨U+202E⟩exe.txt⟨U+200B⟩")


# ---- logs


def test_a_log_record_with_outside_text_is_written_visible():
    record = logging.LogRecord("kindlyguard_monitor.transport", logging.WARNING, __file__, 1,
                               "the WebSocket at %s closed: %s", ("ws://x", HOSTILE + ZALGO), None)
    line = textsafe.VisibleFormatter("kgmon: %(message)s").format(record)
    assert_shown_not_interpreted(line)
    assert "⟨U+001B⟩]0;pwned" in line and "\n" not in line
    try:
        raise ValueError(HOSTILE)
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    record.exc_text = None
    text = textsafe.VisibleFormatter("%(message)s").format(record)
    assert_shown_not_interpreted(text)
    assert "Traceback" in text and "\n" in text  # a traceback keeps its lines, each one made visible


def test_the_command_line_logs_through_the_visible_formatter(tmp_path):
    from kindlyguard_monitor.cli.main import main

    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    try:
        assert main(["export", "--history", str(tmp_path / "none.sqlite3")]) == 1
        assert any(isinstance(h.formatter, textsafe.VisibleFormatter) for h in root.handlers)
    finally:
        for handler in set(root.handlers) - set(before):
            root.removeHandler(handler)
        root.setLevel(level)

    code = ("import logging, sys; from kindlyguard_monitor.textsafe import log_to_stderr; log_to_stderr(); "
            f"logging.getLogger('app.x').warning('reason: %s', {HOSTILE + ZALGO!r})")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=_env(None), capture_output=True,
                            text=True, timeout=60)
    assert "reason: " in result.stderr
    assert_shown_not_interpreted(result.stderr)


# ---- kgmon tail: a hostile server's close reason


def _close_with(reason: str):
    async def script(ws, srv):
        await ws.close(code=4000, reason=reason)
    return script


@pytest.mark.parametrize("json_output", [False, True], ids=["text", "json"])
def test_tail_shows_a_hostile_close_reason_escaped(tmp_path, json_output):
    reason = (TITLE + CLEAR + "\u202e" + "a\u0301" + "\u0301" * 30)[:120]  # a close reason is at most 123 bytes
    with HostileServer(_close_with(reason)) as srv:
        args = ["tail", "--transport", "websocket", "--ws-url", srv.url, "--timeout", "3",
                "--shm-path", tmp_path / "ring.shm"] + (["--json"] if json_output else [])
        result = run_kgmon(*args)
        assert srv.connections >= 1
    assert "Traceback" not in result.stderr
    assert_shown_not_interpreted(result.stderr)
    assert_shown_not_interpreted(result.stdout)
    assert "4000" in result.stderr + result.stdout  # the reason is reported, not dropped
    if not json_output:
        assert "⟨U+001B⟩]0;pwned" in result.stderr


def test_tail_shows_a_hostile_ring_path_escaped(tmp_path):
    ring = tmp_path / f"{CLEAR}\u202ering" / "kindly-guard.shm"
    result = run_kgmon("tail", "--transport", "shm", "--shm-path", ring, "--timeout", "1")
    assert result.returncode == 3 and "Traceback" not in result.stderr
    assert_shown_not_interpreted(result.stderr)
    assert "⟨U+001B⟩[2J" in result.stderr


# ---- kgmon doctor, export, demo: hostile paths


@pytest.mark.parametrize("json_output", [False, True], ids=["text", "json"])
def test_doctor_shows_hostile_paths_escaped(tmp_path, json_output):
    folder = tmp_path / f"{TITLE}\u202e{ZALGO_NAME}"
    folder.mkdir()
    env = dict(os.environ, KINDLYGUARD_HISTORY_PATH=str(folder / f"{CLEAR}history.sqlite3"))
    args = ["doctor", "--shm-path", folder / "ring.shm", "--ws-url", "ws://127.0.0.1:1", "--timeout", "0.5"]
    result = run_kgmon(*args, *(["--json"] if json_output else []), env=env)
    assert "Traceback" not in result.stderr
    assert_shown_not_interpreted(result.stdout + result.stderr)
    if not json_output:
        assert "⟨U+001B⟩]0;pwned" in result.stdout


def test_export_shows_a_hostile_history_path_escaped(tmp_path):
    result = run_kgmon("export", "--history", tmp_path / f"{TITLE}{ZALGO_NAME}.sqlite3")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert_shown_not_interpreted(result.stderr)
    assert "⟨U+001B⟩]0;pwned" in result.stderr


def test_demo_shows_a_hostile_ring_path_escaped(tmp_path):
    ring = tmp_path / f"{TITLE}\u202e" / "kindly-guard.shm"
    result = run_kgmon("demo", "--no-ws", "--count", "1", "--rate", "1000", "--shm-path", ring)
    assert result.returncode == 0, result.stderr
    assert_shown_not_interpreted(result.stderr)
    assert "⟨U+001B⟩]0;pwned" in result.stderr


# ---- the desktop window (offscreen)


def test_window_badge_status_bar_and_history_label_show_outside_text_escaped(win):
    win.set_transport("disconnected", f"the WebSocket: closed by the server (code 4000: {HOSTILE}{ZALGO})")
    assert_shown_not_interpreted(win.reason_label.text())
    assert_shown_not_interpreted(win.reason_label.toolTip())
    assert "⟨U+001B⟩" in win.reason_label.text()
    win.set_history_status(f"History 0.0 MiB — not saving: cannot open {HOSTILE}{ZALGO}", True)
    assert_shown_not_interpreted(win.history_label.text())
    win.show_message(f"The threat history {HOSTILE}{ZALGO} could not be used", 1000)
    assert_shown_not_interpreted(win.statusBar().currentMessage())
    assert "⟨U+202E⟩" in win.statusBar().currentMessage()


def test_tray_protection_reason_is_shown_escaped(qapp):
    from kindlyguard_monitor.gui.tray import TrayController

    tray = TrayController()
    tray.set_protection_available(False, HOSTILE + ZALGO)
    assert_shown_not_interpreted(tray.action_protection.text())
    assert_shown_not_interpreted(tray.action_protection.toolTip())


@pytest.mark.parametrize("url", ["ws://[::1", "ws://127.0.0.1:99999", "ws://127.0.0.1:http"])
def test_settings_refuse_a_websocket_url_the_client_cannot_use(url):
    from kindlyguard_monitor.gui.settings_dialog import validate_ws_url

    assert validate_ws_url(url).startswith("Not a usable WebSocket URL")


def test_a_saved_websocket_url_the_client_cannot_use_is_ignored(monkeypatch, caplog):
    from kindlyguard_monitor.gui.startup import choose_ws_url

    monkeypatch.delenv("KINDLYGUARD_WS_URL", raising=False)
    monkeypatch.delenv("SHIELD_WS_PORT", raising=False)
    assert choose_ws_url(None, "ws://127.0.0.1:1234") == "ws://127.0.0.1:1234"
    assert choose_ws_url("ws://127.0.0.1:5", "ws://127.0.0.1:1234") == "ws://127.0.0.1:5"
    with caplog.at_level(logging.WARNING):
        assert choose_ws_url(None, "ws://[::1" + TITLE) == "ws://127.0.0.1:9955"
    assert "ignoring the WebSocket URL" in caplog.text
