# Shared by the CLI tests (test_cli_*.sh): sourced after CLI and PSQL are
# set and with the test's short name in $name, it creates a database of
# the test's own on $CAIRN_DATABASE_URL, else on the suite's throwaway
# server in $CAIRN_TEST_DEV_DIR, points CAIRN_DATABASE_URL at it, drops it
# at exit, and defines the helpers every CLI test uses.

base=${CAIRN_DATABASE_URL:-postgresql:///postgres?host=${CAIRN_TEST_DEV_DIR:?set CAIRN_TEST_DEV_DIR or CAIRN_DATABASE_URL}&user=postgres}
db=cairn_cli_${name}_$$
case $base in
  postgres://* | postgresql://*) case $base in *\?*) url="$base&dbname=$db" ;; *) url="$base?dbname=$db" ;; esac ;;
  *) url="$base dbname=$db" ;;
esac
export CAIRN_DATABASE_URL=$url

work=$(mktemp -d "${TMPDIR:-/tmp}/cairn-cli-$name.XXXXXX")

cleanup() {
  local rc=$?
  wait 2>/dev/null || true
  "$PSQL" "$base" -X -q -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

# Run SQL in the test database; unaligned, tuples only.
sql() {
  "$PSQL" "$url" -X -q -At -v ON_ERROR_STOP=1 "$@"
}

# check WHAT EXPECTED ACTUAL
check() {
  if [ "$2" != "$3" ]; then
    fail "$1: expected '$2', got '$3'"
  fi
  echo "ok - $1"
}

# run ARGS...: run the CLI, keeping its stdout in $out, its stderr in $err and its status in $rc.
run() {
  rc=0
  "$CLI" "$@" >"$work/out" 2>"$work/err" || rc=$?
  out=$(cat "$work/out")
  err=$(cat "$work/err")
}

# ok ARGS...: run the CLI and fail unless it exits 0 with nothing on stderr.
ok() {
  run "$@"
  [ "$rc" = 0 ] || fail "cairn $* exited $rc: $err"
  [ -z "$err" ] || fail "cairn $* wrote to stderr: $err"
}

# fails STATUS PATTERN ARGS...: the CLI must exit STATUS with PATTERN on stderr.
fails() {
  local want=$1 pattern=$2
  shift 2
  run "$@"
  [ "$rc" = "$want" ] || fail "cairn $* exited $rc, expected $want (stderr: $err)"
  grep -q -- "$pattern" <<<"$err" || fail "cairn $* said '$err', expected '$pattern'"
  echo "ok - cairn $* exits $want: $pattern"
}
