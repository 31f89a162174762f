#!/usr/bin/env bash
# PostgreSQL's server binaries (initdb, pg_ctl, postgres) for the tests marked `backends`, from
# Debian's `postgresql` package, where missing. tests/postgres.py starts a throwaway server from
# them once per test run. As root it installs directly; otherwise through passwordless sudo; if
# neither works it says so and the PostgreSQL half of those tests skips with the same reason.
set -uo pipefail
if compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null 2>&1; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_postgres: no apt-get here; install the PostgreSQL server yourself (its tests skip)" >&2
    exit 0
fi
if [ "$(id -u)" = 0 ]; then
    run=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    run=(sudo -n)
else
    echo "install_postgres: not root and no passwordless sudo: apt-get install -y postgresql (its tests skip)" >&2
    exit 0
fi
echo "install_postgres: apt-get install postgresql" >&2
# The package's own cluster is not needed (the tests make theirs): don't create or start one.
"${run[@]}" mkdir -p /etc/postgresql-common \
    && { [ -e /etc/postgresql-common/createcluster.conf ] || echo "create_main_cluster = false" | "${run[@]}" tee /etc/postgresql-common/createcluster.conf >/dev/null; }
"${run[@]}" apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive "${run[@]}" apt-get install -y -qq --no-install-recommends postgresql >/dev/null \
    || echo "install_postgres: apt-get failed; the PostgreSQL tests skip" >&2
exit 0
