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

.PHONY: run build test vet fmt-check bench pg-start

run:
	$(GO) run ./cmd/attestload run $(ARGS)

build:
	$(GO) build -o $(BIN) ./cmd/attestload

test:
	@$(WITH_DB) set -x; $(GO) test -race $(PKGS)

vet:
	$(GO) vet $(PKGS)

fmt-check:
	@unformatted="$$(gofmt -l $$(git ls-files '*.go'))"; \
	if [[ -n "$$unformatted" ]]; then echo "gofmt -l reports unformatted files:"; echo "$$unformatted"; exit 1; fi

# Benchmarks only (no tests); the database ones need PostgreSQL like the tests do.
bench:
	@$(WITH_DB) set -x; $(GO) test -run '^$$' -bench . -benchmem $(PKGS)

# Prints the URL to export as ATTESTLOAD_TEST_DATABASE_URL.
pg-start:
	@scripts/pg-start.sh
