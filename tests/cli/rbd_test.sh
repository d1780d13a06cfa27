# Ceph RBD images as devices, on a throwaway single-node cluster that this
# script starts and always stops: a snapshot hydrated into a file, a file
# hydrated into an image (written to meanwhile), sparse sources copied
# sparsely into an image and into a file, and kill -9 in the middle of a
# hydration whose destination and metadata are RBD images, then resumed.
# Content is checked against `rbd export`. Later commands find the cluster
# through the conf recorded by create, not through $CEPH_CONF.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/../ceph/ceph_cluster.sh"

ceph_cluster_available || { echo "SKIP: $CEPH_CLUSTER_MISSING"; exit 77; }
trap 'ceph_cluster_stop; cleanup' EXIT
mkdir ceph
ceph_cluster_start "$WORK/ceph"
conf=$CEPH_CONF
unset CEPH_CONF
rbd() { command rbd -c "$conf" "$@"; }

# --- Errors, before anything is written.
images 32M
rbd import --no-progress src.img rbd/golden
rbd snap create --no-progress rbd/golden@v1
expect 2 create bad --metadata meta.img --dest dst.img --source src.img --region-size 64K \
  --ceph-conf "$conf"
contains err "--ceph-conf $conf: no device is an RBD image"
expect 2 create bad --metadata meta.img --dest dst.img --source rbd:rbd/missing \
  --region-size 64K --ceph-conf "$conf"
contains err "source: RBD image rbd/missing: no such image"
expect 2 create bad --metadata meta.img --dest rbd:rbd/golden@v1 --source src.img \
  --region-size 64K --ceph-conf "$conf"
contains err "a snapshot is read-only"
expect 2 create bad --metadata meta.img --dest rbd:golden --source src.img --region-size 64K \
  --ceph-conf "$conf"
contains err "expected POOL/[NAMESPACE/]IMAGE[@SNAPSHOT]"
expect 2 create bad --metadata meta.img --dest rbd:rbd/golden:color=red --source src.img \
  --region-size 64K
contains err "unknown option 'color'"
expect 2 create bad --metadata meta.img --dest "rbd:rbd/golden:conf=$conf" \
  --source "rbd:rbd/golden:conf=$conf" --region-size 64K
contains err "the same device as the destination"

# --- RBD snapshot -> file.
expect 0 create down --metadata meta.img --dest dst.img --source rbd:rbd/golden@v1 \
  --region-size 64K --ceph-conf "$conf"
grep -qF "rbd:rbd/golden@v1:conf=$conf" "$BLKCLONE_STATE_DIR/down.table" ||
  fail "the conf was not recorded: $(cat "$BLKCLONE_STATE_DIR/down.table")"
expect 0 hydrate down --threshold 16
cmp src.img dst.img
expect 0 verify down

# --- File -> RBD image, written to before it is hydrated.
images 32M 2
rbd create --size 32M rbd/up
expect 0 create up --metadata meta2.img --dest rbd:rbd/up --source src2.img --region-size 64K \
  --ceph-conf "$conf"
head -c 20480 /dev/urandom >patch.bin
expect 0 write up 7M patch.bin
cp src2.img expected2.img
dd if=patch.bin of=expected2.img bs=1M seek=7 conv=notrunc status=none
expect 0 hydrate up --threshold 16
rbd export --no-progress rbd/up up.img
cmp expected2.img up.img

# --- Sparse sources are copied sparsely, both ways: the destination takes no
# more than a tenth over the source's data, holes and all.
# sparse_image FILE SIZE OFFSET...: FILE of SIZE, all holes but 4 MiB of
# random data at each OFFSET.
sparse_image() {
  local file=$1 at
  truncate -s "$2" "$file"
  shift 2
  for at; do
    head -c 4M /dev/urandom |
      dd of="$file" bs=1M seek=$((at >> 20)) iflag=fullblock conv=notrunc status=none
  done
}
rbd_used() { rbd du --format json "$1" | grep -o '"used_size":[0-9]*' | head -n 1 | cut -d : -f 2; }
# thin USED DATA WHAT: USED bytes are at most 1.1 times DATA.
thin() {
  ((${1:?} * 10 <= ${2:?} * 11)) || fail "$3 takes $1 bytes for $2 bytes of data"
}

# File -> RBD image that held other data: its holes must be zeroed thinly.
sparse_image sparse-up.img 64M $((8 << 20)) $((32 << 20)) $((60 << 20))
images 64M 4
rbd import --no-progress src4.img rbd/sparse-up
expect 0 create sparse-up --metadata meta4.img --dest rbd:rbd/sparse-up --source sparse-up.img \
  --region-size 64K --ceph-conf "$conf"
expect 0 hydrate sparse-up
contains out "hydrated clone sparse-up: 12.0 MiB of data copied and 52.0 MiB of holes zeroed"
expect 0 finalize sparse-up
rbd export --no-progress rbd/sparse-up exported-up.img
cmp sparse-up.img exported-up.img
thin "$(rbd_used rbd/sparse-up)" "$(allocated sparse-up.img)" "rbd/sparse-up"

# RBD image with a tenth written -> file.
sparse_image sparse-down.img 80M 0 $((40 << 20))
rbd import --no-progress sparse-down.img rbd/sparse-down
truncate -s 80M dst5.img
truncate -s 1M meta5.img
expect 0 create sparse-down --metadata meta5.img --dest dst5.img --source rbd:rbd/sparse-down \
  --region-size 64K --ceph-conf "$conf"
expect 0 hydrate sparse-down
# The image itself says where its data is (rbd_diff_iterate2).
contains out "hydrated clone sparse-down: 8.0 MiB of data copied and 72.0 MiB of holes zeroed"
expect 0 finalize sparse-down
cmp sparse-down.img dst5.img
thin "$(allocated dst5.img)" $((8 << 20)) "dst5.img"

# --- kill -9 mid-hydration into an RBD image, with RBD metadata; resumed.
images 64M 3
rbd create --size 64M rbd/dst3
rbd create --size 1M rbd/meta3
expect 0 create c --metadata rbd:rbd/meta3 --dest rbd:rbd/dst3 --source src3.img \
  --region-size 64K --ceph-conf "$conf"
expect 0 write c 5M patch.bin
cp src3.img expected3.img
dd if=patch.bin of=expected3.img bs=1M seek=5 conv=notrunc status=none

kill_hydrate_midway c 1024
expect 0 check rbd:rbd/meta3 --ceph-conf "$conf"
expect 0 read c 5M 20K got.bin
cmp patch.bin got.bin
expect 0 hydrate c
contains out "hydrated clone c"
rbd export --no-progress rbd/dst3 exported3.img
cmp expected3.img exported3.img
expect 0 check "rbd:rbd/meta3:conf=$conf"
echo "rbd: ok ($KILLED_AT hydrated at the kill)"
