# The devices recorded at create are the only ones later commands open: a
# path that has come to name another file (a symlink or hard link to the
# source, a file replaced by another or by a copy, loop devices whose backing
# files were swapped, as /dev names move between disks at a reboot) is refused
# by every command with exit status 1 and one line naming the device and what
# changed, and no byte of any file is written. At create, one file under two
# paths is refused.
source "$(dirname "$0")/lib.sh"

head -c 4096 /dev/urandom >patch.bin
LOOPS=()
detach_loops() {
  local loop
  for loop in "${LOOPS[@]}"; do losetup -d "$loop" 2>/dev/null || true; done
  cleanup
}
trap detach_loops EXIT

# fresh: clone c of new files src.img, dst.img and meta.img.
fresh() {
  rm -rf src.img dst.img meta.img dst.real "$BLKCLONE_STATE_DIR"/c.*
  images 1M
  expect 0 create c --metadata meta.img --dest dst.img --source src.img --region-size 64K
}

# refused ROLE PATH WHAT [all]: commands that open ROLE (metadata device,
# destination or source) refuse clone c, saying that PATH is not what was
# recorded and WHAT changed, and write nothing: write and verify, or with
# "all" every command that opens ROLE.
refused() {
  local commands=("write c 0 patch.bin" "verify c")
  if [ "${4:-}" = all ]; then
    commands+=("hydrate c" "serve c" "read c 0 4K got.bin")
    [ "$1" = source ] || commands+=("finalize c")
    [ "$1" != "metadata device" ] || commands+=("status c")
  fi
  sha256sum ./*.img ./*.real 2>/dev/null >before.sha || true
  for command in "${commands[@]}"; do
    # shellcheck disable=SC2086  # the arguments are words
    timeout 60 "$BLKCLONE" $command >out 2>err && fail "blkclone $command: succeeded"
    [ "$(wc -l <err)" = 1 ] || fail "blkclone $command: stderr is not one line: $(cat err)"
    contains err "$1 $2: not the device recorded at create ($3"
    sha256sum --quiet -c before.sha || fail "blkclone $command wrote"
  done
  case_ran
}

# --- The destination's path comes to name the source: a symlink, a hard link.
fresh
mv dst.img dst.real
ln -s src.img dst.img
refused destination "$WORK/dst.img" "inode " all
rm dst.img
ln src.img dst.img
refused destination "$WORK/dst.img" "inode "
rm dst.img
mv dst.real dst.img
expect 0 write c 0 patch.bin
case_ran

# --- A file replaced by another, or by a copy of itself (a copy of the
# metadata even holds the clone's UUID).
fresh
rm dst.img
truncate -s 1M dst.img
refused destination "$WORK/dst.img" ""
fresh
cp meta.img meta.copy
mv meta.copy meta.img
refused "metadata device" "$WORK/meta.img" "inode " all
fresh
cp src.img src.copy
mv src.copy src.img
refused source "$WORK/src.img" "inode "

# --- Paths that change but still name the recorded files are fine.
fresh
mkdir moved
mv dst.img moved/dst.img
ln -s moved/dst.img dst.img
expect 0 write c 0 patch.bin
expect 0 read c 0 4K got.bin
cmp patch.bin got.bin
case_ran

# --- create refuses one file under two paths.
images 1M 2
ln src2.img src2.link
ln -s src2.img src2.sym
ln -s dst2.img dst2.sym
for table in "meta2.img src2.link src2.img|source $WORK/src2.img: the same device as the destination $WORK/src2.link" \
  "meta2.img src2.sym src2.img|source $WORK/src2.img: the same device as the destination $WORK/src2.sym" \
  "dst2.sym dst2.img src2.img|destination $WORK/dst2.img: the same device as the metadata device $WORK/dst2.sym" \
  "meta2.img ./dst2.img $WORK/dst2.img|source $WORK/dst2.img: the same device as the destination $WORK/dst2.img"; do
  # shellcheck disable=SC2086  # the devices are words
  expect 2 create twice clone ${table%%|*} 8
  contains err "${table#*|}"
  [ ! -e state/twice.table ] || fail "create recorded a clone onto one file twice"
done
case_ran

# --- Two loop devices whose backing files are swapped after create: the
# destination's name now leads to the other file.
if [ "$(id -u)" != 0 ]; then
  skip_case "swapped loop devices" "attaching loop devices needs root"
elif ! truncate -s 1M a.img b.img || ! loop_a=$(losetup --find --show a.img 2>/dev/null); then
  skip_case "swapped loop devices" "no loop device could be attached"
else
  LOOPS+=("$loop_a")
  loop_b=$(losetup --find --show b.img)
  LOOPS+=("$loop_b")
  images 1M 3
  expect 0 create l --metadata meta3.img --dest "$loop_a" --source src3.img --region-size 64K
  grep -q "^destination loop " state/l.devices || fail "no loop identity: $(cat state/l.devices)"
  expect 0 write l 0 patch.bin
  losetup -d "$loop_a" "$loop_b"
  if ! losetup "$loop_a" b.img || ! losetup "$loop_b" a.img; then
    skip_case "swapped loop devices" "another program took $loop_a or $loop_b meanwhile"
  else
    sha256sum a.img b.img >before.sha
    expect 1 write l 0 patch.bin
    contains err "destination $loop_a: not the device recorded at create (loop backing file "
    expect 1 hydrate l
    contains err "destination $loop_a: not the device recorded at create (loop backing file "
    sha256sum --quiet -c before.sha || fail "a swapped loop device was written"
    losetup -d "$loop_a" "$loop_b"
    losetup "$loop_a" a.img
    losetup "$loop_b" b.img
    expect 0 read l 0 4K got.bin
    cmp patch.bin got.bin
    case_ran
  fi
fi
end_cases "device identity"
