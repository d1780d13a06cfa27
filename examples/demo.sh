#!/usr/bin/env bash
# The blkclone demo: clones a generated source image into a destination file
# with the blkclone command, step by step, as an operator would with devices.
#   examples/demo.sh [BLKCLONE]   (default: build/release/examples/blkclone/blkclone)
# Everything happens in a scratch directory under /var/tmp, removed at the end.
set -euo pipefail

blkclone=$(realpath "${1:-build/release/examples/blkclone/blkclone}")
work=$(mktemp -d /var/tmp/blkclone-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT
export BLKCLONE_STATE_DIR=$work/state
mkdir -p "$BLKCLONE_STATE_DIR"
cd "$work"

step() { printf '\n== %s\n' "$*"; }
run() {
  printf '$ blkclone %s\n' "$*"
  "$blkclone" "$@"
}

step "1. A 128 MiB source image of random data, an empty destination, 1 MiB for metadata"
head -c 128M /dev/urandom >source.img
truncate -s 128M dest.img
truncate -s 1M meta.img
ls -l source.img dest.img meta.img

step "2. Create the clone from a dm-clone table line: 64 KiB regions (128 sectors), hydration off"
run create demo 0 262144 clone meta.img dest.img source.img 128 1 no_hydration
run status demo

step "3. Write 4 KiB through the clone at 1 MiB: its region is copied from the source first"
{ printf 'hello from blkclone\n'; head -c 4076 /dev/zero; } >hello.bin
run write demo 1M hello.bin
run read demo 1M 512 readback.bin
head -n 1 readback.bin
run status demo --human

step "4. Hydrate the rest, limited to 64 MiB/s, showing progress"
run hydrate demo --rate-limit 64M --threshold 4 --batch-size 8

step "5. Finalize: every region is hydrated, so the destination can replace the clone"
run finalize demo

step "6. Verify the destination against the source"
status=0
run verify demo || status=$?
cp source.img expected.img
dd if=hello.bin of=expected.img bs=1M seek=1 conv=notrunc status=none
if [ "$status" = 1 ] && [ "$("$blkclone" verify demo | grep -c '^differs')" = 1 ] &&
  cmp -s dest.img expected.img; then
  echo "As it should be: the only bytes that differ from the source are the 4 KiB written in"
  echo "step 3, and dest.img equals the source with that write applied, byte for byte."
else
  echo "demo failed: the destination is not the source plus the write of step 3" >&2
  exit 1
fi

step "Done"
echo "created a clone, wrote through it, hydrated it, finalized and verified it;"
echo "see \`$blkclone --help\` and docs/blkclone.1 for more."
