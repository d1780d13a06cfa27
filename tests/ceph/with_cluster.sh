#!/usr/bin/env bash
# with_cluster.sh COMMAND [ARGS...]: runs COMMAND with CEPH_CONF naming a
# fresh single-node Ceph cluster, stopped afterwards whatever happens. Exits
# 77 (skipped) where the Ceph packages are not installed.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/ceph_cluster.sh"
if ! ceph_cluster_available; then
  echo "skipped: $CEPH_CLUSTER_MISSING" >&2
  exit 77
fi
dir=$(mktemp -d /var/tmp/blkclone-ceph.XXXXXX)
trap 'ceph_cluster_stop; rm -rf "$dir"' EXIT
trap 'exit 143' TERM INT
ceph_cluster_start "$dir"
"$@"
