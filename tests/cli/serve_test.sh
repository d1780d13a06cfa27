# blkclone serve with status and message through the control socket; SIGTERM
# commits and exits 0; the lock keeps hydrate out meanwhile.
source "$(dirname "$0")/lib.sh"

images 16M
expect 0 create c --metadata meta.img --dest dst.img --source src.img --region-size 64K --no-hydration
expect 1 message c enable_hydration
contains err "clone c: not running"
start_serve c

expect 0 status c
grep -qE '^8 [0-9]+/256 128 0/256 0 1 no_hydration 4 hydration_threshold 1 hydration_batch_size 1 rw$' out ||
  fail "status: $(cat out)"
expect 0 status c --json
contains out '"active":true'
expect 0 status c --human
contains out "hydration  disabled, threshold 1, batch 1"

expect 0 message c hydration_threshold 8
expect 0 message c 0 hydration_batch_size 4
expect 0 message c rate_limit 1G
expect 0 message c retry_policy 3 10 100
expect 0 message c restart_hydration
expect 0 status c --json
contains out '"core_args":{"hydration_threshold":8,"hydration_batch_size":4}'
contains out '"rate_limit":1073741824'

expect 0 message c enable_hydration
for _ in $(seq 100); do
  [ "$(hydrated c)" = 256/256 ] && break
  sleep 0.1
done
expect 0 status c
contains out "256/256 0 0 4 hydration_threshold 8 hydration_batch_size 4 rw"
expect 0 message c disable_hydration
expect 0 status c
contains out " 1 no_hydration 4 "

expect 2 message c warp_speed
contains err "message warp_speed: unknown"
expect 2 message c hydration_threshold many
contains err "hydration_threshold many: not a number"
expect 1 hydrate c
contains err "clone c: in use by blkclone serve (pid $SERVE_PID)"

kill -TERM "$SERVE_PID"
wait_exit "$SERVE_PID" "serve after SIGTERM"
[ "$EXIT_STATUS" = 0 ] || fail "serve exited with $EXIT_STATUS: $(cat serve.err)"
contains serve.out "stopped clone c on SIGTERM: 100.0% hydrated (256 of 256 regions), metadata committed"
[ ! -e state/c.sock ] || fail "the control socket outlived serve"
expect 0 status c --json
contains out '"active":false'
contains out '"regions":{"hydrated":256,"total":256'
cmp src.img dst.img
echo "serve: ok"
