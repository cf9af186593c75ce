#!/usr/bin/env bash
# Create the project's virtual environment, explaining what to install when Python lacks venv.
set -euo pipefail
VENV="${1:-.venv}"
if [ -x "$VENV/bin/python" ]; then exit 0; fi
PYTHON="${PYTHON:-python3}"
if ! command -v "$PYTHON" >/dev/null; then
  echo "python3 not found: install it (Debian/Ubuntu: sudo apt-get install python3 python3-venv)" >&2
  exit 1
fi
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "Python 3.11 or newer is needed ($("$PYTHON" --version) found); set PYTHON=/path/to/python3.11" >&2
  exit 1
fi
if ! "$PYTHON" -m venv "$VENV" 2>/dev/null; then
  rm -rf "$VENV"
  echo "python3 -m venv failed: install the venv module (Debian/Ubuntu: sudo apt-get install python3-venv)" >&2
  exit 1
fi
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
