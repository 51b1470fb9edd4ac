#!/bin/sh
# Installs nats-server (Debian's package) for the tests and `venue serve --nats` when missing;
# returns at once when it is on the PATH or in /usr/sbin (Debian's place, off a non-root PATH).
# Idempotent; run by `make services` before the tests.
set -eu
have_nats() {
    command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ]
}
if have_nats; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "install-nats.sh: nats-server is missing; run as root (or: apt-get install nats-server)" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# Other installs may hold dpkg's lock (make services runs them one after another, developers in
# parallel): wait for it rather than fail. Update the package lists only when they lack it.
WAIT="-o DPkg::Lock::Timeout=600"
if ! apt-cache show nats-server >/dev/null 2>&1; then
    apt-get update -q $WAIT
fi
apt-get install -y -q --no-install-recommends $WAIT nats-server
# The package may start a system-wide server on the default port; the venue's tests start their
# own on free ports, so leave a packaged one alone but make sure the binary is there.
have_nats || { echo "install-nats.sh: nats-server not found after install" >&2; exit 1; }
