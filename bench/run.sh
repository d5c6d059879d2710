#!/usr/bin/env bash
# Runs a benchmark in one command: builds it and the cairn CLI (Release, in
# build-bench/ at the top of the repository), starts a durable throwaway
# PostgreSQL with `cairn dev start --durable`, runs the benchmark with its
# pgbench baseline on it, prints the table, then stops and removes the
# server.
#
#   bench/run.sh [ARGS]                    bench_core: 3-step workflows (the default)
#   bench/run.sh tx [ARGS]                 bench_tx: one transactional step; draining a queue
#   bench/run.sh enqueue [ARGS]            bench_enqueue: an application transaction with cairn.enqueue
#   bench/run.sh enqueue-variants [ARGS]   bench_enqueue with the other ways of enqueueing
#                                          in bench/enqueue_variants.sql
#   bench/run.sh queue [ARGS]              bench_queue: enqueue and drain rates, queued against
#                                          direct starts, and an idle worker's statements per second
#   bench/run.sh wait [ARGS]               bench_wait: 100,000 workflows sleeping at once on one
#                                          worker: threads, memory, connections, lateness
#   bench/run.sh all                       core, tx, enqueue and queue on one server, then every target
#
# With CAIRN_DATABASE_URL set, the benchmarks run against that server
# instead and nothing is started or stopped. They create (and afterwards
# drop) the schemas cairn_bench and, for enqueue-variants,
# cairn_bench_variants, and they add rows to cairn's tables, which they
# delete at the end unless --keep is given.
#
# ARGS are passed to the program (see `bench_core --help`, `bench_tx --help`,
# `bench_enqueue --help`, `bench_queue --help`), e.g.
#   bench/run.sh --runs 5000 --seconds 20 --inflight 1,16,64
#   bench/run.sh enqueue --repeat 3
# Environment: CAIRN_BENCH_BUILD (build directory), CAIRN_BENCH_DIR (the
# throwaway server's directory), PGBENCH (the pgbench program).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${CAIRN_BENCH_BUILD:-$root/build-bench}
jobs=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)

what=core
case "${1:-}" in
  core | tx | enqueue | enqueue-variants | queue | wait | all) what=$1; shift ;;
esac
if [ "$what" = all ] && [ $# -gt 0 ]; then
  echo "run.sh: 'all' runs each benchmark with its defaults and takes no arguments" >&2
  exit 2
fi
case $what in
  core) programs=(bench_core) ;;
  tx) programs=(bench_tx) ;;
  enqueue | enqueue-variants) programs=(bench_enqueue) ;;
  queue) programs=(bench_queue) ;;
  wait) programs=(bench_wait) ;;
  all) programs=(bench_core bench_tx bench_enqueue bench_queue) ;;
esac

cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DCAIRN_BUILD_TESTS=OFF >/dev/null
cmake --build "$build" --target "${programs[@]}" cairn_cli -j "$jobs" >/dev/null
cli=$build/cli/cairn

# pgbench and psql ship with the server, which is often not on PATH.
bindir=
if command -v pg_config >/dev/null; then
  bindir=$(pg_config --bindir)
fi
if [ -z "${PGBENCH:-}" ]; then
  if [ -n "$bindir" ] && [ -x "$bindir/pgbench" ]; then
    PGBENCH=$bindir/pgbench
  elif command -v pgbench >/dev/null; then
    PGBENCH=$(command -v pgbench)
  else
    echo "run.sh: pgbench not found; set PGBENCH or install the PostgreSQL client programs" >&2
    exit 1
  fi
fi

# The other ways of enqueueing that enqueue-variants compares, each the body of
# the application transaction (see bench/enqueue_variants.sql).
ins="INSERT INTO cairn_bench.app(v) VALUES (1)"
in="'bench_noop', '{\"n\":1}'"
variants=(
  --no-worker --no-notify
  --variant "select1=$ins; SELECT 1"
  --variant "uuid_inline=$ins; SELECT cairn_bench_variants.enqueue_uuid_inline($in)"
  --variant "flat=$ins; SELECT cairn_bench_variants.enqueue_flat($in)"
  --variant "lean=$ins; SELECT cairn_bench_variants.enqueue_lean($in)"
  --variant "lean_plain=$ins; SELECT cairn_bench_variants.enqueue_lean_plain($in)"
  --variant "one_statement=WITH a AS ($ins) SELECT cairn_bench_variants.enqueue_lean_plain($in)"
  --variant "trigger=INSERT INTO cairn_bench_variants.app_trig(v) VALUES (1)"
  --variant "row_only=WITH a AS ($ins) INSERT INTO cairn.workflow_status (id, name, status, queue, input) VALUES (cairn_bench_variants.uuid7(), 'bench_noop', 'ENQUEUED', 'default', '{\"n\":1}')"
)

# Runs one benchmark against $1 with the remaining arguments.
run_one() {
  local url=$1 program=$2
  shift 2
  case $program in
    enqueue-variants)
      local psql=psql
      if [ -n "$bindir" ] && [ -x "$bindir/psql" ]; then psql=$bindir/psql; fi
      # The variants call cairn's functions, so the schema must exist first.
      "$cli" --db "$url" migrate >/dev/null
      PGOPTIONS="-c client_min_messages=warning" "$psql" -X -q -v ON_ERROR_STOP=1 -d "$url" \
        -f "$root/bench/enqueue_variants.sql" >/dev/null
      "$build/bench/bench_enqueue" --pgbench "$PGBENCH" "${variants[@]}" "$@" "$url"
      if [ -z "${keep:-}" ]; then
        PGOPTIONS="-c client_min_messages=warning" "$psql" -X -q -d "$url" \
          -c "DROP SCHEMA IF EXISTS cairn_bench_variants CASCADE" >/dev/null
      fi
      ;;
    *) "$build/bench/bench_$program" --pgbench "$PGBENCH" "$@" "$url" ;;
  esac
}

for a in "$@"; do
  if [ "$a" = --keep ]; then keep=1; fi
done

# Runs what was asked for against $1; with 'all', keeps the output and ends with the targets.
run_all() {
  local url=$1
  shift
  if [ "$what" != all ]; then
    run_one "$url" "$what" "$@"
    return
  fi
  local out summary=""
  out=$(mktemp)
  for p in core tx enqueue queue; do
    run_one "$url" "$p" | tee "$out"
    summary+=$(grep -E '(met|MISSED)$' "$out" | sed -e "s/^ */  bench_$p: /")$'\n'
  done
  rm -f "$out"
  printf 'Every target of this run:\n%s\n' "$summary"
}

if [ -n "${CAIRN_DATABASE_URL:-}" ]; then
  echo "run.sh: using CAIRN_DATABASE_URL; no throwaway server" >&2
  run_all "$CAIRN_DATABASE_URL" "$@"
  exit
fi

dir=${CAIRN_BENCH_DIR:-/tmp/cairn-bench-$(id -u)}
# A cluster left by an interrupted run would carry its rows and settings into this one.
if "$cli" dev status --dir "$dir" >/dev/null 2>&1 || [ -e "$dir/data" ]; then
  "$cli" dev stop --dir "$dir" --destroy >/dev/null 2>&1 || true
fi
url=$("$cli" dev start --dir "$dir" --durable)
trap '"$cli" dev stop --dir "$dir" --destroy >/dev/null 2>&1 || echo "run.sh: could not remove $dir" >&2' EXIT
run_all "$url" "$@"
