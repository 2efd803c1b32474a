# The two commands a fresh clone needs: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test test-fast lint bench venv clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# `make demo` installs the runtime dependencies only; `make test` adds the test extra.
$(VENV)/.installed-runtime: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed-runtime

venv: $(VENV)/.installed-test

demo: $(VENV)/.installed-runtime
	$(BIN)/aura-otel demo

lint: $(VENV)/.installed-test
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The fast part alone: no browser, no Phoenix, no outside programs (markers in pyproject.toml).
test-fast: $(VENV)/.installed-test
	$(BIN)/python -m pytest -m "not browser and not phoenix and not system" $(PYTEST_ARGS)

bench: $(VENV)/.installed-test
	@for f in benchmarks/bench_*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache test-artifacts
