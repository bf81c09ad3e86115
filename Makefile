# The two commands a newcomer needs: `make demo` and `make test`. Everything else supports them.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install lint test test-fast demo bench worker beat flower clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	@if command -v docker-compose >/dev/null; then \
		POSTGRES_PASSWORD=lint REDIS_PASSWORD=lint FLOWER_BASIC_AUTH=lint:lint \
			docker-compose -f docker-compose.yml config -q && echo "docker-compose.yml: valid"; \
	else echo "docker-compose not installed: compose file not validated"; fi

test: $(STAMP)
	$(BIN)/pytest

test-fast: $(STAMP)
	$(BIN)/pytest -m "not reliability"

demo: $(STAMP)
	$(BIN)/articles demo

bench: $(STAMP)
	$(BIN)/python -m bench

worker: $(STAMP)
	$(BIN)/celery -A worker worker -l info

beat: $(STAMP)
	mkdir -p var
	$(BIN)/celery -A worker beat -l info

flower: $(STAMP)
	$(BIN)/celery -A worker flower --port=5555

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache
