#!/usr/bin/env bash
# Test of the `cairn queue` and `cairn executors` commands, run against the
# suite's throwaway Postgres and checked with psql.
#
#   test_cli_queue.sh CAIRN-CLI
#
# The server is $CAIRN_DATABASE_URL, else the suite's throwaway one in
# $CAIRN_TEST_DEV_DIR. The test creates a database of its own and drops it
# at the end, so it can run beside other tests.
#
# What it proves:
#   1. `queue set` creates a queue, and on an existing queue changes only the
#      limits it is given; `none` removes one. cairn.queues, `queue show` and
#      `queue show --json` agree after each change.
#   2. Bad input (numbers, zero, negatives, malformed rates, unknown options,
#      a missing name) exits 2, says what is wrong and writes nothing; a
#      queue whose SQL-written rate period the API cannot carry is left
#      alone unless --rate replaces it.
#   3. `queue delete` removes the configuration; deleting again, or showing
#      an unknown queue, exits 1 with a clear message.
#   4. `queue list` shows configured queues and a queue that only has
#      enqueued work (configured: no), as a table and as JSON.
#   5. `cairn executors` runs on an empty table and shows a row written there.
#   6. The help texts and the usage errors of the commands.
set -euo pipefail

CLI=${1:?usage: test_cli_queue.sh CAIRN-CLI}
PSQL=${PSQL:-psql}

name=queue
# shellcheck source=cli_harness.sh
source "$(dirname "${BASH_SOURCE[0]}")/cli_harness.sh"

# A queue's row in cairn.queues: concurrency|worker_concurrency|rate_limit|rate_period in ms|partition_concurrency.
row() {
  sql -c "SELECT concat_ws('|', coalesce(concurrency::text, ''), coalesce(worker_concurrency::text, ''),
                           coalesce(rate_limit::text, ''),
                           coalesce((extract(epoch FROM rate_period) * 1000)::bigint::text, ''),
                           coalesce(partition_concurrency::text, ''))
            FROM cairn.queues WHERE name = '$1'"
}

# Everything in cairn.queues, to tell that a command wrote nothing (updated_at included).
snapshot() {
  sql -c "SELECT string_agg(format('%s %s %s %s %s %s %s', name, concurrency, worker_concurrency, rate_limit,
                                   rate_period, partition_concurrency, updated_at), ';' ORDER BY name)
            FROM cairn.queues"
}

# json_field JSON KEY: one field of a JSON object, as text (psql reads the JSON from a variable, unquoted by hand).
json_field() {
  sql -v j="$1" -v k="$2" <<<"SELECT (:'j'::json)->>:'k'"
}

# json_limits JSON: the limits of a queue object from the CLI, as row() prints them.
json_limits() {
  sql -v j="$1" <<<"SELECT concat_ws('|', coalesce(j->>'concurrency', ''), coalesce(j->>'worker_concurrency', ''),
                                    coalesce(j->>'rate_limit', ''), coalesce(j->>'rate_period_ms', ''),
                                    coalesce(j->>'partition_concurrency', ''))
                      FROM (SELECT :'j'::json AS j) s"
}

# show_field NAME FIELD: one line of `cairn queue show NAME`.
show_field() {
  ok queue show "$1"
  awk -v f="$2" '$1 == f { print $2 }' <<<"$out"
}

# The four views of a queue must agree: cairn.queues, show, show --json.
# agree NAME ROW CONC WCONC RATE PCONC (ROW as row() prints it; the others as show prints them).
agree() {
  local name=$1
  check "$name in cairn.queues" "$2" "$(row "$name")"
  check "$name: show's concurrency" "$3" "$(show_field "$name" concurrency)"
  check "$name: show's worker_concurrency" "$4" "$(show_field "$name" worker_concurrency)"
  check "$name: show's rate" "$5" "$(show_field "$name" rate)"
  check "$name: show's partition_concurrency" "$6" "$(show_field "$name" partition_concurrency)"
  check "$name: show's configured" "yes" "$(show_field "$name" configured)"
  ok queue show "$name" --json
  check "$name: show --json agrees with cairn.queues" "$2" "$(json_limits "$out")"
}

"$PSQL" "$base" -X -q -v ON_ERROR_STOP=1 -c "CREATE DATABASE $db" >/dev/null

