# One target per job. `make demo` and `make check` are the README's two commands.
VENV ?= .venv
BIN := $(VENV)/bin
PYDEPS := maturin 'psycopg[binary]>=3.1' 'typer>=0.12' pytest pytest-timeout hypothesis ruff mypy \
	matplotlib

.PHONY: all demo check setup build lint test test-unit test-rust test-python bench bench-quick clean

all: check

$(BIN)/.deps: pyproject.toml scripts/install-system-deps.sh
	bash scripts/install-system-deps.sh
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check $(PYDEPS)
	touch $@

setup: $(BIN)/.deps

build: setup
	VIRTUAL_ENV=$(abspath $(VENV)) $(BIN)/maturin develop --release -q

demo: build
	$(BIN)/londiste-rs demo

lint: build
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	$(BIN)/ruff check python tests bench
	$(BIN)/ruff format --check python tests bench
	$(BIN)/mypy

# tests/unit needs no server and takes seconds: it runs first, so a broken unit fails fast.
test-unit: build
	$(BIN)/pytest -q tests/unit

test-rust:
	cargo test --quiet

test-python: test-unit
	$(BIN)/pytest -q tests --ignore=tests/unit

test: test-unit test-rust test-python

check: lint test

bench: build
	$(BIN)/python bench/run.py

bench-quick: build
	$(BIN)/python bench/run.py --quick

clean:
	rm -rf $(VENV) target
