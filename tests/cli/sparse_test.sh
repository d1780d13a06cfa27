# Sparse sources: hydrate copies the data, zeroes the holes, and leaves a
# destination no more allocated than the source (du), finalized as it is;
# chunks of written zeroes are punched unless --no-detect-zeroes; the progress
# and status count data and holes apart.
source "$(dirname "$0")/lib.sh"

# sparse_image FILE: 64 MiB holding 1 MiB of random data every 8 MiB, and
# 1 MiB of written zeroes at 20 MiB: 9 MiB allocated.
sparse_image() {
  truncate -s 64M "$1"
  for i in $(seq 0 7); do
    head -c 1M /dev/urandom | dd of="$1" bs=1M seek=$((i * 8)) conv=notrunc status=none
  done
  dd if=/dev/zero of="$1" bs=1M seek=20 count=1 conv=notrunc status=none
}

sparse_image src.img
truncate -s 64M dst.img
truncate -s 1M meta.img
expect 0 create c --metadata meta.img --dest dst.img --source src.img --region-size 64K
expect 0 hydrate c
contains out "hydrated clone c: 9.0 MiB of data copied and 55.0 MiB of holes zeroed"
cmp src.img dst.img
expect 0 finalize c
((allocated_dst = $(allocated dst.img), allocated_src = $(allocated src.img)))
((allocated_dst * 10 <= allocated_src * 11)) ||
  fail "the finalized destination holds $allocated_dst bytes, the source $allocated_src"
case_ran

# io_uring reads the data and punches the megabyte of zeroes; without zero
# detection it writes them.
for detect in yes no; do
  rm -f dst-u.img meta-u.img "$BLKCLONE_STATE_DIR"/u.*
  truncate -s 64M dst-u.img
  truncate -s 1M meta-u.img
  expect 0 create u --metadata meta-u.img --dest dst-u.img --source src.img --region-size 64K
  # The 8 MiB of data, and 1 MiB more if the zeroes are written.
  flag="" low=$((8 << 20)) high=$((8 << 20))
  [ $detect = no ] && flag=--no-detect-zeroes low=$((9 << 20)) high=$((9 << 20))
  status=0
  timeout 60 "$BLKCLONE" hydrate u --backend uring $flag >out 2>err || status=$?
  if [ "$status" = 2 ] && grep -qE "not built in|io_uring" err; then
    skip_case "uring, detect zeroes $detect" "$(cat err)"
    continue
  fi
  [ "$status" = 0 ] || fail "hydrate --backend uring $flag: exit $status: $(cat err)"
  cmp src.img dst-u.img
  # A file system may allocate a block or so more than asked.
  (($(allocated dst-u.img) >= low && $(allocated dst-u.img) <= high + (64 << 10))) ||
    fail "detect zeroes $detect: $(allocated dst-u.img) bytes allocated, not about $low"
  case_ran
done

# While it runs: data and holes apart in the status and the progress lines.
sparse_image src-s.img
truncate -s 64M dst-s.img
truncate -s 1M meta-s.img
expect 0 create s --metadata meta-s.img --dest dst-s.img --source src-s.img --region-size 64K
"$BLKCLONE" hydrate s --rate-limit 2M --batch-size 1 --threshold 1 >slow.out 2>slow.err &
pid=$!
BACKGROUND+=("$pid")
wait_socket s "$pid"
for _ in $(seq 100); do
  "$BLKCLONE" status s --json >status.json
  grep -q '"data":{' status.json && break
  sleep 0.1
done
contains status.json '"data":{"hydrated":'
contains status.json '"total":9437184}'
contains status.json '"holes":{"hydrated":'
contains status.json '"total":57671680}'
"$BLKCLONE" status s --human >status.txt
contains status.txt "of 9.0 MiB copied"
contains status.txt "of 55.0 MiB zeroed, not copied"
# A progress line a second.
for _ in $(seq 50); do
  grep -qF "(data " slow.out && break
  sleep 0.1
done
kill -INT "$pid"
wait_exit "$pid" "hydrate after SIGINT"
[ "$EXIT_STATUS" = 0 ] || fail "hydrate after SIGINT: exit $EXIT_STATUS: $(cat slow.err)"
contains slow.out "(data "
contains slow.out "of 9.0 MiB, holes "
contains slow.out "of 55.0 MiB)"
expect 0 status s --json
contains out '"data":null'
case_ran
end_cases sparse
