# One entry point for set-up, tests and the demo. `make install` is idempotent:
# it rebuilds the virtual environment only when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test test-slow demo clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# the CPU build of torch first, so nothing later pulls a CUDA build
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[all,dev]'
	# Debian packages the tests use: espeak-ng (speech) and chromium (the web page test, driven by Playwright)
	command -v espeak-ng >/dev/null && command -v chromium >/dev/null || \
		{ apt-get update -qq && apt-get install -y -qq espeak-ng chromium >/dev/null; }
	touch $(STAMP)

test: install
	$(VENV)/bin/ruff check src tests benchmarks
	$(PY) -m pytest -q -m "not slow" -n auto --dist loadfile --durations=15

test-slow: install
	$(PY) -m pytest -q -m slow

demo: install
	$(VENV)/bin/polymodal demo

clean:
	rm -rf $(VENV) build src/*.egg-info
