# Shared by the CLI tests, sourced with the blkclone binary as $1: a scratch
# directory and a state directory that vanish on exit, background processes
# that are killed on exit, assertions that say what went wrong, and the
# counting of cases that ran or were skipped.
set -euo pipefail

BLKCLONE=$1
WORK=$(mktemp -d /var/tmp/blkclone-cli.XXXXXX)
export BLKCLONE_STATE_DIR=$WORK/state
mkdir "$BLKCLONE_STATE_DIR"
BACKGROUND=()

cleanup() {
  for pid in "${BACKGROUND[@]}"; do
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
cd "$WORK"

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

CASES_RUN=0
CASES_SKIPPED=0

# case_ran: one more case of the script ran to its end.
case_ran() {
  CASES_RUN=$((CASES_RUN + 1))
}

# skip_case WHAT WHY: case WHAT cannot run here, for reason WHY.
skip_case() {
  echo "SKIP: $1: $2"
  CASES_SKIPPED=$((CASES_SKIPPED + 1))
}

# end_cases TEST: says how many cases ran and were skipped; exits 77 (a skip
# for ctest) when every case was skipped, so that nothing passes untested.
end_cases() {
  if [ "$CASES_RUN" = 0 ]; then
    echo "$1: every case skipped ($CASES_SKIPPED)"
    exit 77
  fi
  echo "$1: ok ($CASES_RUN cases ran, $CASES_SKIPPED skipped)"
}

# expect STATUS ARGS...: runs blkclone ARGS with stdout in ./out and stderr in
# ./err, and checks its exit status.
expect() {
  local want=$1 got=0
  shift
  timeout 60 "$BLKCLONE" "$@" >out 2>err || got=$?
  [ "$got" = "$want" ] || fail "blkclone $*: exit status $got, expected $want; stderr: $(cat err)"
}

# contains FILE TEXT: FILE has TEXT in it.
contains() {
  grep -qF -- "$2" "$1" || fail "$1 does not contain '$2'; it holds: $(cat "$1")"
}

# images SIZE [SUFFIX]: a random source, an empty destination and a 1 MiB
# metadata file: src$2.img, dst$2.img, meta$2.img.
images() {
  head -c "$1" /dev/urandom >"src${2:-}.img"
  truncate -s "$1" "dst${2:-}.img"
  truncate -s 1M "meta${2:-}.img"
}

# allocated FILE: the bytes the file system allocated to FILE.
allocated() { du --block-size=1 "$1" | cut -f1; }

# flip FILE OFFSET: inverts one byte.
flip() {
  local value
  value=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
  printf "\\$(printf '%03o' $((value ^ 255)))" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

# wait_exit PID WHAT: waits up to 30 s for the background process PID to
# exit, else fails; its exit status is then in EXIT_STATUS.
wait_exit() {
  for _ in $(seq 300); do
    kill -0 "$1" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$1" 2>/dev/null && fail "$2: still running after 30 s"
  EXIT_STATUS=0
  wait "$1" || EXIT_STATUS=$?
}

# wait_socket NAME PID: waits until the control socket of NAME is there, which
# serve and hydrate create once they are ready (and take SIGINT and SIGTERM).
wait_socket() {
  for _ in $(seq 200); do
    [ -S "$BLKCLONE_STATE_DIR/$1.sock" ] && return 0
    kill -0 "$2" 2>/dev/null || fail "blkclone for $1 exited early"
    sleep 0.05
  done
  fail "$1: no control socket after 10 s"
}

# start_serve NAME: runs blkclone serve NAME in the background (its pid in
# SERVE_PID) and waits until it is ready.
start_serve() {
  "$BLKCLONE" serve "$1" >serve.out 2>serve.err &
  SERVE_PID=$!
  BACKGROUND+=("$SERVE_PID")
  wait_socket "$1" "$SERVE_PID"
}

# hydrated_bytes NAME: bytes hydrated so far, from the JSON status.
hydrated_bytes() {
  "$BLKCLONE" status "$1" --json | sed 's/.*"bytes":{"hydrated":\([0-9]*\).*/\1/'
}

# hydrated NAME: "<hydrated>/<total>" regions, from the status line.
hydrated() {
  "$BLKCLONE" status "$1" | cut -d' ' -f4
}

# kill_hydrate_midway NAME REGIONS: runs a rate-limited hydrate of NAME and
# kills it with -9 part-way (past 4 MiB, then more than a commit interval of
# 1 s), then checks that more than one but not all REGIONS were recorded as
# hydrated. The "<hydrated>/<total>" at the kill is left in KILLED_AT.
kill_hydrate_midway() {
  local pid done_regions
  "$BLKCLONE" hydrate "$1" --rate-limit 8M >hydrate.out 2>hydrate.err &
  pid=$!
  BACKGROUND+=("$pid")
  wait_socket "$1" "$pid"
  for _ in $(seq 300); do
    [ "$(hydrated_bytes "$1")" -ge $((4 << 20)) ] && break
    sleep 0.1
  done
  sleep 1.5
  kill -9 "$pid"
  wait_exit "$pid" "hydrate killed with -9"
  KILLED_AT=$(hydrated "$1")
  done_regions=${KILLED_AT%/*}
  [ "$done_regions" -gt 1 ] && [ "$done_regions" -lt "$2" ] ||
    fail "after kill -9: $KILLED_AT hydrated"
}
