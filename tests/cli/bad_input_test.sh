# Every bad input: exit status 2, one line on stderr naming the argument and
# the problem, and not a byte changed on any device.
source "$(dirname "$0")/lib.sh"

images 4M
sectors=$((4 * 2048))
expect 0 create live --metadata meta.img --dest dst.img --source src.img --region-size 4K
images 4M 2
truncate -s 2M small.img
truncate -s 8K tiny.img
head -c 64K /dev/urandom >data.img
head -c 4096 /dev/urandom >patch.bin
head -c 1000 /dev/urandom >odd.bin
m=meta2.img d=dst2.img s=src2.img

# Each case: the arguments, then a part of the expected error line.
cases=(
  "|missing command"
  "frobnicate|command frobnicate: unknown"
  "create|expected NAME and a table line or options"
  "create x clone $m $d|clone: expected <metadata dev> <destination dev> <source dev> <region size>, got 2"
  "create x linear $m $d $s 8|target type linear: not clone"
  "create x clone $m $d $s 3000|region size 3000: not a power of two"
  "create x clone $m $d $s 4|region size 4: less than 4 KiB"
  "create x clone $m $d $s eight|region size eight: not a number"
  "create x clone $m $d $s 8 1 turbo|feature turbo: unknown"
  "create x clone $m $d $s 8 2 no_hydration|feature count 2: only 1 argument(s) follow"
  "create x clone $m $d $s 8 0 3 hydration_threshold 1 x|core argument count 3: odd"
  "create x clone $m $d $s 8 0 2 hydration_threshold many|hydration_threshold many: not a number"
  "create x clone $m $d $s 8 0 2 speed 9|core argument speed: unknown"
  "create x clone $m $d $s 8 0 0 extra|argument extra: unexpected after the core arguments"
  "create x 5 $sectors clone $m $d $s 8|start sector 5: must be 0"
  "create x 0 1000 clone $m $d $s 8|length 1000: the source $WORK/$s has $sectors sectors"
  "create x clone $m $d missing.img 8|source $WORK/missing.img: does not exist"
  "create x clone $m small.img $s 8|destination (2097152 bytes) is smaller than the source (4194304 bytes)"
  "create x clone tiny.img $d $s 8|metadata device $WORK/tiny.img: 8192 bytes is too small; 1024 regions need at least 32768 bytes"
  "create x clone $m $d $d 8|source $WORK/$d: the same device as the destination"
  "create x clone meta.img $d $s 8|holds the metadata of clone live"
  "create x clone meta.img $d $s 16|holds the metadata of another clone"
  "create x clone data.img $d $s 8|not blkclone metadata"
  "create live clone $m $d $s 8|clone live: already exists"
  "create bad/name clone $m $d $s 8|name bad/name: only letters, digits"
  "create x clone $m $d $s 8 --region-size 4K|give the table either as a table line or as options, not both"
  "create x --metadata $m --dest $d --source $s|missing --region-size"
  "create x --metadata $m --dest $d --source $s --region-size 64X|--region-size 64X: unknown unit X"
  "create x --metadata $m --dest $d --source $s --region-size 3K|--region-size 3K: not a power of two"
  "create x --metadata $m --dest $d --source $s --region-size 2K|--region-size 2K: less than 4 KiB"
  "create x --metadata $m --dest $d --source $s --region-size 2G|--region-size 2G: more than 1 GiB"
  "create x --metadata $m --dest $d --source $s --region-size 4K --threshold -1|--threshold -1: not a number"
  "create x --metadata $m --dest $d --source $s --region-size 4K --batch-size 0|--batch-size 0: must be at least 1"
  "create x --metadata $m --dest $d --source $s --region-size 4K --backend tape|--backend tape: unknown"
  "create x --bogus|unknown option --bogus"
  "serve|expected NAME, got 0 arguments"
  "serve nosuch|clone nosuch: unknown"
  "serve live extra|expected NAME, got 2 arguments"
  "serve live --state-dir|--state-dir: missing value (DIR)"
  "status nosuch|clone nosuch: unknown"
  "status live --json --human|--json and --human: choose one"
  "status live --json=yes|--json: takes no value"
  "message live|expected NAME [0] MESSAGE [ARGUMENT...], got 1"
  "message live warp_speed|message warp_speed: unknown"
  "message live enable_hydration now|enable_hydration: expected no argument, got 1"
  "message live hydration_threshold|hydration_threshold: expected <regions>, got 0"
  "message live hydration_batch_size 0|hydration_batch_size 0: must be at least 1"
  "message live rate_limit 5Q|rate_limit 5Q: unknown unit Q"
  "message live retry_policy 1 2|retry_policy: expected <max failures> <first delay ms> <max delay ms>, got 2"
  "message nosuch enable_hydration|clone nosuch: unknown"
  "hydrate live --threshold 0|--threshold 0: must be at least 1"
  "hydrate live --rate-limit fast|--rate-limit fast: not a size"
  "hydrate live --batch-size|--batch-size: missing value (N)"
  "hydrate live --threshold 1 --threshold 2|--threshold: given twice"
  "finalize|expected NAME, got 0 arguments"
  "check|expected METADATA, got 0 arguments"
  "dump meta.img --yaml|unknown option --yaml"
  "verify nosuch|clone nosuch: unknown"
  "write live 100 patch.bin|OFFSET 100: not a multiple of the clone's block size"
  "write live 0 odd.bin|FILE odd.bin: 1000 bytes, not a multiple of the clone's block size"
  "write live 0 missing.bin|FILE missing.bin: No such file or directory"
  "write live 4M patch.bin|bytes 4194304..4198400 reach past the end of clone live"
  "read live 0|expected NAME OFFSET LENGTH [FILE], got 2 arguments"
  "read live 0 1000|LENGTH 1000: not a multiple of the clone's block size"
  "help nosuch|command nosuch: unknown"
  "create x clone $m $d $s 8 --state-dir nosuch|state directory $WORK/nosuch: does not exist (make it with mkdir -p)"
  "status live --state-dir nosuch|state directory $WORK/nosuch: does not exist"
  "hydrate live --state-dir meta.img|state directory $WORK/meta.img: not a directory"
)

devices=(meta.img dst.img src.img "$m" "$d" "$s" small.img tiny.img data.img)
sha256sum "${devices[@]}" >before.sha
state_before=$(ls state)
for entry in "${cases[@]}"; do
  args=${entry%%|*}
  message=${entry#*|}
  # shellcheck disable=SC2086  # the arguments are words
  expect 2 $args
  [ "$(wc -l <err)" = 1 ] || fail "blkclone $args: stderr is not one line: $(cat err)"
  contains err "$message"
  sha256sum --quiet -c before.sha >/dev/null || fail "blkclone $args changed a device"
done
[ "$(ls state)" = "$state_before" ] || fail "state directory changed: $(ls state)"
[ ! -e nosuch ] || fail "a state directory was made"
echo "bad input: ok (${#cases[@]} cases)"
