# localmap: two entry points for a fresh Debian machine with Python 3.11:
#   make run   -- set up .venv and run the main job on the embedded default bundle
#   make test  -- set up .venv and run the test suite
# (make test-slow: the long tests; make bench: measure and regenerate docs/benchmarks.md)
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed

.PHONY: install run test test-slow bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -m venv --help >/dev/null 2>&1 && $(PYTHON) -c 'import ensurepip' 2>/dev/null || \
	  { echo "installing python3-venv"; apt-get update -qq && apt-get install -y -qq python3-venv; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

run: install
	$(VENV)/bin/localmap evaluate

# the suite's files on up to 4 worker processes (one file per worker: its fixtures built once)
test: install
	$(PY) -m pytest -q -n auto --maxprocesses 4 --dist loadfile

# the slow tests wait on downloads, QEMU and subprocesses: two workers overlap them (one file
# per worker, so a file's module-scoped fixtures are built once)
test-slow: install
	$(PY) -m pytest -q -m slow -n 2 --dist loadfile --durations=15 || [ $$? -eq 5 ]

bench: install
	$(PY) bench/report.py --out docs/benchmarks.md

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .hypothesis
