# syncd developer targets. `make help` lists them.
GO ?= go
STATICCHECK ?= $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: help build test test-race lint demo ci

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

build: ## build ./syncd
	$(GO) build -o syncd ./cmd/syncd

test: ## vet and run every test with the race detector (the README's test command)
	$(GO) vet ./... && $(GO) test -race -timeout 10m ./...

test-race: test ## same as test

lint: ## gofmt, go vet, staticcheck
	@test -z "$$(gofmt -l .)" || (gofmt -l . && false)
	$(GO) vet ./...
	$(STATICCHECK) ./...

demo: ## run the demo for 30s
	$(GO) run ./cmd/syncd demo --duration 30s

ci: ## what CI runs
	./.ci/run
