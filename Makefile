# eventchat: the two commands a newcomer needs are `make run` and `make test`.
GO      ?= go
MODULES := schemas platform services/gateway services/presence services/unread services/archiver cmd/chatd cmd/chatctl bench
# Packages with tests; bench is run by `make bench`, not by the tests.
TESTED  := ./schemas/... ./platform/... ./services/gateway/... ./services/presence/... ./services/unread/... ./services/archiver/... ./cmd/chatd/... ./cmd/chatctl/...

.PHONY: deps run test vet build modules bench bench-quick fmt fuzz clean k8s-check

## run: the whole system on the embedded default (NATS with JetStream in ./data), URL printed
run:
	$(GO) run ./cmd/chatd

## test: every test (vet, unit and integration tests, each module on its own too; the gateway
## again under the race detector)
test: deps vet modules k8s-check
	$(GO) test -count=1 -timeout 15m $(TESTED)
	$(GO) test -count=1 -race -timeout 15m ./services/gateway/... ./services/presence/... ./services/unread/...

vet:
	$(GO) vet $(TESTED) ./bench/...

## modules: every module builds on its own, without the workspace (GOWORK=off)
modules:
	@for m in $(MODULES); do echo "GOWORK=off build $$m"; (cd $$m && GOWORK=off $(GO) build ./... ) || exit 1; done

## deps: install what the tests need and are missing (ClickHouse, Chromium; Debian, as root)
deps:
	.ci/deps

## k8s-check: lint and render the Helm chart with several value sets and check the manifests
## (builds helm into .cache/bin the first time: a couple of minutes, offline through the Go proxy)
k8s-check:
	deploy/k8s/check.sh

build:
	mkdir -p bin
	$(GO) build -o bin/ ./cmd/chatd ./services/gateway/cmd/gateway ./services/presence/cmd/presence ./services/unread/cmd/unread ./services/archiver/cmd/archiver ./cmd/chatctl

## bench: the benchmark suite (at most 15 minutes); results in bench/results/<date>.json, plots in
## docs/img/bench (see docs/benchmarks.md)
bench:
	cd bench && $(GO) run ./cmd/chatbench -out results/$$(date +%F).json -plots ../docs/img/bench

## bench-quick: every phase and scenario, shortened (at most 3 minutes)
bench-quick:
	cd bench && $(GO) run ./cmd/chatbench -quick -out results/$$(date +%F)-quick.json

## fuzz: run the identifier fuzzers for a while
fuzz:
	cd schemas && $(GO) test -run '^$$' -fuzz FuzzParseConv -fuzztime 60s . && $(GO) test -run '^$$' -fuzz FuzzValidIDs -fuzztime 60s .

fmt:
	gofmt -l -w $(MODULES)

clean:
	rm -rf bin data
