# Two commands do all set-up on a fresh Debian machine: `make serve` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PORT   ?= 11112
AET    ?= DICOMWIRE
DATA   ?= ./data

.PHONY: serve test lint typecheck pytest bench fuzz fuzz-ci dcmtk peers clean
.PHONY: cluster

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

# The real peers the tests require (Debian packages): DCMTK, Orthanc (with its worklists
# plugin), rsyslog with its TLS driver (audit trail), PostgreSQL (the shared backend).
# Installed when missing and running as root; in CI (CI=true) a missing peer fails.
PEER_PACKAGES = dcmtk orthanc rsyslog rsyslog-gnutls postgresql haproxy
dcmtk peers:
	@missing=""; for package in $(PEER_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$package 2>/dev/null | grep -q ' installed$$' || missing="$$missing $$package"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  else echo "warning: missing peers:$$missing (apt-get install$$missing); interop tests will be skipped" >&2; fi; fi

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

typecheck: $(VENV)/.installed-dev
	$(VENV)/bin/mypy --strict src

# tests/ includes about 60 s of time-boxed hypothesis fuzzing (marked fuzz: add
# -m "not fuzz" to leave it out locally; DICOMWIRE_FUZZ_SECONDS changes the budget).
pytest: $(VENV)/.installed-dev dcmtk
	$(VENV)/bin/pytest -q tests
	$(VENV)/bin/pytest -q bench --benchmark-disable -p no:cacheprovider

test: lint typecheck pytest fuzz-ci

# Micro benchmarks (each run saved under .benchmarks/ and compared with the previous one),
# then the end-to-end comparison with DCMTK and pynetdicom (bench/README.md).
BENCH_ARGS ?=
bench: $(VENV)/.installed-dev dcmtk
	$(VENV)/bin/pytest -q bench --benchmark-only --benchmark-columns=median,mean,ops,rounds \
	  --benchmark-autosave --benchmark-compare
	$(PY) bench/compare.py $(BENCH_ARGS)

# Long coverage-guided fuzzing (atheris); seeds from the codec and the DCMTK sessions kept in
# fuzz/recorded (record them again with `$(PY) fuzz/seed_corpus.py --record`).
FUZZ_TIME    ?= 600
FUZZ_TARGETS ?= pdu framer command negotiation dimse acceptor

fuzz: $(VENV)/.installed-dev
	$(PY) -m pip install -q atheris
	$(PY) fuzz/seed_corpus.py
	@mkdir -p fuzz/crashes
	@for target in $(FUZZ_TARGETS); do \
	  echo "== fuzz $$target ($(FUZZ_TIME) s)"; \
	  $(PY) fuzz/fuzz_$$target.py fuzz/corpus/$$target -max_total_time=$(FUZZ_TIME) \
	    -artifact_prefix=fuzz/crashes/$$target- || exit 1; \
	done

# CI's short atheris run (make test runs it): FUZZ_CI_TIME s for each of FUZZ_CI_TARGETS (the
# acceptor reaches the codec, framer, negotiation and DIMSE; dimse drives the dispatcher with
# its own windows). Crashes are kept under tests/fuzz_regressions/ and fail the run. Only
# this step may skip: when atheris does not install on this Python/compiler, it says so.
FUZZ_CI_TIME    ?= 30
FUZZ_CI_TARGETS ?= acceptor dimse

fuzz-ci: $(VENV)/.installed-dev
	@if $(PY) -c 'import atheris' 2>/dev/null || $(PY) -m pip install -q atheris; then \
	  $(PY) fuzz/run_ci.py --seconds $(FUZZ_CI_TIME) $(FUZZ_CI_TARGETS); \
	else \
	  echo "SKIPPED: atheris does not install on this Python/compiler; CI's atheris run" \
	    "is skipped (the hypothesis fuzzing in pytest still ran)" >&2; \
	fi

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis .benchmarks fuzz/corpus fuzz/crashes bench/.cache

# Several nodes behind HAProxy sharing a throwaway PostgreSQL (docs/scale-out.md): starts
# them on free ports of 127.0.0.1, prints how to send to them, Ctrl-C stops them all.
CLUSTER_NODES ?= 3
CLUSTER_PORT  ?= 0
$(VENV)/.installed-postgres: $(PY) pyproject.toml
	$(PY) -m pip install -q -e '.[postgres]'
	@touch $(VENV)/.installed $@

cluster: $(VENV)/.installed-postgres peers
	$(VENV)/bin/dicomwire cluster --nodes $(CLUSTER_NODES) --port $(CLUSTER_PORT) --aet $(AET)
