#!/usr/bin/env bash
# Test of the `cairn cancel`, `cairn resume` and `cairn fork` commands, run
# against the suite's throwaway Postgres. The workflows they act on are
# written with psql into cairn's tables, so the test needs no worker.
#
#   test_cli_control.sh CAIRN-CLI
#
# The server is $CAIRN_DATABASE_URL, else the suite's throwaway one in
# $CAIRN_TEST_DEV_DIR. The test creates a database of its own and drops it
# at the end, so it can run beside other tests.
#
# What it proves:
#   1. `cancel` makes an unfinished workflow CANCELLED (with --children, its
#      descendants too), says so, and refuses a finished one; --json prints
#      the workflow afterwards.
#   2. `resume` enqueues a cancelled or failed workflow again and drops the
#      failure that ended it; a SUCCESS is refused.
#   3. `fork` copies the checkpoints before --from-step under a new ID,
#      returns the same fork when repeated, and refuses a taken ID.
#   4. Usage errors exit 2 and write nothing; failures exit 1 with the
#      library's message.
set -euo pipefail

CLI=${1:?usage: test_cli_control.sh CAIRN-CLI}
PSQL=${PSQL:-psql}

name=control
# shellcheck source=cli_harness.sh
source "$(dirname "${BASH_SOURCE[0]}")/cli_harness.sh"

status() { sql -c "SELECT status FROM cairn.workflows WHERE id = '$1'"; }

"$PSQL" "$base" -X -q -c "CREATE DATABASE $db" >/dev/null
ok migrate

# A parent running with a child, a failed workflow with three checkpoints, a finished one.
sql <<'SQL'
INSERT INTO cairn.workflow_status (id, name, status, executor_id, parent_id, input, error) VALUES
  ('par-1', 'demo', 'PENDING', 'ex-1', NULL, '1', NULL), ('par-1/1', 'demo', 'ENQUEUED', NULL, 'par-1', '2', NULL),
  ('fail-1', 'demo', 'ERROR', 'ex-1', NULL, '{"n": 3}', '{"message": "boom"}'), ('done-1', 'demo', 'SUCCESS', 'ex-1', NULL, '4', NULL);
INSERT INTO cairn.steps (workflow_id, step, name, output, error) VALUES
  ('fail-1', 1, 'a', '1', NULL), ('fail-1', 2, 'b', '2', NULL), ('fail-1', 3, 'c', NULL, '{"message": "boom"}');
SQL

# ---- 4. usage errors write nothing ------------------------------------------------
fails 2 "needs a workflow ID" cancel
fails 2 "unknown option --kids" cancel par-1 --kids
fails 2 "needs --from-step" fork fail-1
fails 2 "whole number" fork fail-1 --from-step 0
fails 2 "unexpected argument" resume fail-1 extra
check "nothing changed by usage errors" "PENDING ERROR" "$(status par-1) $(status fail-1)"

# ---- 1. cancel --------------------------------------------------------------------
ok cancel par-1 --children
check "cancel prints" "workflow par-1 is cancelled, with its children" "$out"
check "parent and child cancelled" "CANCELLED CANCELLED" "$(status par-1) $(status par-1/1)"
check "the error says cancelled" "cancelled" "$(sql -c "SELECT error->>'message' FROM cairn.workflows WHERE id = 'par-1'")"
ok cancel par-1 --json
grep -q '"status" : "CANCELLED"' <<<"$out" || fail "cancel --json: $out"
echo "ok - cancel --json prints the workflow"
fails 1 "already finished with status SUCCESS" cancel done-1
fails 1 "no workflow has ID" cancel no-such

# ---- 2. resume --------------------------------------------------------------------
ok resume fail-1
check "resume prints" "workflow fail-1 is enqueued to resume" "$out"
check "resumed: enqueued, no error, attempts reset" "ENQUEUED|t|0" \
  "$(sql -c "SELECT concat_ws('|', status, error IS NULL, attempts) FROM cairn.workflows WHERE id = 'fail-1'")"
check "the failure that ended it is dropped, the rest kept" "a,b" \
  "$(sql -c "SELECT string_agg(name, ',' ORDER BY step) FROM cairn.steps WHERE workflow_id = 'fail-1'")"
ok resume par-1
check "a cancelled workflow resumes" "ENQUEUED" "$(status par-1)"
fails 1 "nothing to resume" resume done-1

# ---- 3. fork ----------------------------------------------------------------------
ok fork fail-1 --from-step 2 --id fork-1
check "fork prints the new ID" "fork-1" "$out"
check "the fork: enqueued, same name and input, its source" "demo|{\"n\": 3}|fail-1|ENQUEUED" \
  "$(sql -c "SELECT concat_ws('|', name, input, forked_from, status) FROM cairn.workflows WHERE id = 'fork-1'")"
check "steps before 2 copied" "a" "$(sql -c "SELECT string_agg(name, ',') FROM cairn.steps WHERE workflow_id = 'fork-1'")"
ok fork fail-1 --from-step 2 --id fork-1 --json
grep -q '"id" : "fork-1"' <<<"$out" || fail "repeated fork --json: $out"
echo "ok - a repeated fork returns the first"
fails 1 "exists already" fork fail-1 --from-step 1 --id done-1
ok fork done-1 --from-step 1
grep -Eq '^[0-9a-f-]{36}$' <<<"$out" || fail "fork without --id prints a UUID: $out"
echo "ok - fork without --id makes a UUIDv7"
check "workflows now" "6" "$(sql -c "SELECT count(*) FROM cairn.workflows")"
