# The two commands of the README: `make demo` (the main job) and `make test`.
# Each creates the virtual environment on first use and installs what it needs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test fuzz lint docs install clean

$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/hydranet demo

test: $(STAMP)
	$(PY) -m pytest -q tests

# The fuzzer of tests/test_fuzz.py for FUZZ_MINUTES (default 30) with fresh random examples; every
# counterexample is printed as a command, its files kept under FUZZ_OUT (default fuzz_out/).
FUZZ_MINUTES ?= 30
FUZZ_OUT ?= fuzz_out
fuzz: $(STAMP)
	FUZZ_MINUTES=$(FUZZ_MINUTES) FUZZ_OUT=$(abspath $(FUZZ_OUT)) $(PY) -m pytest -q -s -p no:logging tests/test_fuzz.py

# ruff, then the import contracts of .importlinter (layers that import one way)
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

# The documentation site (MkDocs Material + mkdocstrings), strict: a broken link or a bad
# docstring fails the build. Written to site/ (ignored).
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet

clean:
	rm -rf $(VENV)
