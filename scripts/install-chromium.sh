#!/bin/sh
# Debian's chromium for the web page's browser tests (tests/gateway/test_web_page.py drives it
# with Playwright; Playwright's own browser downloads are never used). Quick when installed.
set -eu
[ -x /usr/bin/chromium ] && exit 0
if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
echo "installing chromium (apt)"
# Other installs may hold dpkg's lock (developers in parallel): wait for it rather than fail.
WAIT="-o DPkg::Lock::Timeout=600"
$SUDO apt-get update -q $WAIT
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends $WAIT chromium
