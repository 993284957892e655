#!/usr/bin/env bash
# Builds kube-apiserver and etcd, and helm for the chart tests, from the
# pinned wrapper modules in hack/tools/ into a cache that outlives the clone,
# and links them as ./bin/k8s and (`control-plane.sh helm`) ./bin/helm.
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

mkdir -p "$cache" "$helm_cache" "$root/bin"
if [ "${1:-}" = helm ]; then # make helm: for make test and make dist
  build helm "$tools/helm" helm.sh/helm/v4/cmd/helm "$helm_cache"
  ln -sfn "$helm_cache/helm" "$root/bin/helm"
  exit 0
fi
build etcd "$tools/etcd" go.etcd.io/etcd/server/v3
build kube-apiserver "$tools/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver "$cache" "$kube_ldflags"
ln -sfn "$cache" "$root/bin/k8s"
echo "$root/bin/k8s"
