#!/usr/bin/env bash
# The main job: set up, make a sample video (unless one is given), run the seed example on it.
#   bash scripts/demo.sh [--random-weights] [VIDEO]
# VIDEO (a path from where you run this, or an http(s) URL) is classified as it is; without it, a synthetic 10 s
# clip is written to samples/sample.mp4 once and used.
# Exits 2, saying why and how to fix it, when the pretrained weights are not cached and cannot be downloaded.
# --random-weights: no pretrained weights needed; runs the same pipeline on randomly initialised weights of the same
#   shape (written once to samples/random_vitb.pt). Plumbing only: its labels and scores are meaningless.
set -euo pipefail
usage() { sed -n '2,8s/^# \{0,1\}//p' "$0"; }
random=0
video=
for arg in "$@"; do
  case "$arg" in
    --random-weights) random=1 ;;
    -h|--help) usage; exit 0 ;;
    -*) echo "demo: unknown option $arg" >&2; usage >&2; exit 2 ;;
    *)
      if [ -n "$video" ]; then echo "demo: one VIDEO at a time (got $video and $arg)" >&2; exit 2; fi
      video=$arg ;;
  esac
done
if [ -n "$video" ] && [[ "$video" != *://* ]]; then
  if [ ! -f "$video" ]; then
    echo "demo: no video file at $video (from $PWD)" >&2
    exit 2
  fi
  video=$(cd "$(dirname "$video")" && pwd)/$(basename "$video")  # the caller's file, before moving to the checkout
fi
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  echo 'demo: first run: setting up .venv, which downloads and installs about 6.6 GB (PyTorch with its CUDA' >&2
  echo '      libraries, Ray, ...): about 8 minutes on a fast connection. Later runs start in seconds.' >&2
fi
bash scripts/setup.sh
export PYTHONWARNINGS=ignore  # towhee 1.1.3's pkg_resources and pydantic deprecation warnings
if [ -z "$video" ]; then
  video=samples/sample.mp4
  if [ ! -f "$video" ]; then
    echo "[demo] making a synthetic 10 s sample video: $video" >&2
    .venv/bin/python scripts/make_video.py "$video" --seconds 10 --size 640x360 --fps 25 >/dev/null
  fi
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
