# Ceph RBD images as devices, on a throwaway single-node cluster that this
# script starts and always stops: a snapshot hydrated into a file, a file
# hydrated into an image (written to meanwhile), and kill -9 in the middle of
# a hydration whose destination and metadata are RBD images, then resumed.
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
