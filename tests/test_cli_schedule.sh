#!/usr/bin/env bash
# Test of the `cairn schedule` commands, run against the suite's throwaway
# Postgres and checked with psql.
#
#   test_cli_schedule.sh CAIRN-CLI
#
# The server is $CAIRN_DATABASE_URL, else the suite's throwaway one in
# $CAIRN_TEST_DEV_DIR. The test creates a database of its own and drops it
# at the end, so it can run beside other tests.
#
# What it proves:
#   1. `schedule set` creates a schedule and replaces its definition;
#      cairn.schedules, `schedule show` and `schedule show --json` agree,
#      and the input is kept byte for byte.
#   2. pause and resume change cairn.schedules as they say; set without
#      --paused leaves a paused schedule paused.
#   3. A bad expression, an unknown zone or bad JSON exits 1 with the
#      library's message and writes nothing; bad usage exits 2.
#   4. `schedule list` as a table and as JSON; delete, and the errors for
#      a schedule that is not there.
#   5. The help texts.
set -euo pipefail

CLI=${1:?usage: test_cli_schedule.sh CAIRN-CLI}
PSQL=${PSQL:-psql}

name=schedule
# shellcheck source=cli_harness.sh
source "$(dirname "${BASH_SOURCE[0]}")/cli_harness.sh"

# A schedule's row: workflow|cron|timezone|input|queue|backfill|paused|next_tick is set.
row() {
  sql -c "SELECT concat_ws('|', workflow, cron, timezone, coalesce(input::text, ''), queue, backfill::text, paused::text,
                           (next_tick IS NOT NULL)::text)
            FROM cairn.schedules WHERE name = '$1'"
}

snapshot() {
  sql -c "SELECT coalesce(string_agg(format('%s %s %s %s %s', name, cron, timezone, input, updated_at), ';'
                                     ORDER BY name), '') FROM cairn.schedules"
}

show_field() {
  ok schedule show "$1"
  awk -v f="$2" '$1 == f { $1 = ""; sub(/^ +/, ""); print }' <<<"$out"
}

"$PSQL" "$base" -X -q -v ON_ERROR_STOP=1 -c "CREATE DATABASE $db" >/dev/null
ok migrate

echo "# 1. set creates and replaces"
ok schedule list
check "list with no schedules" "no schedules" "$out"
ok schedule set nightly --workflow report --cron '0 3 * * *' --timezone Europe/Paris \
  --input '{"b": 1.10, "a": [1,2]}' --queue reports --backfill
grep -Eq '^schedule nightly created: workflow report, cron .0 3 \* \* \*. in Europe/Paris, next tick 20[0-9-]+T0[12]:00:00Z$' \
  <<<"$out" || fail "set's confirmation: $out"
check "nightly in cairn.schedules" 'report|0 3 * * *|Europe/Paris|{"b": 1.10, "a": [1,2]}|reports|true|false|true' \
  "$(row nightly)"
check "show's cron" "0 3 * * *" "$(show_field nightly cron)"
check "show's timezone" "Europe/Paris" "$(show_field nightly timezone)"
check "show's backfill" "yes" "$(show_field nightly backfill)"
check "show's last_tick" "-" "$(show_field nightly last_tick)"
ok schedule show nightly --json
check "show --json keeps the input as written" '{"b": 1.10, "a": [1,2]}' \
  "$(sql -v j="$out" <<<"SELECT (:'j'::json)->'input'")"
check "show --json's next_tick is the row's" "t" \
  "$(sql -v j="$out" <<<"SELECT (:'j'::json)->>'next_tick' = cairn.cron_tick_text(next_tick) FROM cairn.schedules WHERE name = 'nightly'")"
ok schedule set nightly --workflow report2 --cron '*/10 * * * * *'
grep -q '^schedule nightly updated: workflow report2' <<<"$out" || fail "set on an existing schedule: $out"
check "set replaces the whole definition" "report2|*/10 * * * * *|UTC||default|false|false|true" "$(row nightly)"

echo "# 2. pause and resume"
ok schedule pause nightly
check "pause prints" "schedule nightly paused" "$out"
check "paused in cairn.schedules" "report2|*/10 * * * * *|UTC||default|false|true|false" "$(row nightly)"
ok schedule set nightly --workflow report2 --cron '*/10 * * * * *'
grep -q ', paused$' <<<"$out" || fail "set of a paused schedule does not say it is paused: $out"
check "set without --paused leaves it paused" "t" "$(sql -c "SELECT paused FROM cairn.schedules WHERE name = 'nightly'")"
# The next tick comes after the resume, though maybe not after the check
# that follows it (a tick every 10 s may come between them on a slow machine).
before=$(sql -c "SELECT now()")
ok schedule resume nightly
grep -Eq '^schedule nightly resumed, next tick 20[0-9-]+T[0-9:]+Z$' <<<"$out" || fail "resume prints: $out"
check "resumed in cairn.schedules" "f|t" \
  "$(sql -c "SELECT concat_ws('|', paused, next_tick > '$before') FROM cairn.schedules WHERE name = 'nightly'")"
