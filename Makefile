# Propolis build, run and test targets. `make run` and `make test` are the
# two commands a new machine needs (see README.md).

GO        ?= go
BIN       := bin
VERSION   ?= $(shell git describe --tags --match 'v[0-9]*' --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X main.version=$(VERSION)
GOTEST    ?= $(GO) test
# The timeout guards against a hung package; cmd/propolis, with its
# three-process cluster tests, takes about 8 minutes on 2 cores.
TESTFLAGS ?= -count=1 -timeout 15m

.PHONY: all build run test check format lint bench bench-smoke bench-cluster gobench testdata clean kit-examples shipped screenshots soak-cluster

all: build

# Example extensions built with the Go SDK; allow-all is installed into
# extensions/ so that `make run` accepts clients out of the box.
EXAMPLES  := allow-all topic-acl banlist publish-guard topic-lint session-tracker payload-enricher topic-rewriter
WASMBUILD := GOOS=wasip1 GOARCH=wasm $(GO) build -buildmode=c-shared -trimpath

# Security extensions that ship (shipped/), built into bin/shipped/<id>/
# with their manifests and the other files of their folders (not Go
# sources or READMEs); none is installed into extensions/.
SHIPPED   := file-auth jwt-auth http-auth

## build: bin/propolis, every example extension (bin/examples/<id>/), the
## shipped extensions (bin/shipped/<id>/), and
## extensions/allow-all/ with its compiled code (extensions/.compiled/), so
## that the first start does not wait for the Wasm compiler
build: $(BIN)/propolis examples shipped
	mkdir -p extensions/allow-all
	cp $(BIN)/examples/allow-all/* extensions/allow-all/
	./$(BIN)/propolis extensions compile --extensions extensions

.PHONY: $(BIN)/propolis examples shipped
$(BIN)/propolis:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/propolis ./cmd/propolis

examples:
	@for ex in $(EXAMPLES); do \
	  mkdir -p $(BIN)/examples/$$ex && \
	  (cd examples && $(WASMBUILD) -o ../$(BIN)/examples/$$ex/$$ex.wasm ./$$ex) && \
	  cp examples/$$ex/propolis-extension.yaml $(BIN)/examples/$$ex/ || exit 1; \
	done

## shipped: the security extensions of shipped/ (bin/shipped/<id>/)
shipped:
	@for ex in $(SHIPPED); do \
	  mkdir -p $(BIN)/shipped/$$ex && \
	  (cd shipped && $(WASMBUILD) -o ../$(BIN)/shipped/$$ex/$$ex.wasm ./$$ex) && \
	  find shipped/$$ex -maxdepth 1 -type f ! -name '*.go' -exec cp {} $(BIN)/shipped/$$ex/ \; && \
	  { [ ! -f $(BIN)/shipped/$$ex/passwd ] || chmod 600 $(BIN)/shipped/$$ex/passwd; } || exit 1; \
	done

## run: build, then start the broker with the embedded default configuration
run: build
	./$(BIN)/propolis serve

## test: every test of every module, after the checks, the conformance
## kit over every example, and a smoke run of the benchmark harness (it
## checks the harness runs, not the figures)
test: check
	$(GOTEST) $(TESTFLAGS) ./...
	cd sdk/go && $(GOTEST) $(TESTFLAGS) ./...
	cd examples && $(GOTEST) $(TESTFLAGS) ./...
	cd shipped && $(GOTEST) $(TESTFLAGS) ./...
	$(MAKE) kit-examples
	$(MAKE) test-sdk-rust-or-skip
	$(MAKE) test-sdk-c test-sdk-as
	$(MAKE) bench-smoke

## soak-cluster: the cluster tests of cmd/propolis (three real broker
## processes each) at soak length, built with the tag clustersoak: five
## rolling replacements of every node between the protocol 1 and protocol 2
## builds, every other node SIGKILLed instead of stopped, and each node
## stopped by SIGSTOP in turn, twice, with hundreds of QoS 1 messages at
## each step (a few minutes, at most 30). `make test` runs the same tests at
## their short length: one upgrade, one node stopped, 20 messages a step
soak-cluster:
	$(GOTEST) -tags clustersoak -count=1 -timeout 30m -v -run '^TestCluster' ./cmd/propolis

## kit-examples: build, then `propolis extensions check` (the conformance
## kit) on every example and shipped extension; compiled code is kept in
## bin/.kit-cache
kit-examples: build
	@for ex in $(addprefix examples/,$(EXAMPLES)) $(addprefix shipped/,$(SHIPPED)); do \
	  ./$(BIN)/propolis extensions check --cache $(BIN)/.kit-cache $(BIN)/$$ex > $(BIN)/$$ex.check.txt 2>&1 \
	    && tail -2 $(BIN)/$$ex.check.txt | head -1 | sed "s|^|kit-examples: $$ex: |" \
	    || { cat $(BIN)/$$ex.check.txt; exit 1; }; \
	done

# --- Rust SDK (sdk/rust): Debian's rustc with libstd-rust-dev-wasm32, plain
# rustc through sdk/rust/build.sh (no cargo registry) ---
.PHONY: sdk-rust test-sdk-rust test-sdk-rust-or-skip

## sdk-rust: the Rust SDK's example extensions into bin/sdk/rust/<id>/
sdk-rust:
	sdk/rust/build.sh $(BIN)/sdk/rust

## test-sdk-rust: the Rust SDK's unit and ABI vector tests (natively), then
## each example through the conformance kit (`propolis extensions check`)
test-sdk-rust: sdk-rust $(BIN)/propolis
	sdk/rust/build.sh -test
	@for ex in $(BIN)/sdk/rust/*/; do ./$(BIN)/propolis extensions check --cache $(BIN)/.kit-cache $$ex || exit 1; done

# make test runs the Rust SDK's tests when the toolchain is there, and says
# why it skipped them when not.
test-sdk-rust-or-skip:
	@if sdk/rust/build.sh -find >/dev/null 2>&1; then $(MAKE) --no-print-directory test-sdk-rust; \
	else echo "make test: skipped the Rust SDK: $$(sdk/rust/build.sh -find 2>&1)"; fi
# --- end Rust SDK ---

## bench-smoke: the benchmark harness at a tenth of its sizes (< 1 minute)
bench-smoke:
	out=$$(mktemp -d) && $(GO) run ./bench/cmd/propolis-bench --quick --out $$out > $$out/stdout && \
	  test -s $$out/results.json && test -s $$out/results.md && echo "bench-smoke: harness ran, report in $$out" && rm -rf $$out

## check: formatting, vet, module tidiness and committed Wasm fixtures;
## fails on any difference
check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	cd sdk/go && $(GO) vet ./... && GOOS=wasip1 GOARCH=wasm $(GO) vet ./...
	cd examples && $(GO) vet ./...
	cd shipped && $(GO) vet ./... && GOOS=wasip1 GOARCH=wasm $(GO) vet ./...
	testdata/wasm/build.sh -check
	@cp go.mod /tmp/propolis-go.mod.$$$$ && cp go.sum /tmp/propolis-go.sum.$$$$ && \
	  $(GO) mod tidy && \
	  if ! cmp -s go.mod /tmp/propolis-go.mod.$$$$ || ! cmp -s go.sum /tmp/propolis-go.sum.$$$$; then \
	    echo "go.mod/go.sum are not tidy: run 'go mod tidy' and commit"; \
	    cp /tmp/propolis-go.mod.$$$$ go.mod; cp /tmp/propolis-go.sum.$$$$ go.sum; rm -f /tmp/propolis-go.*.$$$$; exit 1; fi; \
	  rm -f /tmp/propolis-go.*.$$$$

## format: rewrite Go files with gofmt
format:
	gofmt -w $$(git ls-files '*.go')

## lint: same as check
lint: check

## bench: Propolis side by side with mochi-mqtt and Mosquitto (< 10 minutes);
## writes bench/results/results.md and results.json
bench:
	$(GO) run ./bench/cmd/propolis-bench --out bench/results

## bench-cluster: the cluster's benchmarks (issue 15, ~5 minutes): fan-in and
## fan-out QoS 0/1 on one node against three (propolis-cluster3, every message
## crossing nodes), and the session take-over after SIGKILL of a node, with
## TAKEOVER_SESSIONS sessions (default 1000; 10000 runs one round, minutes);
## writes bench/results/cluster/results.md and results.json
TAKEOVER_SESSIONS ?= 1000
bench-cluster:
	$(GO) run ./bench/cmd/propolis-bench --brokers propolis,propolis-cluster3 --only fanin0,fanin1,fanout0,fanout1,takeover \
	  --takeover-sessions $(TAKEOVER_SESSIONS) --out bench/results/cluster

## gobench: the Go benchmarks (go test -bench)
gobench:
	$(GOTEST) -run '^$$' -bench . -benchmem -timeout 20m ./...

## testdata: regenerate committed fixtures (Wasm from WAT needs Debian's
## wabt), the ABI test vectors and the Go SDK's files generated from abi/table.go
testdata:
	testdata/wasm/build.sh
	$(GO) test ./abi -run 'TestVectors|TestSDKTable' -update
	rm -rf testdata/store/v1 && $(GO) run ./broker/store/internal/genv1 -out testdata/store/v1

## screenshots: rewrite docs/control-center/*.png, the main pages of the web
## control center, from its browser test (needs Debian's chromium)
screenshots:
	$(GOTEST) -count=1 -timeout 10m ./cmd/propolis -run '^TestControlCenter$$' -screenshots

clean:
	rm -rf $(BIN) extensions/allow-all extensions/.compiled

# ---- The C and AssemblyScript SDKs (sdk/c, sdk/assemblyscript) ----------
# Each example is built into bin/sdk/<lang>/<id>/ with its manifest. The
# test targets run the SDK's vector tests (abi/testdata), build the
# examples and check them with the kit (`propolis extensions check`); on a
# machine without the toolchain they say what they skipped and succeed.
SDK_C_EXAMPLES  := c-topic-acl
SDK_AS_EXAMPLES := as-property-auth
SDK_AS_DIR      := sdk/assemblyscript
SDK_ASC         := $(SDK_AS_DIR)/node_modules/.bin/asc
# the native compiler of the C SDK's vector tests
SDK_NATIVE_CC   := $(shell for c in $(CC) gcc clang clang-14; do command -v $$c >/dev/null 2>&1 && { echo $$c; break; }; done)

.PHONY: sdk-c sdk-as test-sdk-c test-sdk-as

## sdk-c: build the C SDK's examples (clang for wasm32-wasi) into bin/sdk/c/<id>/
sdk-c:
	@for ex in $(SDK_C_EXAMPLES); do \
	  mkdir -p $(BIN)/sdk/c/$$ex && \
	  sdk/c/build.sh $(BIN)/sdk/c/$$ex/$$ex.wasm sdk/c/examples/$$ex/*.c -Werror && \
	  cp sdk/c/examples/$$ex/propolis-extension.yaml $(BIN)/sdk/c/$$ex/ && echo "built $(BIN)/sdk/c/$$ex" || exit 1; \
	done

## sdk-as: build the AssemblyScript SDK's examples (after npm ci in sdk/assemblyscript) into bin/sdk/as/<id>/
sdk-as:
	@for ex in $(SDK_AS_EXAMPLES); do \
	  mkdir -p $(BIN)/sdk/as/$$ex && \
	  (cd $(SDK_AS_DIR) && ./node_modules/.bin/asc examples/$$ex/index.ts --target release -o $(CURDIR)/$(BIN)/sdk/as/$$ex/$$ex.wasm) && \
	  cp $(SDK_AS_DIR)/examples/$$ex/propolis-extension.yaml $(BIN)/sdk/as/$$ex/ && echo "built $(BIN)/sdk/as/$$ex" || exit 1; \
	done

# sdk-kit-check LANG IDS: the conformance kit on each example.
define sdk-kit-check
	@for ex in $(2); do ./$(BIN)/propolis extensions check --cache $(BIN)/.kit-cache $(BIN)/sdk/$(1)/$$ex || exit 1; done
endef

## test-sdk-c: the C SDK's vector tests (compiled natively), then its examples built and checked
test-sdk-c:
	@if ! why=$$(sdk/c/build.sh --check); then \
	  echo "make test: skipped the C SDK: clang with the wasm32-wasi target not found (install clang lld wasi-libc libclang-rt-dev-wasm32): $$why"; \
	  exit 0; \
	fi; \
	out=$$(mktemp -d) && cflags="-std=c11 -O1 -g -Wall -Wextra -Werror -I sdk/c" && \
	  { $(SDK_NATIVE_CC) $$cflags -fsanitize=address,undefined -fno-sanitize-recover=all -o $$out/vectors_test sdk/c/test/vectors_test.c 2>/dev/null || \
	    { echo "test-sdk-c: $(SDK_NATIVE_CC) has no sanitizers here; the vector tests run without them"; \
	      $(SDK_NATIVE_CC) $$cflags -o $$out/vectors_test sdk/c/test/vectors_test.c; }; } && \
	  $$out/vectors_test abi/testdata && rm -rf $$out && \
	  $(MAKE) --no-print-directory sdk-c $(BIN)/propolis && $(MAKE) --no-print-directory sdk-c-check

.PHONY: sdk-c-check sdk-as-check
sdk-c-check:
	$(call sdk-kit-check,c,$(SDK_C_EXAMPLES))

## test-sdk-as: the AssemblyScript SDK's vector tests (under node), then its examples built and checked
test-sdk-as:
	@if ! command -v node >/dev/null; then \
	  echo "make test: skipped the AssemblyScript SDK: node not found (install nodejs, then run npm ci in $(SDK_AS_DIR))"; exit 0; \
	elif [ ! -x $(SDK_ASC) ]; then \
	  echo "make test: skipped the AssemblyScript SDK: $(SDK_ASC) not found (run npm ci in $(SDK_AS_DIR))"; exit 0; \
	fi; \
	cd $(SDK_AS_DIR) && ./node_modules/.bin/asc test/vectors.ts --target release -o build/vectors.wasm && \
	  node test/vectors.mjs build/vectors.wasm ../../abi/testdata && cd $(CURDIR) && \
	  $(MAKE) --no-print-directory sdk-as $(BIN)/propolis && $(MAKE) --no-print-directory sdk-as-check

sdk-as-check:
	$(call sdk-kit-check,as,$(SDK_AS_EXAMPLES))
