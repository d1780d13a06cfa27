# --help for blkclone and every command, and the committed manual page
# (docs/blkclone.1, the second argument) equal to the generated one.
source "$(dirname "$0")/lib.sh"
man_page=$2

expect 0 --help
commands=$(sed -n '/^commands:/,/^$/p' out | awk 'NF > 1 {print $1}')
[ -n "$commands" ] || fail "blkclone --help lists no commands"
for command in $commands; do
  expect 0 "$command" --help
  contains out "usage: blkclone $command "
  expect 0 help "$command"
  contains out "usage: blkclone $command "
done
expect 0 --version
contains out "blkclone "
expect 0 help --man
diff -u "$man_page" out >/dev/null ||
  fail "$man_page is out of date: regenerate it with the blkclone_man target"
echo "help: ok"
