#!/usr/bin/env bash
# End-to-end test of examples/orders: orders placed with plain SQL (psql) are
# processed by the workflows their trigger enqueues, and an order whose
# transaction does not commit gets no workflow.
#
#   test_orders.sh ORDERS-PROGRAM
#
# The server is $CAIRN_DATABASE_URL, else the suite's throwaway one in
# $CAIRN_TEST_DEV_DIR. The test creates a database of its own and drops it
# at the end, so it can run beside other tests.
#
# What it proves:
#   1. Orders committed while no worker runs wait as ENQUEUED workflows and
#      are claimed as soon as a worker starts (not after its poll interval).
#   2. Orders committed together in one transaction are each processed, to
#      'shipped', or to 'rejected' when out of stock; contested stock is
#      never oversold; exactly one shipment per shipped order.
#   3. An INSERT rolled back, an INSERT beside a statement that fails a
#      CHECK constraint, and an INSERT whose transaction fails its deferred
#      foreign key at COMMIT each enqueue inside their transaction (visible
#      there) and leave no workflow behind; the worker never sees them.
#   4. A worker whose poll interval is 2 minutes picks up an order committed
#      while it is idle within a fraction of a second: the NOTIFY wake-up,
#      not polling. The latency from just before COMMIT to the start of the
#      workflow's first step is printed.
#   5. Every order has exactly one workflow, and the two agree (one join of
#      shop.orders with cairn.workflows), which `orders status` shows.
set -euo pipefail

ORDERS=${1:?usage: test_orders.sh ORDERS-PROGRAM}
PSQL=${PSQL:-psql}
POLL_MS=120000         # the workers' poll interval: longer than this whole test
MAX_WAKE_MS=2000       # an idle worker must start an order within this after its COMMIT

base=${CAIRN_DATABASE_URL:-postgresql:///postgres?host=${CAIRN_TEST_DEV_DIR:?set CAIRN_TEST_DEV_DIR or CAIRN_DATABASE_URL}&user=postgres}
db=cairn_orders_e2e_$$
# The same server, another database: a later dbname setting wins in either conninfo form.
case $base in
  postgres://* | postgresql://*) case $base in *\?*) url="$base&dbname=$db" ;; *) url="$base?dbname=$db" ;; esac ;;
  *) url="$base dbname=$db" ;;
esac
export CAIRN_DATABASE_URL=$url

work=$(mktemp -d "${TMPDIR:-/tmp}/cairn-orders.XXXXXX")
worker_pid=
passed=0

