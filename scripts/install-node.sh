#!/usr/bin/env bash
# Node.js for building the JupyterLab / Notebook 7 frontend from source (users installing
# a wheel need no node). Installs Debian's nodejs with apt when `node` is missing or older
# than 18; needs root or sudo then.
set -euo pipefail
if command -v node >/dev/null; then
  major=$(node -p 'process.versions.node.split(".")[0]')
  if [ "$major" -ge 18 ]; then
    exit 0
  fi
  echo "==> node $(node --version) is too old to build the frontend (18 or newer needed)"
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null; then SUDO="sudo"; else
    echo "!! node 18+ is missing and there is no root/sudo to install it (apt-get install nodejs)" >&2
    exit 1
  fi
fi
echo "==> installing Debian's nodejs (apt-get)"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nodejs >/dev/null
node --version
