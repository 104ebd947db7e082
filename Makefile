# The two commands of the README: `make demo` (the main job) and `make test`.
# Each creates the virtual environment on first use and installs what it needs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test install clean

$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/hydranet demo

test: $(STAMP)
	$(PY) -m pytest -q tests

clean:
	rm -rf $(VENV)
