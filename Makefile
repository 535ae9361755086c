# Airlock: `make run` starts it on the embedded defaults, `make test` is what CI runs.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

GO       ?= go
BIN      := bin/airlock
VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)
# Extra arguments for `airlock serve`, e.g. make run ARGS="--config airlock.yaml".
ARGS     ?=
# How much `make test` fuzzes the router: a count, not a duration. With a
# duration Go's fuzz coordinator fails with "context deadline exceeded"
# when the deadline finds a worker busy minimizing a new input (seen on
# loaded 2-core machines); a count ends when the work is done.
FUZZTIME ?= 150000x
# Iterations per benchmark in `make bench` (a fixed count: the e2e scan
# benchmark pushes and scans a new image per iteration).
BENCHTIME ?= 3x

.DEFAULT_GOAL := build
.PHONY: build run test test-unit test-e2e test-ha fuzz fuzz-long bench fmt fmt-check vet clean help

## build: bin/airlock, a static binary stamped with the git version
build:
	CGO_ENABLED=0 $(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/airlock

## run: build and run `airlock serve` on the embedded defaults (data in ./data,
##      Docker Hub upstream); the admin token comes from $AIRLOCK_ADMIN_TOKEN or
##      is generated once into ./data/admin.token
run: build
	@mkdir -p data; \
	if [ -n "$${AIRLOCK_ADMIN_TOKEN:-}" ]; then \
	  tokenhint='# the admin token is the one in your $$AIRLOCK_ADMIN_TOKEN'; \
	else \
	  if [ ! -s data/admin.token ]; then \
	    (umask 077; od -An -tx1 -N32 /dev/urandom | tr -d ' \n' > data/admin.token); \
	    echo "airlock: generated an admin token in data/admin.token"; \
	  fi; \
	  chmod 600 data/admin.token; \
	  export AIRLOCK_ADMIN_TOKEN="$$(cat data/admin.token)"; \
	  tokenhint='export AIRLOCK_ADMIN_TOKEN=$$(cat data/admin.token)'; \
	fi; \
	echo "airlock: registry API on localhost:5000, admin API on 127.0.0.1:5001, data in ./data"; \
	echo "airlock: in another shell, from this directory:"; \
	echo "    $$tokenhint"; \
	echo "    crane pull --insecure localhost:5000/library/alpine:3.20 alpine.tar   # DENIED: in quarantine"; \
	echo "    ./$(BIN) images list"; \
	echo "    ./$(BIN) approve docker.io/library/alpine:3.20 --reason 'reviewed'"; \
	echo "    crane pull --insecure localhost:5000/library/alpine:3.20 alpine.tar   # served"; \
	echo "    ./$(BIN) revoke docker.io/library/alpine:3.20 --reason 'withdrawn'"; \
	echo "airlock: the web console is at http://127.0.0.1:5001/ui/ (sign in with the admin token)"; \
	exec ./$(BIN) serve $(ARGS)

## test: vet, gofmt check, race-enabled unit tests, end-to-end tests (the
##       multi-replica ones among them), the same on PostgreSQL + S3, a short fuzz
test: vet fmt-check test-unit test-e2e test-ha fuzz

## test-unit: every package except ./e2e, with the race detector
test-unit:
	$(GO) test -race $$($(GO) list ./... | grep -v -e '/e2e$$' -e '/e2e/')

# Where test-e2e keeps test artifacts (t.ArtifactDir): the console's
# browser screenshots, for review.
ARTIFACTS ?= $(CURDIR)/test-artifacts

## test-e2e: the end-to-end tests (they build and run the real binary: no -race,
##           and -count=1 because the test cache cannot see what a subprocess reads)
test-e2e:
	@if compgen -G 'e2e/*_test.go' >/dev/null; then \
	  mkdir -p $(ARTIFACTS); \
	  echo "$(GO) test -count=1 -artifacts -outputdir $(ARTIFACTS) ./e2e/"; $(GO) test -count=1 -artifacts -outputdir $(ARTIFACTS) ./e2e/; \
	else \
	  echo "e2e: no test files yet"; \
	fi

# The e2e tests that run again with every airlock on PostgreSQL + S3: the
# gate, its hostile-upstream tests, the admin API, crash and kill recovery,
# and the real clients, the console's sign-in (sessions in the state store)
# and its live updates (across two replicas there: PostgreSQL notifications).
# (The multi-replica tests run in test-e2e.)
HA_SUITE := ^(TestPullThroughGate|TestTagMoved.*|TestUpstreamDown.*|TestHostile.*|TestAdminAPI|TestImageRecordTags|TestChurn.*|TestRevokeByTag.*|TestCrashDuringFetchResumes|TestFaultKillDuringScanAndSign|TestConcurrentColdPulls|TestPropertyGateNeverLeaks|TestSignatures|TestConformance.*|TestAuditPruning.*|TestClient.*|TestNotation|TestHelm.*|TestPullRecords.*|TestEvents.*|TestWatch.*|TestRetention.*|TestFourEyes.*|TestConsoleApproveLive|TestConsoleSignIn)$$

## test-ha: the state store's tests on PostgreSQL (the same tests as on
##          bbolt), and the gate's e2e suite with every airlock on a
##          PostgreSQL state and an S3 (MinIO) content store
test-ha:
	AIRLOCK_TEST_STATE=postgres $(GO) test -race -count=1 ./storage/state/ ./events/ ./retention/
	AIRLOCK_E2E_BACKEND=ha $(GO) test -count=1 -run '$(HA_SUITE)' ./e2e/

## fuzz: fuzz the router's name/reference/ns parser for $(FUZZTIME) inputs
fuzz:
	$(GO) test ./proxy/route -run '^$$' -fuzz '^FuzzRoute$$' -fuzztime $(FUZZTIME)

## fuzz-long: the router fuzzer for 10 minutes, then the hostile-upstream
##            property test with many more steps and a new random seed each
##            run (the seed is printed; replay with AIRLOCK_PROP_SEED=...)
fuzz-long:
	$(GO) test ./proxy/route -run '^$$' -fuzz '^FuzzRoute$$' -fuzztime 10m
	AIRLOCK_PROP_SEED=$${AIRLOCK_PROP_SEED:-$$(date +%s%N)} AIRLOCK_PROP_STEPS=$${AIRLOCK_PROP_STEPS:-400} AIRLOCK_PROP_BUDGET=$${AIRLOCK_PROP_BUDGET:-30m} \
	  $(GO) test -count=1 -timeout 60m -run '^TestPropertyHostileUpstream$$' -v ./e2e/

## bench: run every benchmark for a fixed BENCHTIME (default 3x), among them
##        airlock's scan pipeline vs the grype CLI (see docs/BENCHMARKS.md)
bench:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) -timeout 30m ./...

## fmt: gofmt every Go file in place
fmt:
	gofmt -w .

## fmt-check: fail if a Go file is not gofmt-formatted
fmt-check:
	@out="$$(gofmt -l .)"; \
	if [ -n "$$out" ]; then echo "these files need gofmt (run make fmt):"; echo "$$out"; exit 1; fi

## vet: go vet every package
vet:
	$(GO) vet ./...

## clean: remove build output (./data, which holds the state and the token, is kept)
clean:
	rm -rf bin/

## help: list the targets
help:
	@sed -n 's/^## //p' $(MAKEFILE_LIST)

## conformance: the OCI distribution-spec conformance suite (pull workflow,
##              read-only data) against a real airlock; prints a pass/fail table
.PHONY: conformance
conformance:
	$(GO) test -count=1 -run '^TestConformanceOCIDistributionPull$$' -v ./e2e/
