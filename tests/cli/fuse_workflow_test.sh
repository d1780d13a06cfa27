# The dm-clone workflow of the kernel's documentation with blkclone serve
# --fuse: use the clone at once (loop device, mount), trim it, write to it,
# hydrate it in the background, then finalize and use the destination itself.
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/lib.sh"
source "$HERE/disk_lib.sh"
need_fuse

fuse_clone_of_ext4 64M
contains serve.out "FUSE $WORK/mnt/disk"
attach_and_mount mnt/disk fs
check_sums fs old.sums

# fstrim hydrates the free space's whole regions without copying them: the
# destination stays zero there (but for the few regions that ext4's own
# metadata writes meanwhile hydrate by copying).
hydrated=$(json_field c regions hydrated)
nonzero=$(nonzero_regions dst.img)
fstrim fs
trimmed=$(($(json_field c regions hydrated) - hydrated))
[ "$trimmed" -gt 500 ] || fail "fstrim hydrated $trimmed regions"
[ "$(($(nonzero_regions dst.img) - nonzero))" -lt 32 ] || fail "fstrim copied regions: $nonzero -> $(nonzero_regions dst.img) nonzero, $hydrated -> $((hydrated + trimmed)) hydrated"

new_files fs
expect 0 message c enable_hydration
wait_hydrated c
release_disk fs
stop_serve
contains serve.out "stopped clone c on SIGTERM: 100.0% hydrated"

expect 0 finalize c
e2fsck -fn dst.img >fsck.out 2>&1 || fail "e2fsck of the destination: $(cat fsck.out)"
attach_and_mount dst.img ro -o ro
check_sums ro old.sums new.sums
release_disk ro
echo "fuse_workflow: ok"
