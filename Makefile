# nba_fast: the targets developers and CI (.ci/run) use. `make help` lists them.
# On a fresh machine: `make demo` runs the quickstart, `make test` runs the whole test suite.
# Needs: cargo (stable >= 1.85, with rustfmt and clippy), python3.11, a C compiler.
# Written for any make (GNU or BSD): no GNU-only functions; shell does the rest.

PYTHON ?= python3.11
VENV ?= .venv
CARGO ?= cargo
PY = $(VENV)/bin/python
MATURIN = $(VENV)/bin/maturin
# Written when the dev tools are installed; pyproject.toml changing reinstalls them.
STAMP = $(VENV)/.dev-installed
PIP_FLAGS ?= --disable-pip-version-check
MATURIN_FLAGS ?=
PYTEST_ARGS ?=
DEMO_ARGS ?=
BENCH_ARGS ?=

CARGO_TERM_COLOR ?= auto
export CARGO_TERM_COLOR

# The venv as an absolute path (expanded by the recipe's shell). maturin develop installs into
# $VIRTUAL_ENV (or $CONDA_PREFIX; both set is an error) before it looks for a .venv in the
# current or a parent folder: setting it keeps another activated venv from receiving the build.
# PYO3_PYTHON points pyo3's build script, clippy's too, at the venv's interpreter rather than
# whatever python3 comes first on PATH.
VENV_ABS = $$(cd $(VENV) && pwd)
WITH_VENV = VIRTUAL_ENV="$(VENV_ABS)" PYO3_PYTHON="$(VENV_ABS)/bin/python" PATH="$(VENV_ABS)/bin:$$PATH"

.PHONY: help venv build build-release lint lint-python lint-rust stubtest test test-rust \
	test-python demo bench format clean distclean

help: ## List the targets
	@echo "usage: make TARGET    (fresh machine: 'make demo' runs the demo, 'make test' the tests)"
	@echo
	@awk 'BEGIN { FS = ":.*## " } /^[a-zA-Z0-9_-]+:.*## / { printf "  %-14s %s\n", $$1, $$2 }' Makefile

venv: $(STAMP) ## Create .venv (python3.11) with pyproject.toml's runtime and dev dependencies

# The dependencies and the `dev` extra, read from pyproject.toml, without installing nba_fast
# itself (`build` does that): pip would otherwise build the Rust extension a second time.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; print("\n".join(p["dependencies"] + p["optional-dependencies"]["dev"]))' > $(VENV)/requirements-dev.txt
	$(PY) -m pip install $(PIP_FLAGS) -r $(VENV)/requirements-dev.txt
	touch $(STAMP)

build: venv ## Build nba_fast._core into .venv: maturin develop, dev profile (opt-level 1)
	unset CONDA_PREFIX; $(WITH_VENV) $(MATURIN) develop $(MATURIN_FLAGS)

build-release: venv ## Build nba_fast._core into .venv with the release profile (fat LTO)
	unset CONDA_PREFIX; $(WITH_VENV) $(MATURIN) develop --release $(MATURIN_FLAGS)

lint: lint-python lint-rust stubtest ## All linters (part of `make test`)

lint-python: venv ## ruff check, ruff format --check, mypy --strict python/
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy --strict python/

lint-rust: venv ## cargo fmt --check, cargo clippy --all-targets -D warnings
	$(CARGO) fmt --all --check
	$(WITH_VENV) $(CARGO) clippy --workspace --all-targets -- -D warnings

stubtest: build ## Check python/nba_fast/_core.pyi against the built module (mypy.stubtest)
	$(PY) -m mypy.stubtest --mypy-config-file pyproject.toml nba_fast._core

test: lint test-rust test-python ## THE test command: linters, cargo test -p nba_core, pytest

test-rust: ## cargo test -p nba_core (the pure-Rust core; no Python needed)
	$(CARGO) test -p nba_core

test-python: build ## pytest over tests/ (PYTEST_ARGS='-m slow' for the slow ones)
	$(PY) -m pytest $(PYTEST_ARGS)

demo: build ## Build, then run `nba-fast demo`: the U+ Bank story into SQLite (DEMO_ARGS=...)
	$(PY) -m nba_fast demo $(DEMO_ARGS)

bench: build-release ## Release build, pytest-benchmark over bench/, then bench/report.py (vs DuckDB, Polars; BENCH_ARGS=...)
	$(PY) -m pytest bench -m benchmark
	$(PY) bench/report.py $(BENCH_ARGS)

format: venv ## Rewrite the code in house style: cargo fmt, ruff --fix, ruff format
	$(CARGO) fmt --all
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

clean: ## Remove build outputs and caches (keeps .venv and bench/results)
	$(CARGO) clean
	rm -f python/nba_fast/_core.*.so python/nba_fast/_core.*.pyd python/nba_fast/_core.so
	rm -rf .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find python tests bench examples -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean ## clean, and remove .venv too
	rm -rf $(VENV)
