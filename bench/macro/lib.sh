# Shared by the macro benchmark scripts (sourced; bash): timing, arithmetic,
# the default blkclone binary, and the replacement of a script's own section
# of the report.

BENCH_STARTED=$(date +%s)

# log MESSAGE...: to stderr, with the seconds since the script started.
log() { echo "[$(($(date +%s) - BENCH_STARTED)) s] $*" >&2; }

# now: the time in seconds, with nanoseconds.
now() { date +%s.%N; }

# calc EXPRESSION [NAME=VALUE...]: the awk expression's value.
calc() {
  local expression=$1
  shift
  awk "${@/#/-v}" "BEGIN { printf \"%.15g\", ($expression) }" </dev/null
}

# median NUMBER...: the middle value (the lower middle of an even count).
median() {
  printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}

# allocated FILE: the bytes the file system allocated to FILE.
allocated() { du --block-size=1 "$1" | cut -f1; }

# default_blkclone REPO: the release build's CLI if there is one, else the debug build's.
default_blkclone() {
  local preset
  for preset in release debug; do
    if [ -x "$1/build/$preset/examples/blkclone/blkclone" ]; then
      echo "$1/build/$preset/examples/blkclone/blkclone"
      return
    fi
  done
  echo "$1/build/release/examples/blkclone/blkclone"
}

# write_section HEADING SECTION_FILE OUTPUT: replaces the part of OUTPUT from
# the line HEADING to the next "## " heading with SECTION_FILE (which starts
# with HEADING), or appends it; the rest of OUTPUT is left as it is.
write_section() {
  local heading=$1 section=$2 output=$3 tmp
  tmp=$(mktemp)
  mkdir -p "$(dirname "$output")"
  touch "$output"
  awk -v h="$heading" -v f="$section" '
    $0 == h { skip = 1; if (!done) { while ((getline l < f) > 0) print l; print ""; done = 1 }; next }
    skip && /^## / { skip = 0 }
    !skip { print }
    END { if (!done) { if (NR) print ""; while ((getline l < f) > 0) print l } }
  ' "$output" >"$tmp"
  sed -e :a -e '/^\n*$/{$d;N;ba' -e '}' "$tmp" >"$output"
  rm -f "$tmp"
}
