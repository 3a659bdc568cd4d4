# Tandem. Two commands set up everything on a fresh machine:
#   make run    serve Tandem on http://127.0.0.1:8080 (a private PostgreSQL is started for it)
#   make test   the whole test suite (on a private PostgreSQL of its own)
# With DATABASE_URL set, both use that database instead.

GO     ?= go
ADDR   ?= 127.0.0.1:8080
# pgrun starts a private PostgreSQL cluster from the installed binaries, sets DATABASE_URL (the
# owner, who migrates) and DATABASE_APP_URL (tandem_app, the server's role) for the command, and
# stops the cluster when the command ends (or on Ctrl-C).
PGRUN  := bin/pgrun
# stripemock starts Stripe's stripe-mock (go run github.com/stripe/stripe-mock@VERSION) on a
# free port for the command and sets STRIPE_MOCK_URL; the Stripe tests run against it.
STRIPE_MOCK_VERSION := v0.203.0
STRIPEMOCK := bin/stripemock --version $(STRIPE_MOCK_VERSION) --

.PHONY: run test bench build pgrun stripemock testdeps check fmt-check vet clean

build:
	$(GO) build -o bin/tandem ./cmd/tandem

pgrun:
	@$(GO) build -o bin/pgrun ./internal/tools/pgrun

stripemock:
	@$(GO) build -o bin/stripemock ./internal/tools/stripemock

# The server's data lives in .tandem/pgdata between runs (git-ignored). On an empty database
# it offers to load the demo program (tandem demo): at a terminal it asks; DEMO=1 loads it
# without asking (no terminal needed), DEMO=0 never offers it. While the demo loads, the
# server's log goes to .tandem/server.log; its summary and tokens are also written to
# .tandem/demo-tokens.txt.
DEMO ?=
DEMO_MODE = $(if $(filter 1 yes,$(DEMO)),yes,$(if $(filter 0 no,$(DEMO)),no,ask))
run: build pgrun
	@mkdir -p .tandem
	$(PGRUN) --dir .tandem/pgdata --persistent --fsync --env-file .tandem/env -- bin/tandem serve --addr $(ADDR) \
		--offer-demo=$(DEMO_MODE) --demo-log .tandem/server.log --demo-tokens .tandem/demo-tokens.txt

# Chromium (browser tests) and hledger (the journal export's check), installed when missing.
testdeps:
	@bash scripts/testdeps.sh

# TANDEM_REQUIRE_* make the Stripe, browser and hledger tests fail, not skip, without their tool.
test: fmt-check vet pgrun stripemock testdeps
	TANDEM_REQUIRE_STRIPE_MOCK=1 TANDEM_REQUIRE_BROWSER=1 TANDEM_REQUIRE_HLEDGER=1 \
		$(PGRUN) -- $(STRIPEMOCK) $(GO) test -race -count=1 -timeout 20m ./...

# Benchmarks need durable commits to mean anything: fsync and synchronous_commit stay on.
bench: pgrun stripemock
	$(PGRUN) --fsync -- $(STRIPEMOCK) bash scripts/bench.sh

fmt-check:
	@out=$$(find . -path ./.tandem -prune -o -name '*.go' -print | xargs gofmt -l); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

clean:
	rm -rf bin .tandem
