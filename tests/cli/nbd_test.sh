# blkclone serve --nbd: the clone as an NBD disk for nbdinfo, nbdcopy, qemu-img
# and nbdsh; writes and trims hydrate regions, SIGTERM commits them.
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/lib.sh"
source "$HERE/disk_lib.sh"
need nbdinfo nbdcopy qemu-img
/usr/bin/python3 -c 'import nbd' 2>/dev/null || { echo "SKIP: no python3 nbd module"; exit 77; }

images 64M
expect 0 create c --metadata meta.img --dest dst.img --source src.img --region-size 64K --no-hydration
serve c --nbd "unix:$WORK/nbd.sock" --nbd-name c
contains serve.out "NBD unix:$WORK/nbd.sock (export c)"
URI="nbd+unix:///c?socket=$WORK/nbd.sock"

[ "$(nbdinfo --size "$URI")" = 67108864 ] || fail "nbdinfo --size: $(nbdinfo --size "$URI")"
timeout 30 nbdcopy "$URI" copy.img
cmp src.img copy.img || fail "nbdcopy of the export differs from the source"
[ "$(json_field c regions hydrated)" = 0 ] || fail "reads hydrated regions"

# 1 MiB of whole regions at 0 (written, not copied) and 4 KiB inside region 128 (copied).
head -c 1M /dev/urandom >patch.img
head -c 4K /dev/urandom >small.img
timeout 30 qemu-img convert -n -f raw -O raw patch.img "$URI"
nbdsh -u "$URI" -c "h.pwrite(open('small.img', 'rb').read(), 8 * 2**20 + 4096)"
[ "$(json_field c regions hydrated)" = 17 ] || fail "written regions: $(json_field c regions hydrated)"

# Trimming 16 whole regions at 16 MiB hydrates them without copying: the
# destination stays zero there.
nbdsh -u "$URI" -c "h.trim(2**20, 16 * 2**20); h.flush()"
[ "$(json_field c regions hydrated)" = 33 ] || fail "trimmed regions: $(json_field c regions hydrated)"
cmp -n 1M <(tail -c +$((16 * 2**20 + 1)) dst.img) /dev/zero ||
  fail "trimmed regions were copied to the destination"

stop_serve
contains serve.out "stopped clone c on SIGTERM: 3.2% hydrated (33 of 1024 regions)"
expect 0 read c 0 1M got.img
cmp patch.img got.img || fail "the qemu-img write did not persist"
expect 0 read c 8M 8K got.img
cmp <(tail -c +$((8 * 2**20 + 1)) src.img | head -c 4K; cat small.img) got.img ||
  fail "the nbdsh write did not persist next to the copied source bytes"
[ "$(json_field c regions hydrated)" = 33 ] || fail "hydrated regions after serve: $(json_field c regions hydrated)"
echo "nbd: ok"
