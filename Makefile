# KindlyGuard Monitor: `make run` (install, start the demo writer and watch its threats),
# `make test` (install, run the whole test suite). Everything goes into .venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
NATIVE := $(wildcard native/*.c native/*.h)

.PHONY: install system-deps test-deps run run-terminal test test-quick screenshots bench clean

install: system-deps $(VENV)/.installed

# Debian packages Qt needs at run time (installed when missing and run as root).
# A failure here is reported but does not stop the build: the offscreen tests
# need none of the xcb libraries, and a missing one is named when Qt starts.
system-deps:
	@bash packaging/system-deps.sh || echo "make: system-deps failed; continuing" >&2

# ... and, for the tests, the throw-away desktop of the end-to-end tests.
test-deps:
	@bash packaging/system-deps.sh --test || echo "make: system-deps --test failed; continuing" >&2

$(VENV)/.installed: pyproject.toml setup.py $(NATIVE)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

# The desktop app with the built-in demo writer (stopped when the app quits).
run: install
	$(BIN)/kgmon --demo

# No desktop: the demo writer in the background, the headless reader in the
# foreground; Ctrl-C stops both (the demo marks its ring closed on the way out).
run-terminal: install
	@$(BIN)/kgmon demo & demo=$$!; \
	trap 'kill $$demo 2>/dev/null; wait $$demo' EXIT INT TERM; \
	sleep 0.5; $(BIN)/kgmon tail

test: install test-deps
	$(BIN)/python -m pytest -q

# Everything but the end-to-end desktop tests (no Xvfb, tray or dunst needed).
test-quick: install
	$(BIN)/python -m pytest -q -m "not desktop"

# Refresh docs/screenshots from the end-to-end tests (the README shows them).
screenshots: install test-deps
	KGMON_SCREENSHOT_DIR=docs/screenshots $(BIN)/python -m pytest -q tests/test_desktop_e2e.py

bench: install
	$(BIN)/kgmon bench

clean:
	rm -rf $(VENV) build *.egg-info app/*.so
