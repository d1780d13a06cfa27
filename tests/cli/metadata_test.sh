# blkclone check and dump on clean metadata, and check on metadata whose
# committed bitmap version lost both copies, then check --repair.
source "$(dirname "$0")/lib.sh"

images 16M
expect 0 create c --metadata meta.img --dest dst.img --source src.img --region-size 64K
expect 0 hydrate c
expect 0 check meta.img
contains out "metadata device meta.img: clean"
contains out "256 of 256 regions hydrated"
expect 0 dump meta.img
contains out "hydrated regions: 256/256"
contains out "  [0, 255]"
expect 0 dump meta.img --json
contains out '"hydrated_regions":256,"hydrated_ranges":[[0,255]]'

# Every copy of bitmap block 0 (metadata blocks 4 to 7): both copies of its
# committed version are damaged now.
for block in 4 5 6 7; do flip meta.img $((block * 4096 + 100)); done
expect 1 check meta.img
grep -qE "^bitmap block 0 \(regions 0\.\.255\), slot [AB][12] at metadata block [4-7]: fails its checksum" out ||
  fail "check output: $(cat out)"
contains out "1 problem(s) found"
expect 1 check meta.img --clear-needs-check-flag
expect 1 dump meta.img
contains err "bitmap block 0"

# The clone does not open read-write until the loss is accepted by a repair,
# after which hydration copies the lost regions again.
head -c 64K /dev/urandom >w.bin
expect 1 write c 0 w.bin
contains err "bitmap block 0"
expect 1 write c 0 w.bin
contains err "needs_check is set"
expect 2 check meta.img --repair --clear-needs-check-flag
expect 0 check meta.img --repair
contains out "repaired"
contains out "metadata device meta.img: clean"
expect 0 check meta.img
expect 0 hydrate c
expect 0 check meta.img
contains out "256 of 256 regions hydrated"
expect 0 verify c

head -c 1M /dev/urandom >random.img
expect 1 check random.img
contains out "not blkclone metadata"
echo "metadata: ok"
