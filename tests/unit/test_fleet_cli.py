"""`kgmon forward` and `kgmon tail --fleet` without the NATS client: one sentence that says what to do,
and a packaged build (sys.frozen) says that the build lacks it rather than asking for pip."""

from __future__ import annotations

import sys

from kindlyguard_monitor.cli.forward import nats_missing


def test_with_the_client_nothing_is_said():
    assert nats_missing("forward") is None


def test_without_the_client_one_sentence(monkeypatch):
    monkeypatch.setitem(sys.modules, "nats", None)  # `import nats` now raises ImportError
    said = nats_missing("forward")
    assert said.startswith("kgmon forward: the NATS client is not installed") and "[fleet]" in said
    assert "\n" not in said
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    said = nats_missing("tail --fleet")
    assert said.startswith("kgmon tail --fleet: this build of kgmon was made without the NATS client")
