# Two entry points for a fresh machine: `make demo` and `make test`.
# Each creates .venv and installs what it needs; nothing is installed by hand.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)

.PHONY: demo test lint types unit venv system-deps clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

venv: $(STAMP)

# System packages (podman for the container tests); only as root, only where missing.
system-deps:
	bash scripts/system-deps.sh

# A local testnet of 8 real node processes (process runtime, SQLite, 2 s slots); the
# sample apps are submitted and one is moved through the CLI (edgechain/lab/demo.py).
demo: venv
	$(BIN)/python -m edgechain.lab.demo --nodes 8 --committee 3 --slot-duration 2

lint: venv
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

types: venv
	$(BIN)/mypy

# src is compiled first: with PYTHONDONTWRITEBYTECODE set (as on this machine) no import
# writes bytecode, and each of the node and CLI processes the suite starts outside a
# testnet launcher (which compiles it too, lab/package_sources.py) would compile every
# module it imports again. compileall writes it whatever that setting says.
unit: venv system-deps
	$(BIN)/python -m compileall -q src
	$(BIN)/python -m pytest -q -n 3 --dist loadscope --durations=15

# mypy (about 27 s from nothing) runs beside pytest, whose light testnets leave the CPU
# idle much of the time; either failing fails the target.
test: lint
	$(MAKE) --no-print-directory -j2 types unit

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
