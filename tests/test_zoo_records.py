"""Each released record of the zoo against HF transformers built for its frames and crop, and the label files
against lists from outside this repository.

Records: for every release record the operator is built from the record itself with only the width and depth
reduced (2 blocks, 48-d, 4 heads; `dataclasses.replace`), keeping what the record decides: how many frames are
sampled, the crop size and with it the patch grid and position embedding, the time embedding's length, the number
of classes and the labels, mean/std and the channel order. HF's `TimesformerForVideoClassification` is built with
the same frames, image size and classes and the same reduced width/depth, random weights, saved with
`save_pretrained` and loaded by the operator with `weights=`. ViT-B's full-size numerics are test_timesformer.py's
subject; here a full-size 96-frame or 448-px ViT-B would cost minutes for nothing more. The reference input is
computed here from the frames: `floor(linspace(0, n - 1, num_frames))`, channels reversed for BGR records (SSv2:
trained on OpenCV-decoded frames), then the seed's transform step by step (`reference.reference_clip`).
"""

import ast
import dataclasses
import json
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT, make_hf_model
from reference import hf_outputs, random_frames, reference_clip

from timesformer_video.classifier import ActionClassifier
from timesformer_video.zoo import MODELS, get_cfg, register_model

RELEASES = [name for name in MODELS if name.startswith('timesformer_') and MODELS[name].url.startswith('https://')]
REDUCED = {'embed_dim': 48, 'depth': 2, 'num_heads': 4}
# Measured on these reduced models: features at most 8.3e-7, scores at most 1.5e-8 (their probabilities are less
# spread than full-size ones); the bounds leave about five times that.
TOL_FEATURES, TOL_SCORES = 5e-6, 1e-7


def reduced_record_and_hf(name: str, tmp_path: Path):
    cfg = get_cfg(name)
    record = register_model(dataclasses.replace(cfg, name=f'{name}_reduced', **REDUCED))
    hf = make_hf_model(num_frames=cfg.num_frames, image_size=cfg.image_size, num_labels=cfg.num_classes,
                       hidden_size=48, num_hidden_layers=2, num_attention_heads=4, intermediate_size=192)
    hf.save_pretrained(tmp_path / 'hf')
    return record, hf


def reference_input(frames: np.ndarray, cfg) -> torch.Tensor:
    assert cfg.mean == (0.45,) * 3 and cfg.std == (0.225,) * 3  # reference_clip's constants
    chosen = frames[np.floor(np.linspace(0, len(frames) - 1, cfg.num_frames)).astype(int)]
    if cfg.channel_order == 'BGR':
        chosen = chosen[..., ::-1]
    return reference_clip(chosen, None, cfg.image_size)


def test_every_release_is_covered_here():
    assert len(RELEASES) == 9 and {get_cfg(n).num_frames for n in RELEASES} == {8, 16, 64, 96}


