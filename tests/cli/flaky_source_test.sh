# A flaky NBD source: nbdkit serves src.img through a script whose reads fail
# while the number in ./failures counts down (transient errors), behind the
# error filter, which fails every read while ./errors exists (a lasting
# fault). hydrate stopped by errors ends with one line and no advice for a
# process that has exited; status shows a stopped or disabled hydration with no
# ETA and a running one with an ETA that agrees with its rate; verify retries
# transient errors as hydration does and reports a lasting one in one line.
source "$(dirname "$0")/lib.sh"

command -v nbdkit >/dev/null || { echo "SKIP: nbdkit is not installed"; exit 77; }
images 2M
echo 0 >failures
pread="n=\$(cat $WORK/failures)
if [ \"\$n\" -gt 0 ]; then echo \$((n - 1)) >$WORK/failures; echo 'EIO injected' >&2; exit 1; fi
dd if=$WORK/src.img skip=\$4 count=\$3 iflag=skip_bytes,count_bytes status=none"
nbdkit --foreground --unix "$WORK/src.sock" --filter=error eval get_size="echo $((2 << 20))" \
  pread="$pread" error-pread-rate=100% error-pread-file="$WORK/errors" 2>nbdkit.err &
BACKGROUND+=("$!")
for _ in $(seq 200); do [ -S "$WORK/src.sock" ] && break; sleep 0.05; done
[ -S "$WORK/src.sock" ] || fail "nbdkit did not start: $(cat nbdkit.err)"
uri="nbd+unix:///?socket=$WORK/src.sock"
expect 0 create c --metadata meta.img --dest dst.img --source "$uri" --region-size 64K

# json NAME EXPRESSION: EXPRESSION (Python, over the status as s) of clone NAME.
json() {
  "$BLKCLONE" status "$1" --json >status.json
  /usr/bin/python3 -c "import json, sys; s = json.load(open('status.json')); print($2)"
}

# wait_json NAME CONDITION: waits up to 20 s until CONDITION (as for json) holds.
wait_json() {
  for _ in $(seq 200); do
    [ "$(json "$1" "$2")" = True ] && return 0
    sleep 0.1
  done
  fail "$1: not $2 after 20 s: $(cat status.json)"
}

# copying: hydration runs and has copied lately.
copying="s['hydration']['state'] == 'enabled' and s['hydration']['copy_rate'] > 0"

# --- hydrate stopped by a lasting fault: one line that says how to go on.
touch errors
expect 1 hydrate c
[ "$(wc -l <err)" = 1 ] || fail "hydrate: stderr is not one line: $(cat err)"
contains err "blkclone hydrate: clone c: hydration stopped after repeated copy failures: NBD read"
contains err "; run blkclone hydrate c again to resume"
! grep -q "blkclone message" err || fail "hydrate suggests a message to a process that has exited"
rm errors
expect 0 hydrate c
cmp src.img dst.img
case_ran

# --- verify: transient errors are retried; a lasting fault is one line.
echo 2 >failures
expect 0 verify c
contains out "verified clone c: 2.0 MiB in 32 hydrated regions compared"
[ "$(cat failures)" = 0 ] || fail "verify did not read through the failures"
touch errors
expect 1 verify c
[ "$(wc -l <err)" = 1 ] || fail "verify: stderr is not one line: $(cat err)"
contains err "blkclone verify: source $uri: NBD read"
contains err "(5 failures in a row)"
rm errors
case_ran

# --- status: an ETA while hydration runs, consistent with its rate; none
# while it is stopped or disabled.
images 2M 2
expect 0 create s --metadata meta2.img --dest dst2.img --source "$uri" --region-size 64K
start_serve s
expect 0 message s rate_limit 64K
wait_json s "$copying"
[ "$(json s "abs(s['hydration']['eta_seconds'] - (s['bytes']['total'] - s['bytes']['hydrated'])
      / s['hydration']['copy_rate']) <= 1")" = True ] ||
  fail "ETA inconsistent with the rate: $(cat status.json)"
expect 0 message s retry_policy 1 10 10  # stop at the first failure, while copies are recent
touch errors
wait_json s "s['hydration']['state'] == 'stopped'"
[ "$(json s "s['hydration']['eta_seconds']")" = None ] || fail "ETA while stopped: $(cat status.json)"
rm errors
expect 0 message s restart_hydration
wait_json s "$copying"
expect 0 message s disable_hydration
[ "$(json s "s['hydration']['eta_seconds']")" = None ] || fail "ETA while disabled: $(cat status.json)"
contains serve.err "blkclone message s restart_hydration resumes it"
kill -TERM "$SERVE_PID"
wait "$SERVE_PID" || fail "serve: $(cat serve.err)"
case_ran
end_cases "flaky source"
