# relayq — make test installs what the tests need, then runs them all.

GO ?= go

.PHONY: test deps build dev vet fmt bench fuzz

## test: install the test programs (redis-server, anvil, chromium, postgresql) if missing, then run every test with the race detector
test: deps
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 20m ./...
	$(MAKE) fuzz

## fuzz: run each fuzz target for its number of executions (go test -fuzz
## takes one target per run); a failure leaves its input under the
## package's testdata/fuzz. Counts, not seconds: a duration -fuzztime races
## Go's fuzz coordinator at the deadline and fails with a bare "context
## deadline exceeded" on a loaded machine (go.dev/issue/75804, fixed in Go
## 1.27). Each count is about 5 s of fuzzing here. FUZZTIME=10s (or 1000x)
## overrides them all.
FUZZTIME ?=
FUZZ_TARGETS = ./api:FuzzDecodeJSON:1500x ./calldata:FuzzParseSignature:60000x ./calldata:FuzzParseABI:50000x \
	./calldata:FuzzDecode:50000x ./txmgr:FuzzDecodeRevert:7000x
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; rest=$${t#*:}; name=$${rest%%:*}; n=$${rest#*:}; \
		budget=$${FUZZTIME:-$$n}; \
		echo "fuzz $$name ($$pkg, $$budget)"; \
		$(GO) test -run '^$$' -fuzz "^$$name$$" -fuzztime $$budget -fuzzminimizetime 10x "$$pkg"; \
	done

## deps: install redis-server, chromium and postgresql (apt), anvil (npm) and local-kms (go install) into .tools/ when missing
deps:
	./scripts/install-test-deps.sh

## build: build the relayq binary into ./relayq
build:
	$(GO) build -o relayq ./cmd/relayq

## dev: run relayq on embedded defaults
dev:
	$(GO) run ./cmd/relayq dev

fmt:
	gofmt -l -w .

## bench: relayq bench (raw node limit, relayq end to end with 1 and 4 signers,
## a naive loop) and the Go micro-benchmarks; see docs/benchmarks.md
bench: deps
	$(GO) test -run '^$$' -bench . -benchmem ./calldata ./txmgr ./jobs ./nonce
	$(GO) run ./cmd/relayq bench -chart docs/bench.png
