#!/usr/bin/env bash
# The main job: set up, make a sample video (unless one is given), run the seed example on it.
#   bash scripts/demo.sh [VIDEO]
# Exits 2, saying why and how to fix it, when the pretrained weights are not cached and cannot be downloaded.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PYTHONWARNINGS=ignore  # towhee 1.1.3's pkg_resources and pydantic deprecation warnings
video=${1:-samples/sample.mp4}
if [ ! -f "$video" ]; then
  .venv/bin/python scripts/make_video.py "$video" --seconds 10 --size 640x360 --fps 25 >/dev/null
  echo "made a synthetic sample video: $video"
fi
exec .venv/bin/python scripts/seed_example.py "$video"
