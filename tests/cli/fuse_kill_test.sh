# blkclone serve --fuse killed with -9 in the middle of hydration: what was
# synced through the mounted clone survives, and hydration resumes to the end.
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/lib.sh"
source "$HERE/disk_lib.sh"
need_fuse

fuse_clone_of_ext4 64M
attach_and_mount mnt/disk fs
check_sums fs old.sums
new_files fs  # its sync flushes the clone through the FUSE file

hydrated=$(json_field c regions hydrated)
expect 0 message c rate_limit 8M
expect 0 message c enable_hydration
for _ in $(seq 100); do
  [ "$(json_field c regions hydrated)" -ge $((hydrated + 16)) ] && break
  sleep 0.1
done
now=$(json_field c regions hydrated)
[ "$now" -ge $((hydrated + 16)) ] && [ "$now" -lt "$(json_field c regions total)" ] ||
  fail "not in the middle of hydration: $now regions hydrated"
kill -9 "$SERVE_PID"
wait_exit "$SERVE_PID" "serve killed with -9"
release_disk fs -l
fusermount3 -u -z mnt

serve c --fuse "$WORK/mnt"
attach_and_mount mnt/disk fs
check_sums fs old.sums new.sums
release_disk fs
e2fsck -fn mnt/disk >fsck.out 2>&1 || fail "e2fsck through the clone: $(cat fsck.out)"
stop_serve

timeout 60 "$BLKCLONE" hydrate c >hydrate.out 2>&1 || fail "hydrate: $(cat hydrate.out)"
expect 0 finalize c
e2fsck -fn dst.img >fsck.out 2>&1 || fail "e2fsck of the destination: $(cat fsck.out)"
attach_and_mount dst.img ro -o ro
check_sums ro old.sums new.sums
release_disk ro
echo "fuse_kill: ok"
