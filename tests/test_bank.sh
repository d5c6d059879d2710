#!/usr/bin/env bash
# Exactly-once under faults: the bank example (examples/bank) with its
# workers SIGKILLed at random moments, hundreds of times, and their database
# connections terminated mid-transaction, while transfer requests keep
# arriving. Afterwards `bank check` must find every invariant intact: the
# money total unchanged, every committed request applied exactly once,
# nothing of a rejected or rolled-back request applied. The requests come in
# bursts and most run between three hot accounts in both directions, so the
# run must also show real serialization failures (40001) and deadlocks
# (40P01) that were retried to success.
#
#   test_bank.sh BANK-PROGRAM
#
# The server is $CAIRN_DATABASE_URL, else the suite's throwaway cluster in
# $CAIRN_TEST_DEV_DIR; the test creates a database of its own there and
# drops it when it passes. BANK_SEED=<seed> repeats a run's random choices
# (the kill timing still depends on the machine). BANK_TRANSFERS,
# BANK_RATE (requests per second) and BANK_MIN_KILLS change its size.
set -uo pipefail

bank=${1:?usage: test_bank.sh BANK-PROGRAM}
transfers=${BANK_TRANSFERS:-2000}
rate=${BANK_RATE:-25}
min_kills=${BANK_MIN_KILLS:-300}
seed=${BANK_SEED:-$(( $(date +%s) % 100000 ))}
workers=3          # worker processes, each with its own executor ID
threads=6          # executor threads in each
chaos_max_s=240    # the chaos phase fails if the requests are not all in by then
drain_s=120        # then every transfer must finish within this
RANDOM=$seed

say() { printf 'test_bank: %s\n' "$*"; }
die() { say "FAIL: $*"; exit 1; }

base=${CAIRN_DATABASE_URL:-postgresql:///postgres?host=${CAIRN_TEST_DEV_DIR:?set CAIRN_TEST_DEV_DIR or CAIRN_DATABASE_URL}&user=postgres}
db=cairn_test_bank_$$
case $base in
  postgres://* | postgresql://*) url=$(printf '%s' "$base" | sed -E "s#^(postgres(ql)?://[^/?]*)(/[^?]*)?#\\1/$db#") ;;
  *) url="$base dbname=$db" ;;
esac
export CAIRN_DATABASE_URL=$url

work=$(mktemp -d /tmp/cairn-bank.XXXXXX)
pids=()        # worker process of each slot
requester=
passed=0

cleanup() {
  for p in "${pids[@]}" $requester; do
    [ -n "$p" ] && kill -KILL "$p" 2>/dev/null
  done
  wait 2>/dev/null
  if [ "$passed" = 1 ]; then
    psql -qX "$base" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1
    rm -rf "$work"
  else
    for f in "$work"/request.log "$work"/worker*.log; do
      [ -f "$f" ] || continue
      say "---- last lines of $(basename "$f") (without the start-up lines)"
      grep -v 'serving transfers' "$f" | tail -n 15
    done
    say "database $db and logs in $work are left for inspection"
  fi
}
trap cleanup EXIT

psql -qX "$base" -v ON_ERROR_STOP=1 -c "CREATE DATABASE $db" >/dev/null || die "cannot create database $db"
# Deadlocks are found after deadlock_timeout; a short one keeps their stalls short (needs a superuser).
psql -qX "$base" -c "ALTER DATABASE $db SET deadlock_timeout = '50ms'" >/dev/null 2>&1 ||
  say "could not shorten deadlock_timeout; deadlocks will stall for a second each"

"$bank" setup --accounts 12 --balance 1000 || die "bank setup"
say "seed $seed: $transfers transfer requests at $rate per second, $workers workers of $threads threads"

# The three workers run the transfer steps at different isolation levels, as
# workers of different versions of an application might.
isolation=(repeatable-read serializable read-committed)
start_worker() {
  local i=$1
  "$bank" worker --executor "bank-test-$i" --workers "$threads" --isolation "${isolation[$i]}" \
    --max-attempts 1000000 >>"$work/worker$i.log" 2>&1 &
  pids[$i]=$!
}
for ((i = 0; i < workers; i++)); do start_worker "$i"; done

"$bank" request --count "$transfers" --rate "$rate" --burst "$rate" --seed "$seed" --hot 60 \
  --rollback-every 9 --reject-every 23 >"$work/request.log" 2>&1 &
requester=$!

