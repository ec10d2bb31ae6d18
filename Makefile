# nex: make run (a node with embedded NATS), make test (everything CI runs).
VERSION ?= 0.1.0-dev
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -X github.com/nexrun/nex/internal/version.Version=$(VERSION) -X github.com/nexrun/nex/internal/version.Commit=$(COMMIT)
GO      ?= go
DATA    ?= $(CURDIR)/.nexdata

export NEX_LDFLAGS := $(LDFLAGS)

.PHONY: build run test bench lint fmt clean

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/ ./cmd/...

## run: a working node on this machine: embedded NATS on 127.0.0.1:4222 with JetStream,
## the native nexlet, data in ./.nexdata. Ctrl+C stops it.
run: build
	./bin/nex node up --embedded --data-dir "$(DATA)"

test: lint
	$(GO) test -race -count=1 -timeout 15m ./...

## bench: Go micro-benchmarks, then the scenario runner against real nexd/nexlet-native
## processes (test/bench; `go run ./test/bench --json` for JSON). See docs/performance.md.
bench: build
	$(GO) test -run '^$$' -bench . -benchtime 1s ./...
	$(GO) run ./test/bench

lint:
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin .nexdata
