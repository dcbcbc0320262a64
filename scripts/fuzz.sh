#!/usr/bin/env bash
# scripts/fuzz.sh — runs every native Go fuzz target of the repository
# (func FuzzXxx in a *_test.go file git tracks) for a bounded time each:
#   scripts/fuzz.sh                     every target, SCOUT_FUZZTIME each (default 10s)
#   SCOUT_FUZZTIME=20m scripts/fuzz.sh  a long run; SCOUT_FUZZTIME=10000000x: executions
#   scripts/fuzz.sh FuzzParse           only the targets whose name matches
# A failing input is written to the package's testdata/fuzz/<target>/ by
# go test: commit it as a regression seed once fixed (the seeds run in every
# `go test`). Each target's last line of progress (executions) is printed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
fuzztime=${SCOUT_FUZZTIME:-10s}
filter=${1:-.}
# "<package dir> <target>" for each target.
mapfile -t targets < <(git grep -n -E '^func Fuzz[A-Za-z0-9_]+\(' -- '*_test.go' |
  sed -E 's#^(.*)/[^/]+_test\.go:[0-9]+:func (Fuzz[A-Za-z0-9_]+)\(.*#\1 \2#' | sort -u)
if [ ${#targets[@]} -eq 0 ]; then echo "scripts/fuzz.sh: no fuzz targets found" >&2; exit 1; fi
ran=0
for t in "${targets[@]}"; do
  dir=${t% *} name=${t#* }
  [[ $name =~ $filter ]] || continue
  printf '%-60s ' "./$dir $name"
  corpus="$dir/testdata/fuzz/$name"
  before=$(ls "$corpus" 2>/dev/null | sort || true)
  if ! out=$(go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" "./$dir" 2>&1); then
    after=$(ls "$corpus" 2>/dev/null | sort || true)
    # Go 1.26's fuzz coordinator can fail a target at the -fuzztime
    # deadline with a bare "context deadline exceeded" when a worker is
    # starved of CPU (golang/go#75804, fixed in Go 1.27): no input failed
    # and none was written. Anything else, or a new file in the corpus,
    # is a real failure.
    if [ "$before" = "$after" ] && ! grep -qE 'panic:|Failing input|fuzz_test.go:[0-9]+:' <<<"$out" &&
      grep -q 'context deadline exceeded' <<<"$out" && go test -count=1 -run "^${name}\$" "./$dir" >/dev/null 2>&1; then
      echo "$out" | grep -E '^fuzz: elapsed' | tail -1 | sed -E 's/^fuzz: //; s/$/ (stopped by the coordinator deadline race golang\/go#75804; no failing input, seeds pass)/'
      ran=$((ran + 1))
      continue
    fi
    echo FAILED; echo "$out" >&2; exit 1
  fi
  echo "$out" | grep -E '^fuzz: elapsed' | tail -1 | sed -E 's/^fuzz: //'
  ran=$((ran + 1))
done
echo "scripts/fuzz.sh: $ran targets, $fuzztime each"
