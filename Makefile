# kubemacpool developer entry points. `make test` is what CI runs.
SHELL := /usr/bin/env bash
GO ?= go
export GOFLAGS ?= -buildvcs=false

BIN := $(CURDIR)/bin
CONTROL_PLANE := $(BIN)/k8s

.PHONY: node e2e all build test unit integration control-plane helm generate fmt vet bench fuzz clean dist \
	run cluster-up cluster-sync cluster-down local release image bench-scale bench-peer

all: build

build:
	$(GO) build -o $(BIN)/kubemacpool ./cmd/kubemacpool
	@# The same binary is the kubectl plugin `kubectl macpool` (status, who, collisions, not-applied).
	@ln -sf kubemacpool $(BIN)/kubectl-macpool

# kube-apiserver and etcd, built from the pinned sources in hack/tools into
# a cache outside the clone (about 10 minutes the first time, then instant).
control-plane:
	@bash hack/control-plane.sh >/dev/null

# bin/helm, for the chart tests and make dist, built the same way from the
# pinned module in hack/tools/helm (about 3 minutes the first time).
helm:
	@bash hack/control-plane.sh helm >/dev/null

# What a local node runs besides the control plane: containerd and runc
# (installed with apt-get where missing), kubelet, kube-controller-manager,
# kube-scheduler, Multus's thin plugin and the CNI plugins, built from the
# pinned sources in hack/tools (about 7 minutes the first time, after the
# control plane). On a machine that cannot run a node (not Linux, not root)
# it builds nothing, and make run says so.
node:
	@bash hack/control-plane.sh node >/dev/null

# Runs kubemacpool for real on a one-node cluster of this machine (no
# Docker, no cluster needed): the control plane, containerd, kubelet and
# Multus; applies the example network, pod and VM, and shows samplepod
# Running with the MAC kubemacpool gave it on net1. Where the machine
# cannot run a node, the control plane alone. Ctrl-C stops it and removes
# everything.
run: build control-plane node local
	@$(BIN)/local -samples

local:
	$(GO) build -o $(BIN)/local ./hack/local

# The seed's developer workflow on the same local cluster (a node where the
# machine allows one), in the background: cluster-up starts it,
# cluster-sync rebuilds kubemacpool and restarts it there, cluster-down
# stops it and removes everything. ./cluster/kubectl.sh talks to it.
cluster-up: build control-plane node local
	@if [ -f .cluster/pid ] && kill -0 $$(cat .cluster/pid) 2>/dev/null; then echo "already up: ./cluster/kubectl.sh"; exit 0; fi; \
	mkdir -p .cluster; nohup $(BIN)/local > .cluster.log 2>&1 & \
	for i in $$(seq 1 120); do \
	  if grep -q "press Ctrl-C" .cluster.log 2>/dev/null; then cat .cluster.log; exit 0; fi; \
	  if ! kill -0 $$! 2>/dev/null; then cat .cluster.log; exit 1; fi; sleep 1; \
	done; echo "cluster did not come up in 120s; see .cluster.log"; exit 1

cluster-sync: build
	@test -f .cluster/pid || { echo "no local cluster: make cluster-up"; exit 1; }
	kill -HUP $$(cat .cluster/pid)
	@for i in $$(seq 1 60); do grep -q "restarting kubemacpool" .cluster.log && tail -n 2 .cluster.log | grep -q "ready" && exit 0; sleep 1; done; tail .cluster.log

cluster-down:
	@test -f .cluster/pid || { echo "no local cluster is running"; exit 0; }
	kill $$(cat .cluster/pid); \
	for i in $$(seq 1 60); do [ -f .cluster/pid ] || exit 0; sleep 1; done

# Unit and integration tests. Unit tests run under the race detector;
# integration tests start a real kube-apiserver and etcd per test package,
# which call our webhook over TLS, and run kubemacpool built with -race (a
# race it reports fails the test that started it).
# The e2e tests (test/e2e) run kubemacpool's image as pods on a local node
# and read the MACs on the pods' interfaces; one test package at a time
# (-p 1), as each starts its own processes on two cores.
UNIT_PACKAGES = $$($(GO) list ./... | grep -v '/test/')
test: control-plane helm node
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 20m $(UNIT_PACKAGES)
	$(GO) test -p 1 -count=1 -timeout 50m ./test/...

unit:
	$(GO) test -race -count=1 $(UNIT_PACKAGES)

integration: control-plane helm
	$(GO) test -count=1 -timeout 40m ./test/integration/

e2e: control-plane node
	$(GO) test -count=1 -timeout 20m -v ./test/e2e/

# Renders the production manifests into one file (a test keeps it current).
release:
	kubectl kustomize config/default > config/release/kubemacpool.yaml

