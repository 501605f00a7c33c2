#!/usr/bin/env bash
# Node.js (18 or newer) and npm for the interop provider: from Debian's packages on a machine
# that has none.
set -euo pipefail
major() { node --version 2>/dev/null | sed -E 's/^v([0-9]+).*/\1/'; }
if command -v node >/dev/null && command -v npm >/dev/null; then
  if [ "$(major)" -ge 18 ]; then
    exit 0
  fi
  echo "tests/interop needs Node.js 18 or newer; this machine has $(node --version)" >&2
  exit 1
fi
as_root=()
if [ "$(id -u)" != 0 ]; then
  if ! command -v sudo >/dev/null || ! sudo -n true 2>/dev/null; then
    echo "tests/interop needs Node.js: install Debian's nodejs and npm packages" \
      "(apt-get install nodejs npm, as root)" >&2
    exit 1
  fi
  as_root=(sudo -n)
fi
echo "installing Debian's nodejs and npm for tests/interop" >&2
"${as_root[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq --no-install-recommends nodejs npm
node --version
