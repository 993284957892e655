# kubemacpool developer entry points. `make test` is what CI runs.
SHELL := /usr/bin/env bash
GO ?= go
export GOFLAGS ?= -buildvcs=false

BIN := $(CURDIR)/bin
CONTROL_PLANE := $(BIN)/k8s

.PHONY: all build test unit integration control-plane generate fmt vet bench fuzz clean

all: build

build:
	$(GO) build -o $(BIN)/kubemacpool ./cmd/kubemacpool

# kube-apiserver and etcd, built from the pinned sources in hack/tools into
# a cache outside the clone (about 10 minutes the first time, then instant).
control-plane:
	@bash hack/control-plane.sh >/dev/null

# Unit and integration tests. Integration tests start a real kube-apiserver
# and etcd per test package, which call our webhook over TLS.
test: control-plane
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 30m ./...

unit:
	$(GO) test -count=1 ./internal/...

integration: control-plane
	$(GO) test -count=1 -timeout 30m ./test/...

# Regenerates deepcopy code and CRD manifests from api/.
generate:
	cd hack/tools/controller-gen && $(GO) build -o $(BIN)/controller-gen sigs.k8s.io/controller-tools/cmd/controller-gen
	$(BIN)/controller-gen object:headerFile=hack/boilerplate.go.txt paths=./api/...
	$(BIN)/controller-gen crd paths=./api/... output:crd:artifacts:config=config/crd/bases

fmt:
	gofmt -w $$(git ls-files '*.go')

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./internal/...

clean:
	rm -rf $(BIN)
