# blkclone finalize: refused until fully hydrated, then hands the destination
# over; a finished clone is not run again.
source "$(dirname "$0")/lib.sh"

images 16M
expect 0 create c --metadata meta.img --dest dst.img --source src.img --region-size 64K
expect 1 finalize c
contains err "clone c: not fully hydrated: 256 of 256 regions remain; run blkclone hydrate c first"
expect 0 hydrate c
expect 0 finalize c
contains out "the clone is finished: use $WORK/dst.img directly; the metadata device $WORK/meta.img is no longer needed"
expect 0 finalize c
contains out "clone c was already finished"
expect 0 dump meta.img
contains out "finished: yes"
expect 1 serve c
contains err "clone c: finished; use $WORK/dst.img directly"
expect 0 verify c
cmp src.img dst.img
echo "finalize: ok"
