#!/usr/bin/env bash
# Runs every fuzz target of the parsers of user input for a bounded number
# of executions (a count, not a time: repeatable on a busy machine). With
# SAVE_CORPUS=1 the inputs the fuzzer found interesting are copied into
# testdata/fuzz, where `go test` replays them as regression cases.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${FUZZ_RUNS:-3000}
targets=(
  "./internal/mac FuzzParse"
  "./internal/mac FuzzAllocatable"
  "./internal/multus FuzzParse"
  "./internal/carriers FuzzCarriedAsMultus"
  "./internal/jsonwatch FuzzDecodesAsClientGo"
  "./internal/rangeconfig FuzzParse"
)
cache=$(go env GOCACHE)/fuzz/github.com/kubemacpool/kubemacpool
for t in "${targets[@]}"; do
  set -- $t
  pkg=$1 name=$2
  echo ">> fuzzing $pkg $name ($runs executions)"
  go test "$pkg" -run '^$' -fuzz "^${name}\$" -fuzztime "${runs}x" -parallel 2
  if [ "${SAVE_CORPUS:-}" = 1 ] && [ -d "$cache/${pkg#./}/$name" ]; then
    mkdir -p "$pkg/testdata/fuzz/$name"
    # Keep the corpus small: the 25 newest entries.
    ls -t "$cache/${pkg#./}/$name" | head -25 | while read -r f; do cp "$cache/${pkg#./}/$name/$f" "$pkg/testdata/fuzz/$name/"; done
  fi
done
