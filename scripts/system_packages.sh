#!/usr/bin/env bash
# The system packages the tests need, installed with apt-get when missing: PostgreSQL's server (the
# tests start their own clusters with initdb and pg_ctl) and Chromium (browser tests drive it through
# Playwright). Nothing is installed when both are present.
set -euo pipefail

missing=()
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
    missing+=(postgresql)
fi
if [ ! -x /usr/bin/chromium ]; then
    missing+=(chromium)
fi
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=sudo
    else
        echo "error: the tests need ${missing[*]}; install them (apt-get install ${missing[*]}) as root" >&2
        exit 1
    fi
else
    SUDO=
fi
echo "Installing system packages for the tests: ${missing[*]} (apt-get)..."
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
