# blkclone hydrate: to completion on 64 MiB files (destination equal to the
# source byte for byte), progress lines when not on a terminal, SIGINT.
source "$(dirname "$0")/lib.sh"

images 64M
expect 0 create c --metadata meta.img --dest dst.img --source src.img --region-size 64K
expect 0 hydrate c --threshold 4 --batch-size 4
contains out "hydrating c: "
contains out "hydrated clone c: 64.0 MiB of data copied and 0 B of holes zeroed"
cmp src.img dst.img
[ "$(hydrated c)" = 1024/1024 ] || fail "hydrated: $(hydrated c)"
expect 0 hydrate c
contains out "0 B of data copied"

images 64M 2
expect 0 create slow --metadata meta2.img --dest dst2.img --source src2.img --region-size 64K
"$BLKCLONE" hydrate slow --rate-limit 16M >slow.out 2>slow.err &
pid=$!
BACKGROUND+=("$pid")
wait_socket slow "$pid"
for _ in $(seq 300); do
  [ "$(hydrated_bytes slow)" -gt 0 ] && break
  sleep 0.1
done
[ "$(hydrated_bytes slow)" -gt 0 ] || fail "hydrate copied nothing in 30 s"
kill -INT "$pid"
wait_exit "$pid" "hydrate after SIGINT"
[ "$EXIT_STATUS" = 0 ] || fail "hydrate after SIGINT: exit $EXIT_STATUS: $(cat slow.err)"
contains slow.out "interrupted by SIGINT: clone slow is"
contains slow.out "run blkclone hydrate slow to resume"
# A source on tmpfs and a destination on another file system: the kernel
# refuses copy_file_range between them, and hydrate says it copies through
# buffers instead, once, and still copies every byte.
# kernel_refuses SOURCE DEST: whether copy_file_range(2) fails with EXDEV
# between the two files (it does across file system types since Linux 5.19).
kernel_refuses() {
  python3 - "$1" "$2" <<'PY'
import errno, os, sys
src, dst = (os.open(p, f) for p, f in ((sys.argv[1], os.O_RDONLY), (sys.argv[2], os.O_WRONLY)))
try:
    os.copy_file_range(src, dst, 4096)
except OSError as e:
    sys.exit(0 if e.errno == errno.EXDEV else 1)
sys.exit(1)
PY
}
shm_source=""
if [ "$(df --output=fstype /dev/shm 2>/dev/null | tail -n 1)" = tmpfs ]; then
  shm_source=$(mktemp /dev/shm/blkclone-cli-src.XXXXXX)
  head -c 4M /dev/urandom >"$shm_source"
  truncate -s 4M dst-x.img
  kernel_refuses "$shm_source" dst-x.img || { rm -f "$shm_source"; shm_source=""; }
fi
if [ -n "$shm_source" ]; then
  truncate -s 1M meta-x.img
  expect 0 create crossfs --metadata meta-x.img --dest dst-x.img --source "$shm_source" \
    --region-size 64K
  expect 0 hydrate crossfs
  [ "$(grep -c "the kernel refused copy_file_range" err)" = 1 ] ||
    { rm -f "$shm_source"; fail "no single fallback line: $(cat err)"; }
  cmp -s "$shm_source" dst-x.img || { rm -f "$shm_source"; fail "cross-fs copy differs"; }
  rm -f "$shm_source"
else
  echo "SKIP: cross-file-system copy: no tmpfs /dev/shm, or the kernel copies across"
fi
echo "hydrate: ok"
