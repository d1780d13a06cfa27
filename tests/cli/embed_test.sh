# examples/embed: the session API cloning files end to end, run as an
# application would run it; a finished clone is not created again.
# Usage: embed_test.sh EMBED_BINARY
set -euo pipefail
EMBED=$1
WORK=$(mktemp -d /var/tmp/blkclone-embed.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
fail() { echo "FAIL: $*" >&2; exit 1; }

head -c 8M /dev/urandom >src.img
truncate -s 8M dst.img
truncate -s 1M meta.img
"$EMBED" src.img dst.img meta.img >out 2>err || fail "exit status $?: $(cat err)"
grep -q "finished: dst.img is a copy of src.img" out || fail "no hand-over line: $(cat out)"
note="written through the clone"
[ "$(head -c ${#note} dst.img)" = "$note" ] || fail "the write is not on the destination"
cmp -s <(tail -c +4097 src.img) <(tail -c +4097 dst.img) || fail "destination differs from source"

status=0
"$EMBED" src.img dst.img meta.img >out 2>err || status=$?
[ "$status" = 1 ] || fail "a second run on finished metadata: exit status $status"
grep -q "metadata device: holds a finished clone" err || fail "second run: $(cat err)"
echo "embed: ok"
