#!/bin/sh
# PostgreSQL's server binaries for the ledger store's tests (Debian's `postgresql` package).
# Quick when present: looks for initdb, pg_ctl and postgres side by side under
# /usr/lib/postgresql/<version>/bin (Debian keeps them there, off the PATH; a pg_ctl on the
# PATH may be a wrapper or a link, so it is not what we look for). Installs otherwise.
set -eu

have_server() {
    for bin in /usr/lib/postgresql/*/bin; do
        if [ -x "$bin/initdb" ] && [ -x "$bin/pg_ctl" ] && [ -x "$bin/postgres" ]; then
            return 0
        fi
    done
    return 1
}

if have_server; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "install-postgres: PostgreSQL's server is missing; run as root or apt-get install postgresql" >&2
    exit 1
fi
echo "install-postgres: installing Debian's postgresql"
export DEBIAN_FRONTEND=noninteractive
# The tests start throwaway servers of their own: no system-wide "main" cluster on port 5432.
if [ ! -e /etc/postgresql-common/createcluster.conf ]; then
    mkdir -p /etc/postgresql-common
    echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.conf
fi
# Other installs may hold dpkg's lock (developers in parallel): wait for it rather than fail.
WAIT="-o DPkg::Lock::Timeout=600"
apt-get update -q $WAIT
apt-get install -y -q --no-install-recommends $WAIT postgresql
have_server || { echo "install-postgres: initdb still missing after install" >&2; exit 1; }