@pytest.mark.parametrize('name', RELEASES)
def test_a_release_record_matches_hf_built_with_its_frames_and_size(name, tmp_path):
    record, hf = reduced_record_and_hf(name, tmp_path)
    op = ActionClassifier(model_name=record.name, weights=tmp_path / 'hf', device='cpu')
    size = record.image_size
    # More frames than the clip takes and a frame larger than the crop, landscape: sampling, resize and crop all act.
    frames = random_frames(record.num_frames + 5, size + 16, size * 4 // 3, seed=7)
    labels, scores, features = op(frames)

    probs, hf_feature = hf_outputs(hf, reference_input(frames, record))
    top = probs.topk(5)
    feature_diff = np.abs(features - hf_feature.numpy()).max()
    score_diff = np.abs(np.array(scores) - top.values.numpy()).max()
    print(f'{name}: features {feature_diff:.2e}, scores {score_diff:.2e}')
    assert features.shape == (48,) and len(record.labels) == probs.shape[0]
    assert feature_diff < TOL_FEATURES and score_diff < TOL_SCORES
    assert labels == [record.labels[i] for i in top.indices.tolist()]


@pytest.mark.parametrize('name', ['timesformer_ssv2_8x224'])
def test_ssv2_feeds_bgr_and_the_test_would_see_rgb(name, tmp_path):
    """RGB frames in, BGR into the model: the reference computed with reversed channels matches, and the one
    without does not (so a missing flip fails the test above)."""
    record, hf = reduced_record_and_hf(name, tmp_path)
    assert record.channel_order == 'BGR'
    op = ActionClassifier(model_name=record.name, weights=tmp_path / 'hf', device='cpu', topk=174)
    frames = random_frames(10, 240, 320, seed=8)
    _, _, features = op(frames)
    bgr_feature = hf_outputs(hf, reference_input(frames, record))[1].numpy()
    rgb_feature = hf_outputs(hf, reference_input(frames, dataclasses.replace(record, channel_order='RGB')))[1].numpy()
    assert np.abs(features - bgr_feature).max() < TOL_FEATURES
    assert np.abs(features - rgb_feature).max() > 100 * TOL_FEATURES


# ---- label files against an independent source -------------------------------------------------------------------
# Kinetics-400: torchvision's list (test_timesformer.py). Kinetics-600 and Something-Something-v2: GluonCV 0.10.5's
# dataset classes (gluoncv/data/kinetics700/classification.py, gluoncv/data/somethingsomethingv2/classification.py),
# read from its wheel with `ast`, never imported. scripts/setup.sh downloads that wheel (pip download --no-deps) to
# .venv/reference-wheels/. GluonCV has no Kinetics-600 list; Kinetics-700 is Kinetics-600 plus new classes with
# three classes dropped, and keeps the alphabetical index order, so K600's order is checked as K700's order
# restricted to K600's names.
GLUONCV_WHEEL = Path(sys.prefix) / 'reference-wheels' / 'gluoncv-0.10.5.post0-py2.py3-none-any.whl'
K600_DROPPED_IN_K700 = {'bull fighting', 'chopping vegetables', 'picking fruit'}


def gluoncv_classes(module: str) -> list[str]:
    if not GLUONCV_WHEEL.is_file():
        pytest.fail(f'{GLUONCV_WHEEL} is missing: run bash scripts/setup.sh (it downloads the reference wheel)')
    with zipfile.ZipFile(GLUONCV_WHEEL) as wheel:
        tree = ast.parse(wheel.read(f'gluoncv/data/{module}/classification.py').decode('utf-8'))
    for node in ast.walk(tree):
        if (isinstance(node, ast.Assign) and isinstance(node.value, ast.List)
                and any(getattr(target, 'attr', None) == 'classes' for target in node.targets)):
            return [ast.literal_eval(element) for element in node.value.elts]
    raise AssertionError(f'no class list in gluoncv/data/{module}')


def test_something_something_v2_labels_are_gluoncvs_in_index_order():
    ours = json.loads((ROOT / 'timesformer_video' / 'labels' / 'something_something_v2.json').read_text())
    assert ours == gluoncv_classes('somethingsomethingv2') and len(ours) == 174


def test_kinetics_600_labels_follow_the_kinetics_700_order_from_gluoncv():
    ours = json.loads((ROOT / 'timesformer_video' / 'labels' / 'kinetics_600.json').read_text())

    def gluon_name(label: str) -> str:  # GluonCV writes 'passing_American_football_-not_in_game-'
        return label.replace(' ', '_').replace('(', '-').replace(')', '-').replace("'", '-').lower()

    k700 = [name.lower() for name in gluoncv_classes('kinetics700')]
    kept = [label for label in ours if label not in K600_DROPPED_IN_K700]
    assert len(ours) == 600 == len(set(ours)) and len(kept) == 597
    assert [name for name in k700 if name in {gluon_name(label) for label in kept}] == [gluon_name(label)
                                                                                        for label in kept]
    assert ours == sorted(ours)  # the dropped three sit where the alphabetical index order puts them
