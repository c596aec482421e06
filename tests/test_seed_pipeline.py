"""The seed example end to end through Towhee, both operators resolved from a Towhee cache, with no network."""

import json
import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import PARITY_FEATURES, PARITY_SCORES, install_operators
from reference import hf_outputs, reference_clip

from timesformer_video.synthetic import make_video

ROOT = Path(__file__).resolve().parents[1]

PIPELINE_TO_JSON = """
import json, sys
from towhee import pipe, ops
p = (pipe.input('path')
       .map('path', 'frames', ops.video_decode.ffmpeg())
       .map('frames', ('labels', 'scores', 'features'),
            ops.action_classification.timesformer(model_name='timesformer_k400_8x224'))
       .output('path', 'labels', 'scores', 'features'))
path, labels, scores, features = p(sys.argv[1]).get()
print(json.dumps({'path': path, 'labels': labels, 'scores': scores, 'features': features.tolist()}))
"""


@pytest.fixture(scope='module')
def offline_env(tmp_path_factory, checkpoints):
    """A fresh TOWHEE_HOME with our operators installed and a TORCH_HOME whose hub cache holds the release file."""
    root = tmp_path_factory.mktemp('offline')
    env = dict(os.environ, TOWHEE_HOME=str(root / 'towhee'), TORCH_HOME=str(root / 'torch'),
               TIMESFORMER_WEIGHTS_BASE_URL='http://127.0.0.1:9')  # nothing listens there: no download possible
    return install_operators(env)


@pytest.fixture(scope='module')
def video(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp('video') / 'archery.mp4', seconds=2, size=(320, 240), fps=25)


def _cache_release_file(env, checkpoints):
    cached = Path(env['TORCH_HOME']) / 'hub' / 'checkpoints' / 'TimeSformer_divST_8x32_224_K400.pyth'
    cached.parent.mkdir(parents=True, exist_ok=True)
    if not cached.exists():
        os.link(checkpoints['pyth'], cached)


def test_seed_pipeline_through_towhee_matches_hf(offline_env, video, checkpoints, hf_model):
    _cache_release_file(offline_env, checkpoints)
    out = subprocess.run([sys.executable, '-c', PIPELINE_TO_JSON, str(video)], env=offline_env, cwd=video.parent,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])

    with av.open(str(video)) as container:
        frames = np.stack([f.to_ndarray(format='rgb24') for f in container.decode(video=0)])
    probs, feature = hf_outputs(hf_model, reference_clip(frames))
    top = probs.topk(5)
    labels = json.loads((ROOT / 'kinetics_400.json').read_text())
    assert got['path'] == str(video)
    assert got['labels'] == [labels[i] for i in top.indices.tolist()]
    assert np.abs(np.array(got['scores']) - top.values.numpy()).max() < PARITY_SCORES
    assert np.abs(np.array(got['features']) - feature.numpy()).max() < PARITY_FEATURES


def test_seed_example_script_shows_a_table(offline_env, video, checkpoints):
    _cache_release_file(offline_env, checkpoints)
    out = subprocess.run([sys.executable, ROOT / 'scripts' / 'seed_example.py', str(video)], env=offline_env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert 'archery.mp4' in out.stdout and 'labels' in out.stdout


def test_seed_example_without_weights_says_why_and_shows_no_labels(offline_env, video, tmp_path):
    env = dict(offline_env, TORCH_HOME=str(tmp_path / 'empty-torch-home'))
    out = subprocess.run([sys.executable, ROOT / 'scripts' / 'seed_example.py', str(video)], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2
    assert 'No predictions' in out.stderr
    assert 'http://127.0.0.1:9/TimeSformer_divST_8x32_224_K400.pyth' in out.stderr
    assert str(tmp_path / 'empty-torch-home') in out.stderr and 'weights=' in out.stderr
    assert 'labels' not in out.stdout
    assert 'bash scripts/demo.sh --random-weights' in out.stderr and 'plumbing only' in out.stderr
