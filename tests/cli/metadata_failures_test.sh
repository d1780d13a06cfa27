# A recorded clone whose metadata went wrong after create (damaged, another
# clone's, or of another geometry than the record): every command
# that opens it exits with status 1, the same for the same damage, with one
# line on stderr naming the metadata device and the problem (check and dump
# list damage on stdout), and changes no byte of any device.
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/lib.sh"
source "$HERE/open_failures_lib.sh"

# damage_bitmap: region 0 hydrated, then every copy of both versions of the
# bitmap block that records it (metadata blocks 4 to 7, slots A1, A2, B1 and
# B2; see docs/metadata-format.md) fails its checksum: the committed version
# is lost in both of its copies.
damage_bitmap() {
  "$BLKCLONE" write c 0 patch.bin >/dev/null
  for block in 4 5 6 7; do flip meta.img $((block * 4096 + 100)); done
}

# set_needs_check: a read-write open finds the damage and sets needs_check.
set_needs_check() {
  "$BLKCLONE" hydrate c 2>/dev/null && fail "hydrate of damaged metadata succeeded"
  "$BLKCLONE" check meta.img >check.out || true
  contains check.out "needs_check is set"
}

# Metadata of another clone with the same geometry.
mkdir other
images 1M 2
expect 0 create x --state-dir other --metadata meta2.img --dest dst2.img --source src2.img \
  --region-size 64K
cp meta2.img other.img

run_kinds \
  "metadata damaged|MC|damage_bitmap|blkclone check" \
  "metadata damaged, needs_check set|MC|damage_bitmap; set_needs_check|blkclone check" \
  "metadata of another clone|M|cp other.img meta.img|holds the metadata of another clone" \
  "geometry differs from the record|M|sed -i 's/ 128 0 4 / 256 0 4 /' state/c.table|differs from the table of clone c"
end_cases "metadata failures"
