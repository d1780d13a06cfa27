# A remote source: nbdkit serves an image over a Unix socket with 2 ms of
# latency per read; blkclone clones it by URI, hydrates to completion, and the
# destination equals the image byte for byte. A URI is refused for any device
# but the source.
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
echo "nbd source: ok"
