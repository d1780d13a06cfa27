# A recorded clone whose metadata device went missing, unreadable, too small
# or of the wrong type, or was wiped, after create: every command that opens
# it (check and dump by its path) exits with status 1 and one line on stderr
# naming the device and the problem, and changes no byte of any device.
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/lib.sh"
source "$HERE/open_failures_lib.sh"

run_kinds \
  "metadata missing|MC|rm meta.img|metadata device $WORK/meta.img: does not exist" \
  "metadata unreadable|MC|chmod 000 meta.img|metadata device $WORK/meta.img: Permission denied" \
  "metadata shrunk|MC|truncate -s 12K meta.img|metadata device $WORK/meta.img is 12288 bytes, smaller than the 32768 bytes" \
  "metadata a directory|MC|rm meta.img; mkdir meta.img|metadata device $WORK/meta.img: neither a regular file nor a block device" \
  "metadata blank|MC|dd if=/dev/zero of=meta.img bs=16K count=1 conv=notrunc status=none|metadata device $WORK/meta.img: blank"
end_cases "metadata device failures"
