# attestload: the two set-up commands are `make run` and `make test`.
#
# make test starts the local PostgreSQL cluster itself (scripts/pg-start.sh) unless ATTESTLOAD_TEST_DATABASE_URL
# is already set, then runs every package's tests with the race detector. make run needs no database.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
GO ?= go
PKGS ?= ./...
BIN ?= bin/attestload
# Extra arguments for `make run`, e.g. make run ARGS="--config config.example.yaml".
ARGS ?=

# Sets ATTESTLOAD_TEST_DATABASE_URL for the recipe line it prefixes.
WITH_DB = if [[ -z "$${ATTESTLOAD_TEST_DATABASE_URL:-}" ]]; then \
		ATTESTLOAD_TEST_DATABASE_URL="$$(scripts/pg-start.sh)"; fi; \
	export ATTESTLOAD_TEST_DATABASE_URL;

.PHONY: run build test vet fmt-check bench bench-report bench-legacy pg-start faults soak verifier-test mutate

# make run builds the binary and runs it in place of the recipe's shell: Ctrl+C reaches the run, which drains and
# exits 0, so make prints no error (`go run` exits 1 on SIGINT, which make reported as "Error 1").
run: build
	@exec $(BIN) run $(ARGS)

build:
	@echo "building attestload (the first build may take minutes)" >&2
	@$(GO) build -o $(BIN) ./cmd/attestload

# go test's output goes through internal/testsummary, which prints the same ok and FAIL lines and adds a
# "skip <package> all N tests skipped: <why>" line where go test says "ok" although every test skipped; the exit
# status is go test's (pipefail).
test:
	@$(WITH_DB) set -x; $(GO) test -race -json $(PKGS) | $(GO) run ./internal/testsummary

vet:
	$(GO) vet $(PKGS)

fmt-check:
	@unformatted="$$(gofmt -l $$(git ls-files '*.go'))"; \
	if [[ -n "$$unformatted" ]]; then echo "gofmt -l reports unformatted files:"; echo "$$unformatted"; exit 1; fi

# Benchmarks only (no tests); the database ones need PostgreSQL like the tests do.
bench:
	@$(WITH_DB) set -x; $(GO) test -run '^$$' -bench . -benchmem $(PKGS)

# The report's throughput on 10,000,000 records, plain and zstd, on 2 cores (MB/s, CPU seconds, peak RSS):
# scripts/bench-report.sh (N=, RUNS=, BENCH_DIR=). --legacy against the old tool's report_results on its
# 20,000-task file: make bench-legacy OLD_TOOL=/path/to/keylime-perf-tests (scripts/bench-legacy.sh). Not in CI.
bench-report:
	scripts/bench-report.sh

bench-legacy:
	scripts/bench-legacy.sh

# Prints the URL to export as ATTESTLOAD_TEST_DATABASE_URL.
pg-start:
	@scripts/pg-start.sh

# The fault suite (test/faults): the binary against a misbehaving simulated verifier, a restarting PostgreSQL
# (ATTESTLOAD_FAULTS_PG_RESTART=1 restarts the local cluster: other database tests running meanwhile see it), full
# and read-only results directories (tmpfs mounts: run as root), signals and bad input. A few minutes.
faults:
	@$(WITH_DB) set -x; ATTESTLOAD_FAULTS=1 ATTESTLOAD_FAULTS_PG_RESTART=1 $(GO) test -race -count=1 -timeout 20m ./test/faults/...

# The stock-verifier suite (test/stockverifier): attestload against the unmodified Keylime verifier, started by
# scripts/keylime-verifier.sh from ../shared/keylime or $$ATTESTLOAD_KEYLIME_SRC (a Keylime checkout), and the
# conformance table against both it and the simulator. A few minutes; built without -race to leave the CPU to
# the verifier.
verifier-test:
	@$(WITH_DB) set -x; ATTESTLOAD_KEYLIME_SUITE=1 $(GO) test -count=1 -v -timeout 25m ./test/stockverifier/...

# The soak (test/soak): make soak DURATION=1h AGENTS=500 [INTERVAL=10s]. Fails when resident memory grows by more
# than MAX_GROWTH MiB after warm-up; the figures are logged and, with SOAK_OUT=file.json, written as JSON.
DURATION ?= 10m
AGENTS ?= 500
INTERVAL ?= 10s
MAX_GROWTH ?= 48
SOAK_OUT ?=
soak:
	@$(WITH_DB) set -x; ATTESTLOAD_SOAK_DURATION=$(DURATION) ATTESTLOAD_SOAK_AGENTS=$(AGENTS) \
		ATTESTLOAD_SOAK_INTERVAL=$(INTERVAL) ATTESTLOAD_SOAK_MAX_GROWTH=$(MAX_GROWTH) ATTESTLOAD_SOAK_OUT=$(SOAK_OUT) \
		$(GO) test -count=1 -v -run TestSoak -timeout 0 ./test/soak/

# Mutation testing (gremlins, a tool dependency in go.mod) over the client, the software TPM, enrollment and cleanup,
# the engine and its pacer, the old-format report, the verdict watcher and the simulator's verification. Slow (tens of
# minutes), one mutant at a time at nice 15; not in CI. MUTATE_ONLY=word limits it to matching packages. The scores
# and reviewed survivors are in docs/testing.md; see scripts/mutate.sh.
MUTATE_ONLY ?=
mutate:
	@$(WITH_DB) MUTATE_ONLY=$(MUTATE_ONLY) scripts/mutate.sh
