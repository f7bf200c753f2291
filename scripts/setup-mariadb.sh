#!/usr/bin/env bash
# Install the MariaDB server binaries the export-urls tests and benchmark need (`make mariadb`).
# The tests start their own throwaway server on 127.0.0.1 (tests/support/mariadb.py); nothing
# here configures or relies on the system service. Debian/Ubuntu (apt) only; elsewhere it says
# what to install.
set -euo pipefail

server() {
  command -v mariadbd 2>/dev/null || { [ -x /usr/sbin/mariadbd ] && echo /usr/sbin/mariadbd; }
}

if [ -n "$(server)" ] && command -v mariadb-install-db >/dev/null 2>&1; then
  echo "mariadb-server already installed: $("$(server)" --version)"
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "no apt-get here: install the MariaDB server with your package manager" \
       "(e.g. 'brew install mariadb', 'dnf install mariadb-server'), then rerun the tests." >&2
  exit 1
fi

sudo=()
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    sudo=(sudo)
  else
    echo "run as root (or install sudo): apt-get install mariadb-server" >&2
    exit 1
  fi
fi

# Wait for another apt/dpkg run instead of failing on its lock.
"${sudo[@]}" apt-get -o DPkg::Lock::Timeout=600 update -qq
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends mariadb-server >/dev/null
echo "installed: $("$(server)" --version)"
