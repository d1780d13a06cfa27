# blkclone verify: equal after hydration; a corrupted destination byte is
# reported as the sector range that holds it.
source "$(dirname "$0")/lib.sh"

images 16M
expect 0 create c --metadata meta.img --dest dst.img --source src.img --region-size 64K
expect 0 verify c
contains out "verified clone c: 0 B in 0 hydrated regions compared (256 not hydrated, skipped): equal"
expect 0 hydrate c
expect 0 verify c
contains out "verified clone c: 16.0 MiB in 256 hydrated regions compared (0 not hydrated, skipped): equal"
flip dst.img $((3 * 1024 * 1024 + 1000))
expect 1 verify c
contains out "differs: bytes 3146240..3146751 (512 B)"
contains out "1 range(s) differ, 512 B"
echo "verify: ok"
