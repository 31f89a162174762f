#!/usr/bin/env bash
# Chromium and its driver for tests/test_ls_browser.py, from Debian's packages, where missing.
# As root it installs directly; otherwise through passwordless sudo; if neither works it says
# so and the browser test skips with the same reason (the rest of the suite does not need it).
set -uo pipefail
if command -v chromedriver >/dev/null 2>&1 && { command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; }; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_browser: no apt-get here; install Chromium and chromedriver yourself (the browser test skips)" >&2
    exit 0
fi
if [ "$(id -u)" = 0 ]; then
    run=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    run=(sudo -n)
else
    echo "install_browser: not root and no passwordless sudo: apt-get install -y chromium chromium-driver (the browser test skips)" >&2
    exit 0
fi
echo "install_browser: apt-get install chromium chromium-driver" >&2
"${run[@]}" apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive "${run[@]}" apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null \
    || echo "install_browser: apt-get failed; the browser test skips" >&2
exit 0
