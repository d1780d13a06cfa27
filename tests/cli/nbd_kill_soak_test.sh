# blkclone serve --nbd killed with -9 while a libnbd client writes, flushes and
# reads back, then restarted, cycle after cycle (nbd_kill_soak.py checks what
# survives). BLKCLONE_SOAK_CYCLES sets the number of cycles (default 20),
# BLKCLONE_SOAK_SEED the seed (default: random, printed).
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/lib.sh"
/usr/bin/python3 -c 'import nbd' 2>/dev/null || { echo "SKIP: no python3 nbd module"; exit 77; }

/usr/bin/python3 "$HERE/nbd_kill_soak.py" "$BLKCLONE" "${BLKCLONE_SOAK_CYCLES:-20}" \
  "${BLKCLONE_SOAK_SEED:-$RANDOM}"
