# Tandem. Two commands set up everything on a fresh machine:
#   make run    serve Tandem on http://127.0.0.1:8080 (a private PostgreSQL is started for it)
#   make test   the whole test suite (on a private PostgreSQL of its own)
# With DATABASE_URL set, both use that database instead.

GO     ?= go
ADDR   ?= 127.0.0.1:8080
# pgrun starts a private PostgreSQL cluster from the installed binaries, sets DATABASE_URL for
# the command, and stops the cluster when the command ends (or on Ctrl-C).
PGRUN  := bin/pgrun

.PHONY: run test bench build pgrun check fmt-check vet clean

build:
	$(GO) build -o bin/tandem ./cmd/tandem

pgrun:
	@$(GO) build -o bin/pgrun ./internal/tools/pgrun

# The server's data lives in .tandem/pgdata between runs (git-ignored).
run: build pgrun
	$(PGRUN) --dir .tandem/pgdata --persistent --fsync --env-file .tandem/env -- bin/tandem serve --addr $(ADDR)

test: fmt-check vet pgrun
	$(PGRUN) -- $(GO) test -race -count=1 -timeout 20m ./...

# Benchmarks need durable commits to mean anything: fsync and synchronous_commit stay on.
bench: pgrun
	$(PGRUN) --fsync -- bash scripts/bench.sh

fmt-check:
	@out=$$(find . -path ./.tandem -prune -o -name '*.go' -print | xargs gofmt -l); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

clean:
	rm -rf bin .tandem
