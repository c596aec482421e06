#!/usr/bin/env bash
# Create .venv if missing, install every requirement into it, and place both operators in Towhee's cache
# ($TOWHEE_HOME, default ~/.towhee) so the seed pipeline resolves them with no network.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v ffmpeg >/dev/null; then  # the tests write their videos with the ffmpeg CLI, as users make them
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing the ffmpeg CLI (apt-get install ffmpeg)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg >/dev/null
  else
    echo "warning: no ffmpeg CLI; tests/test_decode_corpus.py needs it (e.g. sudo apt-get install ffmpeg)" >&2
  fi
fi
if ! command -v chromium >/dev/null; then  # tests/test_moments.py renders the search page in headless Chromium
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing Chromium (apt-get install chromium)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "warning: no chromium; tests/test_moments.py needs it (e.g. sudo apt-get install chromium)" >&2
  fi
fi
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt 2>&1 \
  | grep -v 'is ignored: it is neither a file nor a directory' || true
.venv/bin/python -c 'import towhee, torch, av' # fail here, not later, if the install did not work
.venv/bin/python scripts/install_operators.py
