# While a command runs a clone, its metadata device and destination are its
# own, whatever state directory another command comes through: with clone c
# recorded in two state directories, serve in one refuses every command in
# the other (and create in a third) with exit status 1 and one line naming the
# device and its holder, and a write that serve flushed is there afterwards.
# A loop device as destination is held the same way.
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/lib.sh"
source "$HERE/disk_lib.sh"

images 4M
mkdir other new
head -c 64K /dev/urandom >patch.bin
expect 0 create c --metadata meta.img --dest dst.img --source src.img --region-size 64K \
  --no-hydration
expect 0 create c --state-dir other --metadata meta.img --dest dst.img --source src.img \
  --region-size 64K --no-hydration
contains out "metadata: took over $WORK/meta.img"

# refused_meanwhile HOLDER ARGS...: blkclone ARGS fails while HOLDER's pid holds
# the devices, naming the metadata device (or, given -d, the destination).
refused_meanwhile() {
  local device="metadata device $WORK/meta.img" pid=$1
  shift
  if [ "$1" = -d ]; then
    device="destination $WORK/dst.img"
    shift
  fi
  timeout 60 "$BLKCLONE" "$@" >out 2>err && fail "blkclone $*: succeeded while the clone runs"
  [ "$(wc -l <err)" = 1 ] || fail "blkclone $*: stderr is not one line: $(cat err)"
  contains err "$device: in use by blkclone serve c (pid $pid)"
}

if ! /usr/bin/python3 -c 'import nbd' 2>/dev/null; then
  skip_case "a write flushed through serve" "no python3 nbd module"
  start_serve c
else
  serve c --nbd "unix:$WORK/nbd.sock"
  nbdsh -u "nbd+unix:///?socket=$WORK/nbd.sock" \
    -c "h.pwrite(open('patch.bin', 'rb').read(), 2**20); h.flush()"
fi
sha256sum meta.img dst.img >before.sha
for command in "serve c" "hydrate c" "write c 0 patch.bin" "read c 0 4K got.bin" "status c" \
  "verify c" "finalize c"; do
  # shellcheck disable=SC2086  # the arguments are words
  refused_meanwhile "$SERVE_PID" $command --state-dir other
done
refused_meanwhile "$SERVE_PID" check "$WORK/meta.img"
refused_meanwhile "$SERVE_PID" create c --state-dir new --metadata meta.img --dest dst.img \
  --source src.img --region-size 64K
truncate -s 1M meta2.img
refused_meanwhile "$SERVE_PID" -d create d --state-dir new --metadata meta2.img --dest dst.img \
  --source src.img --region-size 64K
[ -z "$(ls new)" ] || fail "a refused create recorded: $(ls new)"
sha256sum --quiet -c before.sha || fail "a refused command wrote"
case_ran

stop_serve
expect 0 status c --state-dir other
if [ "$CASES_SKIPPED" = 0 ]; then
  expect 0 read c 1M 64K got.bin --state-dir other
  cmp patch.bin got.bin || fail "the write flushed through serve is lost"
  case_ran
fi

# --- A loop device as destination: held with O_EXCL as well.
if [ "$(id -u)" != 0 ]; then
  skip_case "a loop device as destination" "attaching loop devices needs root"
elif ! truncate -s 4M loop.img || ! loop=$(losetup --find --show loop.img 2>/dev/null); then
  skip_case "a loop device as destination" "no loop device could be attached"
else
  LOOPS+=("$loop")
  images 4M 3
  expect 0 create l --metadata meta3.img --dest "$loop" --source src3.img --region-size 64K \
    --no-hydration
  start_serve l
  truncate -s 1M meta4.img
  expect 1 create l --state-dir new --metadata meta4.img --dest "$loop" --source src3.img \
    --region-size 64K
  contains err "destination $loop: in use by blkclone serve l (pid $SERVE_PID)"
  stop_serve
  case_ran
fi
end_cases "device lock"
