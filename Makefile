# Two commands do all set-up on a fresh Debian machine: `make serve` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PORT   ?= 11112
AET    ?= DICOMWIRE
DATA   ?= ./data

.PHONY: serve test lint typecheck pytest bench dcmtk clean

# The venv itself; Debian's python3 needs python3-venv, which root can install.
$(PY):
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv && \
	    rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); \
	  else echo "cannot create $(VENV): install python3-venv" >&2; exit 1; fi; }
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.installed: $(PY) pyproject.toml
	$(PY) -m pip install -q -e .
	@touch $@

$(VENV)/.installed-dev: $(PY) pyproject.toml
	$(PY) -m pip install -q -e '.[dev,peers]'
	@touch $(VENV)/.installed $@

serve: $(VENV)/.installed
	@mkdir -p $(DATA)
	$(VENV)/bin/dicomwire serve --port $(PORT) --aet $(AET) --storage $(DATA) -v

# DCMTK is the interoperability peer the tests require.
dcmtk:
	@if ! command -v storescp >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dcmtk; \
	  else echo "warning: DCMTK is missing (apt-get install dcmtk); interop tests will be skipped" >&2; fi; fi

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

typecheck: $(VENV)/.installed-dev
	$(VENV)/bin/mypy --strict src

pytest: $(VENV)/.installed-dev dcmtk
	$(VENV)/bin/pytest -q tests

test: lint typecheck pytest

bench: $(VENV)/.installed-dev dcmtk
	$(VENV)/bin/pytest -q bench --benchmark-only --benchmark-columns=median,mean,ops,rounds

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis .benchmarks