# A random duration from lo to hi milliseconds, in seconds for sleep.
pause() { local ms=$(( $1 + RANDOM % ($2 - $1 + 1) )); sleep "$(printf '%d.%03d' $((ms / 1000)) $((ms % 1000)))"; }

# ---- chaos: SIGKILL a random worker every 50-300 ms and start it again with
# the same executor ID, so that it resumes what it left; every second kill,
# also terminate up to three of the workers' backends that are inside a
# statement or a transaction.
kills=0 terminations=0 started=$SECONDS requests_rc=
while :; do
  # A worker that ended without being killed (a crash, a sanitizer report) fails the test.
  for ((j = 0; j < workers; j++)); do
    if ! kill -0 "${pids[$j]}" 2>/dev/null; then
      wait "${pids[$j]}"; rc=$?; pids[$j]=
      die "worker $j exited on its own with status $rc"
    fi
  done

  if [ -n "$requester" ] && ! kill -0 "$requester" 2>/dev/null; then
    wait "$requester"; requests_rc=$?; requester=
    [ "$requests_rc" = 0 ] || die "bank request failed (exit $requests_rc)"
    say "all requests are in after $((SECONDS - started)) s and $kills kills"
  fi
  [ -z "$requester" ] && [ "$kills" -ge "$min_kills" ] && break
  [ $((SECONDS - started)) -lt "$chaos_max_s" ] || die "the chaos phase took longer than $chaos_max_s s"

  pause 50 300
  i=$((RANDOM % workers))
  kill -KILL "${pids[$i]}" 2>/dev/null
  wait "${pids[$i]}" 2>/dev/null
  kills=$((kills + 1))
  start_worker "$i"

  if [ $((kills % 2)) = 0 ]; then
    n=$(psql -qtAX "$url" -c "SELECT count(*) FROM (
            SELECT pg_terminate_backend(pid) AS gone FROM pg_stat_activity
             WHERE application_name = 'cairn' AND datname = current_database()
               AND state IN ('idle in transaction', 'active') AND pid <> pg_backend_pid()
             ORDER BY random() LIMIT 3) t WHERE gone" 2>/dev/null) || n=0
    terminations=$((terminations + ${n:-0}))
  fi
done
chaos_s=$((SECONDS - started))
say "chaos over after $chaos_s s: $kills workers SIGKILLed, $terminations backends terminated"

# ---- let the surviving workers finish everything, then stop them gracefully.
"$bank" check --wait "$drain_s" >"$work/check-running.log" 2>&1 ||
  { cat "$work/check-running.log"; die "bank check failed while the workers were still up"; }
for ((i = 0; i < workers; i++)); do kill -TERM "${pids[$i]}"; done
for ((i = 0; i < workers; i++)); do
  for ((t = 0; t < 300; t++)); do kill -0 "${pids[$i]}" 2>/dev/null || break; sleep 0.1; done
  kill -0 "${pids[$i]}" 2>/dev/null && die "worker $i did not stop within 30 s of SIGTERM"
  wait "${pids[$i]}"; rc=$?
  [ "$rc" = 0 ] || die "worker $i exited with status $rc after SIGTERM"
  pids[$i]=
done
say "$(tail -n 1 "$work/request.log")"
grep -h 'stopped by signal' "$work"/worker*.log | sed 's/^/test_bank: last run of /'

# ---- the verdict.
"$bank" check >"$work/check.log" 2>&1; rc=$?
cat "$work/check.log"
[ "$rc" = 0 ] || die "bank check found violations"
stats=$(grep -o 'retries: .*' "$work/check.log")
figure() { printf '%s\n' "$stats" | sed -nE "s/.*[ :]$1=([0-9]+).*/\\1/p"; }
sf=$(figure serialization_failures) dl=$(figure deadlocks) server_dl=$(figure server_deadlocks)
[ "$kills" -ge "$min_kills" ] || die "only $kills kills"
[ "$terminations" -gt 0 ] || die "no backend was terminated mid-transaction"
[ "${sf:-0}" -gt 0 ] || die "no committed step had retried a serialization failure (40001)"
[ "${dl:-0}" -gt 0 ] || die "no committed step had retried a deadlock (40P01)"
say "PASS in $SECONDS s: $transfers requests, $kills SIGKILLs, $terminations backends terminated," \
  "$sf serialization failures and $dl deadlocks retried to success (server counted ${server_dl:-?} deadlocks)"
passed=1
