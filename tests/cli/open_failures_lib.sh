# Shared by the tests of opening a recorded clone whose devices or metadata
# went wrong after create, sourced after lib.sh: run_kinds runs each kind of
# failure against every command that opens what failed.

head -c 4096 /dev/urandom >patch.bin

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

# As root, the unreadable kinds run the commands without the capabilities
# that bypass file permissions.
unprivileged=()
if [ "$(id -u)" = 0 ]; then
  # shellcheck disable=SC2054  # the capabilities are one argument
  unprivileged=(setpriv --bounding-set -dac_override,-dac_read_search --)
fi

# run_kinds KIND...: each KIND is "NAME|OPENS|BREAK|WORDS": after BREAK (shell
# commands) on a new clone c of src.img, dst.img and meta.img, every command
# that opens something in OPENS (letters as above) exits with status 1, one
# line on stderr holding WORDS (check and dump report damage on stdout), and
# no byte of any device changes.
run_kinds() {
  local kind name opens break words damaged runner command letters args status error
  for kind in "$@"; do
    IFS='|' read -r name opens break words <<<"$kind"
    rm -rf src.img dst.img meta.img "$BLKCLONE_STATE_DIR"/c.*
    images 1M
    expect 0 create c --metadata meta.img --dest dst.img --source src.img --region-size 64K
    eval "$break"
    # A read-write open that finds damage sets needs_check in the metadata:
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
      IFS= read -r -d '' error <err || true
      [ "$status" = 1 ] || fail "$name: blkclone $args: exit status $status, expected 1; stderr: $error"
      [[ "$error" != *$'\n'?* ]] || fail "$name: blkclone $args: stderr is not one line: $error"
      [ "$letters" = C ] || [[ "$error" == *"$words"* ]] ||
        fail "$name: blkclone $args: stderr lacks '$words': $error"
      case_ran
    done
    sha256sum --quiet -c before.sha || fail "$name: a command changed a device"
  done
}
