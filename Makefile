# Joinery: every target installs what it needs first.
#
#   make run       embedded PostgreSQL + migrations + gateway on http://127.0.0.1:8000
#   make test      everything, from nothing, on a throwaway cluster
#   make migrate   DATABASE_URL=... brings that database to the current schema
#   make verify    DATABASE_URL=... checks the data's invariants, read-only (else the dev cluster)
#   make lint      ruff, then the SQL linter on DATABASE_URL (else on a throwaway cluster)
#   make test-citus  the HTTP and concurrency tests on a throwaway three-node Citus cluster
#   make test-supabase  migrations, HTTP and realtime tests on a throwaway Supabase-shaped database
#   make bench     the benchmark; make soak: the gateway at half load for SOAK_SECONDS (600)

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

.PHONY: run test test-citus test-supabase migrate verify lint deps venv stop-db check

# Development mode (the development secret and sign-in, loopback only) is set here
# for the targets that run the gateway on this machine, and never defaults on.
run test test-citus test-supabase check bench bench-citus soak: export JOINERY_ENV = development

$(STAMP): pyproject.toml
	@exec 9>.venv.lock; ! command -v flock >/dev/null || flock 9; \
	if [ ! -f $@ ] || [ pyproject.toml -nt $@ ]; then \
		{ test -x $(PY) || $(PYTHON) -m venv $(VENV); } && \
		$(PY) -m pip install --quiet --upgrade pip && \
		$(PY) -m pip install --quiet -e '.[test]' && \
		rm -f $(VENV)/.installed-* && touch $@; \
	fi

# The environment is built under a lock (above): two targets run at once on a
# fresh clone (two `make test`) build one environment, not two over each other;
# the second finds it done.
venv: $(STAMP)

deps:
	@scripts/install-deps

# Development: a persistent cluster (see scripts/devdb), migrated, and the gateway.
run: deps venv
	@scripts/run

migrate: venv
	@test -n "$$DATABASE_URL" || url=$$(scripts/devdb start); \
	DATABASE_URL=$${DATABASE_URL:-$$url} $(PY) -m gateway migrate

# The invariants of sql/functions/95_verify.sql, in one read-only snapshot
# (python -m gateway verify; VERIFY_ARGS=--json for machine output).
verify: venv
	@test -n "$$DATABASE_URL" || url=$$(scripts/devdb start); \
	DATABASE_URL=$${DATABASE_URL:-$$url} $(PY) -m gateway verify $(VERIFY_ARGS)

stop-db:
	@scripts/devdb stop

# The SQL linter (gateway/tools/lint.py) reads DATABASE_URL as it is; without one it
# runs on a throwaway cluster, migrated first.
lint: venv
	@$(VENV)/bin/ruff check gateway tests migrations
	@if [ -n "$$DATABASE_URL" ]; then $(PY) -m gateway.tools.lint; \
	else scripts/install-deps && scripts/devdb run bash -c \
		'$(PY) -m gateway migrate >/dev/null && $(PY) -m gateway.tools.lint'; fi

# With DATABASE_URL set, tests run against that database; otherwise on a
# throwaway cluster made for the run and deleted after it.
test: deps venv
	@if [ -n "$$DATABASE_URL" ]; then $(MAKE) --no-print-directory check; \
	else scripts/devdb run $(MAKE) --no-print-directory check; fi

# Citus (built from CITUS_SOURCE when not installed), a coordinator and two workers
# made for the run and removed after it; see scripts/test-citus.
test-citus: deps venv
	@scripts/test-citus

# A database shaped like a fresh Supabase project (../shared/supabase-emu), migrated
# as Supabase's non-superuser postgres, the gateway as its authenticator; see
# scripts/test-supabase.
test-supabase: deps venv
	@scripts/test-supabase

check:
	@$(VENV)/bin/ruff check gateway tests migrations
	@$(PY) -m gateway migrate
	@$(PY) -m gateway.tools.lint
	@$(PY) -m pytest -q

# Benchmark (not part of `make test`): its own throwaway cluster and gateway, data at
# two sizes, pgbench (direct) beside wrk (HTTP); see bench/README.md.
.PHONY: bench
# The bench's cluster gets a quarter of the machine's memory as shared_buffers
# (PostgreSQL's advice for a server), so the 1 M data set stays in it as the 10 k
# one does (BENCH_SHARED_BUFFERS overrides it).
bench: venv
	@scripts/install-deps --bench
	@DEVDB_SHARED_BUFFERS=$${BENCH_SHARED_BUFFERS:-$$(awk '/^MemTotal/ {printf "%dMB", $$2 / 4096}' /proc/meminfo)} \
		scripts/devdb run $(PY) -m bench $(BENCH_ARGS)
	@$(MAKE) --no-print-directory bench-citus || { echo 'bench: the Citus run failed (above)'; exit 1; }

# The same calls on a throwaway three-node Citus cluster on this machine
# (bench/citus.py); figures in bench/results/citus-latest.json.
.PHONY: bench-citus
bench-citus: venv
	@scripts/install-deps --bench
	@scripts/install-citus
	@CITUS_SHARD_COUNT=$${CITUS_SHARD_COUNT:-12} scripts/citus-cluster run \
		$(PY) -m bench --citus $(BENCH_CITUS_ARGS)

# Soak (not part of `make test`): the gateway at half its measured capacity for
# SOAK_SECONDS (default 600); memory per worker, p99 per minute, errors.
.PHONY: soak
soak: venv
	@scripts/install-deps --bench
	@scripts/devdb run $(PY) -m bench.soak $(SOAK_ARGS)
