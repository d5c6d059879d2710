#!/usr/bin/env bash
# The test command: installs what is missing (Debian 12), builds, and runs
# the whole suite with ctest against a throwaway Postgres that the suite
# starts and removes itself. Set CAIRN_DATABASE_URL to use your own server
# instead (the tests create and drop databases named cairn_test_*).
#
#   bash scripts/test.sh                          # normal build
#   CAIRN_SANITIZE=address bash scripts/test.sh   # AddressSanitizer + UBSan
#   CAIRN_SANITIZE=thread bash scripts/test.sh    # ThreadSanitizer
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/bootstrap.sh

sanitize=${CAIRN_SANITIZE:-}
build=build${sanitize:+-$sanitize}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCAIRN_SANITIZE="$sanitize" >/dev/null
cmake --build "$build" -j"$(nproc)"

export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 ${TSAN_OPTIONS:-}"
export ASAN_OPTIONS="detect_leaks=1 abort_on_error=1 ${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="print_stacktrace=1 halt_on_error=1 ${UBSAN_OPTIONS:-}"

cd "$build"
ctest --output-on-failure -j2 ${CAIRN_CTEST_ARGS:-}
