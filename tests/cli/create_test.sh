# blkclone create: the kernel documentation's table, the option form, the
# normalised record, and metadata that is or is not this clone's to take.
source "$(dirname "$0")/lib.sh"

images 16M
sectors=$((16 * 2048))
expect 0 create kernel 0 $sectors clone meta.img dst.img src.img 8 1 no_hydration
contains out "created clone kernel: 16.0 MiB source, 4096 regions of 4.0 KiB"
[ "$(cat state/kernel.table)" = "0 $sectors clone $WORK/meta.img $WORK/dst.img $WORK/src.img 8 1 no_hydration 4 hydration_threshold 1 hydration_batch_size 1" ] ||
  fail "recorded table: $(cat state/kernel.table)"
expect 0 status kernel
[ "$(cat out)" = "8 4/256 8 0/4096 0 1 no_hydration 4 hydration_threshold 1 hydration_batch_size 1 rw" ] ||
  fail "status: $(cat out)"
expect 0 status kernel --json
contains out '"active":false'
contains out '"features":["no_hydration"]'

# The same in options, from another directory: paths are recorded absolute.
images 16M 2
mkdir elsewhere
(cd elsewhere && "$BLKCLONE" create opts --metadata ../meta2.img --dest ../dst2.img \
  --source ../src2.img --region-size 64K --no-discard-passdown --threshold 3 --batch-size 2 >/dev/null)
[ "$(cat state/opts.table)" = "0 $sectors clone $WORK/meta2.img $WORK/dst2.img $WORK/src2.img 128 1 no_discard_passdown 4 hydration_threshold 3 hydration_batch_size 2" ] ||
  fail "recorded table: $(cat state/opts.table)"
[ "$(cat state/opts.uuid)" = "$("$BLKCLONE" dump meta2.img --json | sed 's/.*"uuid":"\([^"]*\)".*/\1/')" ] ||
  fail "recorded uuid differs from the metadata's"

expect 2 create kernel clone meta.img dst.img src.img 8
contains err "clone kernel: already exists"
expect 2 create other clone meta.img dst.img src.img 8
contains err "holds the metadata of clone kernel"
expect 2 create other clone meta.img dst.img src.img 16
contains err "holds the metadata of another clone"

# Metadata of the same geometry that no recorded clone owns is taken over.
rm state/kernel.*
expect 0 create again 0 $sectors clone meta.img dst.img src.img 8 1 no_hydration
contains out "metadata: took over $WORK/meta.img"
echo "create: ok"
