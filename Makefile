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
		POSTGRES_PASSWORD=lint APP_DB_PASSWORD=lint REDIS_PASSWORD=lint FLOWER_BASIC_AUTH=lint:lint \
			docker-compose -f docker-compose.yml config -q && echo "docker-compose.yml: valid"; \
		POSTGRES_PASSWORD=lint APP_DB_PASSWORD=lint REDIS_PASSWORD=lint FLOWER_BASIC_AUTH=lint:lint RABBITMQ_PASSWORD=lint \
			docker-compose -f docker-compose.yml -f docker-compose.rabbitmq.yml config -q \
			&& echo "docker-compose.rabbitmq.yml: valid"; \
	else echo "docker-compose not installed: compose file not validated"; fi

# The whole suite on Redis, then the integration, acceptance and reliability layers again on
# RabbitMQ (integration and acceptance in a vhost of the run's own on the shared node; reliability
# on a private node it may stop). Tests about one broker's own machinery run in its pass only.
test: $(STAMP)
	$(BIN)/pytest
	TEST_TRANSPORT=amqp $(BIN)/pytest -m "integration or acceptance or reliability"

test-fast: $(STAMP)
	$(BIN)/pytest -m "not reliability and not compose"

demo: $(STAMP)
	$(BIN)/articles demo

# Every benchmark; `make bench BENCH=outbox` (or brokers, async_task, sent_events) runs one alone.
# `make bench BENCH=soak` (about an hour) is the memory soak, not part of the default run.
bench: $(STAMP)
ifdef BENCH
	$(BIN)/python -m bench.$(BENCH)
else
	$(BIN)/python -m bench
	$(BIN)/python -m bench.brokers
	$(BIN)/python -m bench.outbox
	$(BIN)/python -m bench.async_task
endif

# The default deployment: one worker for everything but pipeline runs, and one of its own for
# them, so a long run never holds up an ingest (README, "Queues by kind of work").
MAIN_QUEUES := celery,articles.ingest,articles.process,articles.maintenance
PIPELINE_QUEUES := articles.pipeline

worker: $(STAMP)
	@trap 'kill 0' INT TERM EXIT; \
	$(BIN)/celery -A worker worker -l info -n main@%h -Q $(MAIN_QUEUES) & \
	$(BIN)/celery -A worker worker -l info -n pipeline@%h -Q $(PIPELINE_QUEUES) -c 1 & \
	wait

beat: $(STAMP)
	mkdir -p var
	$(BIN)/celery -A worker beat -l info

flower: $(STAMP)
	$(BIN)/celery -A worker flower --port=5555

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache
