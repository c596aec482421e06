#!/usr/bin/env bash
# The main job: set up, make a sample video (unless one is given), run the seed example on it.
#   bash scripts/demo.sh [--random-weights] [VIDEO]
# Exits 2, saying why and how to fix it, when the pretrained weights are not cached and cannot be downloaded.
# --random-weights: no pretrained weights needed; runs the same pipeline on randomly initialised weights of the same
#   shape (written once to samples/random_vitb.pt). Plumbing only: its labels and scores are meaningless.
set -euo pipefail
cd "$(dirname "$0")/.."
random=0
if [ "${1:-}" = --random-weights ]; then
  random=1
  shift
fi
if [ ! -x .venv/bin/python ]; then
  echo 'demo: first run: setting up .venv, which downloads and installs about 6.6 GB (PyTorch with its CUDA' >&2
  echo '      libraries, Ray, ...): about 8 minutes on a fast connection. Later runs start in seconds.' >&2
fi
bash scripts/setup.sh
export PYTHONWARNINGS=ignore  # towhee 1.1.3's pkg_resources and pydantic deprecation warnings
video=${1:-samples/sample.mp4}
if [ ! -f "$video" ]; then
  echo "[demo] making a synthetic 10 s sample video: $video" >&2
  .venv/bin/python scripts/make_video.py "$video" --seconds 10 --size 640x360 --fps 25 >/dev/null
fi
if [ "$random" = 1 ]; then
  weights=samples/random_vitb.pt
  if [ ! -f "$weights" ]; then
    echo "[demo] writing random weights of ViT-B/16 8x224 to $weights" >&2
    .venv/bin/python scripts/videos.py random-weights "$weights" >/dev/null
  fi
  echo '[demo] PLUMBING ONLY: random weights, so the labels and scores below are meaningless' >&2
  echo "[demo] running the seed example on $video (loading the model takes a few seconds)" >&2
  exec .venv/bin/python scripts/seed_example.py "$video" --weights "$weights"
fi
echo "[demo] running the seed example on $video (loading the model takes a few seconds)" >&2
exec .venv/bin/python scripts/seed_example.py "$video"
