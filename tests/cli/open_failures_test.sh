# A recorded clone whose devices or metadata went wrong after create: every
# command that opens what went wrong exits with status 1 and one line on
# stderr naming the device and the problem (never a crash, never a hang), and
# changes no byte of any device.
source "$(dirname "$0")/lib.sh"

head -c 4096 /dev/urandom >patch.bin
mkdir other

# The commands, by the letters of what they open: S the source, D the
# destination, M the metadata through the clone's record, C the metadata device
# by its path (check and dump).
commands=(
  "SDM|hydrate c"
  "SDM|serve c"
  "SDM|write c 0 patch.bin"
  "SDM|read c 0 4K got.bin"
  "SDM|verify c"
  "DM|finalize c"
  "M|status c"
  "C|check $WORK/meta.img"
  "C|dump $WORK/meta.img"
)

# Each kind of failure: its name, what it opens (letters as above), the shell
# commands that cause it, and words the error must hold.
kinds=(
  "source missing|S|rm src.img|source $WORK/src.img: does not exist"
  "destination missing|D|rm dst.img|destination $WORK/dst.img: does not exist"
  "metadata missing|MC|rm meta.img|metadata device $WORK/meta.img: does not exist"
  "source unreadable|S|chmod 000 src.img|source $WORK/src.img: Permission denied"
  "destination unreadable|D|chmod 000 dst.img|destination $WORK/dst.img: Permission denied"
  "metadata unreadable|MC|chmod 000 meta.img|metadata device $WORK/meta.img: Permission denied"
  "source shorter|S|truncate -s 512K src.img|source $WORK/src.img is 524288 bytes, shorter than the 1048576 bytes recorded at create"
  "source longer|S|truncate -s 2M src.img|source $WORK/src.img is 2097152 bytes, longer than the 1048576 bytes recorded at create"
  "destination resized|D|truncate -s 2M dst.img|destination $WORK/dst.img is 2097152 bytes, not the 1048576 bytes recorded at create"
  "metadata shrunk|MC|truncate -s 12K meta.img|metadata device $WORK/meta.img is 12288 bytes, smaller than the 16384 bytes"
  "source a directory|S|rm src.img; mkdir src.img|source $WORK/src.img: neither a regular file nor a block device"
  "destination a FIFO|D|rm dst.img; mkfifo dst.img|destination $WORK/dst.img: neither a regular file nor a block device"
  "metadata a directory|MC|rm meta.img; mkdir meta.img|metadata device $WORK/meta.img: neither a regular file nor a block device"
  "metadata blank|MC|dd if=/dev/zero of=meta.img bs=8K count=1 conv=notrunc status=none|metadata device $WORK/meta.img: blank"
  "metadata damaged|MC|damage_bitmap|blkclone check"
  "metadata damaged, needs_check set|MC|damage_bitmap; set_needs_check|blkclone check"
  "metadata of another clone|M|cp other.img meta.img|holds the metadata of another clone"
  "geometry differs from the record|M|sed -i 's/ 128 0 4 / 256 0 4 /' state/c.table|differs from the table of clone c"
)

# damage_bitmap: region 0 hydrated, then both copies of the bitmap block that
# records it (metadata blocks 2 and 3) fail their checksum: whichever holds the
# committed version is damaged.
damage_bitmap() {
  "$BLKCLONE" write c 0 patch.bin >/dev/null
  flip meta.img $((2 * 4096 + 100))
  flip meta.img $((3 * 4096 + 100))
}

# set_needs_check: a read-write open finds the damage and sets needs_check.
set_needs_check() {
  "$BLKCLONE" hydrate c 2>/dev/null && fail "hydrate of damaged metadata succeeded"
  "$BLKCLONE" check meta.img >check.out || true
  contains check.out "needs_check is set"
}

# As root, the unreadable kinds run the commands without the capabilities
# that bypass file permissions.
unprivileged=()
if [ "$(id -u)" = 0 ]; then
  unprivileged=(setpriv --bounding-set -dac_override,-dac_read_search --)
fi

# Metadata of another clone with the same geometry, for the kind that needs it.
images 1M 2
expect 0 create x --state-dir other --metadata meta2.img --dest dst2.img --source src2.img \
  --region-size 64K
cp meta2.img other.img

for kind in "${kinds[@]}"; do
  IFS='|' read -r name opens break words <<<"$kind"
  rm -rf src.img dst.img meta.img "$BLKCLONE_STATE_DIR"/c.*
  images 1M
  expect 0 create c --metadata meta.img --dest dst.img --source src.img --region-size 64K
  eval "$break"
  # A read-write open that finds damage sets needs_check in the metadata: the
  # damaged metadata is restored before each command and not compared after.
  damaged=false
  [[ "$name" != "metadata damaged"* ]] || { damaged=true; cp meta.img meta.img.broken; }
  for file in src.img dst.img meta.img; do
    [ ! -f "$file" ] || [ "$damaged/$file" = true/meta.img ] || sha256sum "$file"
  done >before.sha
  runner=()
  [[ "$name" != *unreadable ]] || runner=("${unprivileged[@]}")
  for command in "${commands[@]}"; do
    letters=${command%%|*}
    args=${command#*|}
    [[ "$opens" == *[$letters]* ]] || continue
    [ "$damaged" = false ] || cp meta.img.broken meta.img
    status=0
    # shellcheck disable=SC2086  # the arguments are words
    timeout 60 "${runner[@]}" "$BLKCLONE" $args >out 2>err || status=$?
    [ "$status" = 1 ] ||
      fail "$name: blkclone $args: exit status $status, expected 1; stderr: $(cat err)"
    # check and dump report damage found on standard output.
    [ "$(wc -l <err)" -le 1 ] || fail "$name: blkclone $args: stderr is not one line: $(cat err)"
    [ "$letters" = C ] || contains err "$words"
    sha256sum --quiet -c before.sha || fail "$name: blkclone $args changed a device"
    case_ran
  done
done
end_cases "open failures"