ok schedule set weekly --workflow report --cron '@weekly' --paused
check "set --paused creates it paused" "t" "$(sql -c "SELECT paused FROM cairn.schedules WHERE name = 'weekly'")"

echo "# 3. refusals write nothing"
before=$(snapshot)
refused() { # refused STATUS PATTERN ARGS...
  local status=$1 pattern=$2
  shift 2
  run "$@"
  [ "$rc" = "$status" ] || fail "cairn $* exited $rc, expected $status (stderr: $err)"
  grep -qF -- "$pattern" <<<"$err" || fail "cairn $*: stderr lacks '$pattern': $err"
  [ -z "$out" ] || fail "cairn $* printed on stdout: $out"
  echo "ok - refused: cairn $*"
}
refused 1 'cron minute field "61": "61" is out of range 0-59' schedule set nightly --workflow w --cron '61 * * * *'
refused 1 'cron expression "* * *" has 3 fields' schedule set nightly --workflow w --cron '* * *'
refused 1 'unknown name "foo"' schedule set nightly --workflow w --cron '0 0 * foo *'
refused 1 'unknown time zone "Mars/Olympus"' schedule set nightly --workflow w --cron '0 0 * * *' --timezone Mars/Olympus
refused 1 'input' schedule set nightly --workflow w --cron '0 0 * * *' --input '{"a":'
refused 1 'schedule name is empty' schedule set "" --workflow w --cron '0 0 * * *'
refused 2 'schedule set needs --workflow' schedule set nightly --cron '0 0 * * *'
refused 2 'schedule set needs --cron' schedule set nightly --workflow w
refused 2 '--cron needs a value' schedule set nightly --workflow w --cron
refused 2 'unknown option --bogus' schedule set nightly --workflow w --cron '0 0 * * *' --bogus
refused 2 'schedule set needs a schedule name' schedule set --workflow w --cron '0 0 * * *'
refused 2 'unexpected argument other' schedule pause nightly other
refused 2 'unknown schedule command frob' schedule frob
refused 2 'schedule needs a command' schedule
refused 1 'no schedule is named nosuch' schedule pause nosuch
refused 1 'no schedule is named nosuch' schedule resume nosuch
refused 1 'no schedule is named nosuch' schedule show nosuch
check "cairn.schedules after the refusals" "$before" "$(snapshot)"

echo "# 4. list and delete"
sql -c "SELECT cairn.set_schedule('fromsql', 'w', '0 12 * * mon-fri', 'Asia/Tokyo')" >/dev/null
ok schedule list
echo "$out"
grep -Eq '^NAME +WORKFLOW +CRON +TIMEZONE +QUEUE +BACKFILL +PAUSED +LAST_TICK +NEXT_TICK$' <<<"$out" ||
  fail "list's header"
grep -Eq '^fromsql +w +0 12 \* \* mon-fri +Asia/Tokyo +default +no +no +- +20[0-9-]+T03:00:00Z$' <<<"$out" ||
  fail "list does not show fromsql"
grep -Eq '^weekly +report +@weekly +UTC +default +no +yes +- +-$' <<<"$out" || fail "list does not show weekly"
check "list rows (header, fromsql, nightly, weekly)" "4" "$(wc -l <<<"$out" | tr -d ' ')"
ok schedule list --json
check "list --json names" "fromsql,nightly,weekly" \
  "$(sql -v j="$out" <<<"SELECT string_agg(e->>'name', ',' ORDER BY e->>'name') FROM json_array_elements(:'j'::json) e")"
ok schedule delete weekly
check "delete prints" "schedule weekly deleted; the runs it enqueued stay" "$out"
check "weekly gone" "0" "$(sql -c "SELECT count(*) FROM cairn.schedules WHERE name = 'weekly'")"
refused 1 'no schedule is named weekly' schedule delete weekly

echo "# 5. help"
for args in "help schedule" "schedule --help" "schedule list -h" "schedule show --help" "schedule set --help" \
            "schedule pause --help" "schedule resume --help" "schedule delete --help"; do
  # shellcheck disable=SC2086 # the words are the arguments
  ok $args
  grep -q "^usage: cairn " <<<"$out" || fail "cairn $args prints no usage line"
done
ok help
grep -Eq '^  schedule +list, set, pause, resume and delete cron schedules$' <<<"$out" || fail "cairn help does not list schedule"

echo "PASS: the CLI's schedule commands"
