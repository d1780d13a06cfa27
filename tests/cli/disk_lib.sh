# Shared by the CLI tests that use a served clone as a disk, sourced after
# lib.sh: skipping (exit 77) when a tool is missing, waiting for serve, and
# cleanup of mounts and loop devices on exit.

# need TOOL...: skips the test unless every TOOL is on PATH (or in /sbin).
need() {
  local tool
  for tool in "$@"; do
    PATH=$PATH:/sbin:/usr/sbin command -v "$tool" >/dev/null ||
      { echo "SKIP: $tool is not installed"; exit 77; }
  done
}

# need_fuse: skips the test unless it runs as root with /dev/fuse, as loop
# devices and mounts need.
need_fuse() {
  [ "$(id -u)" = 0 ] || { echo "SKIP: needs root for loop devices and mounts"; exit 77; }
  [ -c /dev/fuse ] || { echo "SKIP: no /dev/fuse"; exit 77; }
  need losetup mkfs.ext4 e2fsck fstrim fusermount3 mount umount sha256sum
}

# nbdsh ARGS...: nbdsh run by a python3 that has the nbd module (the first
# python3 on PATH may lack it), for 30 s at most.
nbdsh() {
  PATH=/usr/bin:$PATH timeout 30 nbdsh "$@"
}

MOUNTS=()  # file systems to unmount on exit, last first
LOOPS=()   # loop devices to detach on exit
FUSES=()   # FUSE directories to unmount lazily on exit

disk_cleanup() {
  local i
  for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
    [ -z "${MOUNTS[i]}" ] || umount -l "${MOUNTS[i]}" 2>/dev/null || true
  done
  for loop in "${LOOPS[@]}"; do [ -z "$loop" ] || losetup -d "$loop" 2>/dev/null || true; done
  for pid in "${BACKGROUND[@]}"; do
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  for dir in "${FUSES[@]}"; do fusermount3 -u -z "$dir" 2>/dev/null || true; done
  cleanup
}
trap disk_cleanup EXIT

# serve NAME ARGS...: runs blkclone serve NAME ARGS in the background (its pid
# in SERVE_PID) and waits until its exports are up.
serve() {
  local name=$1
  shift
  "$BLKCLONE" serve "$name" "$@" >serve.out 2>serve.err &
  SERVE_PID=$!
  BACKGROUND+=("$SERVE_PID")
  for _ in $(seq 200); do
    grep -qs "^serving clone" serve.out && return 0
    kill -0 "$SERVE_PID" 2>/dev/null || fail "serve $name exited early: $(cat serve.err)"
    sleep 0.05
  done
  fail "serve $name: not serving after 10 s"
}

# stop_serve: SIGTERM to serve, which must exit with status 0.
stop_serve() {
  kill -TERM "$SERVE_PID"
  wait_exit "$SERVE_PID" "serve after SIGTERM"
  [ "$EXIT_STATUS" = 0 ] || fail "serve exited with $EXIT_STATUS: $(cat serve.err)"
}

# json_field NAME SECTION FIELD: a number from blkclone status NAME --json, as
# in "regions":{"hydrated":N,...}.
json_field() {
  "$BLKCLONE" status "$1" --json | sed -n "s/.*\"$2\":{[^}]*\"$3\":\([0-9]*\).*/\1/p"
}

# ext4_source SIZE: src.img, an ext4 file system of SIZE built from a tree of
# files whose checksums are in old.sums, over random bytes (so that a copy of
# its free space shows in the destination); an empty dst.img and meta.img.
ext4_source() {
  mkdir -p tree/a/b tree/c
  head -c 3M /dev/urandom >tree/big
  head -c 100K /dev/urandom >tree/a/mid
  head -c 5000 /dev/urandom >tree/a/b/small
  echo hello >tree/c/text
  for i in $(seq 20); do head -c $((i * 1000)) /dev/urandom >"tree/c/f$i"; done
  (cd tree && find . -type f -print0 | xargs -0 sha256sum) >old.sums
  images "$1"
  mkfs.ext4 -q -F -E nodiscard -d tree src.img
}

# attach_and_mount FILE DIR [MOUNT_OPTION...]: a loop device for FILE (in
# LOOP) mounted on DIR.
attach_and_mount() {
  LOOP=$(losetup --find --show "$1")
  LOOPS+=("$LOOP")
  mkdir -p "$2"
  mount "${@:3}" "$LOOP" "$2"
  MOUNTS+=("$2")  # as given, for release_disk
}

# release_disk DIR [-l]: unmounts DIR (lazily with -l) and detaches LOOP.
release_disk() {
  umount ${2:-} "$1"
  MOUNTS=("${MOUNTS[@]/$1/}")
  losetup -d "$LOOP"
  LOOPS=("${LOOPS[@]/$LOOP/}")
}

# check_sums DIR SUMS...: every file listed in SUMS has its checksum under DIR.
check_sums() {
  local dir=$1 sums
  shift
  for sums in "$@"; do
    (cd "$dir" && sha256sum --quiet -c "$WORK/$sums") || fail "files under $dir differ from $sums"
  done
}

# new_files DIR: writes new files under DIR, their checksums in new.sums, and syncs.
new_files() {
  mkdir -p "$1/new"
  head -c 2M /dev/urandom >"$1/new/blob"
  echo "written through the clone" >"$1/new/note"
  (cd "$1" && sha256sum new/blob new/note) >new.sums
  sync
}

# nonzero_regions FILE: how many 64 KiB regions of FILE hold anything but zeros.
nonzero_regions() {
  /usr/bin/python3 -c '
import sys
with open(sys.argv[1], "rb") as f:
    print(sum(1 for chunk in iter(lambda: f.read(65536), b"") if chunk.count(0) != len(chunk)))
' "$1"
}

# wait_hydrated NAME: waits up to 40 s until every region of NAME is hydrated.
wait_hydrated() {
  for _ in $(seq 400); do
    [ "$(json_field "$1" regions hydrated)" = "$(json_field "$1" regions total)" ] && return 0
    sleep 0.1
  done
  fail "$1: not hydrated after 40 s: $("$BLKCLONE" status "$1")"
}

# fuse_clone_of_ext4 SIZE: a blank clone c (64 KiB regions, no_hydration) of
# a new ext4 image of SIZE, served by `serve c --fuse ./mnt`.
fuse_clone_of_ext4() {
  ext4_source "$1"
  expect 0 create c --metadata meta.img --dest dst.img --source src.img --region-size 64K \
    --no-hydration
  mkdir mnt
  FUSES+=("$WORK/mnt")
  serve c --fuse "$WORK/mnt"
}
