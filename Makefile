# audit-shipper: the few commands a developer or CI needs. Each target sets
# up what it uses, so a fresh machine needs only Go and make.

GO          ?= go
GOBIN       := $(shell $(GO) env GOPATH)/bin
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
LDFLAGS     := -s -w -X main.version=$(VERSION)
BIN         := bin/audit-shipper
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
VLOGS       := github.com/VictoriaMetrics/VictoriaLogs/app/victoria-logs@v1.52.1
HELM        := helm.sh/helm/v3/cmd/helm@v3.22.0
# Packages of the fast unit run: everything but the end-to-end suites.
UNIT        := $(shell $(GO) list ./... | grep -v /test/)
# Fuzzing is bounded by executions, not time: go1.26's fuzz coordinator can
# fail a target with a bare "context deadline exceeded" when a -fuzztime
# duration runs out under load (go.dev/issue/75804, fixed in go1.27). Each
# count is about 20 s of this 2-core machine; FUZZTIME=30s (or 1000000x)
# overrides them all.
FUZZ_EVENTS    ?= 200000x
FUZZ_CONFIG    ?= 40000x
FUZZ_RULES     ?= 400000x
FUZZ_SIGNALS   ?= 400000x
FUZZ_POSITIONS ?= 30000x

.PHONY: build demo test unit acceptance observability faults deploy-test e2e fuzz race bench bench-e2e lint tools clean

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/audit-shipper

# The main job on the embedded default: a live, rotating audit log of
# generated events shipped to a file, metrics on :9464. No server needed.
demo: build
	$(BIN) demo

# Everything CI runs.
test: tools lint unit race acceptance observability faults deploy-test e2e fuzz

unit:
	$(GO) test -count=1 -timeout 20m $(UNIT)
	cd rules/oracle && $(GO) test -count=1 -timeout 10m ./...

# -short: the 1 GB backlog and real-server tests run in unit already.
race:
	$(GO) test -count=1 -race -short -timeout 20m ./shipper/... ./sinks/... ./rules/... ./signals/... ./internal/faultproxy/...

# -v: each acceptance test prints its figures (written, delivered, lost...).
acceptance:
	$(GO) test -count=1 -v -timeout 20m ./test/acceptance/

# Outages, flapping links, 429 storms, full and read-only positions
# directories, a hostile audit directory and input, a compressed soak; every
# scenario prints its figures (docs/reliability.md).
faults:
	$(GO) test -count=1 -v -timeout 25m ./test/faults/

# A real Prometheus (Debian's package) scrapes the shipper; promtool checks
# the metrics, the alerting rules and their unit tests.
observability:
	$(GO) test -count=1 -v -timeout 10m ./test/observability/

fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(or $(FUZZTIME),$(FUZZ_EVENTS)) ./parse/
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(or $(FUZZTIME),$(FUZZ_CONFIG)) ./config/
	$(GO) test -run '^$$' -fuzz '^FuzzApply$$' -fuzztime $(or $(FUZZTIME),$(FUZZ_RULES)) ./rules/
	$(GO) test -run '^$$' -fuzz '^FuzzMember$$' -fuzztime $(or $(FUZZTIME),$(FUZZ_SIGNALS)) ./signals/
	$(GO) test -run '^$$' -fuzz '^FuzzLoadPositions$$' -fuzztime $(or $(FUZZTIME),$(FUZZ_POSITIONS)) ./shipper/

# The deployment material (manifests, chart, Dockerfile, systemd unit),
# checked by its own module so k8s.io/api stays out of the main go.mod.
deploy-test:
	cd deploy/test && $(GO) vet ./... && $(GO) run $(STATICCHECK) ./... && $(GO) test -count=1 -timeout 10m ./...

# A real kube-apiserver (built once per machine from k8s.io/kubernetes,
# about 7 minutes on 2 idle cores, then cached) and etcd write real audit
# logs with real rotation; the shipper is SIGKILLed under traffic. Both
# modules are separate so client-go and Kubernetes stay out of go.mod.
e2e: tools
	test/e2e/apiserver/build.sh
	cd test/e2e && $(GO) test -count=1 -v -timeout 45m .

bench:
	$(GO) test -run '^$$' -bench . -benchmem -count 1 ./parse/ ./rules/ ./signals/ ./shipper/ ./sinks/...

# End to end (docs/benchmarks.md, "end to end"): the real binary on a
# rotated corpus into VictoriaLogs, against cat/snappy/gzip floors; 4-5
# minutes on 2 cores. Flags: make bench-e2e BENCH_E2E_FLAGS='-size 10GB'.
bench-e2e: $(GOBIN)/victoria-logs
	$(GO) run ./bench $(BENCH_E2E_FLAGS)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...
	cd rules/oracle && $(GO) vet ./... && $(GO) run $(STATICCHECK) ./...
	cd test/e2e && $(GO) vet ./... && $(GO) run $(STATICCHECK) ./...

# Real servers the tests talk to: VictoriaLogs (Loki push and Elasticsearch
# bulk APIs), built from source once per machine.
tools: $(GOBIN)/victoria-logs $(GOBIN)/helm

$(GOBIN)/victoria-logs:
	$(GO) install $(VLOGS)

$(GOBIN)/helm:
	$(GO) install $(HELM)

clean:
	rm -rf bin
