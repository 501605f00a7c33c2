#!/usr/bin/env bash
# Node.js and npm for the interop provider, from Debian's packages, on a machine that has none.
set -euo pipefail
if command -v node >/dev/null && command -v npm >/dev/null; then
  exit 0
fi
as_root=()
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || {
    echo "Node.js is needed for tests/interop: install Debian's nodejs and npm packages" >&2
    exit 1
  }
  as_root=(sudo -n)
fi
echo "installing Debian's nodejs and npm for tests/interop" >&2
"${as_root[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq --no-install-recommends nodejs npm
node --version
