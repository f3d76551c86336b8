#!/usr/bin/env bash
# Debian's Chromium, for the dashboard's browser tests (Playwright drives it; it never
# downloads a browser of its own).
#
#   bash scripts/chromium.sh install   # apt-get install chromium, if /usr/bin/chromium is missing
#   bash scripts/chromium.sh check     # print its version; exit 3 when it is missing
#
# Safe to repeat. Installing needs root (CI, a fresh machine); on a laptop without it the
# browser tests skip, saying so, unless CI=true.
set -euo pipefail

BIN="${SENSORSTREAM_CHROMIUM:-/usr/bin/chromium}"
say() { echo "chromium.sh: $*" >&2; }

case "${1:-}" in
install)
    if [ -x "$BIN" ]; then
        exit 0
    fi
    if [ "$(id -u)" -ne 0 ]; then
        say "error: $BIN is missing and installing it needs root: sudo apt-get install chromium"
        exit 1
    fi
    say "installing Debian's chromium"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        chromium fonts-dejavu-core >/dev/null
    "$BIN" --version >&2
    ;;
check)
    if [ ! -x "$BIN" ]; then
        say "$BIN is missing: bash scripts/chromium.sh install"
        exit 3
    fi
    "$BIN" --version
    ;;
*)
    echo "usage: $0 install|check" >&2
    exit 2
    ;;
esac
