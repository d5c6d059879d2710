#!/usr/bin/env bash
# Starts or stops the test suite's throwaway Postgres through `cairn dev`.
# Does nothing when CAIRN_DATABASE_URL points the suite at a server of the
# user's choosing.
set -euo pipefail
action=$1 cli=$2 dir=$3
if [ -n "${CAIRN_DATABASE_URL:-}" ]; then
  echo "using CAIRN_DATABASE_URL; no throwaway server"
  exit 0
fi
case "$action" in
  start) "$cli" dev start --dir "$dir" ;;
  stop)  "$cli" dev stop --dir "$dir" --destroy ;;
  *) echo "usage: $0 start|stop CLI DIR" >&2; exit 2 ;;
esac