echo "# 0. before the schema exists, the commands fail clearly"
run queue list
check "queue list on a database without the schema: exit status" "1" "$rc"
grep -q "cairn migrate" <<<"$err" || fail "queue list without the schema does not point at 'cairn migrate': $err"
ok migrate

echo "# 1. set creates, alters and removes limits"
ok queue list
check "queue list with no queues" "no queues" "$out"
ok queue set orders --concurrency 5
check "set prints what it wrote" \
  "queue orders created: concurrency 5, worker_concurrency none, rate none, partition_concurrency none" "$out"
agree orders "5||||" 5 - - -
ok queue set orders --rate 100/1s
check "set prints the merged configuration" \
  "queue orders updated: concurrency 5, worker_concurrency none, rate 100/1s, partition_concurrency none" "$out"
agree orders "5||100|1000|" 5 - 100/1s -
ok queue set orders --worker-concurrency=2 --partition-concurrency 3
agree orders "5|2|100|1000|3" 5 2 100/1s 3
ok queue set orders --rate 7/90s
agree orders "5|2|7|90000|3" 5 2 7/90s 3
ok queue set orders --concurrency none
agree orders "|2|7|90000|3" - 2 7/90s 3
ok queue set orders --rate none --worker-concurrency none
agree orders "||||3" - - - 3
ok queue set orders
agree orders "||||3" - - - 3
ok queue set orders --concurrency 8 --rate 5/500ms --partition-concurrency none
agree orders "8||5|500|" 8 - 5/500ms -
for rate in 1/1ms:1ms 60/1m:1m 90/90s:90s 3/2h:2h 2/1d:1d 10/s:1s 10/h:1h 4/1500ms:1500ms 4/120s:2m; do
  ok queue set ratecase --rate "${rate%%:*}"
  check "--rate ${rate%%:*} stores a period of ${rate##*:}" "${rate%%/*}/${rate##*:}" "$(show_field ratecase rate)"
done
check "--rate 4/120s in cairn.queues" "||4|120000|" "$(row ratecase)"
# --db given before the command and after it; the environment would otherwise name the same database.
CAIRN_DATABASE_URL="postgresql:///nowhere?host=/nonexistent" ok --db "$url" queue set viadb --concurrency 1
CAIRN_DATABASE_URL="postgresql:///nowhere?host=/nonexistent" ok queue set viadb --worker-concurrency 4 --db "$url"
check "--db before and after the command" "1|4|||" "$(row viadb)"
ok queue set -- -dash --concurrency 2
check "a queue named with a leading dash, after --" "2||||" "$(row -dash)"

echo "# 2. bad input exits 2, says why and writes nothing"
before=$(snapshot)
bad() { # bad PATTERN ARGS...: the CLI must exit 2 with PATTERN in its stderr
  local pattern=$1
  shift
  run "$@"
  [ "$rc" = 2 ] || fail "cairn $* exited $rc, expected 2 (stderr: $err)"
  grep -q -- "$pattern" <<<"$err" || fail "cairn $*: stderr lacks '$pattern': $err"
  [ -z "$out" ] || fail "cairn $* printed on stdout: $out"
  echo "ok - rejected: cairn $*"
}
bad "needs a whole number from 1 to" queue set orders --concurrency 0
bad "needs a whole number from 1 to" queue set orders --concurrency -3
bad "needs a whole number from 1 to" queue set orders --concurrency 2x
bad "needs a whole number from 1 to" queue set orders --concurrency " 4"
bad "needs a whole number from 1 to" queue set orders --concurrency +4
bad "needs a whole number from 1 to" queue set orders --concurrency ""
bad "needs a whole number from 1 to" queue set orders --concurrency 2147483648
bad "needs a whole number from 1 to" queue set orders --worker-concurrency 1.5
bad "needs a whole number from 1 to" queue set orders --partition-concurrency NONE
bad "needs a value" queue set orders --concurrency
bad "needs a value" queue set orders --rate
bad "--rate needs COUNT/DURATION" queue set orders --rate 100
bad "--rate needs COUNT/DURATION" queue set orders --rate /1s
bad "the count must be" queue set orders --rate 0/1s
bad "the count must be" queue set orders --rate -1/1s
bad "the count must be" queue set orders --rate x/1s
bad "the count must be" queue set orders --rate 99999999999999999999/1s
bad "the period must be a duration" queue set orders --rate 100/
bad "the period must be a duration" queue set orders --rate 100/1
bad "the period must be a duration" queue set orders --rate 100/1.5s
bad "the period must be a duration" queue set orders --rate 100/1sec
bad "the period must be a duration" queue set orders --rate 100/-1s
bad "the period must be a duration" queue set orders --rate 100/1s/2
bad "the period must be from 1ms" queue set orders --rate 100/0s
bad "the period must be from 1ms" queue set orders --rate 100/25d
bad "the period must be from 1ms" queue set orders --rate 100/99999999999h
bad "unknown option --bogus" queue set orders --bogus 3
bad "unknown option --limit" queue set orders --limit 3
bad "unexpected argument other" queue set orders other
bad "queue set needs a queue name" queue set --concurrency 3
bad "queue set needs a queue name" queue set
# A good option beside a bad one writes nothing either.
bad "needs a whole number from 1 to" queue set orders --concurrency 9 --worker-concurrency 0
bad "needs a whole number from 1 to" queue set newqueue --concurrency 9 --worker-concurrency 0
bad "queue show needs a queue name" queue show
bad "unknown option --rate" queue show orders --rate 1/s
bad "unexpected argument" queue list extra
bad "queue delete needs a queue name" queue delete
bad "unknown queue command frob" queue frob
bad "queue needs a command" queue
bad "unexpected argument" executors extra
check "cairn.queues after the rejected commands" "$before" "$(snapshot)"
check "no queue newqueue" "" "$(row newqueue)"

