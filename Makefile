# nex: make run (a node with embedded NATS), make test (everything CI runs).
VERSION ?= 0.1.0-dev
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -X github.com/nexrun/nex/internal/version.Version=$(VERSION) -X github.com/nexrun/nex/internal/version.Commit=$(COMMIT)
GO      ?= go
DATA    ?= $(CURDIR)/.nexdata

export NEX_LDFLAGS := $(LDFLAGS)

PREFIX     ?= /usr/local
DESTDIR    ?=
SYSTEMDDIR ?= /etc/systemd/system
CONFDIR    ?= /etc/nex

.PHONY: build run test bench lint fmt clean install demo docs fuzz chaos

# Static binaries (no cgo): they run on any Linux, and each daemon starts without the C
# library mapped in, about 1.5 MiB less resident memory apiece. The CLI, which every
# command starts anew, is built without its symbol table and DWARF (-s -w: 20.0 MB ->
# 13.9 MB; a panic still prints its stack); the daemons keep theirs, for perf and
# debuggers. The sandbox helper, nex-sandbox, is C (static): see scripts/build-sandbox.sh.
build:
	CGO_ENABLED=0 $(GO) build -ldflags "$(LDFLAGS)" -o bin/ ./cmd/nexd ./cmd/nexlet-native
	./scripts/build-sandbox.sh bin
	CGO_ENABLED=0 $(GO) build -ldflags "$(LDFLAGS) -s -w" -o bin/ ./cmd/nex

## run: a working node on this machine: embedded NATS on 127.0.0.1:4222 with JetStream,
## the native nexlet, data in ./.nexdata. Ctrl+C stops it. ARGS go to `nex node up`
## (e.g. ARGS='--embedded.listen 127.0.0.1:4223' when 4222 is taken); DATA moves the data.
run: build
	@echo "open the console: ./bin/nex ui   (in another terminal, once the node is up)"
	./bin/nex node up --embedded --data-dir "$(DATA)" $(ARGS)

FUZZTIME ?= 5s
FUZZ_TARGETS := FuzzValidateToken:./pkg/api/v1 FuzzDecodeRequests:./pkg/api/v1 FuzzParse:./pkg/nexfile FuzzValidateNative:./pkg/schema FuzzDecode:./internal/sandbox

test: lint
	$(GO) test -race -count=1 -timeout 15m ./...
	@$(MAKE) --no-print-directory fuzz FUZZTIME=20000x

## fuzz: each fuzz target for FUZZTIME (make fuzz FUZZTIME=10m for a long run).
fuzz:
	@for t in $(FUZZ_TARGETS); do \
		echo "fuzz $${t%%:*} ($(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$${t%%:*}$$" -fuzztime $(FUZZTIME) "$${t##*:}" || exit 1; \
	done

## bench: Go micro-benchmarks (with the console's render time in a headless Chromium, when
## there is one), then the scenario runner against real nexd/nexlet-native processes
## (test/bench; `go run ./test/bench --json` for JSON). See docs/performance.md.
## chaos: the fault-injection harness (test/chaos): a 3-server, 3-node cluster attacked
## at random while clients work, then checked. SEED replays a schedule (0: a new one);
## the history and summary land in CHAOS_OUT.
SEED      ?= 0
DURATION  ?= 10m
CHAOS_OUT ?= $(CURDIR)/.chaos
STRICT    ?= 1
chaos:
	NEX_CHAOS_SEED=$(SEED) NEX_CHAOS_DURATION=$(DURATION) NEX_CHAOS_OUT=$(CHAOS_OUT) NEX_CHAOS_STRICT=$(STRICT) $(GO) test -count=1 -v -timeout 0 -run TestChaos ./test/chaos

bench: build
	$(GO) test -run '^$$' -bench . -benchtime 1s ./...
	$(GO) run ./test/bench

lint:
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	@if git rev-parse --git-dir >/dev/null 2>&1; then ./scripts/check-tracked.sh; fi

## install: binaries to $(DESTDIR)$(PREFIX)/bin, systemd units to $(DESTDIR)$(SYSTEMDDIR),
## a sample config to $(DESTDIR)$(CONFDIR)/config.json (kept if one is there).
install: build
	install -d "$(DESTDIR)$(PREFIX)/bin" "$(DESTDIR)$(SYSTEMDDIR)" "$(DESTDIR)$(CONFDIR)"
	install -m 0755 bin/nex bin/nexd bin/nexlet-native "$(DESTDIR)$(PREFIX)/bin/"
	if [ -e bin/nex-sandbox ]; then install -m 0755 bin/nex-sandbox "$(DESTDIR)$(PREFIX)/bin/"; \
	else rm -f "$(DESTDIR)$(PREFIX)/bin/nex-sandbox"; fi # never an old helper beside a new nexlet
	for u in deploy/systemd/*.service; do \
		sed 's#/usr/local/bin/#$(PREFIX)/bin/#g' "$$u" > "$(DESTDIR)$(SYSTEMDDIR)/$$(basename $$u)"; \
		chmod 0644 "$(DESTDIR)$(SYSTEMDDIR)/$$(basename $$u)"; \
	done
	[ -e "$(DESTDIR)$(CONFDIR)/config.json" ] || install -m 0640 deploy/config.json "$(DESTDIR)$(CONFDIR)/config.json"

## demo: a tour on an embedded server (node, service, job, function, logs, clone, lameduck).
demo: build
	./test/demo/demo.sh

## docs: regenerate the CLI and start-request references (a test checks they are current).
docs: build
	./bin/nex __docs cli > docs/cli-reference.md
	./bin/nex __docs schemas > docs/start-request-reference.md

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin .nexdata
