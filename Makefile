# The two commands: `make run` and `make test`. Both create the environment when needed.
PYTHON ?= python3.11
VENV := .venv
UV := $(VENV)/bin/uv
UV_VERSION := 0.13.8
STAMP := $(VENV)/.synced

export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: run test lint format bench install clean

# A venv with uv in it, then the locked dependencies (uv stays: it is in the dev group).
$(UV):
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "Python 3.11 is required ($(PYTHON) not found)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet "uv==$(UV_VERSION)"

$(STAMP): $(UV) pyproject.toml uv.lock
	$(UV) sync --locked --python $(VENV)/bin/python
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/bazaar dev

test: $(STAMP)
	$(VENV)/bin/pytest -n 2 --dist loadgroup

lint: $(STAMP)
	$(VENV)/bin/ruff check app pipelines tests migrations bench scripts
	$(VENV)/bin/ruff format --check app pipelines tests migrations bench scripts
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

format: $(STAMP)
	$(VENV)/bin/ruff check --fix app pipelines tests migrations bench scripts
	$(VENV)/bin/ruff format app pipelines tests migrations bench scripts

bench: $(STAMP)
	$(VENV)/bin/python bench/auth_me.py

# The data platform's benchmarks (bench/README.md): 30 minutes or more on the 2-core machine.
.PHONY: bench-data
bench-data: $(STAMP)
	$(VENV)/bin/python bench/pipeline.py --sizes 1M,10M
	$(VENV)/bin/python bench/analytics.py
	$(VENV)/bin/python bench/freshness.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
