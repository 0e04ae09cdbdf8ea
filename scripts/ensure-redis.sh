#!/usr/bin/env bash
# The integration tests run a real redis-server (standalone and a 3-node Cluster) on loopback.
# Installs it where it can (root with apt-get), otherwise says what to install.
set -euo pipefail
if command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "redis-server not found: installing Debian's redis-server package" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq redis-server >/dev/null
  exit 0
fi
echo "The tests need redis-server and redis-cli (Redis >= 6) on PATH." >&2
echo "Install them, e.g. 'sudo apt-get install redis-server' (Debian/Ubuntu) or 'brew install redis' (macOS), then run npm test again." >&2
exit 1
