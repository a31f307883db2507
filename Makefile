# loom's build. `make demo` runs the main job on a local cluster; `make test`
# runs every test.

GO        ?= go
BIN       := bin
STATICCHECK_VERSION := v0.8.2
PROTOC_GEN_GO_VERSION := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.5.1
GOBIN_DIR := $(shell $(GO) env GOPATH)/bin

.PHONY: all build install test test-unit test-integration lint proto demo bench soak fuzz fuzz-short clean tools seaweedfs

all: build

# bin/ holds loom alone, so it can go on PATH; the example jobs go to
# bin/examples/, where they shadow no system tool (bin/examples/grep).
build:
	@mkdir -p $(BIN)/examples
	$(GO) build -o $(BIN)/loom .
	@for d in $$(find . -path ./integration -prune -o -path '*/examples/*/main.go' -print 2>/dev/null | xargs -r -n1 dirname); do \
		echo "$(GO) build -o $(BIN)/examples/$$(basename $$d) $$d"; $(GO) build -o $(BIN)/examples/$$(basename $$d) $$d || exit 1; done
	@rm -f $(addprefix $(BIN)/,$(notdir $(wildcard flinkrt/examples/*)))

# Unit tests, then the end-to-end tests over real processes, then a short
# run of each fuzz target. Checkpoints on an object store are tested
# against a real S3 server (SeaweedFS), built once and cached.
test: build
	LOOM_SEAWEEDFS=$$(scripts/seaweedfs.sh) $(GO) test -count=1 -timeout 8m ./...
	@$(MAKE) -s fuzz-short

# Builds (once) and prints the SeaweedFS binary the tests run.
seaweedfs:
	@scripts/seaweedfs.sh

# The fuzz targets: decoders of what the network sends.
FUZZ_TARGETS := ./rm:FuzzFSMApply ./proto/yarnpb:FuzzIDs ./token:FuzzVerify ./flinkrt/network:FuzzDecodeFrame ./flinkrt/jobmanager:FuzzRESTBodies ./flinkrt/stream/source:FuzzDecodePosition ./rm/scheduler:FuzzParseQueueFile
FUZZTIME ?= 5m

# A count, not a duration: Go 1.26's fuzzing coordinator can fail a
# target with "context deadline exceeded" when a duration ends while a
# worker is mid-run (go.dev/issue/75804, fixed in Go 1.27).
fuzz-short:
	@$(MAKE) -s fuzz FUZZTIME=4000x

fuzz:
	@for t in $(FUZZ_TARGETS); do pkg=$${t%%:*}; name=$${t##*:}; \
		echo "$(GO) test -run '^$$' -fuzz '^$$name$$' -fuzztime $(FUZZTIME) $$pkg"; \
		$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; done

test-unit:
	$(GO) test -count=1 -short ./...

test-integration: build
	LOOM_SEAWEEDFS=$$(scripts/seaweedfs.sh) $(GO) test -count=1 -timeout 8m ./integration/...

lint: tools
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GOBIN_DIR)/staticcheck ./...

tools:
	@$(GOBIN_DIR)/staticcheck -version 2>/dev/null | grep -q "($(STATICCHECK_VERSION:v%=%))" || $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

# Regenerates proto/*/*.pb.go with pinned generators; needs protoc
# (Debian: apt-get install protobuf-compiler).
proto:
	$(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	$(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
	PATH="$(GOBIN_DIR):$$PATH" protoc --go_out=. --go_opt=paths=source_relative \
		--go-grpc_out=. --go-grpc_opt=paths=source_relative proto/yarnpb/*.proto proto/flinkpb/*.proto

# Starts a local cluster in a temporary directory, runs topspeedwindow
# and wordcount per-job on it, prints their results, stops everything.
demo: build
	@scripts/demo.sh

bench: build
	scripts/bench-cluster.sh
	scripts/bench-flink.sh
	scripts/bench-flink-network.sh
	scripts/bench-perjob.sh
	scripts/bench-session.sh
	scripts/bench-recovery.sh
	scripts/bench-s3.sh
	scripts/bench-nexmark.sh
	scripts/bench-security.sh
	$(GO) test -run '^$$' -bench . -benchtime 1x ./rm/...

# A long steady load through one `cluster up`: the RM's memory, state and
# scheduling latency, sampled and plotted (docs/BENCHMARKS.md).
SOAK_DURATION ?= 2h
SOAK_CONTAINERS ?= 1000000
soak: build
	$(GO) run ./scripts/soak -duration $(SOAK_DURATION) -containers $(SOAK_CONTAINERS) -png docs/soak.png -csv $(BIN)/soak.csv

# Puts loom on PATH: $(PREFIX)/bin/loom (make install PREFIX=$$HOME/.local).
PREFIX ?= /usr/local
install: build
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(BIN)/loom $(DESTDIR)$(PREFIX)/bin/loom

clean:
	rm -rf $(BIN)
