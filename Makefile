# Propolis build, run and test targets. `make run` and `make test` are the
# two commands a new machine needs (see README.md).

GO        ?= go
BIN       := bin
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X main.version=$(VERSION)
GOTEST    ?= $(GO) test
TESTFLAGS ?= -count=1 -timeout 10m

.PHONY: all build run test check format lint bench bench-smoke gobench testdata clean shipped

all: build

# Example extensions built with the Go SDK; allow-all is installed into
# extensions/ so that `make run` accepts clients out of the box.
EXAMPLES  := allow-all topic-acl banlist publish-guard session-tracker payload-enricher topic-rewriter
WASMBUILD := GOOS=wasip1 GOARCH=wasm $(GO) build -buildmode=c-shared -trimpath

# Security extensions that ship (shipped/), built into bin/shipped/<id>/
# with their manifests and the other files of their folders (not Go
# sources or READMEs); none is installed into extensions/.
SHIPPED   := file-auth

## build: bin/propolis, every example extension (bin/examples/<id>/), the
## shipped extensions (bin/shipped/<id>/), and
## extensions/allow-all/ with its compiled code (extensions/.compiled/), so
## that the first start does not wait for the Wasm compiler
build: $(BIN)/propolis examples shipped
	mkdir -p extensions/allow-all
	cp $(BIN)/examples/allow-all/* extensions/allow-all/
	./$(BIN)/propolis extensions compile --extensions extensions

.PHONY: $(BIN)/propolis examples
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
	  find shipped/$$ex -maxdepth 1 -type f ! -name '*.go' ! -name '*.md' -exec cp {} $(BIN)/shipped/$$ex/ \; || exit 1; \
	done

## run: build, then start the broker with the embedded default configuration
run: build
	./$(BIN)/propolis serve

## test: every test of every module, after the checks, and a smoke run of
## the benchmark harness (it checks the harness runs, not the figures)
test: check
	$(GOTEST) $(TESTFLAGS) ./...
	cd sdk/go && $(GOTEST) $(TESTFLAGS) ./...
	cd examples && $(GOTEST) $(TESTFLAGS) ./...
	cd shipped && $(GOTEST) $(TESTFLAGS) ./...
	$(MAKE) bench-smoke

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

## gobench: the Go benchmarks (go test -bench)
gobench:
	$(GOTEST) -run '^$$' -bench . -benchmem -timeout 20m ./...

## testdata: regenerate committed fixtures (Wasm from WAT needs Debian's
## wabt), the ABI test vectors and the Go SDK's files generated from abi/table.go
testdata:
	testdata/wasm/build.sh
	$(GO) test ./abi -run 'TestVectors|TestSDKTable' -update
	rm -rf testdata/store/v1 && $(GO) run ./broker/store/internal/genv1 -out testdata/store/v1

clean:
	rm -rf $(BIN) extensions/allow-all extensions/.compiled
