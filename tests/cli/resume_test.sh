# kill -9 during a rate-limited hydrate: data flushed before is kept, the
# metadata is clean, and a rerun completes with an exact copy.
source "$(dirname "$0")/lib.sh"

images 64M
expect 0 create c --metadata meta.img --dest dst.img --source src.img --region-size 64K
head -c 12288 /dev/urandom >patch.bin
expect 0 write c 5M patch.bin
cp src.img expected.img
dd if=patch.bin of=expected.img bs=1M seek=5 conv=notrunc status=none

kill_hydrate_midway c 1024
expect 0 check meta.img
expect 0 read c 5M 12K got.bin
cmp patch.bin got.bin

expect 0 hydrate c
contains out "hydrated clone c"
cmp expected.img dst.img
expect 0 check meta.img
echo "resume: ok ($KILLED_AT hydrated at the kill)"
