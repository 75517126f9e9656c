"""kgmon's parser at the desktop app's start (cli/main.py): the app's arguments are parsed
without importing any command's module (they pull in asyncio, websockets' server, the
bench and the doctor: a third of the start's imports), with exactly the result kgmon's
whole parser gives; anything else (a command, --help, an abbreviation, a usage error) is
left to the whole parser, so its messages stay as they were."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from kindlyguard_monitor.cli.main import COMMANDS, build_parser, gui_args, parse_args

APP_ARGV = [
    [],
    ["--demo"],
    ["--hidden", "--shm-path", "/tmp/ring.shm"],
    ["--shm-path=/tmp/x", "--ws-url", "ws://127.0.0.1:9955"],
    ["--shm-path", "demo"],  # a value that is also a command's name
    ["--fleet", "nats://127.0.0.1:4222", "--consumer", "me", "--fleet-host", "ws1", "--creds", "c.creds"],
    ["--ca", "ca.pem", "--tls-cert", "c.pem", "--tls-key", "k.pem", "--nkey", "n.seed", "--fleet", "tls://h:1"],
]


@pytest.mark.parametrize("argv", APP_ARGV, ids=lambda a: " ".join(a) or "(none)")
def test_the_app_arguments_parse_as_the_whole_parser_parses_them(argv):
    light = gui_args(argv)
    assert light is not None
    assert vars(light) == vars(build_parser().parse_args(argv))
    assert light.command is None


NOT_THE_APP = [
    ["tail", "--count", "1"],
    ["--shm-path", "/tmp/x", "demo"],
    ["--help"],
    ["-h"],
    ["--h"],  # --help or --hidden: the whole parser says it is ambiguous
    ["--hid"],  # an abbreviation the whole parser takes: it decides
    ["--ws-url", "http://nope"],  # a usage error, worded by the whole parser
    ["--shm-path"],
    ["--no-such-option"],
    ["stray"],
]


@pytest.mark.parametrize("argv", NOT_THE_APP, ids=" ".join)
def test_anything_but_the_app_is_left_to_the_whole_parser(argv):
    assert gui_args(argv) is None


def test_an_abbreviation_the_whole_parser_takes_still_works():
    assert parse_args(["--hid"]).hidden is True


def test_the_commands_are_all_in_the_whole_parser():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert tuple(sub.choices) == COMMANDS


def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
                         capture_output=True, text=True, timeout=120, check=True)
    return set(json.loads(out.stdout.splitlines()[-1]))


def test_parsing_the_apps_arguments_imports_no_command():
    loaded = _modules_after("from kindlyguard_monitor.cli.main import parse_args\n"
                            "parse_args(['--shm-path', '/tmp/x', '--ws-url', 'ws://127.0.0.1:1'])")
    commands = {f"kindlyguard_monitor.cli.{c}" for c in COMMANDS if c != "forward"}  # forward: the app's options
    assert not loaded & commands
    assert "asyncio" not in loaded


def test_a_command_still_finds_its_module():
    loaded = _modules_after("from kindlyguard_monitor.cli.main import parse_args\n"
                            "assert parse_args(['tail', '--count', '1']).command == 'tail'")
    assert "kindlyguard_monitor.cli.tail" in loaded
