# The direct and uring backends, where the build includes them and the kernel
# and file system allow them: hydrate, write, read and verify through each.
source "$(dirname "$0")/lib.sh"

for backend in direct uring; do
  images 16M "-$backend"
  expect 0 create "$backend" --metadata "meta-$backend.img" --dest "dst-$backend.img" \
    --source "src-$backend.img" --region-size 64K
  status=0
  "$BLKCLONE" hydrate "$backend" --backend "$backend" >out 2>err || status=$?
  if [ "$status" = 2 ] && grep -qE "not built in|O_DIRECT|io_uring" err; then
    skip_case "$backend" "$(cat err)"
    continue
  fi
  [ "$status" = 0 ] || fail "hydrate --backend $backend: exit status $status: $(cat err)"
  cmp "src-$backend.img" "dst-$backend.img"
  head -c 4096 /dev/urandom >patch.bin
  expect 0 write "$backend" 1M patch.bin --backend "$backend"
  expect 0 read "$backend" 1M 4K got.bin --backend "$backend"
  cmp patch.bin got.bin
  expect 1 verify "$backend" --backend "$backend"
  contains out "differs: bytes 1048576..1052671 (4.0 KiB)"
  case_ran
done
end_cases "backends"
