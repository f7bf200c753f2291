#!/usr/bin/env bash
# Print the path of a Python 3.13 interpreter: what Lambda's python3.13 runtime runs, so the venv
# the tests use and the `sam build` of the layers use the same Python. Looks on PATH first, then
# in pyenv's versions (pyenv installs them off PATH: its `python3.13` shim fails unless 3.13 is
# the selected version). Exits 1, saying what to install, when there is none.
set -euo pipefail

works() {  # a real 3.13, not a shim that refuses to run
  [ -n "$1" ] && "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' 2>/dev/null
}

candidates=()
command -v python3.13 >/dev/null 2>&1 && candidates+=("$(command -v python3.13)")
root="${PYENV_ROOT:-$HOME/.pyenv}"
command -v pyenv >/dev/null 2>&1 && root="$(pyenv root)"
for found in "$root"/versions/3.13*/bin/python3.13; do
  [ -e "$found" ] && candidates+=("$found")
done

for python in "${candidates[@]}"; do
  if works "$python"; then
    # The real interpreter behind a shim or symlink, so callers can put its folder on PATH.
    "$python" -c 'import sys; print(sys.executable)'
    exit 0
  fi
done

cat >&2 <<'EOF'
No Python 3.13 found (looked for python3.13 on PATH and in pyenv's versions).
Lambda runs this project on python3.13, and `sam build` needs one to build the layers.
Install it, then rerun:
  Debian/Ubuntu:  apt-get install python3.13 python3.13-venv   (Debian 13 / Ubuntu 24.10 and later)
  pyenv:          pyenv install 3.13
  macOS:          brew install python@3.13
EOF
exit 1