# kubemacpool's images, built without a Docker daemon: a docker-loadable
# archive for this machine's architecture, and an OCI image layout whose
# index holds linux/amd64 and linux/arm64 (cross-compiled, CGO off).
IMAGE_PLATFORMS ?= amd64 arm64
image:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w' -o $(BIN)/kubemacpool-static ./cmd/kubemacpool
	for arch in $(IMAGE_PLATFORMS); do \
	  CGO_ENABLED=0 GOOS=linux GOARCH=$$arch $(GO) build -trimpath -ldflags='-s -w' -o $(BIN)/kubemacpool-linux-$$arch ./cmd/kubemacpool || exit 1; \
	done
	$(GO) run ./hack/image -binary $(BIN)/kubemacpool-static -out $(BIN)/kubemacpool-image.tar -tag kubemacpool:latest \
	  $(foreach arch,$(IMAGE_PLATFORMS),-platform linux/$(arch)=$(BIN)/kubemacpool-linux-$(arch)) -oci-out $(BIN)/kubemacpool-oci.tar

# A release: bin/dist holds the rendered manifest, the Helm chart package
# (its default image tag is the release's version), the OCI image layout
# (linux/amd64 and linux/arm64), the kubectl plugin archives for both, its
# krew manifest (checksums computed from the archives), and SHA256SUMS.
# The release's version: the tag (with a leading v), or v0.0.0-<commit>
# without one (a commit hash may start with a digit: never taken as a tag).
VERSION ?= $(shell v=$$(git describe --tags --dirty 2>/dev/null) || v=0.0.0-$$(git describe --always --dirty); echo v$${v#v})
RELEASE_URL ?= https://github.com/kubemacpool/kubemacpool/releases/download/$(VERSION)
dist: release image helm
	rm -rf $(BIN)/dist && mkdir -p $(BIN)/dist
	cp config/release/kubemacpool.yaml $(BIN)/kubemacpool-oci.tar $(BIN)/dist/
	$(BIN)/helm lint --strict charts/kubemacpool --namespace kubemacpool-system
	$(BIN)/helm package charts/kubemacpool --version $(VERSION:v%=%) --app-version $(VERSION) -d $(BIN)/dist
	$(GO) run ./hack/krew -version $(VERSION) -url $(RELEASE_URL) -out $(BIN)/dist \
	  $(foreach arch,$(IMAGE_PLATFORMS),linux/$(arch)=$(BIN)/kubemacpool-linux-$(arch))
	cd $(BIN)/dist && sha256sum $$(ls | grep -v SHA256SUMS) > SHA256SUMS
	@echo "release $(VERSION) in $(BIN)/dist:" && ls $(BIN)/dist

# Regenerates deepcopy code and CRD manifests from api/.
generate:
	cd hack/tools/controller-gen && $(GO) build -o $(BIN)/controller-gen sigs.k8s.io/controller-tools/cmd/controller-gen
	$(BIN)/controller-gen object:headerFile=hack/boilerplate.go.txt paths=./api/...
	$(BIN)/controller-gen crd paths=./api/... output:crd:artifacts:config=config/crd/bases
	cp config/crd/bases/kubemacpool.io_macblocks.yaml charts/kubemacpool/files/

# Fuzz targets of every parser of user input (annotation, MAC, range),
# bounded by execution count; the committed corpus in testdata/fuzz is
# replayed by plain `go test` too.
fuzz:
	bash hack/fuzz.sh

fmt:
	gofmt -w $$(git ls-files '*.go')

# The Go benchmarks of candidate choice and MAC arithmetic, then the load
# program: admission latency and throughput for pods and VMs, and start-up
# with 20,000 MACs to adopt, against kubemacpool as its own process on a
# local control plane. Results and targets: docs/benchmarks.md.
bench: build control-plane
	$(GO) test -run '^$$' -bench . -benchmem ./internal/pool/ ./internal/mac/
	$(GO) run ./hack/bench

# The load program at scale: 50,000 pods and 50,000 VMs (100,000 MACs)
# carried before kubemacpool starts, three restarts with all of them held,
# and shorter create series run again with them present; about 9 minutes.
# BENCH_ARGS adds flags: "-pods 50000 -pod-macs 2 -vms 0" for 100,000 MACs
# on pods only, -startup-cpu FILE.
bench-scale: build control-plane
	$(GO) run ./hack/bench -seq 100 -concurrent 500 -pods 50000 -vms 50000 -restarts 3 -series-at-scale $(BENCH_ARGS)

# The cost of one peer cluster: the pod series again with a second control
# plane listed as kubemacpool's peer, its ledger holding 20,000 entries,
# beside the same run's series without it (and the start-up measure, small).
bench-peer: build control-plane
	$(GO) run ./hack/bench -seq 200 -concurrent 1000 -pods 1000 -vms 1000 -peer-entries 20000 $(BENCH_ARGS)

clean:
	rm -rf $(BIN)