# Names the library refuses exit 1 (a failure it reported), like `cairn show` with a bad ID.
run queue set ""
check "an empty queue name: exit status" "1" "$rc"
grep -q "queue name is empty" <<<"$err" || fail "no reason given for an empty name: $err"
run queue set "$(printf 'a\tb')" --concurrency 1
check "a queue name with a control character: exit status" "1" "$rc"
check "cairn.queues after the refused names" "$before" "$(snapshot)"

# A rate period written in SQL that the API cannot carry (more than INT_MAX ms) is not silently changed.
sql -c "SELECT cairn.set_queue('monthly', rate_limit => 1, rate_period => interval '30 days')" >/dev/null
check "a 30-day period shows as such" "1/30d" "$(show_field monthly rate)"
before=$(snapshot)
run queue set monthly --concurrency 2
check "altering a queue whose period the API cannot carry: exit status" "1" "$rc"
grep -q "give --rate to replace it" <<<"$err" || fail "no advice for the 30-day period: $err"
check "... and it wrote nothing" "$before" "$(snapshot)"
ok queue set monthly --concurrency 2 --rate 1/1d
check "with --rate it is replaced" "2||1|86400000|" "$(row monthly)"

echo "# 3. delete"
ok queue delete orders
check "delete prints what it did" "queue orders: configuration deleted; it has no limits now" "$out"
check "orders gone from cairn.queues" "0" "$(sql -c "SELECT count(*) FROM cairn.queues WHERE name = 'orders'")"
run queue delete orders
check "deleting it again: exit status" "1" "$rc"
check "deleting it again: message" "cairn: queue orders has no configuration to delete" "$err"
run queue show orders
check "showing a queue with no configuration and no work: exit status" "1" "$rc"
grep -q "not found" <<<"$err" || fail "show of an unknown queue does not say it was not found: $err"
run queue delete nosuch
check "deleting a queue that never existed: exit status" "1" "$rc"

echo "# 4. list shows configured queues and queues that only have work"
sql -c "SELECT cairn.enqueue('x', '{}', queue => 'q')" >/dev/null
sql -c "SELECT cairn.enqueue('x', '{}', queue => 'q')" >/dev/null
ok queue list
echo "$out"
grep -Eq '^NAME +CONCURRENCY +WORKER_CONCURRENCY +RATE +PARTITION_CONCURRENCY +ENQUEUED +RUNNING +CONFIGURED$' <<<"$out" ||
  fail "queue list's header"
