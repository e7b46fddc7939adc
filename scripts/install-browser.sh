#!/usr/bin/env bash
# Debian's Chromium for the Playwright browser tests (Playwright's own browser download
# is not used). Needs root or sudo; skipped when /usr/bin/chromium is already there.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null; then SUDO="sudo"; else
    echo "!! /usr/bin/chromium is missing and there is no root/sudo to install it (apt-get install chromium)" >&2
    exit 1
  fi
fi
echo "==> installing Debian's chromium (apt-get)"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
