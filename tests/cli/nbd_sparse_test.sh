# blkclone serve --nbd over a sparse source: block status (base:allocation
# as qemu-img map and nbdinfo --map see it, blkclone:hydrated), nbdcopy making
# a sparse copy, and NBD_CMD_CACHE hydrating a range.
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/lib.sh"
source "$HERE/disk_lib.sh"
need nbdinfo nbdcopy qemu-img
/usr/bin/python3 -c 'import nbd' 2>/dev/null || { echo "SKIP: no python3 nbd module"; exit 77; }

# map JSON_FILE: qemu-img map's extents as "start length data zero" lines.
map() {
  /usr/bin/python3 -c '
import json, sys
for e in json.load(open(sys.argv[1])):
    print(e["start"], e["length"], e["data"], e["zero"])
' "$1"
}

# hydration_map: nbdinfo's blkclone:hydrated map as "offset length status" lines.
hydration_map() {
  timeout 30 nbdinfo --map=blkclone:hydrated "$URI" | awk '{print $1, $2, $3}'
}

# 64 MiB, data in four places: 1 MiB at 0, 64 KiB at 8 MiB + 4 KiB (across
# two regions), 2 MiB at 20 MiB, 512 KiB at the end.
truncate -s 64M src.img
for at_kib in 0:1024 8196:64 20480:2048 65024:512; do
  head -c $((${at_kib#*:} * 1024)) /dev/urandom |
    dd of=src.img bs=1K seek="${at_kib%:*}" conv=notrunc status=none
done
truncate -s 64M dst.img
truncate -s 1M meta.img
expect 0 create c --metadata meta.img --dest dst.img --source src.img --region-size 64K --no-hydration
serve c --nbd "unix:$WORK/nbd.sock"
URI="nbd+unix:///?socket=$WORK/nbd.sock"

timeout 30 qemu-img map --output=json -f raw src.img >source.json
timeout 30 qemu-img map --output=json "$URI" >export.json
map source.json >source.map
map export.json >export.map
diff source.map export.map || fail "qemu-img map of the export differs from the source's"
grep -q False export.map || fail "the source's holes do not show: $(cat export.map)"
timeout 30 nbdinfo --map "$URI" >allocation.map
contains allocation.map "hole,zero"
[ "$(hydration_map)" = "0 67108864 0" ] || fail "blkclone:hydrated before any copy: $(hydration_map)"
[ "$(json_field c regions hydrated)" = 0 ] || fail "block status hydrated regions"
case_ran

timeout 60 nbdcopy "$URI" copy.img
cmp src.img copy.img || fail "nbdcopy of the export differs from the source"
# nbdcopy skips the holes: the copy is the source's bytes, allocated as
# sparsely (within the file system's extent blocks: 1.1 times at most).
((allocated_copy = $(allocated copy.img), allocated_src = $(allocated src.img)))
((allocated_copy * 10 <= allocated_src * 11)) ||
  fail "the nbdcopy copy is not sparse: $allocated_copy bytes allocated, the source $allocated_src"
case_ran

# CACHE hydrates the regions of its range before it answers: 1 MiB at 20 MiB
# is 16 regions, which blkclone:hydrated then reports (bit 0 set) and the
# status counts.
nbdsh -u "$URI" -c "h.cache(2**20, 20 * 2**20)"
expected="0 20971520 0
20971520 1048576 1
22020096 45088768 0"
[ "$(hydration_map)" = "$expected" ] || fail "blkclone:hydrated after CACHE: $(hydration_map)"
[ "$(json_field c regions hydrated)" = 16 ] || fail "CACHE hydrated $(json_field c regions hydrated) regions"
cmp -n 1M <(tail -c +$((20 * 2**20 + 1)) dst.img) <(tail -c +$((20 * 2**20 + 1)) src.img) ||
  fail "the cached range is not on the destination"
# Hydrated or not, the export still maps as the source does.
timeout 30 qemu-img map --output=json "$URI" >export.json
map export.json >export.map
diff source.map export.map || fail "qemu-img map after CACHE differs from the source's"
case_ran

stop_serve
end_cases nbd_sparse
