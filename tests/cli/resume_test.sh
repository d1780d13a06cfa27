# kill -9 during a rate-limited hydrate: data flushed before is kept, the
# metadata is clean, and a rerun completes with an exact copy.
source "$(dirname "$0")/lib.sh"

images 64M
expect 0 create c --metadata meta.img --dest dst.img --source src.img --region-size 64K
head -c 12288 /dev/urandom >patch.bin
expect 0 write c 5M patch.bin
cp src.img expected.img
dd if=patch.bin of=expected.img bs=1M seek=5 conv=notrunc status=none

"$BLKCLONE" hydrate c --rate-limit 8M >hydrate.out 2>hydrate.err &
pid=$!
BACKGROUND+=("$pid")
wait_socket c "$pid"
# Part-way, and more than a commit interval (1 s) after some progress.
for _ in $(seq 300); do
  [ "$(hydrated_bytes c)" -ge $((4 << 20)) ] && break
  sleep 0.1
done
sleep 1.5
kill -9 "$pid"
wait "$pid" || true

progress=$(hydrated c)
done_regions=${progress%/*}
[ "$done_regions" -gt 1 ] && [ "$done_regions" -lt 1024 ] || fail "after kill -9: $progress hydrated"
expect 0 check meta.img
expect 0 read c 5M 12K got.bin
cmp patch.bin got.bin

expect 0 hydrate c
contains out "hydrated clone c"
cmp expected.img dst.img
expect 0 check meta.img
echo "resume: ok ($progress hydrated at the kill)"
