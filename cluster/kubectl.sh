#!/usr/bin/env bash
# kubectl pointed at the local control plane of `make cluster-up` / `make run`.
root=$(cd "$(dirname "$0")/.." && pwd)
kubeconfig="$root/.cluster/kubeconfig"
if [ ! -f "$kubeconfig" ]; then
  echo "no local cluster is running: start one with 'make cluster-up' (or 'make run')" >&2
  exit 1
fi
exec kubectl --kubeconfig "$kubeconfig" "$@"
