# Two commands matter: `make run` (the bot) and `make test` (the suite). Each installs what it needs.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint bench check admin-code console-link chat local-llm local-llm-serve clean lock

$(STAMP): requirements.txt requirements-dev.txt requirements-nodeps.txt
	@bash deploy/make-venv.sh $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements-dev.txt
	$(VENV)/bin/pip install -q --disable-pip-version-check --no-deps -r requirements-nodeps.txt
	@touch $(STAMP)

## lock: after editing requirements.in or requirements-dev.in, pin the whole tree (with hashes) again
LOCK := $(VENV)/bin/pip-compile -q --generate-hashes --allow-unsafe --strip-extras \
	--no-emit-index-url --no-emit-find-links --no-emit-trusted-host
lock: $(STAMP)
	$(LOCK) -o requirements.txt requirements.in
	$(LOCK) -o requirements-dev.txt requirements-dev.in

## run: start the bot in the foreground (web, job workers, embedded Redis when REDIS_URL is unset)
run: $(STAMP)
	$(PY) -m bot.ops.run

## check: validate every setting and try Redis, WeChat's API and the LLM for real
check: $(STAMP)
	$(PY) -m bot.ops.check

## chat: talk to the running bot as a WeChat follower would (signed pushes; /user NAME, /quit)
chat: $(STAMP)
	$(PY) -m tools.chat

## local-llm: prepare the local FastChat venv + the first-run model (Qwen2.5-Coder-0.5B) under DATA_DIR (no start)
local-llm: $(STAMP)
	$(PY) -m bot.ops.local_llm prepare

## local-llm-serve: run the local FastChat cluster in the foreground (controller :21001, worker :21002)
local-llm-serve: $(STAMP)
	$(PY) -m bot.ops.local_llm serve

## admin-code: print a one-time code; send `/auth CODE` in the chat within 5 minutes to become admin
admin-code: $(STAMP)
	$(PY) -m bot.ops.admin_code

## console-link: print a one-time login link to the operator console (needs PUBLIC_BASE_URL; OPENID=… or the
## first of WECHAT_ADMIN_OPENIDS); open it within 5 minutes
console-link: $(STAMP)
	$(PY) -m bot.ops.console_link $(OPENID)

## test: run the whole test suite against a real redis-server on loopback, in two pytest-xdist workers
## (a file stays on one worker; a module marked `alone` runs while the other waits: testing/turns.py)
test: $(STAMP)
	@bash deploy/ensure-test-tools.sh
	$(PY) -m pytest -q -n 2 --dist loadfile

## lint: ruff (lint + format check) and mypy
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy app.py bot handlers testing tests bench tools

## bench: throughput vs bare Flask (wrk), pick-up, reply delays, 1,000 in flight; results in bench/results/ and README.md
bench: $(STAMP)
	@bash bench/ensure-wrk.sh
	$(PY) -m bench.run

## kb-add: add or replace files in the knowledge base: make kb-add FILES="report.pdf notes.md page.html"
kb-add: $(STAMP)
	@test -n "$(FILES)" || { echo 'usage: make kb-add FILES="report.pdf notes.md page.html"' >&2; exit 2; }
	$(PY) -m bot.ops.kb add $(FILES)

## kb-list: list the knowledge base's documents (id, title, source, chunks, added)
kb-list: $(STAMP)
	$(PY) -m bot.ops.kb list

## kb-remove: remove one document: make kb-remove ID=<id from kb-list>
kb-remove: $(STAMP)
	@test -n "$(ID)" || { echo 'usage: make kb-remove ID=<id from make kb-list>' >&2; exit 2; }
	$(PY) -m bot.ops.kb remove "$(ID)"

## kb-sync: sync the account's published articles into the knowledge base now
kb-sync: $(STAMP)
	$(PY) -m bot.ops.kb sync

## kb-search: the passages a question would be given, with their scores: make kb-search Q="问题"
kb-search: $(STAMP)
	@test -n "$(Q)" || { echo 'usage: make kb-search Q="a question"' >&2; exit 2; }
	$(PY) -m bot.ops.kb search "$(Q)"

## bench-retrieval: the knowledge base's retrieval benchmark (recall@3, MRR, latency at 10,000 passages)
bench-retrieval: $(STAMP)
	$(PY) -m bench.retrieval

## bench-tools: the tool loop's overhead per round (fake model); accuracy on 36 questions with and without tools when BENCH_LLM_BASE_URL and BENCH_LLM_MODEL name a real model
bench-tools: $(STAMP)
	$(PY) -m bench.tools_bench

.PHONY: kb-add kb-list kb-remove kb-sync kb-search bench-retrieval bench-tools

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
