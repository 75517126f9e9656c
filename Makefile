# KindlyGuard Monitor: `make run` (install, start the demo writer and watch its threats),
# `make test` (install, run the whole test suite). Everything goes into .venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
NATIVE := $(wildcard native/*.c native/*.h)

.PHONY: install system-deps test-deps run run-terminal test test-quick test-fast test-unit test-integration test-e2e \
        test-twice screenshots bench clean

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

# The whole suite runs beside the user's own running app (kgmon --demo on the default
# ring, socket and port: the suite must not touch them, tests/beside_app.py checks it
# survived), then two copies of a part of the suite run at once (test-twice).
test: install test-deps
	$(BIN)/python tests/beside_app.py $(BIN)/python -m pytest -q
	@$(MAKE) --no-print-directory test-twice

# Everything but the end-to-end desktop tests and the installers (no Xvfb, tray,
# dunst, PyInstaller or dpkg needed).
test-quick: install
	$(BIN)/python -m pytest -q -m "not desktop and not packaging"

# Everything but the tests marked slow (the bench smoke runs, floods, long scenarios):
# for a quick round while working. `make test` and CI run them all.
test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

# The suite by kind: tests/unit (in-process and fast), tests/integration (other processes,
# servers, sockets, real rings and history databases), tests/e2e (the real app on a real
# desktop, the installers, the README's commands). Shared helpers stay in tests/.
test-unit: install
	$(BIN)/python -m pytest -q tests/unit

test-integration: install
	$(BIN)/python -m pytest -q tests/integration

test-e2e: install test-deps
	$(BIN)/python -m pytest -q tests/e2e

# Two test sessions at once, as two checkouts (or a developer and CI) would run them:
# nothing shared between them (names, sockets, rings, settings, history, ports).
# A sizeable part of the suite, not all of it: the app, its single instance, settings,
# tray and notifications, the README's commands, doctor (issue 12).
TWICE := tests/e2e/test_single_instance_session.py tests/unit/test_settings.py tests/integration/test_tray_notifier.py \
         tests/integration/test_gui_app.py tests/e2e/test_readme.py tests/integration/test_doctor.py
test-twice: install
	@log=$$(mktemp); \
	$(BIN)/python -m pytest -q -p no:cacheprovider -k "not bench" $(TWICE) >$$log 2>&1 & other=$$!; \
	$(BIN)/python -m pytest -q -p no:cacheprovider -k "not bench" $(TWICE); mine=$$?; \
	wait $$other; theirs=$$?; echo "test-twice: the other copy:"; tail -n 3 $$log; \
	[ $$theirs -eq 0 ] || cat $$log; rm -f $$log; \
	[ $$mine -eq 0 ] && [ $$theirs -eq 0 ]

# Refresh docs/screenshots from the end-to-end tests (the README shows them).
screenshots: install test-deps
	KGMON_SCREENSHOT_DIR=docs/screenshots $(BIN)/python -m pytest -q tests/e2e/test_desktop_e2e.py \
		tests/e2e/test_desktop_look_e2e.py tests/e2e/test_desktop_protection_e2e.py tests/e2e/test_desktop_ack_e2e.py

bench: install
	$(BIN)/kgmon bench

clean:
	rm -rf $(VENV) build dist *.egg-info kindlyguard_monitor/*.so

# The installers (issue 6): the PyInstaller onedir, the .deb, the .tar.gz and the
# AppImage's AppDir, all in dist/ (docs/packaging.md). Fails past the size budgets.
.PHONY: dist dist-deps dist-test
dist: install test-deps dist-deps
	PYTHON=$(abspath $(BIN)/python) bash packaging/build-linux.sh

# Build-only Python packages (pyproject.toml's dist extra: PyInstaller, actionlint) into
# the same venv, without reinstalling the app (tests call this while the app is loaded).
dist-deps: $(VENV)/.dist-installed
$(VENV)/.dist-installed: pyproject.toml | $(VENV)/.installed
	$(BIN)/python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['dist']))" > $(VENV)/dist-requirements.txt
	$(BIN)/python -m pip install --quiet -r $(VENV)/dist-requirements.txt
	touch $@

# Only the packaging tests: build, install the .deb here, run it under Xvfb, purge.
dist-test: install test-deps dist-deps
	$(BIN)/python -m pytest -q -m packaging