grep -Eq '^q +- +- +- +- +2 +0 +no$' <<<"$out" || fail "queue list does not show q with its two enqueued workflows"
grep -Eq '^monthly +2 +- +1/1d +- +0 +0 +yes$' <<<"$out" || fail "queue list does not show monthly's limits"
grep -Eq '^ratecase +- +- +4/2m +- +0 +0 +yes$' <<<"$out" || fail "queue list does not show ratecase's limits"
check "queue list rows (header, -dash, monthly, q, ratecase, viadb)" "6" "$(wc -l <<<"$out" | tr -d ' ')"
ok queue list --json
check "queue list --json names" "-dash,monthly,q,ratecase,viadb" \
  "$(sql -v j="$out" <<<"SELECT string_agg(e->>'name', ',' ORDER BY (e->>'name') COLLATE \"C\") FROM json_array_elements(:'j'::json) e")"
check "queue list --json for q" "false|2|0|" \
  "$(sql -v j="$out" <<<"SELECT concat_ws('|', e->>'configured', e->>'enqueued', e->>'running', coalesce(e->>'concurrency', ''))
                           FROM json_array_elements(:'j'::json) e WHERE e->>'name' = 'q'")"
check "queue list --json is what cairn_queue_list returns: one line" "1" "$(wc -l <<<"$out" | tr -d ' ')"
check "show of a queue with work only: configured" "no" "$(show_field q configured)"
check "show of a queue with work only: enqueued" "2" "$(show_field q enqueued)"
ok queue get q --json
check "get is show" "false|2" "$(json_field "$out" configured)|$(json_field "$out" enqueued)"
ok queue set q --concurrency 1
check "setting a queue that had work only creates its configuration" \
  "queue q created: concurrency 1, worker_concurrency none, rate none, partition_concurrency none" "$out"
check "... and show still counts its work" "2" "$(show_field q enqueued)"

echo "# 5. executors"
ok executors
check "executors with none known" "no executors" "$out"
ok executors --json
check "executors --json with none known" "[]" "$out"
sql -c "INSERT INTO cairn.executors (id, instance, state, lease, heartbeat_at, hostname, pid, app_version)
        VALUES ('exec-a', 'i1', 'LIVE', interval '15 seconds', now() - interval '3 minutes', 'host-a', 4242, 'v7'),
               ('exec-b', 'i2', 'DEAD', interval '1500 milliseconds', now() - interval '1 hour', NULL, NULL, NULL)"
sql -c "UPDATE cairn.executors SET adopted_by = 'exec-a', stopped_at = now() WHERE id = 'exec-b'"
sql -c "UPDATE cairn.workflow_status SET status = 'PENDING', executor_id = 'exec-a'
         WHERE id = (SELECT id FROM cairn.workflow_status WHERE queue = 'q' LIMIT 1)"
ok executors
echo "$out"
grep -Eq '^ID +STATE +HEARTBEAT_AGE +LEASE +RUNNING +HOSTNAME +PID +APP_VERSION +ADOPTED_BY$' <<<"$out" ||
  fail "executors' header"
grep -Eq '^exec-a +LIVE +3m +15s +1 +host-a +4242 +v7 +-$' <<<"$out" || fail "executors does not show exec-a"
grep -Eq '^exec-b +DEAD +60m +1500ms +0 +- +- +- +exec-a$' <<<"$out" || fail "executors does not show exec-b"
ok executors --json
check "executors --json" "exec-a:LIVE:1:host-a,exec-b:DEAD:0:" \
  "$(sql -v j="$out" <<<"SELECT string_agg(concat_ws(':', e->>'id', e->>'state', e->>'running', coalesce(e->>'hostname', '')), ','
                            ORDER BY e->>'id') FROM json_array_elements(:'j'::json) e")"
ok queue show q
check "queue show counts the running workflow" "1|1" "$(show_field q enqueued)|$(show_field q running)"

echo "# 6. help"
for args in "help queue" "queue --help" "queue set --help" "queue list -h" "queue show --help" "queue delete --help" \
            "help executors" "executors --help"; do
  # shellcheck disable=SC2086 # the words are the arguments
  ok $args
  grep -q "^usage: cairn " <<<"$out" || fail "cairn $args prints no usage line"
done
ok help
grep -Eq '^  queue +list, show, set and delete queue limits$' <<<"$out" || fail "cairn help does not list queue"
grep -Eq '^  executors +list the executors' <<<"$out" || fail "cairn help does not list executors"
ok queue set --help
grep -q -- "--rate N/DURATION" <<<"$out" || fail "queue set's help does not explain --rate"
grep -q "'none'" <<<"$out" || fail "queue set's help does not mention none"

echo "PASS: the CLI's queue and executor commands"
