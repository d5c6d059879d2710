#!/usr/bin/env bash
# Test of the `cairn send`, `cairn event` and `cairn stream` commands, run
# against the suite's throwaway Postgres. The workflows, events and streams
# they read are written with psql into cairn's documented tables, so the
# test needs no worker.
#
#   test_cli_events.sh CAIRN-CLI
#
# The server is $CAIRN_DATABASE_URL, else the suite's throwaway one in
# $CAIRN_TEST_DEV_DIR. The test creates a database of its own and drops it
# at the end, so it can run beside other tests.
#
# What it proves:
#   1. `event` prints an event's JSON exactly; an unpublished key fails at
#      once, after --wait, or as soon as a finished workflow shows it will
#      never come; a wait ends when the event is published meanwhile.
#   2. `stream` prints one value per line (a value written over several
#      lines comes out on one), from --from, and stops at what is there;
#      --follow prints values appended meanwhile and ends when the stream is
#      closed.
#   3. `send` stores the message once per --message-id, refuses text that
#      is not JSON without writing, and fails for an unknown workflow.
#   4. Usage errors exit 2; failures exit 1 with the library's message.
set -euo pipefail

CLI=${1:?usage: test_cli_events.sh CAIRN-CLI}
PSQL=${PSQL:-psql}

name=events
# shellcheck source=cli_harness.sh
source "$(dirname "${BASH_SOURCE[0]}")/cli_harness.sh"

now_ms() { date +%s%3N; }

"$PSQL" "$base" -X -q -c "CREATE DATABASE $db" >/dev/null
ok migrate

# Two workflows: one running, one finished.
sql <<'SQL'
INSERT INTO cairn.workflow_status (id, name, status) VALUES ('run-1', 'demo', 'PENDING'), ('done-1', 'demo', 'SUCCESS');
INSERT INTO cairn.events (workflow_id, key, value) VALUES ('run-1', 'progress', '{"pct": 40}'), ('done-1', 'result', '"ok"');
INSERT INTO cairn.streams (workflow_id, name, next_offset) VALUES ('run-1', 'log', 3);
INSERT INTO cairn.stream_values (workflow_id, stream, "offset", value) VALUES
  ('run-1', 'log', 0, '"first"'),
  ('run-1', 'log', 1, E'{\n  "line": 2,\n  "text": "a b"\n}'),
  ('run-1', 'log', 2, '[1, 2.50, "x, y"]');
SQL

# ---- 1. event -----------------------------------------------------------------
ok event run-1 progress
check "event prints the published JSON as it is" '{"pct": 40}' "$out"
ok event done-1 result --wait 5s
check "event of a finished workflow" '"ok"' "$out"
fails 1 "timed out" event run-1 missing
t0=$(now_ms)
fails 1 "within 300 ms" event run-1 missing --wait 300
[ $(($(now_ms) - t0)) -ge 300 ] || fail "--wait 300 returned early"
t0=$(now_ms)
fails 1 "finished without publishing" event done-1 missing --wait 1m
[ $(($(now_ms) - t0)) -lt 5000 ] || fail "waiting on a finished workflow did not end at once"
fails 1 "no workflow has ID" event nobody progress
( sleep 0.5; sql -c "INSERT INTO cairn.events (workflow_id, key, value) VALUES ('run-1', 'late', '[true]')" ) &
ok event run-1 late --wait 10s
wait
check "a waiting event read ends when the event is published" '[true]' "$out"

# ---- 2. stream ----------------------------------------------------------------
ok stream run-1 log
check "stream prints one value per line" "$(printf '%s\n' '"first"' '{"line":2,"text":"a b"}' '[1,2.50,"x, y"]')" "$out"
ok stream run-1 log --from 2
check "stream --from" '[1,2.50,"x, y"]' "$out"
ok stream run-1 log --from 3
check "stream past the end prints nothing" "" "$out"
ok stream run-1 nothing
check "a stream never written prints nothing" "" "$out"
ok stream done-1 never --follow
check "a finished workflow's stream reads as closed" "" "$out"
fails 1 "no workflow has ID" stream nobody log
(
  sleep 0.4
  sql <<'SQL'
UPDATE cairn.streams SET next_offset = 4 WHERE workflow_id = 'run-1' AND name = 'log';
INSERT INTO cairn.stream_values (workflow_id, stream, "offset", value) VALUES ('run-1', 'log', 3, '"fourth"');
SQL
  sleep 0.4
  sql -c "UPDATE cairn.streams SET closed_at = now() WHERE workflow_id = 'run-1' AND name = 'log'"
) &
ok stream run-1 log --from 1 --follow
wait
check "stream --follow prints what is appended until the stream is closed" \
  "$(printf '%s\n' '{"line":2,"text":"a b"}' '[1,2.50,"x, y"]' '"fourth"')" "$out"

# ---- 3. send ------------------------------------------------------------------
ok send run-1 answers '{"n": 1}' --message-id m-1
check "send says what it did" "message sent to run-1 on topic answers" "$out"
ok send run-1 answers '{"n": 1}' --message-id m-1
check "a repeated message ID stores one message" "1" \
  "$(sql -c "SELECT count(*) FROM cairn.messages WHERE workflow_id = 'run-1' AND message_id = 'm-1'")"
check "the message is stored as sent" '{"n": 1}' \
  "$(sql -c "SELECT message FROM cairn.messages WHERE workflow_id = 'run-1' AND message_id = 'm-1'")"
fails 2 "not JSON" send run-1 answers 'hello'
check "a refused message writes nothing" "1" "$(sql -c "SELECT count(*) FROM cairn.messages")"
fails 1 "no workflow has ID" send nobody answers '1'

# ---- 4. usage -----------------------------------------------------------------
fails 2 "needs a workflow ID" event run-1
fails 2 "--wait needs" event run-1 progress --wait soon
fails 2 "unknown option" event run-1 progress --bogus
fails 2 "needs a workflow ID" stream run-1
fails 2 "--from needs" stream run-1 log --from -1
fails 2 "needs a workflow ID, a topic" send run-1 answers
fails 2 "unexpected argument" send run-1 answers 1 2
ok event --help
grep -q "usage: cairn event" <<<"$out" || fail "event --help"
ok stream --help
grep -q -- "--follow" <<<"$out" || fail "stream --help"
ok send --help
grep -q -- "--message-id" <<<"$out" || fail "send --help"

echo "all cairn send/event/stream checks passed"
