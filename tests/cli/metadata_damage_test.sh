# One damaged byte in any superblock copy after a flushed write: check passes
# and reads return the written bytes (the committed state is read from its
# twin), never the source's.
source "$(dirname "$0")/lib.sh"

images 16M
expect 0 create c --metadata meta.img --dest dst.img --source src.img --region-size 64K \
  --no-hydration
head -c 64K /dev/urandom >w.bin
expect 0 write c 0 w.bin
cp meta.img committed.img

# Byte 40 (the compatible features) of each of the first four metadata blocks.
for block in 0 1 2 3; do
  cp committed.img meta.img
  flip meta.img $((block * 4096 + 40))
  expect 0 check meta.img
  contains out "clean"
  contains out "1 of 256 regions hydrated"
  expect 0 read c 0 64K r.bin
  cmp -s w.bin r.bin || fail "block $block damaged: read returned other bytes than were written"
done
echo "metadata_damage: ok"
