# A remote source: nbdkit serves an image over a Unix socket with 2 ms of
# latency per read; blkclone clones it by URI, hydrates to completion, and the
# destination equals the image byte for byte. A URI is refused for any device
# but the source. A source whose block status fails is copied whole.
source "$(dirname "$0")/lib.sh"

command -v nbdkit >/dev/null || { echo "SKIP: nbdkit is not installed"; exit 77; }
images 32M
nbdkit --foreground --unix "$WORK/src.sock" --filter=delay file "$WORK/src.img" rdelay=2ms &
BACKGROUND+=("$!")
for _ in $(seq 200); do [ -S "$WORK/src.sock" ] && break; sleep 0.05; done
[ -S "$WORK/src.sock" ] || fail "nbdkit did not start"
uri="nbd+unix:///?socket=$WORK/src.sock"

expect 2 create bad --metadata meta.img --dest "$uri" --source src.img --region-size 64K
contains err "an NBD URI can only name the source"
expect 0 create remote --metadata meta.img --dest dst.img --source "$uri" --region-size 64K
grep -qF "$uri" "$BLKCLONE_STATE_DIR/remote.table" || fail "the URI was not recorded as given"
expect 0 hydrate remote --threshold 32 --batch-size 2
cmp src.img dst.img
[ "$(hydrated remote)" = 512/512 ] || fail "hydrated: $(hydrated remote)"

# A sparse image whose server fails every block-status request: hydrate copies
# everything, says so in one line, and succeeds.
truncate -s 32M sparse.img
head -c 1M /dev/urandom | dd of=sparse.img bs=1M seek=8 conv=notrunc status=none
truncate -s 32M dst2.img
truncate -s 1M meta2.img
nbdkit --foreground --unix "$WORK/sparse.sock" --filter=error file "$WORK/sparse.img" \
  error-extents-rate=100% &
BACKGROUND+=("$!")
for _ in $(seq 200); do [ -S "$WORK/sparse.sock" ] && break; sleep 0.05; done
[ -S "$WORK/sparse.sock" ] || fail "nbdkit with the error filter did not start"
expect 0 create failing --metadata meta2.img --dest dst2.img \
  --source "nbd+unix:///?socket=$WORK/sparse.sock" --region-size 64K
expect 0 hydrate failing
[ "$(grep -c "the source cannot say where its holes are" err)" = 1 ] ||
  fail "not one line about the failed block status: $(cat err)"
contains out "32.0 MiB of data copied and 0 B of holes zeroed"
cmp sparse.img dst2.img
echo "nbd source: ok"
