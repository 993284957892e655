#!/usr/bin/env bash
# Builds kube-apiserver and etcd, and helm for the chart tests, from the
# pinned wrapper modules in hack/tools/ into a cache that outlives the clone,
# and links them as ./bin/k8s and (`control-plane.sh helm`) ./bin/helm.
# `control-plane.sh node` builds what a local node runs besides containerd
# (kubelet, kube-controller-manager, kube-scheduler, Multus's thin plugin,
# the CNI plugins) and links them as ./bin/node.
#
# The cache keys are hashes of the wrapper modules' go.mod and go.sum, so the
# ~10 minute kube-apiserver build (and helm's ~3 minutes) happens once per
# pinned version.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
tools="$root/hack/tools"
# kube-apiserver reports the version of its module (as Kubernetes' own build
# stamps it), so clients that check it (helm's kubeVersion) see a real one.
kube_version=$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ {print $2; exit}' "$tools"/kube-apiserver/go.mod)
kube_minor=$(echo "$kube_version" | cut -d. -f2)
kube_ldflags="-X k8s.io/component-base/version.gitVersion=$kube_version -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$kube_minor -X k8s.io/component-base/version.gitTreeState=clean"
key=$( (cat "$tools"/kube-apiserver/go.{mod,sum} "$tools"/etcd/go.{mod,sum}; echo "$kube_ldflags") | sha256sum | cut -c1-12)
cache="${XDG_CACHE_HOME:-$HOME/.cache}/kubemacpool/control-plane-$key"
helm_key=$(cat "$tools"/helm/go.{mod,sum} | sha256sum | cut -c1-12)
helm_cache="${XDG_CACHE_HOME:-$HOME/.cache}/kubemacpool/helm-$helm_key"
node_key=$( (cat "$tools"/node/go.{mod,sum} "$tools"/multus/go.{mod,sum} "$tools"/cni-plugins/go.{mod,sum}; echo "$kube_ldflags") | sha256sum | cut -c1-12)
node_cache="${XDG_CACHE_HOME:-$HOME/.cache}/kubemacpool/node-$node_key"

build() { # name module-dir package [cache-dir] [ldflags]
  local name=$1 dir=$2 pkg=$3 cache=${4:-$cache} ldflags=${5:-}
  if [ -x "$cache/$name" ]; then
    return
  fi
  echo ">> building $name from source ($pkg); the first build takes several minutes" >&2
  local start=$SECONDS
  # -v names each package as it is compiled: count them so a long first
  # build shows it is moving.
  (cd "$dir" && CGO_ENABLED=0 go build -v -trimpath -ldflags="-s -w $ldflags" -o "$cache/$name.tmp" "$pkg" 2>&1) |
    awk -v name="$name" '/^#|\.go:[0-9]+|^go: / {print > "/dev/stderr"; next} {n++; if (n % 200 == 0) printf ">> %s: %d packages compiled\n", name, n > "/dev/stderr"}'
  if [ ! -s "$cache/$name.tmp" ]; then
    echo ">> building $name failed" >&2
    exit 1
  fi
  mv "$cache/$name.tmp" "$cache/$name"
  echo ">> built $name in $((SECONDS - start))s" >&2
}

mkdir -p "$cache" "$helm_cache" "$node_cache" "$root/bin"
if [ "${1:-}" = node ]; then # make node: for make run and the e2e tests
  # A node needs Linux and root (containerd, network namespaces, mounts);
  # elsewhere there is nothing to build, and make run says in one line that
  # it starts the control plane alone.
  if [ "$(uname -s)" != Linux ] || [ "$(id -u)" != 0 ]; then
    exit 0
  fi
  if ! command -v containerd >/dev/null || ! command -v runc >/dev/null; then
    echo ">> installing Debian's containerd and runc with apt-get, for the local node" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends containerd runc >&2 ||
      { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends containerd runc >&2; }
  fi
  build kubelet "$tools/node" k8s.io/kubernetes/cmd/kubelet "$node_cache" "$kube_ldflags"
  build kube-controller-manager "$tools/node" k8s.io/kubernetes/cmd/kube-controller-manager "$node_cache" "$kube_ldflags"
  build kube-scheduler "$tools/node" k8s.io/kubernetes/cmd/kube-scheduler "$node_cache" "$kube_ldflags"
  # CNI plugins are looked up by file name in one directory.
  mkdir -p "$node_cache/cni"
  build cni/multus "$tools/multus" gopkg.in/k8snetworkplumbingwg/multus-cni.v4/cmd/multus "$node_cache"
  for plugin in main/bridge main/ptp main/loopback ipam/host-local meta/tuning; do
    build "cni/${plugin#*/}" "$tools/cni-plugins" "github.com/containernetworking/plugins/plugins/$plugin" "$node_cache"
  done
  ln -sfn "$node_cache" "$root/bin/node"
  echo "$root/bin/node"
  exit 0
fi
if [ "${1:-}" = helm ]; then # make helm: for make test and make dist
  build helm "$tools/helm" helm.sh/helm/v4/cmd/helm "$helm_cache"
  ln -sfn "$helm_cache/helm" "$root/bin/helm"
  exit 0
fi
build etcd "$tools/etcd" go.etcd.io/etcd/server/v3
build kube-apiserver "$tools/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver "$cache" "$kube_ldflags"
ln -sfn "$cache" "$root/bin/k8s"
echo "$root/bin/k8s"
