#!/usr/bin/env bash
# Create .venv if missing, install every requirement into it, and place both operators in Towhee's cache
# ($TOWHEE_HOME, default ~/.towhee) so the seed pipeline resolves them with no network.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt 2>&1 \
  | grep -v 'is ignored: it is neither a file nor a directory' || true
.venv/bin/python -c 'import towhee, torch, av' # fail here, not later, if the install did not work
.venv/bin/python scripts/install_operators.py
