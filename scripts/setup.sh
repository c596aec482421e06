#!/usr/bin/env bash
# Create .venv if missing, install every requirement into it, install this repository's package (timesformer_video,
# editable: `pip install -e .`), and place both operators in Towhee's cache ($TOWHEE_HOME, default ~/.towhee) so the
# seed pipeline resolves them with no network.
# The first run downloads and installs about 6.6 GB (PyTorch with its CUDA libraries, Ray, ONNX Runtime, ...):
# about 8 minutes on a fast connection. Later runs find everything installed and take a few seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
# towhee 1.1.3 imports pkg_resources, which setuptools deprecates with a warning on every import.
export PYTHONWARNINGS='ignore:pkg_resources is deprecated'
step() { echo "[setup $1/6] $2" >&2; }

if [ ! -x .venv/bin/python ]; then
  step 1 'creating .venv (python3 -m venv)'
  python3 -m venv .venv
else
  step 1 '.venv exists: reusing it'
fi

if .venv/bin/python -m pip install --dry-run --quiet --no-index --disable-pip-version-check \
     -r requirements-dev.txt >/dev/null 2>&1; then
  step 2 'requirements-dev.txt: everything already installed'
else
  step 2 'installing requirements-dev.txt into .venv: on a first run about 6.6 GB (PyTorch with CUDA libraries,
           Ray, ONNX Runtime, ...), about 8 minutes on a fast connection; pip lists each package as it goes'
  set +e
  .venv/bin/python -m pip install --disable-pip-version-check --progress-bar off -r requirements-dev.txt 2>&1 \
    | grep --line-buffered -v -e '^Requirement already satisfied' -e 'is ignored: it is neither a file nor a directory' \
    | sed -u 's/^/    /'
  pip_status=${PIPESTATUS[0]}
  set -e
  if [ "$pip_status" -ne 0 ]; then
    echo "setup: pip install failed (exit status $pip_status, output above)" >&2
    exit 1
  fi
fi

# Not installed: the tests read the Kinetics-600 / SSv2 label lists out of this wheel as an independent reference.
reference=.venv/reference-wheels/gluoncv-0.10.5.post0-py2.py3-none-any.whl
if [ ! -f "$reference" ]; then
  echo '    downloading the GluonCV wheel the tests read label lists from (1.2 MB, not installed)' >&2
  set +e
  .venv/bin/python -m pip download --quiet --no-deps --disable-pip-version-check gluoncv==0.10.5.post0 \
    -d .venv/reference-wheels 2>&1 | grep -v 'is ignored: it is neither a file nor a directory'
  pip_status=${PIPESTATUS[0]}
  set -e
  if [ "$pip_status" -ne 0 ]; then
    echo "setup: downloading the GluonCV wheel failed (exit status $pip_status, output above)" >&2
    exit 1
  fi
fi

step 3 'checking that towhee, torch and av import'
.venv/bin/python -c 'import towhee, torch, av' # fail here, not later, if the install did not work

# The package, editable: this checkout's code is what `import timesformer_video` runs. Skipped when it already is
# (checked with -I: the import must not find the package through the current directory).
installed=$(.venv/bin/python -I -c 'import timesformer_video, os; print(os.path.dirname(timesformer_video.__file__))' \
            2>/dev/null || true)
if [ "$installed" = "$PWD/timesformer_video" ]; then
  step 4 'timesformer_video is installed from this checkout'
else
  step 4 'installing this checkout as the timesformer_video package (pip install -e .)'
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e . \
    || { echo 'setup: pip install -e . failed (output above)' >&2; exit 1; }
fi

# System tools the tests use: the ffmpeg CLI makes their videos (as users make them), Chromium renders the moments
# page, GStreamer's RTSP server (run by Debian's Python with PyGObject) is the live-stream tests' loopback camera.
missing=$(for tool in ffmpeg chromium; do command -v "$tool" >/dev/null || echo "$tool"; done)
/usr/bin/python3 -c 'import gi; gi.require_version("GstRtspServer", "1.0")' 2>/dev/null \
  || missing="$missing python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good gstreamer1.0-plugins-bad"
if [ -z "$missing" ]; then
  step 5 "ffmpeg, chromium and GStreamer's RTSP server are installed"
elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  step 5 "installing $(echo $missing) with apt-get (about 1-2 minutes)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
else
  step 5 "warning: $(echo $missing) missing; the tests need them (e.g. sudo apt-get install $(echo $missing))"
fi

step 6 "placing the operators in Towhee's cache"
.venv/bin/python scripts/install_operators.py
