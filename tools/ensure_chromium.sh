#!/usr/bin/env bash
# The browser test drives Debian's Chromium with Playwright; install it when missing and we can (as root
# with apt-get, as in CI). Otherwise say so: the test then skips with that reason.
set -u
command -v chromium >/dev/null 2>&1 && exit 0
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing chromium for the browser test (apt-get)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-dejavu-core >/dev/null
else
    echo "note: chromium is not installed and cannot be installed here; the browser test will be skipped"
fi
exit 0
