# relayq — make test installs what the tests need, then runs them all.

GO ?= go

.PHONY: test deps build dev vet fmt bench fuzz

## test: install the test programs (redis-server, anvil, chromium, postgresql) if missing, then run every test with the race detector
test: deps
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 20m ./...
	$(MAKE) fuzz

## fuzz: run each fuzz target for FUZZTIME (go test -fuzz takes one target
## per run); a failure leaves its input under the package's testdata/fuzz
FUZZTIME ?= 5s
FUZZ_TARGETS = ./api:FuzzDecodeJSON ./calldata:FuzzParseSignature ./calldata:FuzzParseABI \
	./calldata:FuzzDecode ./txmgr:FuzzDecodeRevert
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		echo "fuzz $${t#*:} ($${t%%:*}, $(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$${t#*:}$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 10x "$${t%%:*}"; \
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
