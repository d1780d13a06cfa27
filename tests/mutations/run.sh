#!/usr/bin/env bash
# Deliberate bugs, one per .patch here: each is applied to a scratch copy of
# the tree, which is built (debug preset) and whose crash, model, faults and
# session tests are run; prints the table "mutation | tests that go red". The
# unpatched copy runs first and must be all green. A mutation that no test
# catches is a gap in the tests.
#
#   tests/mutations/run.sh [PATCH...]    # default: every tests/mutations/*.patch
#
# The scratch copy lives in build/mutations (BLKCLONE_MUTATION_DIR overrides);
# each test run is bounded by BLKCLONE_MUTATION_TIMEOUT seconds (default 900).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(git -C "$here" rev-parse --show-toplevel)
scratch=${BLKCLONE_MUTATION_DIR:-$root/build/mutations}
limit=${BLKCLONE_MUTATION_TIMEOUT:-900}
tests=(clone_crash_test clone_concurrent_crash_test clone_model_test clone_faults_test
       clone_session_test clone_sparse_test source_allocation_test)
export CMAKE_CXX_COMPILER_LAUNCHER=ccache CMAKE_C_COMPILER_LAUNCHER=ccache
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$(dirname "$root")} CCACHE_NOHASHDIR=1

if (($# > 0)); then patches=("$@"); else patches=("$here"/*.patch); fi

# Makes $scratch/tree the committed-or-not content of the tree, plus `patch`.
# Files are copied without their times, so that the build sees every change,
# also a file going back to its unpatched content.
prepare() {
  local file
  (cd "$root" && git ls-files -z --cached --others --exclude-standard) |
    while IFS= read -r -d '' file; do
      [[ -f $root/$file ]] || continue
      if ! cmp -s "$root/$file" "$scratch/tree/$file"; then
        mkdir -p "$(dirname "$scratch/tree/$file")"
        cp "$root/$file" "$scratch/tree/$file"
      fi
    done
  if [[ -n ${1:-} ]]; then patch -s -d "$scratch/tree" -p1 <"$1"; fi
}

# Builds the tests and prints those that fail (or "build failed"); logs go to
# $scratch/log/$1.
red_tests() {
  local tree=$scratch/tree log=$scratch/log/$1
  mkdir -p "$log"
  if ! (cd "$tree" && cmake --preset debug >/dev/null &&
        cmake --build --preset debug -j2 --target "${tests[@]}") >"$log/build.txt" 2>&1; then
    echo "build failed (see $log/build.txt)"
    return
  fi
  local red=()
  for t in "${tests[@]}"; do
    if ! (cd "$tree/build/debug/tests" && timeout "$limit" "./$t") >"$log/$t.txt" 2>&1; then
      red+=("$t")
    fi
  done
  echo "${red[*]:-none}"
}

prepare
baseline=$(red_tests unpatched)
echo "unpatched: red: $baseline" >&2
if [[ $baseline != none ]]; then
  echo "the unpatched tree is not green; logs in $scratch/log/unpatched" >&2
  exit 1
fi
echo "| mutation | tests that go red |"
echo "| --- | --- |"
missed=0
for p in "${patches[@]}"; do
  name=$(basename "$p" .patch)
  prepare "$p"
  red=$(red_tests "$name")
  [[ $red == none || $red == build* ]] && missed=1
  echo "| $name | $red |"
done
prepare  # leave the scratch copy unpatched
exit "$missed"
