#!/usr/bin/env bash
# The demo command:
#
#   bash scripts/demo.sh
#
# Installs what is missing (Debian 12, through scripts/bootstrap.sh), builds
# cairn and examples/demo into build/, and runs the demo: a worker process
# is killed with SIGKILL in the middle of a workflow and a restarted worker
# finishes it. Then `cairn show` prints the same workflow from the database.
#
# Without CAIRN_DATABASE_URL the demo runs against a throwaway PostgreSQL
# (`cairn dev`) in /tmp/cairn-demo-$UID, removed when the script ends. With
# it, the demo uses that database, creates cairn's schema there if needed
# and leaves its workflows (IDs demo-order-*) in cairn.workflows.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf '==> %s\n' "$*"; }

# Run a command quietly; show what it printed only if it fails.
quietly() {
  local log rc=0
  log=$(mktemp)
  "$@" >"$log" 2>&1 || rc=$?
  if ((rc != 0)); then
    cat "$log" >&2
    echo "demo: failed: $*" >&2
  fi
  rm -f "$log"
  return "$rc"
}

# 1. Build tools, libraries and the PostgreSQL server programs. bootstrap.sh
# only checks when everything is there; as a user it needs root to install.
if ! bash scripts/bootstrap.sh; then
  if ((EUID != 0)) && command -v sudo >/dev/null; then
    say "installing the missing packages with sudo"
    sudo bash scripts/bootstrap.sh
  else
    exit 1
  fi
fi

# 2. The library, the CLI and the demo (the build type is the project's default).
say "building cairn, its CLI and the demo into build/"
quietly cmake -S . -B build
quietly cmake --build build -j"$(nproc)" --target cairn_cli demo
cli=build/cli/cairn
demo=build/examples/demo

# 3. A database.
if [[ -n "${CAIRN_DATABASE_URL:-}" ]]; then
  say "using the database in CAIRN_DATABASE_URL"
else
  dir=/tmp/cairn-demo-$UID
  say "starting a throwaway PostgreSQL in $dir (removed when the demo ends)"
  cleanup() {
    if quietly "$cli" dev stop --dir "$dir" --destroy; then
      echo
      say "stopped the throwaway PostgreSQL and removed $dir"
    fi
  }
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  quietly "$cli" dev start --dir "$dir"
  CAIRN_DATABASE_URL=$("$cli" dev url --dir "$dir")
  export CAIRN_DATABASE_URL
fi

# 4. The demo, with a workflow ID chosen here so that `cairn show` can find it.
id="demo-order-$(date +%Y%m%d-%H%M%S)"
say "running $demo run --order $id"
echo
"$demo" run --order "$id"

echo
say "$cli show $id   (the CLI reads the same rows from the database)"
echo
"$cli" show "$id"
