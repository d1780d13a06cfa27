# A throwaway single-node Ceph cluster (one monitor, one memstore OSD, pool
# "rbd"), on 127.0.0.1 only, for tests and benchmarks. Sourced; bash.
#
#   source tests/ceph/ceph_cluster.sh
#   ceph_cluster_available || exit 77          # why is in CEPH_CLUSTER_MISSING
#   ceph_cluster_start "$dir" [BYTES]          # exports CEPH_CONF
#   rbd create --size 64M rbd/img
#   ceph_cluster_stop                          # also call it from an EXIT trap
#
# Ports are picked free at start, so clusters of concurrent tests do not meet.
# Everything, data included (memstore keeps it in the OSD's memory), lives in
# the directory given and in the daemons, which ceph_cluster_stop ends (OSD
# first: a monitor stopped first makes the OSD wait for it).

CEPH_CLUSTER_DIR=

# True when the daemons and tools are installed; else says which is missing.
ceph_cluster_available() {
  local tool
  for tool in ceph-mon ceph-osd ceph monmaptool rbd python3; do
    if ! command -v "$tool" >/dev/null; then
      CEPH_CLUSTER_MISSING="$tool is not installed (Debian packages ceph-mon ceph-osd ceph-common)"
      return 1
    fi
  done
}

ceph_cluster_uuid() { cat /proc/sys/kernel/random/uuid; }

# A TCP port on 127.0.0.1 that nothing listens on right now.
ceph_cluster_free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# ceph_cluster_start DIR [BYTES]: starts the cluster with its files in DIR
# (which must exist) and exports CEPH_CONF. BYTES (default 4 GiB) is the OSD's
# capacity; memstore takes memory only for what is stored. Fails, with the
# daemons' logs on stderr, when the cluster is not up within 60 s.
ceph_cluster_start() {
  local dir=$1 bytes=${2:-4294967296} fsid mon_port osd_uuid osd_id
  CEPH_CLUSTER_DIR=$dir
  fsid=$(ceph_cluster_uuid)
  mon_port=$(ceph_cluster_free_port)
  mkdir -p "$dir/mon" "$dir/osd" "$dir/run"
  cat >"$dir/ceph.conf" <<EOF
[global]
fsid = $fsid
mon host = [v2:127.0.0.1:$mon_port]
public addr = 127.0.0.1
cluster addr = 127.0.0.1
auth cluster required = none
auth service required = none
auth client required = none
osd pool default size = 1
osd pool default min size = 1
osd pool default pg autoscale mode = off
mon allow pool size one = true
mon allow pool delete = true
osd crush chooseleaf type = 0
paxos propose interval = 0.05
run dir = $dir/run
pid file = $dir/run/\$name.pid
admin socket = $dir/run/\$name.asok
log file = $dir/\$name.log
mon data = $dir/mon/\$name
osd data = $dir/osd/\$name
osd objectstore = memstore
memstore device bytes = $bytes
memstore page set = true
EOF
  export CEPH_CONF=$dir/ceph.conf
  monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$mon_port]" "$dir/monmap" >/dev/null &&
    ceph-mon --mkfs -i a --monmap "$dir/monmap" 2>>"$dir/daemons.err" &&
    ceph-mon -i a 2>>"$dir/daemons.err" &&
    osd_uuid=$(ceph_cluster_uuid) &&
    osd_id=$(ceph --connect-timeout 30 osd new "$osd_uuid") &&
    mkdir -p "$dir/osd/osd.$osd_id" &&
    ceph-osd -i "$osd_id" --mkfs --osd-uuid "$osd_uuid" 2>>"$dir/daemons.err" &&
    ceph-osd -i "$osd_id" 2>>"$dir/daemons.err" &&
    ceph_cluster_wait_osd_up &&
    ceph osd pool create rbd 8 8 >/dev/null 2>&1 &&
    rbd pool init rbd && return 0
  echo "ceph_cluster_start: the cluster did not come up; its logs:" >&2
  tail -n 30 "$dir"/*.log "$dir/daemons.err" >&2 || true
  ceph_cluster_stop
  return 1
}

ceph_cluster_wait_osd_up() {
  local _
  for _ in $(seq 600); do
    ceph osd stat -f json 2>/dev/null | grep -q '"num_up_osds":1' && return 0
    sleep 0.1
  done
  return 1
}

# Stops the daemons (OSD, then monitor) and waits until they are gone.
ceph_cluster_stop() {
  [ -n "$CEPH_CLUSTER_DIR" ] || return 0
  local pidfile pid _
  for pidfile in "$CEPH_CLUSTER_DIR"/run/osd.*.pid "$CEPH_CLUSTER_DIR"/run/mon.*.pid; do
    [ -f "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || continue
    for _ in $(seq 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
  done
  CEPH_CLUSTER_DIR=
}
