# A recorded clone whose source or destination went missing, unreadable,
# resized or of the wrong type after create: every command that opens it exits
# with status 1 and one line on stderr naming the device and the problem
# (never a crash, never a hang), and changes no byte of any device.
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/lib.sh"
source "$HERE/open_failures_lib.sh"

run_kinds \
  "source missing|S|rm src.img|source $WORK/src.img: does not exist" \
  "destination missing|D|rm dst.img|destination $WORK/dst.img: does not exist" \
  "source unreadable|S|chmod 000 src.img|source $WORK/src.img: Permission denied" \
  "destination unreadable|D|chmod 000 dst.img|destination $WORK/dst.img: Permission denied" \
  "source shorter|S|truncate -s 512K src.img|source $WORK/src.img is 524288 bytes, shorter than the 1048576 bytes recorded at create" \
  "source longer|S|truncate -s 2M src.img|source $WORK/src.img is 2097152 bytes, longer than the 1048576 bytes recorded at create" \
  "destination resized|D|truncate -s 2M dst.img|destination $WORK/dst.img is 2097152 bytes, not the 1048576 bytes recorded at create" \
  "source a directory|S|rm src.img; mkdir src.img|source $WORK/src.img: neither a regular file nor a block device" \
  "destination a FIFO|D|rm dst.img; mkfifo dst.img|destination $WORK/dst.img: neither a regular file nor a block device"
end_cases "open failures"
