#!/usr/bin/env bash
# Install what building and testing cairn needs on Debian 12. Safe to run
# any number of times: when everything is present it only checks and exits
# without touching apt. Set CAIRN_BOOTSTRAP_VALGRIND=1 to add valgrind.
#
# The tests and `cairn dev` run their own throwaway cluster, so the cluster
# that Debian's postgresql packages would create and start on their own is
# never needed: we ask postgresql-common not to create it and never start it.
set -euo pipefail

packages=(
  build-essential
  cmake
  pkg-config
  libpq-dev
  libjansson-dev
  libcmocka-dev
  postgresql-15          # server programs (initdb, pg_ctl, postgres) and contrib
  postgresql-client-15   # psql
)
if [[ "${CAIRN_BOOTSTRAP_VALGRIND:-0}" == 1 ]]; then
  packages+=(valgrind)
fi

# A package counts as present only when dpkg says it is fully installed.
installed() {
  local status
  status=$(dpkg -s "$1" 2>/dev/null) || return 1
  [[ "$status" == *"Status: install ok installed"* ]]
}

missing=()
for p in "${packages[@]}"; do
  installed "$p" || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
  echo "bootstrap: all dependencies are installed"
  exit 0
fi

install_cmd="DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${missing[*]}"
if ((EUID != 0)); then
  echo "bootstrap: missing packages: ${missing[*]}" >&2
  echo "bootstrap: run as root:" >&2
  echo "  apt-get update && $install_cmd" >&2
  exit 1
fi

# Tell postgresql-common (installed as a dependency) not to create the
# default 15/main cluster; cairn never uses it. createcluster.conf includes
# this directory, and the drop-in is in place before the package configures.
conf_dir=/etc/postgresql-common/createcluster.d
if [[ ! -e "$conf_dir/cairn.conf" ]]; then
  mkdir -p "$conf_dir"
  printf '%s\n' \
    "# Written by cairn's scripts/bootstrap.sh: cairn runs its own throwaway clusters." \
    "create_main_cluster = false" >"$conf_dir/cairn.conf"
fi

echo "bootstrap: installing ${missing[*]}"
apt-get update
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"

# Sanity check: the server programs cairn dev needs are where it looks.
if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
  echo "bootstrap: initdb not found under /usr/lib/postgresql after installing" >&2
  exit 1
fi
echo "bootstrap: done"
