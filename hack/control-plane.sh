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
  # -v names each package as it is compiled: count them so a long first
  # build shows it is moving.
  (cd "$dir" && CGO_ENABLED=0 go build -v -trimpath -ldflags='-s -w' -o "$cache/$name.tmp" "$pkg" 2>&1) |
    awk -v name="$name" '/^#|\.go:[0-9]+|^go: / {print > "/dev/stderr"; next} {n++; if (n % 200 == 0) printf ">> %s: %d packages compiled\n", name, n > "/dev/stderr"}'
  if [ ! -s "$cache/$name.tmp" ]; then
    echo ">> building $name failed" >&2
    exit 1
  fi
  mv "$cache/$name.tmp" "$cache/$name"
  echo ">> built $name in $((SECONDS - start))s" >&2
}

mkdir -p "$cache" "$root/bin"
build etcd "$tools/etcd" go.etcd.io/etcd/server/v3
build kube-apiserver "$tools/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
ln -sfn "$cache" "$root/bin/k8s"
echo "$root/bin/k8s"