cleanup() {
  local rc=$?
  if [ -n "$worker_pid" ] && kill -0 "$worker_pid" 2>/dev/null; then
    kill -KILL "$worker_pid" 2>/dev/null || true
    wait "$worker_pid" 2>/dev/null || true
  fi
  if [ "$passed" != 1 ]; then
    for f in "$work"/*.log; do
      [ -e "$f" ] || continue
      echo "---- $(basename "$f") ----"
      cat "$f"
    done
  fi
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
  echo "ok - $1 ($3)"
}

now_ms() { date +%s%3N; }

# wait_for WHAT QUERY EXPECTED SECONDS: until the query returns EXPECTED.
wait_for() {
  local deadline=$(($(now_ms) + $4 * 1000)) got
  while :; do
    got=$(sql -c "$2")
    [ "$got" = "$3" ] && break
    [ "$(now_ms)" -lt "$deadline" ] || fail "$1: still '$got' after $4 s, expected '$3'"
    sleep 0.05
  done
  echo "ok - $1"
}

# Orders of these customers that are finished: shipped or rejected, and their workflow SUCCESS.
finished() {
  echo "SELECT count(*) FROM shop.orders o JOIN cairn.workflows w
          ON w.name = 'process_order' AND w.input->>'id' = o.id::text
         WHERE o.customer LIKE '$1' AND o.status IN ('shipped', 'rejected') AND w.status = 'SUCCESS'"
}

workflows_of() {
  sql -c "SELECT count(*) FROM cairn.workflows WHERE input->>'customer' LIKE '$1'"
}

"$PSQL" "$base" -X -q -v ON_ERROR_STOP=1 -c "CREATE DATABASE $db" >/dev/null

echo "# setup"
"$ORDERS" setup >"$work/setup.log" 2>&1 || fail "orders setup exited $?"
"$ORDERS" setup >>"$work/setup.log" 2>&1 || fail "a second orders setup exited $?"
check "the order_placed trigger enqueues process_order on queue 'orders'" "1" \
  "$(sql -c "SELECT count(*) FROM pg_trigger WHERE tgname = 'order_placed' AND tgrelid = 'shop.orders'::regclass")"
sql -c "UPDATE shop.inventory SET stock = CASE item WHEN 'grinder' THEN 5 WHEN 'espresso machine' THEN 10 ELSE 100 END"

echo "# 1. orders placed while no worker runs wait, and are claimed when a worker starts"
sql <<'SQL'
BEGIN;
INSERT INTO shop.orders (customer, item, quantity) VALUES ('backlog-ann', 'descaler', 1), ('backlog-ben', 'descaler', 2);
INSERT INTO shop.orders (customer, item, quantity) VALUES ('backlog-cat', 'espresso machine', 1);
COMMIT;
SQL
sleep 0.3
check "three enqueued workflows, one per order, on queue 'orders'" "3" \
  "$(sql -c "SELECT count(*) FROM cairn.workflows WHERE name = 'process_order' AND queue = 'orders'
               AND status = 'ENQUEUED' AND input->>'customer' LIKE 'backlog-%'")"
check "no order moved while no worker ran" "3" \
  "$(sql -c "SELECT count(*) FROM shop.orders WHERE customer LIKE 'backlog-%' AND status = 'new'")"
t0=$(now_ms)
rc=0
timeout 60 "$ORDERS" worker --until-idle --poll-ms "$POLL_MS" >"$work/backlog-worker.log" 2>&1 || rc=$?
elapsed=$(($(now_ms) - t0))
check "worker --until-idle exit status" "0" "$rc"
[ "$elapsed" -lt $((POLL_MS / 4)) ] || fail "the backlog took $elapsed ms: claimed by polling, not at start"
echo "ok - the backlog was done $elapsed ms after the worker started (poll interval $POLL_MS ms)"
check "backlog orders finished" "3" "$(sql -c "$(finished 'backlog-%')")"
check "backlog orders shipped" "3" \
  "$(sql -c "SELECT count(*) FROM shop.orders WHERE customer LIKE 'backlog-%' AND status = 'shipped'")"
grep -q "orders worker: no order left to process; stopped" "$work/backlog-worker.log" ||
  fail "the backlog worker did not say it stopped when idle"

echo "# 2. a live worker (poll interval $POLL_MS ms) processes a transaction of several orders"
"$ORDERS" worker --poll-ms "$POLL_MS" >"$work/live-worker.log" 2>&1 &
worker_pid=$!
worker_started=$(now_ms)
deadline=$(($(now_ms) + 10000))
until grep -q "^orders worker: serving" "$work/live-worker.log"; do
  kill -0 "$worker_pid" 2>/dev/null || fail "the live worker exited at start"
  [ "$(now_ms)" -lt "$deadline" ] || fail "the live worker did not start serving within 10 s"
  sleep 0.05
done
sql <<'SQL'
BEGIN;
INSERT INTO shop.orders (customer, item, quantity)
     VALUES ('batch-1', 'grinder', 2), ('batch-2', 'grinder', 2), ('batch-3', 'grinder', 2);
INSERT INTO shop.orders (customer, item, quantity) VALUES ('batch-4', 'espresso machine', 50);
INSERT INTO shop.orders (customer, item, quantity) VALUES ('batch-5', 'espresso machine', 1), ('batch-6', 'descaler', 3);
COMMIT;
SQL
wait_for "all six orders of the transaction finished" "$(finished 'batch-%')" "6" 20
check "3 orders of 2 grinders against a stock of 5: shipped" "2" \
  "$(sql -c "SELECT count(*) FROM shop.orders WHERE customer IN ('batch-1', 'batch-2', 'batch-3') AND status = 'shipped'")"
check "3 orders of 2 grinders against a stock of 5: rejected" "1" \
  "$(sql -c "SELECT count(*) FROM shop.orders WHERE customer IN ('batch-1', 'batch-2', 'batch-3') AND status = 'rejected'")"
check "grinders left" "1" "$(sql -c "SELECT stock FROM shop.inventory WHERE item = 'grinder'")"
check "50 espresso machines out of 10: rejected, as the workflow's recorded outcome" "rejected|rejected" \
  "$(sql -c "SELECT o.status, w.output->>'outcome' FROM shop.orders o JOIN cairn.workflows w
               ON w.input->>'id' = o.id::text WHERE o.customer = 'batch-4'")"
check "batch-5 and batch-6" "shipped,shipped" \
  "$(sql -c "SELECT string_agg(status, ',' ORDER BY customer) FROM shop.orders WHERE customer IN ('batch-5', 'batch-6')")"
check "one shipment per shipped batch order" "4|4" \
  "$(sql -c "SELECT count(*), count(DISTINCT s.order_id) FROM shop.shipments s JOIN shop.orders o ON o.id = s.order_id
               WHERE o.customer LIKE 'batch-%'")"

echo "# 3. orders whose transaction does not commit get no workflow"
before=$(sql -c "SELECT count(*) FROM cairn.workflows")

out=$(sql <<'SQL'
BEGIN;
INSERT INTO shop.orders (customer, item, quantity) VALUES ('rollback-rita', 'descaler', 1);
SELECT count(*) FROM cairn.workflows WHERE input->>'customer' = 'rollback-rita';
ROLLBACK;
SQL
)
check "BEGIN; INSERT: the workflow exists inside the transaction" "1" "$out"
check "... ROLLBACK: no workflow for it" "0" "$(workflows_of 'rollback-rita')"

rc=0
out=$(sql -v ON_ERROR_STOP=0 2>"$work/check.err" <<'SQL'
BEGIN;
INSERT INTO shop.orders (customer, item, quantity) VALUES ('check-carl', 'descaler', 1);
SELECT count(*) FROM cairn.workflows WHERE input->>'customer' = 'check-carl';
INSERT INTO shop.orders (customer, item, quantity) VALUES ('check-cora', 'descaler', 0);
COMMIT;
SQL
) || rc=$?
check "BEGIN; INSERT; INSERT that fails: the first order's workflow exists inside the transaction" "1" "$out"
grep -q 'violates check constraint "orders_quantity_check"' "$work/check.err" ||
  fail "the second INSERT did not fail its CHECK constraint: $(cat "$work/check.err")"
check "... COMMIT of the failed transaction: no workflow for either order" "0" "$(workflows_of 'check-%')"

rc=0
out=$(sql -v ON_ERROR_STOP=0 2>"$work/fk.err" <<'SQL'
BEGIN;
INSERT INTO shop.orders (customer, item, quantity) VALUES ('fk-fay', 'unicorn', 1);
SELECT count(*) FROM cairn.workflows WHERE input->>'customer' = 'fk-fay';
COMMIT;
SQL
) || rc=$?
check "an order for an unknown item: its workflow exists inside the transaction" "1" "$out"
grep -q 'violates foreign key constraint' "$work/fk.err" ||
  fail "COMMIT did not fail the deferred foreign key: $(cat "$work/fk.err")"
check "... COMMIT fails the deferred foreign key: no workflow" "0" "$(workflows_of 'fk-%')"
rc=0
sql -c "INSERT INTO shop.orders (customer, item, quantity) VALUES ('fk-finn', 'unicorn', 1)" 2>"$work/fk2.err" || rc=$?
[ "$rc" != 0 ] || fail "a single INSERT of an unknown item committed"
check "a single INSERT of an unknown item, failing at its implicit COMMIT: no workflow" "0" "$(workflows_of 'fk-%')"
check "workflows in the database: as many as before these four transactions" "$before" \
  "$(sql -c "SELECT count(*) FROM cairn.workflows")"
check "no orders were left by them" "0" \
  "$(sql -c "SELECT count(*) FROM shop.orders WHERE customer IN ('rollback-rita', 'check-carl', 'check-cora', 'fk-fay', 'fk-finn')")"

# An order committed after them: once it is done, the worker has had every chance to see them.
sql -c "INSERT INTO shop.orders (customer, item, quantity) VALUES ('sentinel-sam', 'descaler', 1)"
wait_for "the order committed after them is processed" "$(finished 'sentinel-sam')" "1" 20
grep -q "(sentinel-sam: " "$work/live-worker.log" || fail "the worker's log does not show sentinel-sam"
for who in rollback-rita check-carl check-cora fk-fay fk-finn; do
  if grep -q "$who" "$work/live-worker.log"; then
    fail "the worker saw $who, whose transaction did not commit"
  fi
done
echo "ok - the worker never saw the orders whose transactions did not commit"

echo "# 4. an idle worker is woken by NOTIFY at COMMIT, not by its $POLL_MS ms poll"
max=0
for i in 1 2 3; do
  sleep 0.5 # let the worker go idle: claim nothing, arm the wake-up, sleep on LISTEN
  since_start=$(($(now_ms) - worker_started))
  # The dispatcher's first poll timer cannot fire before POLL_MS after the worker started.
  [ "$since_start" -lt $((POLL_MS - 10000)) ] ||
    fail "the worker has run $since_start ms; too close to its poll interval to tell a wake-up from a poll"
  read -r id committed < <(sql -F ' ' <<SQL
BEGIN;
INSERT INTO shop.orders (customer, item, quantity) VALUES ('latency-$i', 'descaler', 1) RETURNING id, clock_timestamp();
COMMIT;
SQL
)
  wait_for "latency-$i is processed" "$(finished "latency-$i")" "1" 10
  ms=$(sql -c "SELECT round(extract(epoch FROM s.created_at - '$committed'::timestamptz) * 1000)::int
                 FROM cairn.steps s JOIN cairn.workflows w ON w.id = s.workflow_id
                WHERE s.step = 1 AND w.input->>'id' = '$id'")
  [ -n "$ms" ] || fail "no first step recorded for order $id"
  echo "wake-up latency (INSERT's COMMIT to the first step's transaction), order $id: $ms ms"
  [ "$ms" -lt "$MAX_WAKE_MS" ] || fail "order $id started $ms ms after its COMMIT; the limit is $MAX_WAKE_MS ms"
  [ "$ms" -gt "$max" ] && max=$ms
done
echo "ok - an idle worker started each order within $max ms of its COMMIT (poll interval $POLL_MS ms)"

echo "# 5. orders and workflows agree"
"$ORDERS" status >"$work/status.log" 2>&1 || fail "orders status exited $?"
for who in batch-4 sentinel-sam; do
  row=$(sql -F ' ' -c "SELECT o.id, o.status, w.status, w.id FROM shop.orders o JOIN cairn.workflows w
                         ON w.input->>'id' = o.id::text WHERE o.customer = '$who'")
  read -r oid ostatus wstatus wid <<<"$row"
  grep -Eq "^$oid +$who +.* $ostatus +$wstatus +$wid( |\$)" "$work/status.log" ||
    fail "orders status does not show order $oid ($who) as $ostatus / $wstatus / $wid"
done
echo "ok - orders status shows each order beside its workflow"
check "orders without exactly one workflow" "0" \
  "$(sql -c "SELECT count(*) FROM shop.orders o WHERE (SELECT count(*) FROM cairn.workflows w
               WHERE w.name = 'process_order' AND w.input->>'id' = o.id::text) <> 1")"
check "workflows without an order" "0" \
  "$(sql -c "SELECT count(*) FROM cairn.workflows w WHERE NOT EXISTS (SELECT 1 FROM shop.orders o WHERE o.id::text = w.input->>'id')")"
check "workflows not SUCCESS" "0" "$(sql -c "SELECT count(*) FROM cairn.workflows WHERE status <> 'SUCCESS'")"
check "orders whose status differs from their workflow's outcome" "0" \
  "$(sql -c "SELECT count(*) FROM shop.orders o JOIN cairn.workflows w ON w.input->>'id' = o.id::text
               WHERE o.status IS DISTINCT FROM w.output->>'outcome'")"
check "orders shipped / with a shipment / shipments" "11|11|11" \
  "$(sql -c "SELECT (SELECT count(*) FROM shop.orders WHERE status = 'shipped'),
                    (SELECT count(*) FROM shop.orders o WHERE EXISTS (SELECT 1 FROM shop.shipments s WHERE s.order_id = o.id)),
                    (SELECT count(*) FROM shop.shipments)")"
check "shipments whose payment key is not the charge step's key, <workflow id>:2" "0" \
  "$(sql -c "SELECT count(*) FROM shop.shipments s JOIN cairn.workflows w ON w.input->>'id' = s.order_id::text
               WHERE s.payment_key <> w.id || ':2'")"
# 100 descalers less 1 + 2 (backlog) + 3 (batch-6) + 1 (sentinel) + 3 x 1 (latency); 10 espresso machines less 1 + 1.
check "stock left (descaler, espresso machine, grinder)" "90,8,1" \
  "$(sql -c "SELECT string_agg(stock::text, ',' ORDER BY item) FROM shop.inventory")"
for key in $(sql -c "SELECT payment_key FROM shop.shipments"); do
  grep -q "idempotency key $key\$" "$work/backlog-worker.log" "$work/live-worker.log" ||
    fail "no worker printed the charge's idempotency key $key"
done
echo "ok - every charge printed the idempotency key its shipment recorded"

kill -TERM "$worker_pid"
rc=0
wait "$worker_pid" || rc=$?
worker_pid=
check "the worker's exit status after SIGTERM" "0" "$rc"
grep -q "orders worker: stopped by SIGTERM" "$work/live-worker.log" || fail "the worker did not say it stopped on SIGTERM"
if grep -q "ERROR\|runtime error\|Sanitizer" "$work"/*worker.log; then
  fail "a worker reported an error"
fi

passed=1
echo "PASS: orders end-to-end (wake-up latency at most $max ms with a $POLL_MS ms poll interval)"
