# Two commands matter: `make run` (the bot) and `make test` (the suite). Each installs what it needs.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint bench check admin-code chat local-llm local-llm-serve clean

$(STAMP): requirements.txt requirements-dev.txt requirements-nodeps.txt
	@bash deploy/make-venv.sh $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements-dev.txt
	$(VENV)/bin/pip install -q --disable-pip-version-check --no-deps -r requirements-nodeps.txt
	@touch $(STAMP)

## run: start the bot in the foreground (web, job workers, embedded Redis when REDIS_URL is unset)
run: $(STAMP)
	$(PY) -m bot.ops.run

## check: validate every setting and try Redis, WeChat's API and the LLM for real
check: $(STAMP)
	$(PY) -m bot.ops.check

## chat: talk to the running bot as a WeChat follower would (signed pushes; /user NAME, /quit)
chat: $(STAMP)
	$(PY) -m tools.chat

## local-llm: prepare the local FastChat venv + SmolLM2 model under DATA_DIR (no start)
local-llm: $(STAMP)
	$(PY) -m bot.ops.local_llm prepare

## local-llm-serve: run the local FastChat cluster in the foreground (controller :21001, worker :21002)
local-llm-serve: $(STAMP)
	$(PY) -m bot.ops.local_llm serve

## admin-code: print a one-time code; send `/auth CODE` in the chat within 5 minutes to become admin
admin-code: $(STAMP)
	$(PY) -m bot.ops.admin_code

## test: run the whole test suite against a real redis-server on loopback
test: $(STAMP)
	@bash deploy/ensure-test-tools.sh
	$(PY) -m pytest -q

## lint: ruff (lint + format check) and mypy
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy app.py bot handlers testing tests bench tools

## bench: webhook throughput and reply delay benchmarks; results go to bench/results/
bench: $(STAMP)
	$(PY) -m bench.run

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
