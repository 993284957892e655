#!/usr/bin/env bash
# Builds kube-apiserver and etcd from the pinned wrapper modules in hack/tools/
# into a cache that outlives the clone, and links it as ./bin/k8s.
#
# The cache key is the hash of the wrapper modules' go.mod and go.sum, so the
# ~10 minute kube-apiserver build happens once per pinned version.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
tools="$root/hack/tools"
key=$(cat "$tools"/kube-apiserver/go.{mod,sum} "$tools"/etcd/go.{mod,sum} | sha256sum | cut -c1-12)
cache="${XDG_CACHE_HOME:-$HOME/.cache}/kubemacpool/control-plane-$key"

build() { # name module-dir package
  local name=$1 dir=$2 pkg=$3
  if [ -x "$cache/$name" ]; then
    return
  fi
  echo ">> building $name from source ($pkg); the first build takes several minutes" >&2
  local start=$SECONDS
  (cd "$dir" && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$cache/$name.tmp" "$pkg")
  mv "$cache/$name.tmp" "$cache/$name"
  echo ">> built $name in $((SECONDS - start))s" >&2
}

mkdir -p "$cache" "$root/bin"
build etcd "$tools/etcd" go.etcd.io/etcd/server/v3
build kube-apiserver "$tools/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
ln -sfn "$cache" "$root/bin/k8s"
echo "$root/bin/k8s"
