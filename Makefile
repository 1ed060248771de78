# The two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
RUNTIME_STAMP := $(VENV)/.installed-runtime
DEV_STAMP     := $(VENV)/.installed-dev

.PHONY: demo test lint format sanitize fuzz clean

demo: $(RUNTIME_STAMP)
	$(BIN)/python -m demo $(DEMO_ARGS)

# pytest exits 5 when it collected nothing: a failure here, never a silent pass.
test: $(DEV_STAMP)
	@bash .ci/ensure-chromium
	@$(BIN)/python -m pytest $(PYTEST_ARGS); status=$$?; \
	if [ $$status -eq 5 ]; then echo "make test: no tests were collected" >&2; exit 1; fi; \
	exit $$status

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The compiled reader's tests under AddressSanitizer and UndefinedBehaviorSanitizer.
sanitize: $(DEV_STAMP)
	@bash .ci/sanitize

# The compiled reader fuzzed against the protobuf runtime for FUZZ_SECONDS (CI: briefly).
# atheris is installed here only: where it has no wheel it needs clang to build, and
# `make test` must not depend on that.
FUZZ_SECONDS ?= 600
FUZZ_STAMP   := $(VENV)/.installed-fuzz
fuzz: $(FUZZ_STAMP)
	$(BIN)/python -m tests.fuzz.reader -max_total_time=$(FUZZ_SECONDS)

$(FUZZ_STAMP): $(DEV_STAMP)
	$(BIN)/python -m pip install --quiet 'atheris>=2.3'
	touch $@

format: $(DEV_STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
		|| { echo "Q2C needs Python 3.11 or newer; set PYTHON=/path/to/python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstall only when the project's dependencies or its one C extension change; Python
# code is installed editable.
BUILD_INPUTS := pyproject.toml setup.py collectors/_wire.c

$(RUNTIME_STAMP): $(BUILD_INPUTS) | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(DEV_STAMP): $(BUILD_INPUTS) | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@ $(RUNTIME_STAMP)

clean:
	rm -rf $(VENV) build *.egg-info
