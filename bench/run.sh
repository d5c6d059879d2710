#!/usr/bin/env bash
# Runs the core benchmark in one command: builds bench_core and the cairn
# CLI (Release, in build-bench/ at the top of the repository), starts a
# durable throwaway PostgreSQL with `cairn dev start --durable`, runs the
# pgbench baseline and cairn on it, prints the table, then stops and
# removes the server.
#
# With CAIRN_DATABASE_URL set, the benchmark runs against that server
# instead and nothing is started or stopped. It creates (and afterwards
# drops) the schema cairn_bench, and it adds rows to cairn's tables, which
# it deletes at the end unless --keep is given.
#
# Arguments are passed to bench_core (see `bench_core --help`), e.g.
#   bench/run.sh --runs 5000 --seconds 20 --inflight 1,16,64
# Environment: CAIRN_BENCH_BUILD (build directory), CAIRN_BENCH_DIR (the
# throwaway server's directory), PGBENCH (the pgbench program).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${CAIRN_BENCH_BUILD:-$root/build-bench}
jobs=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)

cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DCAIRN_BUILD_TESTS=OFF >/dev/null
cmake --build "$build" --target bench_core cairn_cli -j "$jobs" >/dev/null
bench=$build/bench/bench_core
cli=$build/cli/cairn

# pgbench ships with the server, which is often not on PATH.
if [ -z "${PGBENCH:-}" ]; then
  if command -v pg_config >/dev/null && [ -x "$(pg_config --bindir)/pgbench" ]; then
    PGBENCH=$(pg_config --bindir)/pgbench
  elif command -v pgbench >/dev/null; then
    PGBENCH=$(command -v pgbench)
  else
    echo "run.sh: pgbench not found; set PGBENCH or install the PostgreSQL client programs" >&2
    exit 1
  fi
fi

if [ -n "${CAIRN_DATABASE_URL:-}" ]; then
  echo "run.sh: using CAIRN_DATABASE_URL; no throwaway server" >&2
  exec "$bench" --pgbench "$PGBENCH" "$@" "$CAIRN_DATABASE_URL"
fi

dir=${CAIRN_BENCH_DIR:-/tmp/cairn-bench-$(id -u)}
# A cluster left by an interrupted run would carry its rows and settings into this one.
if "$cli" dev status --dir "$dir" >/dev/null 2>&1 || [ -e "$dir/data" ]; then
  "$cli" dev stop --dir "$dir" --destroy >/dev/null 2>&1 || true
fi
url=$("$cli" dev start --dir "$dir" --durable)
trap '"$cli" dev stop --dir "$dir" --destroy >/dev/null 2>&1 || echo "run.sh: could not remove $dir" >&2' EXIT
"$bench" --pgbench "$PGBENCH" "$@" "$url"
